"""D-Bus service test helpers: bank states built from model objects, and a listening client."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from btbattery.model import (
    BankAlerts,
    BankSnapshot,
    BankState,
    BasicInfo,
    CellVoltages,
    ChargeLimits,
    ImbalanceStatus,
    LinkState,
    PackReading,
    PackStatus,
    Protection,
)

if TYPE_CHECKING:
    from btbattery.dbus.battery import BatteryService

BUSITEM = "com.victronenergy.BusItem"
ServiceFactory = Callable[..., Awaitable["BatteryService"]]  # the start_service fixture
ADDRESSES = [f"AA:BB:CC:DD:EE:{n:02X}" for n in range(1, 17)]


def pack_reading(pack: int, cells: int = 16, *, time: float = 0.0, base: float = 3.300) -> PackReading:
    voltages = tuple(round(base + 0.001 * c + 0.01 * pack, 3) for c in range(cells))
    info = BasicInfo(
        voltage=round(sum(voltages), 2),
        current=-5.0 + pack,
        remaining_capacity=80.0,
        nominal_capacity=100.0,
        cycles=10 * pack,
        production_date=None,
        balance_bits=0b101,
        protection=Protection.NONE,
        software_version=3.8,
        soc=80,
        charge_fet=True,
        discharge_fet=True,
        cell_count=cells,
        temperatures=(21.0, 22.5),
    )
    return PackReading(
        pack=pack, address=ADDRESSES[pack - 1], time=time, info=info, cells=CellVoltages(voltages)
    )


def bank_state(packs: int = 4, cells: int = 16, *, time: float = 0.0, active: bool = True) -> BankState:
    """A plausible bank; every pack active (or none, with every bank value unknown)."""
    statuses = tuple(
        PackStatus(
            pack=n,
            address=ADDRESSES[n - 1],
            link_state=LinkState.POLLING if active else LinkState.OFFLINE,
            reading=pack_reading(n, cells, time=time) if active else None,
            fresh=active,
            active=active,
        )
        for n in range(1, packs + 1)
    )
    if not active:
        snapshot = BankSnapshot(time=time, packs=statuses, total_packs=packs, active_packs=0)
        return BankState(snapshot, ImbalanceStatus(), ChargeLimits(0.0, 0.0, 0.0), connected=False)
    snapshot = BankSnapshot(
        time=time,
        packs=statuses,
        total_packs=packs,
        active_packs=packs,
        voltage=53.1,
        current=-10.0,
        power=-531.0,
        remaining_capacity=80.0 * packs,
        nominal_capacity=100.0 * packs,
        soc=80.0,
        min_cell_voltage=3.31,
        min_cell_id="1-1",
        max_cell_voltage=3.355,
        max_cell_id=f"{packs}-{cells}",
        cells_per_pack=cells,
        min_temperature=21.0,
        max_temperature=22.5,
        temperature=22.5,
        cycles=10 * packs,
        balancing=True,
        charge_fet=True,
        discharge_fet=True,
    )
    imbalance = ImbalanceStatus(voltage_spread=0.03, current_spread=0.05, soc_spread=0.0)
    limits = ChargeLimits(
        55.2, 100.0, 150.0, (), "MAX_BATTERY_CHARGE_CURRENT", "MAX_BATTERY_DISCHARGE_CURRENT"
    )
    return BankState(snapshot, imbalance, limits, connected=True, alerts=BankAlerts(low_soc=0))


def with_snapshot(state: BankState, **changes: Any) -> BankState:
    return dataclasses.replace(state, snapshot=dataclasses.replace(state.snapshot, **changes))


async def call(
    bus: MessageBus, service: str, path: str, member: str, signature: str = "", body: list[Any] | None = None
) -> Message:
    msg = Message(
        destination=service,
        path=path,
        interface=BUSITEM,
        member=member,
        signature=signature,
        body=body or [],
    )
    reply = await bus.call(msg)
    assert reply is not None
    return reply


async def get_items(bus: MessageBus, service: str) -> dict[str, dict[str, Variant]]:
    reply = await call(bus, service, "/", "GetItems")
    assert reply.message_type is MessageType.METHOD_RETURN, reply.body
    return reply.body[0]


class SignalListener:
    """An independent client's view of ItemsChanged / PropertiesChanged from one service."""

    def __init__(self, bus: MessageBus, service: str) -> None:
        self.bus = bus
        self.service = service
        self.items_changed: asyncio.Queue[dict[str, dict[str, Variant]]] = asyncio.Queue()
        self.properties_changed: asyncio.Queue[tuple[str, dict[str, Variant]]] = asyncio.Queue()

    async def start(self) -> SignalListener:
        self.bus.add_message_handler(self._on_message)
        for member in ("ItemsChanged", "PropertiesChanged"):
            rule = f"type='signal',interface='{BUSITEM}',member='{member}'"
            await self.bus.call(
                Message(
                    destination="org.freedesktop.DBus",
                    path="/org/freedesktop/DBus",
                    interface="org.freedesktop.DBus",
                    member="AddMatch",
                    signature="s",
                    body=[rule],
                )
            )
        return self

    def _on_message(self, msg: Message) -> None:
        if msg.message_type is not MessageType.SIGNAL or msg.interface != BUSITEM:
            return
        if msg.member == "ItemsChanged" and msg.path == "/":
            self.items_changed.put_nowait(msg.body[0])
        elif msg.member == "PropertiesChanged":
            self.properties_changed.put_nowait((msg.path, msg.body[0]))

    async def barrier(self) -> None:
        """Signals the service sent before this returns have arrived: one connection's messages keep order."""
        await call(self.bus, self.service, "/Mgmt/ProcessName", "GetValue")

    async def next_items_changed(self, timeout: float = 5.0) -> dict[str, dict[str, Variant]]:
        return await asyncio.wait_for(self.items_changed.get(), timeout)

    def drain(self) -> list[dict[str, dict[str, Variant]]]:
        got = []
        while not self.items_changed.empty():
            got.append(self.items_changed.get_nowait())
        return got


async def get_items_when_name_appears(client: MessageBus, name: str) -> asyncio.Future[dict[str, Any]]:
    """Do what Venus does: GetItems the instant ``name`` gets an owner. Await the result later."""
    first: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

    def on_message(msg: Message) -> None:
        appeared = msg.message_type is MessageType.SIGNAL and msg.member == "NameOwnerChanged"
        if appeared and msg.body[0] == name and msg.body[2] and not first.done():
            task = asyncio.ensure_future(get_items(client, name))
            task.add_done_callback(lambda t: first.done() or first.set_result(t.result()))

    client.add_message_handler(on_message)
    rule = f"type='signal',sender='org.freedesktop.DBus',member='NameOwnerChanged',arg0='{name}'"
    await client.call(
        Message(
            destination="org.freedesktop.DBus",
            path="/org/freedesktop/DBus",
            interface="org.freedesktop.DBus",
            member="AddMatch",
            signature="s",
            body=[rule],
        )
    )
    return first
