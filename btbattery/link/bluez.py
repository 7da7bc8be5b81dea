"""BlueZ housekeeping the links need beside bleak: what BlueZ knows now, and the calls that clear leftovers.

Reading the object tree is :mod:`btbattery.bluez`'s (shared with ``scan`` and the start-up check); this
module turns it into what the links ask (is the pack known, connected, is its adapter powered) and adds
the calls that change BlueZ's state.

bleak connects and talks GATT; it does not tell whether BlueZ still holds a link a dead client left open, and
it has no public call to remove a device or power-cycle an adapter. Those are three plain D-Bus calls, made
here over one connection of our own (dbus-fast only, so it runs with the firmware's dbus-fast 2.21 too):

- ``Device1.Disconnect`` closes a connection BlueZ kept after the client that made it died, and cancels a
  connect left pending (bleak's client.py; bluez/bluez#89),
- ``Adapter1.RemoveDevice`` drops a device with its stored GATT cache, the cure for a stale cache
  (bleak-retry-connector's ``clear_cache`` does the same),
- ``Adapter1.Powered`` off then on revives a wedged controller (Home Assistant's bluetooth-auto-recovery).

bleak-retry-connector was evaluated for this (``close_stale_connections``, ``establish_connection``,
``clear_cache``): 4.x needs dbus-fast >= 5.0.22 (the firmware has 2.21.1), 3.x predates bleak 1.0 and reads
bleak's private manager state (``_properties``, ``_services_cache``, ``_bus``), and both pull in
bluetooth-adapters with three more packages. The few calls are simpler to own.

:func:`resolve_adapter` turns ``hci0`` or an adapter's Bluetooth address into the name BlueZ uses now: hciN
numbers can swap between boots, addresses do not.
"""

from __future__ import annotations

import contextlib
import logging
import re
from dataclasses import dataclass
from typing import Any

from btbattery.bluez import ADAPTER as ADAPTER_IFACE
from btbattery.bluez import BLUEZ, BluezMissing, adapters, managed_objects
from btbattery.bluez import DEVICE as DEVICE_IFACE

log = logging.getLogger(__name__)

_MAC = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")
_HCI = re.compile(r"^hci\d{1,3}$")


class BluezError(Exception):
    """A BlueZ call failed; ``name`` is the D-Bus error name (empty when BlueZ could not be reached)."""

    def __init__(self, message: str, name: str = "") -> None:
        super().__init__(message)
        self.name = name


@dataclass(frozen=True, slots=True)
class Adapter:
    name: str  # hci0
    address: str
    powered: bool

    @property
    def path(self) -> str:
        return f"/org/bluez/{self.name}"


@dataclass(frozen=True, slots=True)
class Device:
    path: str
    address: str
    adapter: str  # hci0
    name: str | None
    connected: bool
    props: dict[str, Any]  # plain values, as bleak keeps them in BLEDevice.details["props"]


@dataclass(frozen=True, slots=True)
class BluezView:
    """What BlueZ knows at one moment: adapters by name, devices by (adapter, address)."""

    adapters: dict[str, Adapter]
    devices: dict[tuple[str, str], Device]

    def device(self, adapter: str, address: str) -> Device | None:
        return self.devices.get((adapter, address.upper()))


def is_adapter_spec(text: str) -> bool:
    """``hci0`` or a Bluetooth address: what BLUETOOTH_ADAPTER accepts."""
    return bool(_HCI.match(text) or _MAC.match(text))


def resolve_adapter(spec: str | None, adapters: dict[str, Adapter]) -> str | None:
    """The adapter name for ``spec`` (a name, an address, or None for the first one), or None if absent."""
    if spec is None:
        return min(adapters, key=_hci_number, default=None)
    if _MAC.match(spec):
        wanted = spec.upper()
        return next((a.name for a in adapters.values() if a.address.upper() == wanted), None)
    return spec if spec in adapters else None


def describe_adapters(adapters: dict[str, Adapter]) -> str:
    ordered = sorted(adapters.values(), key=_adapter_order)
    return ", ".join(f"{a.name} ({a.address})" for a in ordered) or "none"


def _hci_number(name: str) -> int:
    digits = name[3:]
    return int(digits) if digits.isdigit() else 1_000_000


def _adapter_order(adapter: Adapter) -> int:
    return _hci_number(adapter.name)


def adapters_of(objects: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Adapter]:
    """Adapters by name from BlueZ's object tree (plain values, from btbattery.bluez.managed_objects)."""
    return {
        name: Adapter(name, str(props.get("Address", "")), bool(props.get("Powered", False)))
        for name, props in adapters(objects).items()
    }


def parse_objects(objects: dict[str, dict[str, dict[str, Any]]]) -> BluezView:
    """A :class:`BluezView` of BlueZ's object tree (plain values)."""
    devices: dict[tuple[str, str], Device] = {}
    for path, interfaces in objects.items():
        props = interfaces.get(DEVICE_IFACE)
        if props is None:
            continue
        adapter = str(props.get("Adapter", "")).rsplit("/", 1)[-1]
        address = str(props.get("Address", "")).upper()
        name = None if props.get("Name") is None else str(props["Name"])
        devices[(adapter, address)] = Device(
            path, address, adapter, name, bool(props.get("Connected")), props
        )
    return BluezView(adapters_of(objects), devices)


class BluezHousekeeper:
    """One D-Bus connection for the few calls above; connects on first use and again after losing the bus."""

    def __init__(self, bus_address: str | None = None) -> None:
        self._bus_address = bus_address
        self._bus: Any = None

    async def view(self) -> BluezView:
        bus = await self._connected()
        try:
            return parse_objects(await managed_objects(bus))
        except BluezMissing as exc:
            raise BluezError(str(exc)) from None
        except (OSError, EOFError) as exc:
            raise BluezError(f"GetManagedObjects: D-Bus connection lost: {exc}") from None

    async def disconnect(self, device_path: str) -> None:
        await self._call(BLUEZ, device_path, DEVICE_IFACE, "Disconnect")

    async def remove_device(self, adapter: str, device_path: str) -> None:
        await self._call(BLUEZ, f"/org/bluez/{adapter}", ADAPTER_IFACE, "RemoveDevice", "o", [device_path])

    async def set_powered(self, adapter: str, on: bool) -> None:
        from dbus_fast import Variant

        await self._call(
            BLUEZ,
            f"/org/bluez/{adapter}",
            "org.freedesktop.DBus.Properties",
            "Set",
            "ssv",
            [ADAPTER_IFACE, "Powered", Variant("b", on)],
        )

    async def _connected(self) -> Any:
        from dbus_fast import BusType
        from dbus_fast.aio import MessageBus

        if self._bus is None or not self._bus.connected:
            try:
                if self._bus_address:
                    self._bus = await MessageBus(bus_address=self._bus_address).connect()
                else:
                    self._bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
            except (OSError, EOFError, ValueError) as exc:
                raise BluezError(f"no system D-Bus: {exc}") from None
        return self._bus

    async def close(self) -> None:
        bus, self._bus = self._bus, None
        if bus is not None:
            with contextlib.suppress(Exception):
                bus.disconnect()

    async def _call(
        self, destination: str, path: str, interface: str, member: str, signature: str = "", body: Any = None
    ) -> Any:
        from dbus_fast import Message, MessageType

        bus = await self._connected()
        try:
            reply = await bus.call(
                Message(
                    destination=destination,
                    path=path,
                    interface=interface,
                    member=member,
                    signature=signature,
                    body=body or [],
                )
            )
        except (OSError, EOFError) as exc:
            raise BluezError(f"{member}: D-Bus connection lost: {exc}") from None
        if reply.message_type == MessageType.ERROR:
            detail = reply.body[0] if reply.body else ""
            raise BluezError(f"{member} on {path}: [{reply.error_name}] {detail}", reply.error_name or "")
        return reply
