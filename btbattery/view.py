"""What a battery service shows on D-Bus, read the way Venus reads it: one view for the demo and ``monitor``.

:class:`ServiceReader` is an independent D-Bus client: it finds the service name's owner, calls
``GetItems`` on ``/`` once and then follows ``ItemsChanged`` from that owner. :func:`render` (the screen) and
:func:`snapshot` (the JSON of ``monitor --json``) are pure: items in, text or a plain dict out. Both read the
same tables below, so a new path shows up in both by one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import textwrap
from collections.abc import Callable, Mapping
from typing import Any

from btbattery.model import LinkState

Items = dict[str, tuple[Any, str]]  # path -> (value, text); value None = invalid

_PACK_PATH = re.compile(r"^/Parallel/Battery(\d+)/(\w+)$")
_CELL_PATH = re.compile(r"^/Voltages/Cell(\d+)_(\d+)$")

# (JSON key, screen label, path)
BANK_ROWS = (
    ("voltage", "Voltage", "/Dc/0/Voltage"),
    ("current", "Current", "/Dc/0/Current"),
    ("power", "Power", "/Dc/0/Power"),
    ("soc", "SoC", "/Soc"),
    ("capacity", "Capacity", "/Capacity"),
    ("installed_capacity", "Installed", "/InstalledCapacity"),
    ("temperature", "Temperature", "/Dc/0/Temperature"),
    ("min_cell_voltage", "Min cell", "/System/MinCellVoltage"),
    ("max_cell_voltage", "Max cell", "/System/MaxCellVoltage"),
    ("connected", "Connected", "/Connected"),
    ("active_packs", "Active packs", "/Parallel/ActiveBatteries"),
    ("total_packs", "Total packs", "/Parallel/TotalBatteries"),
)
_SCREEN_BANK_ROWS = BANK_ROWS[:-2]  # the screen shows active/total on one line
# (JSON key, screen label, path); the *_limitation rows are the reasons, shown where the service
# publishes them.
LIMIT_ROWS = (
    ("charge_voltage", "Charge voltage (CVL)", "/Info/MaxChargeVoltage"),
    ("charge_current", "Charge current (CCL)", "/Info/MaxChargeCurrent"),
    ("discharge_current", "Discharge current (DCL)", "/Info/MaxDischargeCurrent"),
    ("charge_limitation", "Charge limited by", "/Info/ChargeLimitation"),
    ("discharge_limitation", "Discharge limited by", "/Info/DischargeLimitation"),
)
_OPTIONAL_LIMIT_PATHS = {"/Info/ChargeLimitation", "/Info/DischargeLimitation"}
# (JSON key, screen label, flag path, spread path)
IMBALANCE_ROWS = (
    ("voltage", "Voltage", "/Parallel/VoltageImbalance", "/Parallel/VoltageSpread"),
    ("current", "Current", "/Parallel/CurrentImbalance", "/Parallel/CurrentSpread"),
    ("soc", "SoC", "/Parallel/SocImbalance", "/Parallel/SocSpread"),
)
# Per-pack leaves in the table's own columns; any other leaf a service publishes goes to the detail line.
PACK_COLUMNS = ("Address", "LinkState", "Connected", "Voltage", "Current", "Soc")
DETAIL_WIDTH = 96  # the detail lines wrap here (empty and invalid leaves are left out)


def _text(items: Mapping[str, tuple[Any, str]], path: str) -> str:
    value = items.get(path)
    return "---" if value is None else value[1]


def _value(items: Mapping[str, tuple[Any, str]], path: str) -> Any:
    value = items.get(path)
    return None if value is None else value[0]


def _snake(name: str) -> str:
    """``LinkState`` -> ``link_state`` (JSON keys of per-pack leaves)."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


PackView = tuple[dict[str, tuple[Any, str]], list[float]]  # a pack's leaves, its cells in cell order


def packs_of(items: Mapping[str, tuple[Any, str]]) -> dict[int, PackView]:
    """Pack number -> (its leaves, its cell voltages in cell order)."""
    leaves: dict[int, dict[str, tuple[Any, str]]] = {}
    cells: dict[int, dict[int, float]] = {}
    for path, entry in items.items():
        if m := _PACK_PATH.match(path):
            leaves.setdefault(int(m[1]), {})[m[2]] = entry
        elif (m := _CELL_PATH.match(path)) and isinstance(entry[0], int | float):
            cells.setdefault(int(m[1]), {})[int(m[2])] = float(entry[0])
    numbers = sorted(set(leaves) | set(cells))
    return {n: (leaves.get(n, {}), [v for _, v in sorted(cells.get(n, {}).items())]) for n in numbers}


# Wide enough for every link state ("authenticating" is the longest), so a pack's row never shifts.
LINK_WIDTH = max(len(state.value) for state in LinkState)


def _pack_table(items: Mapping[str, tuple[Any, str]]) -> list[str]:
    header = f"{'#':>2}  {'Address':<17}  {'Link':<{LINK_WIDTH}}  {'On':>2}  "
    header += f"{'Voltage':>9}  {'Current':>9}  {'SoC':>5}"
    lines = [header + "  Cells min/max", "-" * (len(header) + 15)]
    for number, (leaves, cells) in packs_of(items).items():

        def col(leaf: str, leaves: dict[str, tuple[Any, str]] = leaves) -> str:
            entry = leaves.get(leaf)
            return "---" if entry is None else entry[1]

        cell_text = f"{min(cells):.3f}/{max(cells):.3f} V" if cells else "---"
        lines.append(
            f"{number:>2}  {col('Address'):<17}  {col('LinkState'):<{LINK_WIDTH}}  {col('Connected'):>2}  "
            f"{col('Voltage'):>9}  {col('Current'):>9}  {col('Soc'):>5}  {cell_text}"
        )
        detail = [
            f"{leaf} {entry[1]}"
            for leaf, entry in sorted(leaves.items())
            if leaf not in PACK_COLUMNS and entry[1] not in ("", "---")
        ]
        if detail:
            lines += textwrap.wrap(
                ", ".join(detail), DETAIL_WIDTH, initial_indent=" " * 6, subsequent_indent=" " * 6
            )
    return lines


def render(items: Mapping[str, tuple[Any, str]], service: str, status: str = "") -> str:
    """The whole screen as text."""
    lines = [f"{service}   {status}".rstrip(), ""]
    lines.append("Bank")
    lines += [f"  {label:<12} {_text(items, path)}" for _, label, path in _SCREEN_BANK_ROWS]
    lines.append(
        f"  {'Active':<12} {_text(items, '/Parallel/ActiveBatteries')} of "
        f"{_text(items, '/Parallel/TotalBatteries')} packs"
    )
    lines += ["", "Charge limits (what DVCC obeys)"]
    lines += [
        f"  {label:<24} {_text(items, path)}"
        for _, label, path in LIMIT_ROWS
        if path in items or path not in _OPTIONAL_LIMIT_PATHS
    ]
    lines += ["", "Imbalance      flag  spread"]
    lines += [
        f"  {label:<12} {_text(items, flag):>4}  {_text(items, spread)}"
        for _, label, flag, spread in IMBALANCE_ROWS
    ]
    lines += ["", "Packs"]
    lines += ["  " + line for line in _pack_table(items)]
    return "\n".join(lines) + "\n"


def snapshot(items: Mapping[str, tuple[Any, str]], service: str) -> dict[str, Any]:
    """The JSON of ``monitor --json``: the same sections as the screen, values (not texts), plus every path.

    Keys are stable: bank/limits/imbalance keys come from the tables above; a pack carries every leaf its
    service publishes under ``/Parallel/Battery<n>/`` (snake_case) and its ``cells``. Invalid values are null.
    """
    packs = []
    for number, (leaves, cells) in packs_of(items).items():
        pack: dict[str, Any] = {"number": number}
        pack.update({_snake(leaf): entry[0] for leaf, entry in sorted(leaves.items())})
        pack["cells"] = cells
        packs.append(pack)
    return {
        "service": service,
        "bank": {key: _value(items, path) for key, _, path in BANK_ROWS},
        "limits": {
            key: _value(items, path)
            for key, _, path in LIMIT_ROWS
            if path in items or path not in _OPTIONAL_LIMIT_PATHS
        },
        "imbalance": {
            key: {"flag": _value(items, flag), "spread": _value(items, spread)}
            for key, _, flag, spread in IMBALANCE_ROWS
        },
        "packs": packs,
        "paths": {path: items[path][0] for path in sorted(items)},
    }


CLEAR = "\x1b[H\x1b[2J"


def _unwrap(variant: Any) -> Any:
    return getattr(variant, "value", variant)


def items_from_dbus(raw: Mapping[str, Mapping[str, Any]], into: Items) -> None:
    """Merge a GetItems / ItemsChanged payload into ``into``."""
    for path, props in raw.items():
        value = _unwrap(props.get("Value"))
        text = _unwrap(props.get("Text", ""))
        if isinstance(value, list) and not value:  # the Victron "invalid" marker
            value, text = None, "---"
        into[path] = (value, str(text))


class ServiceReader:
    """One service followed like Venus follows it. ``reader = await ServiceReader.open(None, name)``.

    ``bus_address`` None means where our service publishes by default: the session bus when
    ``DBUS_SESSION_BUS_ADDRESS`` is set, else the system bus (a GX device, over SSH too).
    """

    def __init__(self, bus: Any, service: str) -> None:
        self.bus = bus
        self.service = service
        self.items: Items = {}
        self.owner: str | None = None
        self.changed = asyncio.Event()
        self._name_moved = asyncio.Event()

    @classmethod
    async def open(cls, bus_address: str | None, service: str) -> ServiceReader:
        from btbattery.dbus.busitem import connect_bus

        reader = cls(await connect_bus(bus_address), service)
        reader.bus.add_message_handler(reader._on_message)
        await ask_bus(
            reader.bus,
            "AddMatch",
            "type='signal',interface='com.victronenergy.BusItem',member='ItemsChanged',path='/'",
        )
        await ask_bus(reader.bus, "AddMatch", f"type='signal',member='NameOwnerChanged',arg0='{service}'")
        return reader

    def close(self) -> None:
        self.bus.disconnect()

    def _on_message(self, msg: Any) -> None:
        from dbus_fast import MessageType

        if msg.message_type != MessageType.SIGNAL:
            return
        if msg.member == "ItemsChanged" and msg.sender == self.owner:
            items_from_dbus(msg.body[0], self.items)
            self.changed.set()
        elif msg.member == "NameOwnerChanged" and msg.body[0] == self.service:
            # The service restarted or went away: its paths are gone; find() reads the new owner's afresh.
            self.owner = None
            self.items.clear()
            self.changed.set()
            self._name_moved.set()

    async def find(self) -> bool:
        """Look for the service's owner; on finding it read every path once (GetItems). True when found."""
        if self.owner is None:
            self.owner = await name_owner(self.bus, self.service)
            if self.owner is not None:
                await self._get_items()
                self.changed.set()
        return self.owner is not None

    async def wait_found(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the name to appear (a service starting up); True when found."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        self._name_moved.clear()
        while not await self.find():
            if loop.time() >= end:
                return False
            with contextlib.suppress(TimeoutError):  # woken by NameOwnerChanged, not by polling
                await asyncio.wait_for(self._name_moved.wait(), end - loop.time())
            self._name_moved.clear()
        return True

    async def _get_items(self) -> None:
        from dbus_fast import Message, MessageType

        reply = await self.bus.call(
            Message(
                destination=self.service, path="/", interface="com.victronenergy.BusItem", member="GetItems"
            )
        )
        if reply.message_type == MessageType.METHOD_RETURN:
            items_from_dbus(reply.body[0], self.items)


async def watch(
    bus_address: str | None,
    service: str,
    on_update: Callable[[Items, str], None],
    stop: asyncio.Event,
    refresh: float = 1.0,
) -> None:
    """Follow ``service`` until ``stop`` is set; call ``on_update`` at most every ``refresh`` s on changes."""
    reader = await ServiceReader.open(bus_address, service)
    try:
        while not stop.is_set():
            found = await reader.find()
            if reader.changed.is_set() or not found:
                reader.changed.clear()
                on_update(reader.items, "live" if found else "waiting for the service...")
            await _wait_any(stop, refresh)
    finally:
        reader.close()


async def _wait_any(stop: asyncio.Event, timeout: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout)


async def ask_bus(bus: Any, member: str, argument: str) -> Any:
    """One call to the bus daemon itself (AddMatch, GetNameOwner, ...)."""
    from dbus_fast import Message

    return await bus.call(
        Message(
            destination="org.freedesktop.DBus",
            path="/org/freedesktop/DBus",
            interface="org.freedesktop.DBus",
            member=member,
            signature="s",
            body=[argument],
        )
    )


async def name_owner(bus: Any, service: str) -> str | None:
    """The unique name owning ``service``, or None when nobody does."""
    from dbus_fast import MessageType

    reply = await ask_bus(bus, "GetNameOwner", service)
    return reply.body[0] if reply.message_type == MessageType.METHOD_RETURN else None
