"""A fake ``org.bluez`` on a private D-Bus that serves simulated JBD packs to **unmodified bleak**.

It implements the slice of BlueZ that bleak uses (see ../shared/reference/stack-notes.md): the object
manager, properties, ``Adapter1`` discovery, ``Device1`` connect/disconnect and a JBD GATT service (ff00
with ff01 notify / ff02 write, or the fff0/fff1/fff2 variant). Requests written to the write characteristic
go to :class:`~btbattery.sim.pack.SimPack`; its answer comes back as ``PropertiesChanged`` of the notify
characteristic's ``Value``, 20 bytes at a time, paced like a BLE connection.

It keeps real BlueZ's awkward habits because the link code must survive them: one ``Connect`` at a time
per adapter (a second one fails with ``org.bluez.Error.InProgress``), discovery per D-Bus client, devices
that only show up while somebody discovers and expire when unheard of, and an adapter that can vanish.
Newer units' locks are modelled too: the FF AA password handshake (answered by the simulated pack), and
LE pairing through ``AgentManager1`` / ``Device1.Pair`` calling the client's agent, a ``Paired`` bond that
outlives connections, ``"Not paired"`` GATT errors and the echo variant (see :mod:`btbattery.sim.pairing`).
Link faults (drop, drop mid-frame, silent, corrupt, truncate, delay, adapter loss) come from the
scenario's timeline or from :meth:`FakeBluez.inject` / the ``Inject`` method of the control object for a
fake in another process.

The field's harder cases are here too (issue 11; each cites where real BlueZ 5.72 or the field shows it):
packs left connected by a previous client at start (``connected_at_start``: connected, no adverts),
``StartDiscovery`` refused with InProgress for a while, another client disconnecting every device every N s,
a stale GATT cache (no characteristics until ``RemoveDevice`` and a fresh discovery), a wedged adapter (until
``Adapter1.Powered`` is cycled), a pending ``Connect`` left by a dead client, few connection slots per
adapter, a unit that ignores write-without-response, ``le-connection-abort-by-local`` on connects, and
several adapters with their own addresses (``adapters``, ``placement``).

Objects are served by one message handler over a plain dict of properties rather than exported
``ServiceInterface`` objects: it needs the caller of ``StartDiscovery``, replies to ``Connect`` late, and
removes and re-adds whole subtrees, all of which are simpler with the messages in hand.

Run as a program: ``python -m btbattery.sim.bluez --bus-address ADDR --scenario NAME [--packs N]``; it prints
``READY {"addresses": [...], "control": NAME}`` once it owns ``org.bluez``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import random
import signal
import socket
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from btbattery.protocol import jbd
from btbattery.sim.pack import PackParams, SimBank, SimPack
from btbattery.sim.pairing import (
    AGENT_IFACE,
    AGENT_MANAGER_IFACE,
    AGENT_MANAGER_PATH,
    CAN_TYPE,
    ERR_ALREADY_EXISTS,
    ERR_AUTH_CANCELED,
    ERR_AUTH_FAILED,
    ERR_AUTH_REJECTED,
    ERR_AUTH_TIMEOUT,
    NOT_PAIRED,
    REQUEST_TIMEOUT,
    AgentRegistry,
)
from btbattery.sim.scenario import Fault, Scenario, load_scenario

log = logging.getLogger(__name__)

BLUEZ = "org.bluez"
ADAPTER_IFACE = "org.bluez.Adapter1"
DEVICE_IFACE = "org.bluez.Device1"
SERVICE_IFACE = "org.bluez.GattService1"
CHAR_IFACE = "org.bluez.GattCharacteristic1"
PROPS_IFACE = "org.freedesktop.DBus.Properties"
OM_IFACE = "org.freedesktop.DBus.ObjectManager"

# A second well-known name for the test/bench control object: it stays owned while org.bluez comes and goes.
CONTROL_NAME = "io.btbattery.FakeBluez"
CONTROL_PATH = "/io/btbattery/FakeBluez"
CONTROL_IFACE = "io.btbattery.FakeBluez1"

ERR_IN_PROGRESS = "org.bluez.Error.InProgress"
ERR_FAILED = "org.bluez.Error.Failed"
ERR_NOT_CONNECTED = "org.bluez.Error.NotConnected"
ERR_NOT_READY = "org.bluez.Error.NotReady"
ERR_DOES_NOT_EXIST = "org.bluez.Error.DoesNotExist"
ERR_NOT_PERMITTED = "org.bluez.Error.NotPermitted"
ERR_NOT_SUPPORTED = "org.bluez.Error.NotSupported"
ERR_UNKNOWN_OBJECT = "org.freedesktop.DBus.Error.UnknownObject"
ERR_INVALID_ARGS = "org.freedesktop.DBus.Error.InvalidArgs"

BASE_UUID = "0000{:04x}-0000-1000-8000-00805f9b34fb"
# (service, notify, write) short UUIDs of the two GATT layouts JBD units use.
GATT_VARIANTS = {"ff00": (0xFF00, 0xFF01, 0xFF02), "fff0": (0xFFF0, 0xFFF1, 0xFFF2)}
# Handles in the object paths: bleak reads the handle from the last four hex digits of each path.
SERVICE_HANDLE, NOTIFY_HANDLE, WRITE_HANDLE = 0x000C, 0x000D, 0x0010
# Shape only: a company id and the address bytes, as many cheap BMS boards advertise.
MANUFACTURER_ID = 0x4A42

# Faults of one pack's link or unit. "stale_cache" and "ghost_connect" also end early, the way they do on
# a real system: RemoveDevice clears a stale cache and a dead client's pending connect.
# "held": another program on this host (a second driver, bluetoothctl) connects the pack for the fault's
# duration. In BlueZ a connection belongs to the adapter, not to the client that asked for it: every client
# sees Device1.Connected = true and a Connect from another client returns at once (src/device.c,
# dev_connect: "already connected"); a JBD module takes one central, so it stops advertising meanwhile.
# "acquire_closes": a unit that misbehaves under AcquireNotify (bleak keeps StartNotify its default because
# "a number of devices have issues with AcquireNotify", backends/bluezdbus/client.py): while the fault lasts,
# BlueZ's end of an acquired notification socket closes instead of delivering, and the link stays up.
PACK_FAULTS = (
    "drop",
    "drop_midframe",
    "silent",
    "corrupt",
    "truncate",
    "delay",
    "held",
    "stale_cache",
    "ghost_connect",
    "abort_connect",
    "request_only",
    "acquire_closes",
)
# Faults of the adapter the given pack is on (the Inject call names a pack so its signature stays the same).
# "disconnect_all" repeats every ``delay`` seconds (once when 0); "wedge" lasts until a power cycle.
ADAPTER_FAULTS = ("adapter_loss", "refuse_discovery", "disconnect_all", "wedge")
LINK_FAULTS = PACK_FAULTS + ADAPTER_FAULTS
DEFAULT_ADAPTERS = (("hci0", "00:1A:7D:DA:71:13"),)


@dataclass
class Timing:
    """How fast the fake radio is. Defaults are realistic; tests shrink them."""

    advertise_interval: float = 0.5  # s between advertisements of an unconnected pack
    connect_delay: float = 0.15  # s from Connect to Connected
    resolve_delay: float = 0.05  # s from Connected to ServicesResolved
    connect_fail_delay: float = 2.0  # s before a Connect to an absent pack fails
    response_delay: float = 0.03  # s the BMS thinks before answering
    # Up to this much more, drawn per answer: real units answer out of step with each other. The FF AA
    # captures (shared/reference/jbd-auth.md, "Timing") show replies 18-60 ms after the write, i.e.
    # response_delay=0.018 with response_jitter=0.042 (FIELD_TIMING).
    response_jitter: float = 0.0
    chunk_interval: float = 0.0075  # s between notifications (one BLE connection interval)
    physics_interval: float = 0.5  # s between physics steps
    device_expiry: float = 30.0  # s an unconnected, unheard device stays in the object tree


# Answers timed as a real bank's: 18-60 ms to the first notification (see response_jitter), then one
# notification per BLE connection event at Linux's default LE connection interval, 30-50 ms
# (net/bluetooth/hci_core.c: le_conn_min_interval 0x0018, le_conn_max_interval 0x0028, in 1.25 ms units).
# `python -m btbattery.sim.bluez --timing field`; the CPU benchmark runs on it. "quick" is Timing's own
# defaults: every pack answers after the same 30 ms, so their answers share wake-ups.
FIELD_TIMING = {"response_delay": 0.018, "response_jitter": 0.042, "chunk_interval": 0.04}
TIMING_PRESETS: dict[str, dict[str, float]] = {"quick": {}, "field": FIELD_TIMING}


def parse_timing(text: str) -> dict[str, float]:
    """A preset name (TIMING_PRESETS) or ``NAME=SECONDS,...`` (Timing's fields) for ``--timing``."""
    if text in TIMING_PRESETS:
        return dict(TIMING_PRESETS[text])
    names = {f.name for f in fields(Timing)}
    values: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or name.strip() not in names:
            raise argparse.ArgumentTypeError(
                f"{item!r}: expected {' or '.join(TIMING_PRESETS)} or NAME=SECONDS with NAME one of "
                f"{', '.join(sorted(names))}"
            )
        values[name.strip()] = float(value)
    return values


@dataclass
class FakeStats:
    """What the fake saw; tests assert on it."""

    connect_calls: int = 0
    connects_in_flight: int = 0
    max_connects_in_flight: int = 0  # Connect calls overlapping on the adapter, refused ones included
    in_progress_errors: int = 0
    connects: int = 0  # successful
    disconnects: int = 0
    requests: int = 0
    notifications: int = 0
    discovery_starts: int = 0
    discovery_refused: int = 0  # StartDiscovery calls refused (InProgress, NotReady)
    discovery_seconds: float = 0.0  # time any adapter spent discovering for us, summed when it stops
    expired_devices: int = 0  # device objects removed after device_expiry unheard
    pair_calls: int = 0  # Device1.Pair calls
    bonds: int = 0  # pairings that made a bond
    passkey_requests: int = 0  # Agent1.RequestPasskey calls made
    not_paired_errors: int = 0  # GATT calls refused with "Not paired"
    echoes: int = 0  # writes echoed back by an unbonded echo-mode unit
    removed_devices: int = 0  # RemoveDevice calls that removed a device object
    aborted_connects: int = 0  # connects ended with le-connection-abort-by-local
    slot_refusals: int = 0  # connects refused because the adapter had no free connection slot
    power_cycles: int = 0  # Adapter1.Powered set off then on
    ignored_commands: int = 0  # write-without-response requests a "request_only" unit ignored
    notify_acquires: int = 0  # AcquireNotify calls granted
    write_acquires: int = 0  # AcquireWrite calls granted
    acquire_refusals: int = 0  # AcquireNotify/AcquireWrite calls refused
    socket_notifications: int = 0  # notifications sent through an acquired socket (not D-Bus)
    socket_writes: int = 0  # datagrams read from an acquired write socket (not D-Bus)
    dbus_calls: int = 0  # method calls the fake answered for clients (BlueZ's D-Bus traffic in)
    dbus_signals: int = 0  # signals the fake emitted (BlueZ's D-Bus traffic out, replies not counted)

    def as_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


@dataclass
class _ActiveFault:
    kind: str
    until: float  # loop time
    delay: float = 0.0


def _active_fault(faults: dict[str, _ActiveFault], kind: str, now: float) -> _ActiveFault | None:
    """The fault of that kind if it still lasts at ``now`` (an expired one is dropped)."""
    active = faults.get(kind)
    if active is not None and now >= active.until:
        del faults[kind]
        return None
    return active


@dataclass(eq=False)
class _Adapter:
    """One controller as BlueZ sees it (``/org/bluez/hciN``)."""

    name: str
    address: str
    slots: int | None = None  # connections the controller can hold; None: more than any test needs
    powered: bool = True
    wedged: bool = False
    off_requested: bool = False  # Powered was set False: the next True is a power cycle
    discoverers: set[str] = field(default_factory=set)
    discovering_since: float = 0.0
    connecting: _Pack | None = None  # BlueZ: one LE connection attempt at a time per adapter
    faults: dict[str, _ActiveFault] = field(default_factory=dict)

    @property
    def path(self) -> str:
        return f"/org/bluez/{self.name}"

    def fault(self, kind: str, now: float) -> _ActiveFault | None:
        return _active_fault(self.faults, kind, now)


@dataclass(eq=False)
class _Pack:
    """One simulated pack as BlueZ sees it."""

    number: int  # 1-based
    sim: SimPack
    address: str
    name: str
    path: str
    adapter: _Adapter
    variant: str = "ff00"
    rssi: int = -60
    exported: bool = False  # Device1 object present in the tree
    connected: bool = False
    notifying: bool = False
    last_seen: float = 0.0
    faults: dict[str, _ActiveFault] = field(default_factory=dict)
    abort_toggle: bool = False  # alternates while an abort_connect fault lasts
    connect_task: asyncio.Task[None] | None = None
    responder: asyncio.Task[None] | None = None
    requests: asyncio.Queue[bytes] | None = None
    request_buf: bytearray = field(default_factory=bytearray)
    paired: bool = False  # BlueZ holds a bond (kept across connections, like bluetoothd's storage)
    mitm: bool = False  # the bond was made with a passkey (authenticated), not Just Works
    bonding: bool = False
    # BlueZ's ends of the AcquireNotify / AcquireWrite socket pairs while a client holds them
    notify_sock: socket.socket | None = None
    write_sock: socket.socket | None = None

    @property
    def locked_gatt(self) -> bool:
        """A "passkey" unit refuses GATT until an authenticated bond exists."""
        return self.sim.params.pairing == "passkey" and not self.mitm

    @property
    def echoing(self) -> bool:
        """An "echo" unit echoes every write until an authenticated bond exists."""
        return self.sim.params.pairing == "echo" and not self.mitm

    @property
    def uuids(self) -> tuple[str, str, str]:
        service, notify, write = GATT_VARIANTS[self.variant]
        return BASE_UUID.format(service), BASE_UUID.format(notify), BASE_UUID.format(write)

    @property
    def service_path(self) -> str:
        return f"{self.path}/service{SERVICE_HANDLE:04x}"

    @property
    def notify_path(self) -> str:
        return f"{self.service_path}/char{NOTIFY_HANDLE:04x}"

    @property
    def write_path(self) -> str:
        return f"{self.service_path}/char{WRITE_HANDLE:04x}"

    def fault(self, kind: str, now: float) -> _ActiveFault | None:
        return _active_fault(self.faults, kind, now)


def device_path(adapter: str, address: str) -> str:
    return f"/org/bluez/{adapter}/dev_{address.upper().replace(':', '_')}"


class FakeBluez:
    """``fake = FakeBluez(scenario); await fake.start(); ...; await fake.stop()``.

    ``scenario`` is a :class:`Scenario` or a scenario name/path. ``packs`` resizes it (extra packs are copies
    with new addresses). ``variants`` maps a 1-based pack number to "fff0" for the alternative GATT layout.
    ``scripted_faults=False`` ignores the scenario's fault timeline (tests inject their own).
    ``with_adapter=False`` is bluetoothd running on a machine without a controller: org.bluez answers
    GetManagedObjects with no Adapter1 (BlueZ adds the adapter object only when the kernel reports an hci
    controller, src/adapter.c ``adapter_register``). ``hidden_services`` are 1-based packs whose
    advertisement carries no service UUID (BlueZ's Device1.UUIDs is then empty until a connection).
    ``adapters`` lists ``(name, address)`` of each controller (default one, hci0); ``placement`` maps a pack
    number to the adapter it is in radio range of (default the first); ``slots`` bounds the connections an
    adapter holds. ``connected_at_start`` names packs a previous client left connected. ``refuse_acquire``
    names packs whose AcquireNotify and AcquireWrite fail with org.bluez.Error.NotSupported.
    """

    def __init__(
        self,
        scenario: Scenario | str = "default",
        *,
        packs: int | None = None,
        bus_address: str | None = None,
        adapter: str = "hci0",
        timing: Timing | None = None,
        variants: dict[int, str] | None = None,
        scripted_faults: bool = True,
        seed: int | None = None,
        with_adapter: bool = True,
        hidden_services: set[int] | None = None,
        adapters: Sequence[tuple[str, str]] | None = None,
        placement: dict[int, str] | None = None,
        slots: dict[str, int] | None = None,
        connected_at_start: Iterable[int] = (),
        refuse_acquire: Iterable[int] = (),
    ) -> None:
        self.scenario = resize_scenario(
            load_scenario(scenario) if isinstance(scenario, str) else scenario, packs
        )
        self.bus_address = bus_address or os.environ.get("DBUS_SYSTEM_BUS_ADDRESS", "")
        specs = list(adapters or [(adapter, DEFAULT_ADAPTERS[0][1])])
        self.adapters = {
            name: _Adapter(name, address.upper(), (slots or {}).get(name)) for name, address in specs
        }
        self.adapter = specs[0][0]  # the first adapter (the only one unless ``adapters`` says otherwise)
        self.adapter_path = f"/org/bluez/{self.adapter}"
        self.timing = timing or Timing()
        self.scripted_faults = scripted_faults
        self.with_adapter = with_adapter
        self.hidden_services = hidden_services or set()
        self.stats = FakeStats()
        self.bank: SimBank = self.scenario.build_bank()
        self._rng = random.Random(self.scenario.seed if seed is None else seed)
        variants = variants or {}
        placement = placement or {}
        for number, name in placement.items():
            if name not in self.adapters:
                raise ValueError(f"pack {number} placed on {name}, which is not one of {list(self.adapters)}")
        self.packs = [
            _Pack(
                number=i,
                sim=sim,
                address=sim.params.address.upper(),
                name=sim.params.name,
                path=device_path(placement.get(i, self.adapter), sim.params.address),
                adapter=self.adapters[placement.get(i, self.adapter)],
                variant=variants.get(i, "ff00"),
                rssi=-55 - 4 * i,
            )
            for i, sim in enumerate(self.bank.packs, start=1)
        ]
        self.connected_at_start = sorted(set(connected_at_start))
        # packs whose AcquireNotify/AcquireWrite fail (a BlueZ build or unit where they do not work)
        self.refuse_acquire = set(refuse_acquire)
        self._bus: MessageBus | None = None
        self._objects: dict[str, dict[str, dict[str, Variant]]] = {}
        self._adapter_present = False
        self._owns_bluez = False
        self.agents = AgentRegistry()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._advertiser: asyncio.Task[None] | None = None
        self._waiters: list[tuple[Callable[[FakeBluez], bool], asyncio.Future[None]]] = []
        self._t0 = 0.0

    # ----- lifecycle -----------------------------------------------------------------------------

    @property
    def addresses(self) -> list[str]:
        return [p.address for p in self.packs]

    @property
    def adapter_present(self) -> bool:
        return self._adapter_present

    def now(self) -> float:
        """Seconds since :meth:`start` (the scenario's clock)."""
        return asyncio.get_running_loop().time() - self._t0

    async def start(self) -> None:
        if not self.bus_address:
            raise RuntimeError("no bus address: pass bus_address or set DBUS_SYSTEM_BUS_ADDRESS")
        # unix fds: AcquireNotify/AcquireWrite hand out sockets
        self._bus = bus = await MessageBus(bus_address=self.bus_address, negotiate_unix_fd=True).connect()
        bus.add_message_handler(self._on_message)
        await self._call_daemon(
            "AddMatch", "s", ["type='signal',sender='org.freedesktop.DBus',member='NameOwnerChanged'"]
        )
        await bus.request_name(CONTROL_NAME)
        self._t0 = asyncio.get_running_loop().time()
        await self._adapter_up()
        self._restore_stale_connections()
        self._spawn(self._physics())
        if self.scripted_faults:
            for fault in self.scenario.faults:
                self._spawn(self._scripted(fault))

    async def stop(self) -> None:
        """Disconnect every pack, leave the bus."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._bus is None:
            return
        with contextlib.suppress(Exception):
            await self._adapter_down()
        self._bus.disconnect()
        with contextlib.suppress(Exception):
            await self._bus.wait_for_disconnect()
        self._bus = None

    async def __aenter__(self) -> FakeBluez:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ----- test API ------------------------------------------------------------------------------

    def inject(self, pack: int, kind: str, duration: float = 5.0, delay: float = 0.0) -> None:
        """Start a fault on 1-based ``pack`` (or on its adapter, see :data:`ADAPTER_FAULTS`) now, for
        ``duration`` seconds (see :data:`LINK_FAULTS`)."""
        if kind not in LINK_FAULTS:
            raise ValueError(f"unknown fault kind {kind!r} (known: {', '.join(LINK_FAULTS)})")
        if kind == "adapter_loss":
            self._spawn(self._adapter_loss(duration))
            return
        target = self.packs[pack - 1]
        if kind == "held":
            self._spawn(self._held(target, duration))
            return
        until = asyncio.get_running_loop().time() + duration
        if kind in ADAPTER_FAULTS:
            self._adapter_fault(target.adapter, kind, until, delay)
            return
        target.faults[kind] = _ActiveFault(kind, until, delay)
        log.info("fault %s on pack %d (%s) for %.1f s", kind, pack, target.address, duration)
        if kind == "drop" and (target.connected or target.connect_task is not None):
            self._spawn(self._link_down(target, "drop"))

    def _adapter_fault(self, adapter: _Adapter, kind: str, until: float, delay: float) -> None:
        adapter.faults[kind] = _ActiveFault(kind, until, delay)
        log.info("fault %s on %s", kind, adapter.name)
        if kind == "disconnect_all":
            self._spawn(self._disconnect_storm(adapter, delay))
        elif kind == "wedge":
            self._spawn(self._wedge(adapter))

    def clear_faults(self, keep: Iterable[str] = ()) -> None:
        """End every fault now (except the kinds in ``keep``); a wedged adapter is switched back on, as a
        person power-cycling it would."""
        kept = set(keep)
        for pack in self.packs:
            pack.faults = {kind: f for kind, f in pack.faults.items() if kind in kept}
        for adapter in self.adapters.values():
            adapter.faults.clear()
            if adapter.wedged:
                adapter.wedged = adapter.off_requested = False
                self._power(adapter, True)

    def connected(self) -> list[int]:
        """1-based numbers of the packs connected now."""
        return [p.number for p in self.packs if p.connected]

    async def wait_until(self, predicate: Callable[[FakeBluez], bool], timeout: float) -> None:
        """Wait (bounded) until ``predicate(self)`` holds; re-checked on every connection or discovery
        change."""
        if predicate(self):
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((predicate, fut))
        try:
            await asyncio.wait_for(fut, timeout)
        finally:
            self._waiters = [w for w in self._waiters if w[1] is not fut]

    def _changed(self) -> None:
        for predicate, fut in list(self._waiters):
            if not fut.done() and predicate(self):
                fut.set_result(None)

    # ----- object tree ---------------------------------------------------------------------------

    def _emit(self, path: str, interface: str, member: str, signature: str, body: list[Any]) -> None:
        if self._bus is not None and self._adapter_present:
            self.stats.dbus_signals += 1
            self._bus.send(Message.new_signal(path, interface, member, signature, body))

    def _add_object(self, path: str, interfaces: dict[str, dict[str, Variant]]) -> None:
        self._objects[path] = interfaces
        self._emit("/", OM_IFACE, "InterfacesAdded", "oa{sa{sv}}", [path, interfaces])

    def _remove_object(self, path: str) -> None:
        interfaces = self._objects.pop(path, None)
        if interfaces is not None:
            self._emit("/", OM_IFACE, "InterfacesRemoved", "oas", [path, list(interfaces)])

    def _set(self, path: str, interface: str, **changes: Variant) -> None:
        props = self._objects.get(path, {}).get(interface)
        if props is None:
            return
        props.update(changes)
        self._emit(path, PROPS_IFACE, "PropertiesChanged", "sa{sv}as", [interface, changes, []])

    def _adapter_props(self, adapter: _Adapter) -> dict[str, Variant]:
        return {
            "Address": Variant("s", adapter.address),
            "AddressType": Variant("s", "public"),
            "Name": Variant("s", "btbattery-fake"),
            "Alias": Variant("s", f"btbattery-fake #{adapter.name[3:]}"),
            "Powered": Variant("b", adapter.powered),
            "Discoverable": Variant("b", False),
            "Pairable": Variant("b", False),
            "Discovering": Variant("b", False),
            "Roles": Variant("as", ["central", "peripheral"]),
            "UUIDs": Variant("as", []),
        }

    def _device_props(self, pack: _Pack) -> dict[str, Variant]:
        mac = bytes.fromhex(pack.address.replace(":", ""))
        return {
            "Address": Variant("s", pack.address),
            "AddressType": Variant("s", "public"),
            "Name": Variant("s", pack.name),
            "Alias": Variant("s", pack.name),
            "Adapter": Variant("o", pack.adapter.path),
            "Paired": Variant("b", pack.paired),
            "Bonded": Variant("b", pack.paired),
            "Trusted": Variant("b", False),
            "Blocked": Variant("b", False),
            "LegacyPairing": Variant("b", False),
            "Connected": Variant("b", pack.connected),
            "ServicesResolved": Variant("b", pack.connected),
            "RSSI": Variant("n", pack.rssi),
            "UUIDs": Variant("as", [] if pack.number in self.hidden_services else [pack.uuids[0]]),
            "ManufacturerData": Variant("a{qv}", {MANUFACTURER_ID: Variant("ay", mac)}),
        }

    def _export_gatt(self, pack: _Pack) -> None:
        service_uuid, notify_uuid, write_uuid = pack.uuids
        self._add_object(
            pack.service_path,
            {
                SERVICE_IFACE: {
                    "UUID": Variant("s", service_uuid),
                    "Primary": Variant("b", True),
                    "Device": Variant("o", pack.path),
                    "Includes": Variant("ao", []),
                }
            },
        )
        if "stale_cache" in pack.faults:
            # BlueZ builds the objects from its on-disk GATT cache (/var/lib/bluetooth/<adapter>/cache/)
            # and sets ServicesResolved without browsing again (src/device.c, device_svc_resolved);
            # after a firmware change the cached database no longer holds the unit's characteristics. Only
            # RemoveDevice deletes that cache (bleak's troubleshooting notes; bleak-retry-connector's
            # clear_cache calls RemoveDevice for this reason).
            return
        for path, uuid, flags in (
            (pack.notify_path, notify_uuid, ["read", "notify"]),
            (pack.write_path, write_uuid, ["write-without-response", "write"]),
        ):
            props = {
                "UUID": Variant("s", uuid),
                "Service": Variant("o", pack.service_path),
                "Value": Variant("ay", b""),
                "Flags": Variant("as", flags),
                "MTU": Variant("q", 23),
            }
            # BlueZ exports NotifyAcquired on a characteristic that can notify and WriteAcquired on one
            # that takes write-without-response (src/gatt-client.c, characteristic_notify_acquired_exists /
            # characteristic_write_acquired_exists); bleak offers AcquireNotify only when it sees the former.
            if "notify" in flags:
                props["Notifying"] = Variant("b", False)
                props["NotifyAcquired"] = Variant("b", False)
            if "write-without-response" in flags:
                props["WriteAcquired"] = Variant("b", False)
            self._add_object(path, {CHAR_IFACE: props})

    def _remove_gatt(self, pack: _Pack) -> None:
        for path in (pack.write_path, pack.notify_path, pack.service_path):
            self._remove_object(path)

    # ----- adapter -------------------------------------------------------------------------------

    async def _adapter_up(self) -> None:
        assert self._bus is not None
        self._objects.clear()
        for adapter in self.adapters.values():
            adapter.discoverers.clear()
            adapter.connecting = None
        await self._bus.request_name(BLUEZ)
        self._owns_bluez = True
        if not self.with_adapter:
            log.info("fake BlueZ owns %s without an adapter", BLUEZ)
            return
        self._adapter_present = True
        for adapter in self.adapters.values():
            self._add_object(adapter.path, {ADAPTER_IFACE: self._adapter_props(adapter)})
        self._add_object(AGENT_MANAGER_PATH, {AGENT_MANAGER_IFACE: {}})
        for pack in self.packs:
            # bluetoothd loads bonded devices from its storage: they exist unheard; the rest are new again
            pack.exported = pack.paired
            if pack.paired:
                self._add_object(pack.path, {DEVICE_IFACE: self._device_props(pack)})
        log.info("fake BlueZ owns %s with %d packs on %s", BLUEZ, len(self.packs), ", ".join(self.adapters))
        self._changed()

    def _restore_stale_connections(self) -> None:
        """Packs a previous client left connected: BlueZ keeps the link after that client died (bleak's
        client.py, citing bluez/bluez#89: "The BlueZ backend does not disconnect devices when the application
        closes or crashes"), and a connected peripheral does not advertise (Core spec Vol 6 Part B 4.4.2; the
        JBD boards take one central at a time)."""
        if not self._adapter_present:
            return
        for number in self.connected_at_start:
            pack = self.packs[number - 1]
            self._connected_by_another_client(pack)
            log.info("pack %d (%s) connected by a previous client", pack.number, pack.address)

    def _can_connect(self, pack: _Pack) -> bool:
        """bluetoothd is there and the pack's adapter is powered (src/device.c refuses Connect otherwise)."""
        return self._adapter_present and pack.adapter.powered and not pack.adapter.wedged

    def _connected_by_another_client(self, pack: _Pack) -> None:
        """The pack is connected, by a client that is not the one under test: every client sees it
        Connected (a BlueZ connection belongs to the adapter), with nobody subscribed to notifications."""
        if not pack.exported:
            pack.exported = True
            self._add_object(pack.path, {DEVICE_IFACE: self._device_props(pack)})
        pack.connected = True
        pack.last_seen = asyncio.get_running_loop().time()
        pack.request_buf.clear()
        pack.requests = asyncio.Queue()
        pack.responder = self._spawn(self._respond(pack))
        self._set(pack.path, DEVICE_IFACE, Connected=Variant("b", True))
        self._export_gatt(pack)
        self._set(pack.path, DEVICE_IFACE, ServicesResolved=Variant("b", True))
        self._changed()

    async def _adapter_down(self) -> None:
        """bluetoothd goes away: links drop, every object disappears, the bus name is released."""
        for pack in self.packs:
            await self._link_down(pack, "adapter lost")
        self._stop_advertising()
        for path in sorted(self._objects, key=len, reverse=True):
            self._remove_object(path)
        for pack in self.packs:
            pack.exported = False
        self._adapter_present = False
        for adapter in self.adapters.values():
            adapter.discoverers.clear()
        self._owns_bluez = False
        self.agents.clear()  # agents live in bluetoothd's memory; bonds live on in its storage
        if self._bus is not None and self._bus.connected:
            await self._bus.release_name(BLUEZ)
        log.info("fake BlueZ released %s", BLUEZ)
        self._changed()

    async def _adapter_loss(self, duration: float) -> None:
        if not self._adapter_present:
            return
        await self._adapter_down()
        await asyncio.sleep(duration)
        await self._adapter_up()

    async def _disconnect_storm(self, adapter: _Adapter, period: float) -> None:
        """Another client calls Device1.Disconnect on every device of the adapter, every ``period`` s: Venus'
        vesmart-server does this when its 60 s keep-alive timer fires (victronenergy/venus#1587, #1545)."""
        loop = asyncio.get_running_loop()
        while True:
            for pack in self.packs:
                if pack.adapter is adapter and (pack.connected or pack.connect_task is not None):
                    self._spawn(self._link_down(pack, "disconnected by another client"))
            if period <= 0 or adapter.fault("disconnect_all", loop.time() + period) is None:
                return
            await asyncio.sleep(period)

    async def _wedge(self, adapter: _Adapter) -> None:
        """The controller stops working while hci0 stays up: BlueZ reports it unpowered ("No powered Bluetooth
        adapters found" from bleak), every call fails with NotReady (src/adapter.c and src/device.c check
        btd_adapter_get_powered first), links drop. A power cycle through Adapter1.Powered brings it back, as
        Home Assistant's bluetooth-auto-recovery does (home-assistant/operating-system#4022)."""
        adapter.wedged = True
        for pack in self.packs:
            if pack.adapter is adapter:
                await self._link_down(pack, "adapter wedged")
        self._power(adapter, False)

    def _power(self, adapter: _Adapter, on: bool) -> None:
        """Adapter1.Powered changes: off ends discovery and every connection of the adapter."""
        if adapter.powered == on:
            return
        adapter.powered = on
        if not on:
            adapter.discoverers.clear()
            self._discovery_changed(adapter)
            for pack in self.packs:
                if pack.adapter is adapter and (pack.connected or pack.connect_task is not None):
                    self._spawn(self._link_down(pack, "adapter powered off"))
        self._set(adapter.path, ADAPTER_IFACE, Powered=Variant("b", on))
        log.info("%s powered %s", adapter.name, "on" if on else "off")

    def _set_powered(self, adapter: _Adapter, on: bool) -> None:
        """A client sets Adapter1.Powered: off then on is a power cycle, which clears a wedge."""
        if not on:
            adapter.off_requested = True
            self._power(adapter, False)
            return
        if adapter.wedged and not adapter.off_requested:
            return  # the controller does not come back without being switched off first
        if adapter.off_requested:
            self.stats.power_cycles += 1
        adapter.wedged = adapter.off_requested = False
        adapter.faults.pop("wedge", None)
        self._power(adapter, True)

    def _start_advertising(self) -> None:
        if self._advertiser is None or self._advertiser.done():
            self._advertiser = self._spawn(self._advertise())

    def _stop_advertising(self) -> None:
        if self._advertiser is not None:
            self._advertiser.cancel()
            self._advertiser = None

    async def _advertise(self) -> None:
        """While an adapter discovers, every unconnected pack in its range advertises (a new device or new
        RSSI)."""
        loop = asyncio.get_running_loop()
        while self._adapter_present and any(a.discoverers for a in self.adapters.values()):
            now = loop.time()
            for pack in self.packs:
                if not pack.adapter.discoverers or pack.connected or self._absent(pack, now):
                    continue
                pack.last_seen = now
                rssi = pack.rssi + self._rng.randint(-3, 3)
                if not pack.exported:
                    pack.exported = True
                    props = self._device_props(pack)
                    props["RSSI"] = Variant("n", rssi)
                    self._add_object(pack.path, {DEVICE_IFACE: props})
                else:
                    self._set(pack.path, DEVICE_IFACE, RSSI=Variant("n", rssi))
            await asyncio.sleep(self.timing.advertise_interval)

    def _absent(self, pack: _Pack, now: float) -> bool:
        """Out of radio range: a dropped link stays down for the fault's duration."""
        return pack.fault("drop", now) is not None or pack.fault("drop_midframe", now) is not None

    def _expire_devices(self, now: float) -> None:
        for pack in self.packs:
            if (
                pack.exported
                and not pack.connected
                and not pack.paired  # a bonded device is not temporary (src/device.c)
                and pack.connect_task is None
                and now - pack.last_seen > self.timing.device_expiry
            ):
                pack.exported = False
                self._remove_object(pack.path)
                self.stats.expired_devices += 1

    # ----- message handling ----------------------------------------------------------------------

    def _on_message(self, msg: Message) -> bool | Message | None:
        if msg.message_type == MessageType.SIGNAL:
            if msg.member == "NameOwnerChanged" and msg.body[2] == "":
                self._client_gone(msg.body[0])
            return None
        if msg.message_type != MessageType.METHOD_CALL:
            return None
        if msg.path == CONTROL_PATH:
            return self._control(msg)
        self.stats.dbus_calls += 1
        interface, member, path = msg.interface, msg.member, msg.path or ""
        if self._owns_bluez and interface == OM_IFACE and member == "GetManagedObjects":
            return Message.new_method_return(msg, "a{oa{sa{sv}}}", [self._objects])
        if not self._adapter_present:
            return None
        if interface == PROPS_IFACE:
            return self._properties(msg)
        if path not in self._objects:
            if path.startswith("/org/bluez/"):
                return Message.new_error(msg, ERR_UNKNOWN_OBJECT, f"no object {path}")
            return None
        if interface == AGENT_MANAGER_IFACE and path == AGENT_MANAGER_PATH:
            return self._agent_manager_call(msg)
        if interface == ADAPTER_IFACE:
            return self._adapter_call(msg)
        if interface == DEVICE_IFACE:
            return self._device_call(msg)
        if interface == CHAR_IFACE:
            return self._char_call(msg)
        return None

    def _properties(self, msg: Message) -> Message:
        props = self._objects.get(msg.path or "", {}).get(msg.body[0]) if msg.body else None
        if props is None:
            return Message.new_error(msg, ERR_INVALID_ARGS, f"no interface {msg.body[:1]} at {msg.path}")
        if msg.member == "GetAll":
            return Message.new_method_return(msg, "a{sv}", [props])
        if msg.member == "Get":
            if msg.body[1] not in props:
                return Message.new_error(msg, ERR_INVALID_ARGS, f"no property {msg.body[1]}")
            return Message.new_method_return(msg, "v", [props[msg.body[1]]])
        if msg.member == "Set":
            adapter = self._adapter_by_path(msg.path or "")
            if adapter is not None and msg.body[0] == ADAPTER_IFACE and msg.body[1] == "Powered":
                self._set_powered(adapter, bool(msg.body[2].value))
            else:
                self._set(msg.path or "", msg.body[0], **{msg.body[1]: msg.body[2]})
            return Message.new_method_return(msg)
        return Message.new_error(msg, "org.freedesktop.DBus.Error.UnknownMethod", str(msg.member))

    def _adapter_by_path(self, path: str) -> _Adapter | None:
        return next((a for a in self.adapters.values() if a.path == path), None)

    def _adapter_call(self, msg: Message) -> Message | None:
        adapter = self._adapter_by_path(msg.path or "")
        if adapter is None:
            return None
        sender = msg.sender or ""
        if msg.member == "SetDiscoveryFilter":
            return Message.new_method_return(msg)
        if msg.member == "StartDiscovery":
            return self._start_discovery(msg, adapter, sender)
        if msg.member == "StopDiscovery":
            if sender not in adapter.discoverers:
                return Message.new_error(msg, ERR_FAILED, "No discovery started")
            adapter.discoverers.discard(sender)
            self._discovery_changed(adapter)
            return Message.new_method_return(msg)
        if msg.member == "RemoveDevice":
            return self._remove_device(msg, adapter)
        return None

    def _start_discovery(self, msg: Message, adapter: _Adapter, sender: str) -> Message:
        # src/adapter.c start_discovery: an unpowered adapter answers btd_error_not_ready; a client already
        # discovering gets btd_error_busy (InProgress); and when the kernel refuses MGMT Start Discovery
        # (another scanner holds the controller -- on Venus dbus-ble-sensors) start_discovery_complete also
        # replies btd_error_busy, so the caller sees InProgress although it started nothing.
        if not adapter.powered:
            self.stats.discovery_refused += 1
            return Message.new_error(msg, ERR_NOT_READY, "Resource Not Ready")
        if sender in adapter.discoverers:
            return Message.new_error(msg, ERR_IN_PROGRESS, "Operation already in progress")
        if adapter.fault("refuse_discovery", asyncio.get_running_loop().time()) is not None:
            self.stats.discovery_refused += 1
            return Message.new_error(msg, ERR_IN_PROGRESS, "Operation already in progress")
        adapter.discoverers.add(sender)
        self.stats.discovery_starts += 1
        self._discovery_changed(adapter)
        return Message.new_method_return(msg)

    def _remove_device(self, msg: Message, adapter: _Adapter) -> Message | bool:
        # src/adapter.c remove_device: an unknown path is DoesNotExist; a connected device is disconnected
        # first, then removed with its stored data, the keys of its bond and its GATT cache
        # (btd_adapter_remove_device). bleak's ``unpair()`` is this call.
        pack = self._pack_by_path(msg.body[0]) if msg.body else None
        if pack is None or not pack.exported or pack.adapter is not adapter:
            return Message.new_error(msg, ERR_DOES_NOT_EXIST, "Does Not Exist")

        async def remove() -> None:
            await self._link_down(pack, "device removed")
            pack.faults.pop("stale_cache", None)
            pack.faults.pop("ghost_connect", None)
            pack.paired = pack.mitm = False  # removing a device deletes its keys
            if pack.exported:
                pack.exported = False
                self._remove_object(pack.path)
                self.stats.removed_devices += 1
            self._reply(msg)

        self._spawn(remove())
        return True

    def _discovery_changed(self, adapter: _Adapter) -> None:
        discovering = bool(adapter.discoverers)
        props = self._objects.get(adapter.path, {}).get(ADAPTER_IFACE)
        if props is not None and props["Discovering"].value != discovering:
            now = asyncio.get_running_loop().time()
            if discovering:
                adapter.discovering_since = now
            else:
                self.stats.discovery_seconds += now - adapter.discovering_since
            self._set(adapter.path, ADAPTER_IFACE, Discovering=Variant("b", discovering))
        if any(a.discoverers for a in self.adapters.values()):
            self._start_advertising()
        else:
            self._stop_advertising()
        self._changed()

    def _client_gone(self, name: str) -> None:
        self.agents.gone(name)
        for adapter in self.adapters.values():
            if name in adapter.discoverers:
                adapter.discoverers.discard(name)
                self._discovery_changed(adapter)

    def _pack_by_path(self, path: str) -> _Pack | None:
        for pack in self.packs:
            if path.startswith(pack.path) and (len(path) == len(pack.path) or path[len(pack.path)] == "/"):
                return pack
        return None

    def _reply(self, msg: Message, error: tuple[str, str] | None = None) -> None:
        if self._bus is None or not self._bus.connected:
            return
        if error is None:
            self._bus.send(Message.new_method_return(msg))
        else:
            self._bus.send(Message.new_error(msg, *error))

    # ----- Device1 -------------------------------------------------------------------------------

    def _device_call(self, msg: Message) -> Message | bool | None:
        pack = self._pack_by_path(msg.path or "")
        if pack is None:
            return None
        if msg.member == "Connect":
            self.stats.connect_calls += 1
            self.stats.connects_in_flight += 1
            self.stats.max_connects_in_flight = max(
                self.stats.max_connects_in_flight, self.stats.connects_in_flight
            )
            refused = self._connect_refusal(pack)
            if refused is not None or pack.connected:
                self._connect_done(msg, refused)
                return True
            pack.adapter.connecting = pack
            pack.connect_task = self._spawn(self._connect(msg, pack))
            self._changed()
            return True
        if msg.member == "Disconnect":
            # A dead client's pending connect outlives our Disconnect: the field reports it failing the same
            # way for hours until the device is removed (issue 11), so only RemoveDevice clears it here.
            self._spawn(self._disconnect(msg, pack))
            return True
        if msg.member == "Pair":
            self._spawn(self._pair(msg, pack))
            return True
        return None

    def _connect_refusal(self, pack: _Pack) -> tuple[str, str] | None:
        """Why Device1.Connect fails at once, if it does (src/device.c dev_connect)."""
        if not pack.adapter.powered:
            return (ERR_NOT_READY, "Resource Not Ready")
        if pack.connected:
            return None
        # A connect already pending on this device (ours or a dead client's) or on the adapter: BlueZ allows
        # one LE connection attempt at a time (btd_error_in_progress).
        ghost = pack.fault("ghost_connect", asyncio.get_running_loop().time()) is not None
        if ghost or pack.adapter.connecting is not None:
            self.stats.in_progress_errors += 1
            return (ERR_IN_PROGRESS, "Operation already in progress")
        return None

    def _connect_done(self, msg: Message, error: tuple[str, str] | None = None) -> None:
        self.stats.connects_in_flight -= 1
        self._reply(msg, error)

    async def _connect(self, msg: Message, pack: _Pack) -> None:
        loop = asyncio.get_running_loop()
        error: tuple[str, str] | None = None
        try:
            error = await self._reach(pack)
            if error is not None:
                return
            await asyncio.sleep(self.timing.connect_delay)
            error = self._slot_refusal(pack)
            if error is not None:
                return
            if self._aborts(pack, loop.time()):
                await self._abort_by_local(pack)
                error = (ERR_FAILED, "le-connection-abort-by-local")
                return
            pack.connected = True
            pack.sim.new_session()  # a locked module wants the handshake on every connection
            pack.request_buf.clear()
            pack.requests = asyncio.Queue()
            pack.responder = self._spawn(self._respond(pack))
            self._set(pack.path, DEVICE_IFACE, Connected=Variant("b", True))
            self._export_gatt(pack)
            await asyncio.sleep(self.timing.resolve_delay)
            self._set(pack.path, DEVICE_IFACE, ServicesResolved=Variant("b", True))
            self.stats.connects += 1
            log.info("pack %d (%s) connected", pack.number, pack.address)
        except asyncio.CancelledError:
            error = (ERR_FAILED, "Operation was cancelled")
            raise
        finally:
            if pack.adapter.connecting is pack:
                pack.adapter.connecting = None
            pack.connect_task = None
            self._connect_done(msg, error)
            self._changed()

    async def _reach(self, pack: _Pack) -> tuple[str, str] | None:
        """An LE connection attempt waits for the device's next connectable advert: it succeeds as soon as an
        out-of-range pack is back, and fails with le-connection-timeout when the kernel's attempt times out
        (connect_fail_delay here; BlueZ src/device.c maps ETIMEDOUT to ERR_LE_CONN_TIMEOUT)."""
        loop = asyncio.get_running_loop()
        ends = loop.time() + self.timing.connect_fail_delay
        while self._absent(pack, loop.time()):
            if loop.time() >= ends:
                return (ERR_FAILED, "le-connection-timeout")
            await asyncio.sleep(min(self.timing.advertise_interval, max(0.0, ends - loop.time())))
        return None

    def _slot_refusal(self, pack: _Pack) -> tuple[str, str] | None:
        """A controller holds a few connections (many USB dongles 5-7, some built-in ones fewer); one more
        fails with HCI "Connection Limit Exceeded" (0x09), which the kernel turns into EMLINK and BlueZ
        reports as le-connection-concurrent-connection-limit (src/error.c). bleak-retry-connector backs off
        longer on such "out of slots" errors for this reason."""
        slots = pack.adapter.slots
        held = sum(p.connected for p in self.packs if p.adapter is pack.adapter)
        if slots is not None and held >= slots:
            self.stats.slot_refusals += 1
            return (ERR_FAILED, "le-connection-concurrent-connection-limit")
        return None

    def _aborts(self, pack: _Pack, now: float) -> bool:
        """Under radio interference every other attempt aborts (the field sees "some connects" fail this way;
        a retry usually works: bleak#1220, bleak PR #1255)."""
        if pack.fault("abort_connect", now) is None:
            return False
        pack.abort_toggle = not pack.abort_toggle
        return pack.abort_toggle

    async def _abort_by_local(self, pack: _Pack) -> None:
        # BlueZ >= 5.62 reports le-connection-abort-by-local after the link had come up: Connected goes
        # true, then false, then the Connect call fails (bleak PR #1255 waits for that Connected=false before
        # its own retry, so a fake that only replied with the error would hang bleak until its timeout).
        self.stats.aborted_connects += 1
        self._set(pack.path, DEVICE_IFACE, Connected=Variant("b", True))
        await asyncio.sleep(self.timing.resolve_delay)
        self._set(pack.path, DEVICE_IFACE, Connected=Variant("b", False))

    async def _disconnect(self, msg: Message, pack: _Pack) -> None:
        await self._link_down(pack, "disconnect requested")
        self._reply(msg)

    async def _held(self, pack: _Pack, duration: float) -> None:
        """Another program on this host connects the pack (see "held" in LINK_FAULTS), then lets go. Not
        while bluetoothd or the adapter is gone or off: that program's Connect fails as ours would."""
        if not pack.connected and pack.connect_task is None and self._can_connect(pack):
            self._connected_by_another_client(pack)
            log.info("pack %d (%s) held by another client for %.1f s", pack.number, pack.address, duration)
        await asyncio.sleep(duration)
        await self._link_down(pack, "the other client let go")

    async def _link_down(self, pack: _Pack, why: str) -> None:
        """The BLE link ends: a pending connect fails, notifications stop, GATT objects go away."""
        task = pack.connect_task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if pack.responder is not None and pack.responder is not asyncio.current_task():
            pack.responder.cancel()
        pack.responder = None
        pack.requests = None
        if not pack.connected:
            return
        pack.connected = False
        pack.notifying = False
        self._release(pack, "notify")  # BlueZ closes acquired sockets with the link (gatt-client.c,
        self._release(pack, "write")  # btd_gatt_client_disconnected -> notify_io/write_io destroyed)
        pack.last_seen = asyncio.get_running_loop().time()
        self._set(pack.path, DEVICE_IFACE, ServicesResolved=Variant("b", False))
        self._set(pack.path, DEVICE_IFACE, Connected=Variant("b", False))
        self._remove_gatt(pack)
        self.stats.disconnects += 1
        log.info("pack %d (%s) disconnected: %s", pack.number, pack.address, why)
        self._changed()

    # ----- GATT ----------------------------------------------------------------------------------

    def _char_call(self, msg: Message) -> Message | None:
        pack = self._pack_by_path(msg.path or "")
        if pack is None or not pack.connected:
            return Message.new_error(msg, ERR_NOT_CONNECTED, "Not connected")
        path = msg.path or ""
        if pack.locked_gatt and _needs_att_response(msg):
            self.stats.not_paired_errors += 1
            return Message.new_error(msg, *NOT_PAIRED)
        if msg.member == "ReadValue":
            return Message.new_method_return(msg, "ay", [self._objects[path][CHAR_IFACE]["Value"].value])
        if msg.member in ("AcquireNotify", "AcquireWrite"):
            return self._acquire(msg, pack, "notify" if msg.member == "AcquireNotify" else "write")
        if msg.member == "StartNotify" and path == pack.notify_path:
            if pack.notify_sock is not None:  # src/gatt-client.c, characteristic_start_notify
                return Message.new_error(msg, ERR_NOT_PERMITTED, "Notify acquired")
            pack.notifying = True
            self._set(path, CHAR_IFACE, Notifying=Variant("b", True))
            return Message.new_method_return(msg)
        if msg.member == "StopNotify" and path == pack.notify_path:
            pack.notifying = False
            self._set(path, CHAR_IFACE, Notifying=Variant("b", False))
            return Message.new_method_return(msg)
        if msg.member == "WriteValue" and path == pack.write_path:
            if pack.write_sock is not None:  # src/gatt-client.c, characteristic_write_value
                return Message.new_error(msg, ERR_NOT_PERMITTED, "Write acquired")
            if self._ignores(pack, msg):
                return Message.new_method_return(msg)
            if pack.echoing:
                self._spawn(self._echo(pack, bytes(msg.body[0])))
            elif not pack.locked_gatt:  # a locked unit drops a write command (it has no ATT answer)
                self._received(pack, bytes(msg.body[0]))
            return Message.new_method_return(msg)
        return Message.new_error(msg, "org.bluez.Error.NotSupported", f"{msg.member} not supported on {path}")

    # ----- AcquireNotify / AcquireWrite ------------------------------------------------------------
    # BlueZ 5.72, src/gatt-client.c (characteristic_acquire_notify / characteristic_acquire_write) and
    # doc/org.bluez.GattCharacteristic.rst: the reply is (fd, mtu); the fd is one end of a
    # socketpair(AF_LOCAL, SOCK_SEQPACKET), one datagram per ATT value; the MTU is the link's ATT MTU.
    # A second acquire is refused (NotPermitted "Notify acquired"/"Write acquired"), AcquireNotify while a
    # StartNotify session is open fails InProgress, and StartNotify/WriteValue fail while acquired. The
    # socket closes when the link goes down; when the client closes its end BlueZ releases the acquire.

    def _acquire(self, msg: Message, pack: _Pack, kind: str) -> Message | bool:
        path = msg.path or ""
        if path != (pack.notify_path if kind == "notify" else pack.write_path):
            return Message.new_error(msg, ERR_NOT_SUPPORTED, f"Acquire{kind.title()} not supported on {path}")
        if pack.number in self.refuse_acquire:
            self.stats.acquire_refusals += 1
            return Message.new_error(msg, ERR_NOT_SUPPORTED, "Operation is not supported")
        if (pack.notify_sock if kind == "notify" else pack.write_sock) is not None:
            self.stats.acquire_refusals += 1
            return Message.new_error(msg, ERR_NOT_PERMITTED, f"{kind.title()} acquired")
        if kind == "notify" and pack.notifying:
            self.stats.acquire_refusals += 1
            return Message.new_error(msg, ERR_IN_PROGRESS, "In Progress")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        loop = asyncio.get_running_loop()
        if kind == "notify":
            pack.notify_sock = ours
            self.stats.notify_acquires += 1
            loop.add_reader(ours.fileno(), self._socket_readable, pack, "notify")
            self._set(path, CHAR_IFACE, NotifyAcquired=Variant("b", True))
        else:
            pack.write_sock = ours
            self.stats.write_acquires += 1
            loop.add_reader(ours.fileno(), self._socket_readable, pack, "write")
            self._set(path, CHAR_IFACE, WriteAcquired=Variant("b", True))
        mtu = self._objects[path][CHAR_IFACE]["MTU"].value
        reply = Message.new_method_return(msg, "hq", [0, mtu], [theirs.fileno()])
        self._spawn(self._send_and_close(reply, theirs))
        return True

    async def _send_and_close(self, reply: Message, theirs: socket.socket) -> None:
        """Send the fd, then drop our copy of the client's end (else its close would never reach us)."""
        try:
            if self._bus is not None:
                await self._bus.send(reply)
        finally:
            theirs.close()

    def _socket_readable(self, pack: _Pack, kind: str) -> None:
        sock = pack.notify_sock if kind == "notify" else pack.write_sock
        if sock is None:
            return
        while True:  # every datagram waiting, one wake-up
            try:
                data = sock.recv(512)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:  # the client closed its end: BlueZ releases the acquire (sock_hup)
                self._release(pack, kind)
                return
            if kind == "write":
                self.stats.socket_writes += 1
                if pack.fault("request_only", asyncio.get_running_loop().time()) is not None:
                    self.stats.ignored_commands += 1  # a socket write is a write command, too
                elif pack.echoing:
                    self._spawn(self._echo(pack, data))
                elif not pack.locked_gatt:
                    self._received(pack, data)

    def _notify(self, pack: _Pack, chunk: bytes) -> bool:
        """One notification to whoever subscribed; False when nobody did (or the socket just closed)."""
        if pack.notify_sock is not None:
            # An acquired characteristic's notifications go to the socket only, not to D-Bus
            # (src/gatt-client.c, notify_cb writes to notify_io and returns).
            if not self._send_notification(pack, chunk):
                return False
        elif pack.notifying:
            self._set(pack.notify_path, CHAR_IFACE, Value=Variant("ay", chunk))
        else:
            return False
        self.stats.notifications += 1
        return True

    def _send_notification(self, pack: _Pack, chunk: bytes) -> bool:
        sock = pack.notify_sock
        assert sock is not None
        if pack.fault("acquire_closes", asyncio.get_running_loop().time()) is not None:
            self._release(pack, "notify")
            return False
        try:
            sock.send(chunk)
        except OSError:
            self._release(pack, "notify")
            return False
        self.stats.socket_notifications += 1
        return True

    def _release(self, pack: _Pack, kind: str) -> None:
        sock = pack.notify_sock if kind == "notify" else pack.write_sock
        if sock is None:
            return
        if kind == "notify":
            pack.notify_sock = None
        else:
            pack.write_sock = None
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(sock.fileno())
        sock.close()
        path = pack.notify_path if kind == "notify" else pack.write_path
        if path in self._objects:
            prop = "NotifyAcquired" if kind == "notify" else "WriteAcquired"
            self._set(path, CHAR_IFACE, **{prop: Variant("b", False)})

    def _ignores(self, pack: _Pack, msg: Message) -> bool:
        """A unit whose firmware drops write-without-response (ATT Write Command) although its characteristic
        lists the flag, and answers only ATT Write Requests (the field reports in issue 11). BlueZ accepts the
        command either way: without a response nobody learns it was dropped."""
        options = msg.body[1] if len(msg.body) > 1 else {}
        kind = options.get("type", Variant("s", "request")).value if isinstance(options, dict) else "request"
        if kind == "command" and pack.fault("request_only", asyncio.get_running_loop().time()) is not None:
            self.stats.ignored_commands += 1
            return True
        return False

    def _received(self, pack: _Pack, data: bytes) -> None:
        """Collect written bytes into request frames (a request may come in pieces)."""
        buf = pack.request_buf
        buf += data
        while buf:
            start = _request_start(buf)
            if start < 0:
                buf.clear()
                return
            del buf[:start]
            overhead = jbd.AUTH_OVERHEAD if buf[0] == jbd.AUTH_START[0] else jbd.OVERHEAD
            if len(buf) < 4 or len(buf) < buf[3] + overhead:
                return
            size = buf[3] + overhead
            request = bytes(buf[:size])
            del buf[:size]
            self.stats.requests += 1
            if pack.requests is not None:
                pack.requests.put_nowait(request)

    async def _respond(self, pack: _Pack) -> None:
        """The BMS answers one request at a time, through whatever fault is active."""
        assert pack.requests is not None
        queue = pack.requests
        loop = asyncio.get_running_loop()
        while True:
            request = await queue.get()
            now = loop.time()
            if pack.fault("silent", now):
                continue
            chunks = pack.sim.notifications(request)
            if not chunks:
                continue
            delay = self.timing.response_delay
            if self.timing.response_jitter:
                delay += self._rng.uniform(0.0, self.timing.response_jitter)
            late = pack.fault("delay", now)
            if late is not None:
                delay += late.delay
            chunks = self._damage(pack, chunks, now)
            await asyncio.sleep(delay)
            midframe = pack.fault("drop_midframe", now) is not None
            for i, chunk in enumerate(chunks):
                if midframe and i == 1:
                    await self._link_down(pack, "drop mid-frame")
                    return
                if not self._notify(pack, chunk):
                    break
                await asyncio.sleep(self.timing.chunk_interval)

    def _damage(self, pack: _Pack, chunks: list[bytes], now: float) -> list[bytes]:
        if pack.fault("corrupt", now) is not None:
            frame = bytearray(b"".join(chunks))
            frame[len(frame) // 2] ^= 0x5A  # a payload byte: the checksum no longer matches
            chunks = jbd.split_notifications(bytes(frame))
        if pack.fault("truncate", now) is not None:
            frame = b"".join(chunks)
            chunks = jbd.split_notifications(frame[: max(4, len(frame) * 2 // 3)])
        return chunks

    # ----- pairing (see btbattery.sim.pairing for BlueZ's rules) ----------------------------------

    def _agent_manager_call(self, msg: Message) -> Message | None:
        sender = msg.sender or ""
        if msg.member == "RegisterAgent":
            error = self.agents.register(sender, str(msg.body[0]), str(msg.body[1]))
        elif msg.member == "RequestDefaultAgent":
            error = self.agents.request_default(sender, str(msg.body[0]))
        elif msg.member == "UnregisterAgent":
            error = self.agents.unregister(sender, str(msg.body[0]))
        else:
            return None
        return Message.new_method_return(msg) if error is None else Message.new_error(msg, *error)

    async def _pair(self, msg: Message, pack: _Pack) -> None:
        self.stats.pair_calls += 1
        if pack.bonding:
            self._reply(msg, (ERR_IN_PROGRESS, "In Progress"))
            return
        if pack.paired:
            self._reply(msg, (ERR_ALREADY_EXISTS, "Already Exists"))
            return
        if not pack.connected:
            # Real BlueZ would connect first; the link always pairs a connected device, so this fake
            # does not model that path and says so instead of pretending.
            self._reply(msg, (ERR_NOT_CONNECTED, "Pair on an unconnected device is not simulated"))
            return
        pack.bonding = True
        try:
            error = await self._bond(msg.sender or "", pack)
        finally:
            pack.bonding = False
        self._reply(msg, error)

    async def _bond(self, caller: str, pack: _Pack) -> tuple[str, str] | None:
        kind = pack.sim.params.pairing
        agent = self.agents.for_pairing(caller)
        if kind == "none" or agent is None or agent.capability not in CAN_TYPE:
            # Just Works. A unit that insists on an authenticated (MITM) bond fails SMP with
            # "Authentication Requirements", which bluetoothd reports as AuthenticationFailed.
            if kind == "passkey":
                return ERR_AUTH_FAILED, "Authentication Failed"
            self._bonded(pack, mitm=False)
            return None
        assert self._bus is not None
        self.stats.passkey_requests += 1
        request = Message(
            destination=agent.owner,
            path=agent.path,
            interface=AGENT_IFACE,
            member="RequestPasskey",
            signature="o",
            body=[pack.path],
        )
        try:
            reply = await asyncio.wait_for(self._bus.call(request), REQUEST_TIMEOUT)
        except TimeoutError:
            self._bus.send(
                Message(destination=agent.owner, path=agent.path, interface=AGENT_IFACE, member="Cancel")
            )
            return ERR_AUTH_TIMEOUT, "Authentication Timeout"
        if reply.message_type == MessageType.ERROR:
            if reply.error_name == "org.bluez.Error.Canceled":
                return ERR_AUTH_CANCELED, "Authentication Canceled"
            return ERR_AUTH_REJECTED, "Authentication Rejected"
        if reply.body[0] != pack.sim.params.passkey:
            return ERR_AUTH_FAILED, "Authentication Failed"
        self._bonded(pack, mitm=True)
        return None

    def _bonded(self, pack: _Pack, mitm: bool) -> None:
        pack.paired, pack.mitm = True, mitm
        self.stats.bonds += 1
        self._set(pack.path, DEVICE_IFACE, Paired=Variant("b", True), Bonded=Variant("b", True))
        log.info("pack %d (%s) bonded (%s)", pack.number, pack.address, "passkey" if mitm else "just works")

    def forget_bond(self, pack: int) -> None:
        """BlueZ loses pack ``pack``'s bond (keys removed, storage lost): the next link must pair again."""
        target = self.packs[pack - 1]
        target.paired = target.mitm = False
        self._set(target.path, DEVICE_IFACE, Paired=Variant("b", False), Bonded=Variant("b", False))

    async def _echo(self, pack: _Pack, data: bytes) -> None:
        """esphome-jbd-bms #245: after a Just Works bond (or none) such a unit sends every written frame
        back on the notify characteristic byte for byte, and nothing else."""
        self.stats.echoes += 1
        await asyncio.sleep(self.timing.response_delay)
        if pack.connected:
            self._notify(pack, data)

    # ----- physics and timeline ------------------------------------------------------------------

    async def _physics(self) -> None:
        loop = asyncio.get_running_loop()
        dt = self.timing.physics_interval
        last = loop.time()
        while True:
            await asyncio.sleep(dt)
            now = loop.time()
            step, last = min(now - last, 2 * dt), now
            self.scenario.advance(self.bank, now - self._t0 - step, step)
            self._expire_devices(now)

    async def _scripted(self, fault: Fault) -> None:
        await asyncio.sleep(max(0.0, fault.at - self.now()))
        self.inject(fault.pack, fault.kind, fault.duration, fault.delay)

    def _control(self, msg: Message) -> Message | None:
        """Control object for a fake in another process: Inject(pack, kind, duration, delay), Stats()."""
        if msg.interface not in (CONTROL_IFACE, None):
            return None
        try:
            if msg.member == "Inject":
                pack, kind, duration, delay = msg.body
                if not 1 <= pack <= len(self.packs):
                    raise ValueError(f"no pack {pack}")
                self.inject(int(pack), str(kind), float(duration), float(delay))
                return Message.new_method_return(msg)
            if msg.member == "Stats":
                state = {
                    **self.stats.as_dict(),
                    "connected": self.connected(),
                    "adapter_present": self._adapter_present,
                    "discovering": sorted(a.name for a in self.adapters.values() if a.discoverers),
                }
                return Message.new_method_return(msg, "s", [json.dumps(state)])
        except (ValueError, TypeError) as exc:
            return Message.new_error(msg, ERR_INVALID_ARGS, str(exc))
        return None

    # ----- helpers -------------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("fake BlueZ task failed", exc_info=task.exception())

    async def _call_daemon(self, member: str, signature: str, body: list[Any]) -> None:
        assert self._bus is not None
        await self._bus.call(
            Message(
                destination="org.freedesktop.DBus",
                path="/org/freedesktop/DBus",
                interface="org.freedesktop.DBus",
                member=member,
                signature=signature,
                body=body,
            )
        )


def _request_start(buf: bytearray) -> int:
    """Where the next request frame starts: a DD read/write or an FF AA handshake frame (-1: none)."""
    starts = [i for i in (buf.find(jbd.START), buf.find(jbd.AUTH_START)) if i >= 0]
    return min(starts, default=-1)


def _needs_att_response(msg: Message) -> bool:
    """GATT calls that wait for an ATT answer, so that an unpaired unit can refuse them: ReadValue,
    StartNotify and AcquireNotify (both write the CCCD before replying) and WriteValue of type "request"
    (src/gatt-client.c). A write command (WriteValue "command", a datagram on an AcquireWrite socket)
    returns at once whatever the unit thinks of it."""
    if msg.member in ("ReadValue", "StartNotify", "AcquireNotify"):
        return True
    if msg.member != "WriteValue":
        return False
    options = msg.body[1] if len(msg.body) > 1 else {}
    kind = options.get("type")
    return (kind.value if isinstance(kind, Variant) else kind or "request") == "request"


def resize_scenario(scenario: Scenario, packs: int | None) -> Scenario:
    """The scenario with exactly ``packs`` packs: extra ones copy the existing ones with new addresses."""
    if packs is None or packs == len(scenario.packs):
        return scenario
    if packs < 1:
        raise ValueError("a bank needs at least one pack")
    params: list[PackParams] = list(scenario.packs[:packs])
    for i in range(len(params), packs):
        template = scenario.packs[i % len(scenario.packs)]
        params.append(
            dataclasses.replace(
                template,
                address=f"A4:C1:37:5B:{i // 256:02X}:{i % 256:02X}",
                name=f"{template.name.rsplit('-', 1)[0]}-{i + 1:02d}",
            )
        )
    faults = [f for f in scenario.faults if f.pack <= packs]
    changes = [c for c in scenario.changes if c.pack <= packs]
    return dataclasses.replace(scenario, packs=params, faults=faults, changes=changes)


# ----- program ----------------------------------------------------------------------------------


async def _serve(args: argparse.Namespace) -> int:
    fake = FakeBluez(
        args.scenario,
        packs=args.packs,
        bus_address=args.bus_address,
        scripted_faults=not args.no_faults,
        with_adapter=not args.no_adapter,
        adapters=args.adapters,
        placement=args.placement,
        connected_at_start=args.connected_at_start,
        refuse_acquire=args.refuse_acquire,
        timing=Timing(**args.timing),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await fake.start()
    print("READY " + json.dumps({"addresses": fake.addresses, "control": CONTROL_NAME}), flush=True)
    assert fake._bus is not None
    gone = asyncio.ensure_future(fake._bus.wait_for_disconnect())
    await asyncio.wait({gone, asyncio.ensure_future(stop.wait())}, return_when=asyncio.FIRST_COMPLETED)
    await fake.stop()
    return 0


async def call_control(
    bus: MessageBus, member: str, signature: str = "", body: list[Any] | None = None
) -> Message:
    """Call ``Inject`` or ``Stats`` on a fake BlueZ in another process (tests, benchmarks)."""
    return await bus.call(
        Message(
            destination=CONTROL_NAME,
            path=CONTROL_PATH,
            interface=CONTROL_IFACE,
            member=member,
            signature=signature,
            body=body or [],
        )
    )


def _adapter_list(text: str) -> list[tuple[str, str]]:
    pairs = (item.partition("=") for item in text.split(","))
    return [(name.strip(), address.strip()) for name, _, address in pairs]


def _placement(text: str) -> dict[int, str]:
    return {int(pack): name.strip() for pack, _, name in (i.partition("=") for i in text.split(","))}


def _numbers(text: str) -> list[int]:
    return [int(item) for item in text.split(",") if item.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m btbattery.sim.bluez", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--bus-address",
        default=os.environ.get("DBUS_SYSTEM_BUS_ADDRESS"),
        help="D-Bus address to serve org.bluez on (default: $DBUS_SYSTEM_BUS_ADDRESS)",
    )
    parser.add_argument("--scenario", default="default", help="built-in scenario name or JSON file")
    parser.add_argument("--packs", type=int, default=None, help="number of packs (default: the scenario's)")
    parser.add_argument("--no-faults", action="store_true", help="ignore the scenario's fault timeline")
    parser.add_argument("--no-adapter", action="store_true", help="bluetoothd without a controller")
    parser.add_argument(
        "--adapters",
        type=_adapter_list,
        default=None,
        help=f"controllers as NAME=ADDRESS,... (default: hci0={DEFAULT_ADAPTERS[0][1]})",
    )
    parser.add_argument(
        "--placement", type=_placement, default=None, help="packs on other adapters, as PACK=NAME,..."
    )
    parser.add_argument(
        "--connected-at-start",
        type=_numbers,
        default=(),
        help="packs a previous client left connected, as 1,2,... (no adverts from them)",
    )
    parser.add_argument(
        "--refuse-acquire",
        type=_numbers,
        default=(),
        help="packs whose AcquireNotify/AcquireWrite fail NotSupported, as 1,2,...",
    )
    parser.add_argument(
        "--timing",
        type=parse_timing,
        default={},
        help="radio timing: quick (the default), field (answers out of step, as real packs'), or "
        "NAME=SECONDS,... of Timing",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        stream=sys.stderr,
        format="fake-bluez %(levelname)s %(message)s",
    )
    if not args.bus_address:
        parser.error("--bus-address is required when DBUS_SYSTEM_BUS_ADDRESS is not set")
    try:
        return asyncio.run(_serve(args))
    except (ValueError, OSError) as exc:
        print(f"fake BlueZ: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
