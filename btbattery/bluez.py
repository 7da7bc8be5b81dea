"""Reading BlueZ's object tree over the system bus: adapters and devices as plain dicts (no bleak).

Shared by the service's start-up check, ``scan`` (packs already connected do not advertise) and ``doctor``.
Reading properties never disturbs a link: it is what ``bluetoothctl info`` does.
"""

from __future__ import annotations

from typing import Any

BLUEZ = "org.bluez"
ADAPTER = "org.bluez.Adapter1"
DEVICE = "org.bluez.Device1"


class BluezMissing(Exception):
    """org.bluez does not answer on the system bus: bluetoothd is not running (or Bluetooth is off)."""


def _plain(value: Any) -> Any:
    value = getattr(value, "value", value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


async def managed_objects(bus: Any = None) -> dict[str, dict[str, dict[str, Any]]]:
    """Path -> interface -> property -> plain value. Raises :class:`BluezMissing` without BlueZ, and
    OSError/EOFError without a system bus."""
    from dbus_fast import BusType, Message, MessageType
    from dbus_fast.aio import MessageBus

    own = bus is None
    if own:
        bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    try:
        reply = await bus.call(
            Message(
                destination=BLUEZ,
                path="/",
                interface="org.freedesktop.DBus.ObjectManager",
                member="GetManagedObjects",
            )
        )
    finally:
        if own:
            bus.disconnect()
    if reply.message_type != MessageType.METHOD_RETURN:
        raise BluezMissing(f"BlueZ (org.bluez) does not answer: {reply.error_name or 'no reply'}")
    return {
        path: {iface: _plain(props) for iface, props in ifaces.items()}
        for path, ifaces in reply.body[0].items()
    }


def adapters(objects: dict[str, dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Adapter name (hci0, ...) -> Adapter1 properties, sorted by name."""
    found = {
        path.rsplit("/", 1)[-1]: ifaces[ADAPTER] for path, ifaces in objects.items() if ADAPTER in ifaces
    }
    return dict(sorted(found.items()))


def devices(
    objects: dict[str, dict[str, dict[str, Any]]], adapter: str | None = None
) -> dict[str, dict[str, Any]]:
    """Upper-case address -> Device1 properties (of one adapter when named)."""
    out: dict[str, dict[str, Any]] = {}
    for path, ifaces in objects.items():
        props = ifaces.get(DEVICE)
        if props is None or (adapter and not path.startswith(f"/org/bluez/{adapter}/")):
            continue
        out[str(props.get("Address", "")).upper()] = props
    return out
