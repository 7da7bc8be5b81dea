"""A live terminal view of what a battery service shows on D-Bus, read the way Venus reads it.

The watcher is an independent D-Bus client: it waits for the service name, calls ``GetItems`` on ``/``
once and then follows ``ItemsChanged`` from the name's owner. ``render`` is pure (items in, text out).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable, Mapping
from typing import Any

Items = dict[str, tuple[Any, str]]  # path -> (value, text)

_PACK_PATH = re.compile(r"^/Parallel/Battery(\d+)/(\w+)$")
_CELL_PATH = re.compile(r"^/Voltages/Cell(\d+)_(\d+)$")

BANK_ROWS = (
    ("Voltage", "/Dc/0/Voltage"),
    ("Current", "/Dc/0/Current"),
    ("Power", "/Dc/0/Power"),
    ("SoC", "/Soc"),
    ("Capacity", "/Capacity"),
    ("Installed", "/InstalledCapacity"),
    ("Temperature", "/Dc/0/Temperature"),
    ("Min cell", "/System/MinCellVoltage"),
    ("Max cell", "/System/MaxCellVoltage"),
    ("Connected", "/Connected"),
)
LIMIT_ROWS = (
    ("Charge voltage (CVL)", "/Info/MaxChargeVoltage"),
    ("Charge current (CCL)", "/Info/MaxChargeCurrent"),
    ("Discharge current (DCL)", "/Info/MaxDischargeCurrent"),
)
IMBALANCE_ROWS = (
    ("Voltage", "/Parallel/VoltageImbalance", "/Parallel/VoltageSpread"),
    ("Current", "/Parallel/CurrentImbalance", "/Parallel/CurrentSpread"),
    ("SoC", "/Parallel/SocImbalance", "/Parallel/SocSpread"),
)
PACK_COLUMNS = ("Address", "LinkState", "Connected", "Voltage", "Current", "Soc")


def _text(items: Mapping[str, tuple[Any, str]], path: str) -> str:
    value = items.get(path)
    return "---" if value is None else value[1]


def _pack_table(items: Mapping[str, tuple[Any, str]]) -> list[str]:
    packs: dict[int, dict[str, str]] = {}
    cells: dict[int, list[float]] = {}
    for path, (value, text) in items.items():
        if m := _PACK_PATH.match(path):
            packs.setdefault(int(m[1]), {})[m[2]] = text
        elif (m := _CELL_PATH.match(path)) and isinstance(value, int | float):
            cells.setdefault(int(m[1]), []).append(float(value))
    header = f"{'#':>2}  {'Address':<17}  {'Link':<11}  {'On':>2}  {'Voltage':>9}  {'Current':>9}  {'SoC':>5}"
    lines = [header + "  Cells min/max", "-" * (len(header) + 15)]
    for number in sorted(packs):
        row = packs[number]
        spread = cells.get(number)
        cell_text = f"{min(spread):.3f}/{max(spread):.3f} V" if spread else "---"
        lines.append(
            f"{number:>2}  {row.get('Address', '---'):<17}  {row.get('LinkState', '---'):<11}  "
            f"{row.get('Connected', '---'):>2}  {row.get('Voltage', '---'):>9}  "
            f"{row.get('Current', '---'):>9}  "
            f"{row.get('Soc', '---'):>5}  {cell_text}"
        )
    return lines


def render(items: Mapping[str, tuple[Any, str]], service: str, status: str = "") -> str:
    """The whole screen as text."""
    lines = [f"{service}   {status}".rstrip(), ""]
    lines.append("Bank")
    lines += [f"  {label:<12} {_text(items, path)}" for label, path in BANK_ROWS]
    lines.append(
        f"  {'Active':<12} {_text(items, '/Parallel/ActiveBatteries')} of "
        f"{_text(items, '/Parallel/TotalBatteries')} packs"
    )
    lines += ["", "Charge limits (what DVCC obeys)"]
    lines += [f"  {label:<24} {_text(items, path)}" for label, path in LIMIT_ROWS]
    lines += ["", "Imbalance      flag  spread"]
    lines += [
        f"  {label:<12} {_text(items, flag):>4}  {_text(items, spread)}"
        for label, flag, spread in IMBALANCE_ROWS
    ]
    lines += ["", "Packs"]
    lines += ["  " + line for line in _pack_table(items)]
    return "\n".join(lines) + "\n"


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


async def watch(
    bus_address: str,
    service: str,
    on_update: Callable[[Items, str], None],
    stop: asyncio.Event,
    refresh: float = 1.0,
) -> None:
    """Follow ``service`` on the bus at ``bus_address`` until ``stop`` is set; redraw every ``refresh`` s."""
    from dbus_fast import Message, MessageType
    from dbus_fast.aio import MessageBus

    bus = await MessageBus(bus_address=bus_address).connect()
    items: Items = {}
    owner: str | None = None
    dirty = asyncio.Event()

    def on_message(msg: Message) -> None:
        if msg.message_type == MessageType.SIGNAL and msg.member == "ItemsChanged" and msg.sender == owner:
            items_from_dbus(msg.body[0], items)
            dirty.set()

    bus.add_message_handler(on_message)
    await _ask_bus(
        bus, "AddMatch", "type='signal',interface='com.victronenergy.BusItem',member='ItemsChanged',path='/'"
    )
    try:
        while not stop.is_set():
            if owner is None:
                owner = await _owner(bus, service)
                if owner is not None:
                    await _get_items(bus, service, items)
                    dirty.set()
            if dirty.is_set() or owner is None:
                dirty.clear()
                on_update(items, "waiting for the service..." if owner is None else "live")
            await _wait_any(stop, refresh)
    finally:
        bus.disconnect()


async def _wait_any(stop: asyncio.Event, timeout: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout)


async def _ask_bus(bus: Any, member: str, argument: str) -> Any:
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


async def _owner(bus: Any, service: str) -> str | None:
    from dbus_fast import MessageType

    reply = await _ask_bus(bus, "GetNameOwner", service)
    return reply.body[0] if reply.message_type == MessageType.METHOD_RETURN else None


async def _get_items(bus: Any, service: str, items: Items) -> None:
    from dbus_fast import Message, MessageType

    reply = await bus.call(
        Message(destination=service, path="/", interface="com.victronenergy.BusItem", member="GetItems")
    )
    if reply.message_type == MessageType.METHOD_RETURN:
        items_from_dbus(reply.body[0], items)
