"""The publishing connection survives a full socket (dbus-fast's writer bug, see btbattery.dbus.writer).

The bus daemon is paused (SIGSTOP) while the service keeps publishing, so the service's socket to it fills the
way it does when a small board's system bus falls behind 8 clients asking GetItems in a loop. Before the fix
the next send raised EAGAIN inside dbus-fast's writer, which took it for a lost connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from dbus_bank import SignalListener, get_items
from dbus_fast.aio import MessageBus
from support.dbusdaemon import PrivateBus

from btbattery.dbus import writer
from btbattery.dbus.busitem import BusItemTree, connect_bus

NAME = "com.victronenergy.battery.fullsocket"
PATHS = [f"/Voltages/Cell{pack}_{cell}" for pack in range(1, 17) for cell in range(1, 17)]


@pytest.fixture
async def paused_bus() -> AsyncIterator[PrivateBus]:
    with PrivateBus() as bus:
        try:
            yield bus
        finally:
            bus.resume()  # never leave a stopped daemon behind a failed test


@pytest.fixture
async def served(paused_bus: PrivateBus) -> AsyncIterator[tuple[BusItemTree, MessageBus, MessageBus]]:
    """A 256-path tree on its own connection and an independent client: (tree, service bus, client)."""
    service_bus = await connect_bus(paused_bus.address)
    client = await MessageBus(bus_address=paused_bus.address).connect()
    tree = BusItemTree(service_bus)
    for path in PATHS:
        tree.add(path, 3.3)
    await tree.register(NAME)
    yield tree, service_bus, client
    paused_bus.resume()
    await tree.close()
    service_bus.disconnect()
    client.disconnect()


async def test_publishing_survives_a_full_socket(
    paused_bus: PrivateBus, served: tuple[BusItemTree, MessageBus, MessageBus]
) -> None:
    tree, service_bus, client = served
    listener = await SignalListener(client, NAME).start()
    waits_before = writer.PatientWriter.full_socket_waits

    paused_bus.pause()
    rounds = 300  # 300 x 256 changed paths: megabytes, far more than a socket buffer holds
    for n in range(rounds):
        tree.update({path: 3.0 + n / 1000 for path in PATHS})
        await asyncio.sleep(0)  # let the loop run the writer, as it does between publish ticks
    assert service_bus.connected, "a full socket was taken for a lost connection"
    assert writer.PatientWriter.full_socket_waits > waits_before, "the socket never filled: proves nothing"
    paused_bus.resume()

    await listener.barrier()
    changes = listener.drain()
    assert len(changes) == rounds  # every signal queued while the daemon was stopped was delivered, in order
    assert changes[-1][PATHS[-1]]["Value"].value == pytest.approx(3.0 + (rounds - 1) / 1000)
    items = await get_items(client, NAME)
    assert items[PATHS[0]]["Value"].value == pytest.approx(3.0 + (rounds - 1) / 1000)
    assert not tree._lost.done()  # type: ignore[union-attr]


async def test_get_items_reply_is_marshalled_once_per_change(
    served: tuple[BusItemTree, MessageBus, MessageBus],
) -> None:
    """Many GetItems between two changes send the same cached body; a change makes a new one."""
    tree, _, client = served
    first = await get_items(client, NAME)
    cached = tree._all_items
    assert cached is not None
    for _ in range(5):
        assert await get_items(client, NAME) == first
    assert tree._all_items is cached
    tree[PATHS[3]] = 3.456
    changed = await get_items(client, NAME)
    assert tree._all_items is not cached
    assert changed[PATHS[3]]["Value"].value == 3.456 and changed[PATHS[3]]["Text"].value == "3.456"
