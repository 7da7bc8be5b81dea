"""The generic BusItem tree against a private dbus-daemon, read by an independent dbus-fast client."""

from __future__ import annotations

import asyncio
import math

import pytest
from dbus_bank import SignalListener, call, get_items, get_items_when_name_appears
from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

from btbattery.dbus.busitem import (
    SET_NOT_WRITABLE,
    SET_OK,
    SET_REJECTED,
    BusItemTree,
    Writable,
    connect_bus,
    unit_text,
)
from btbattery.sim.privatebus import PrivateBus

NAME = "com.victronenergy.test.tree"


async def serve(
    setup: dict[str, object] | None = None,
) -> tuple[BusItemTree, MessageBus, list[tuple[str, object]]]:
    bus = await connect_bus()
    tree = BusItemTree(bus)
    changes: list[tuple[str, object]] = []
    tree.add("/Mgmt/ProcessName", "test")
    tree.add("/DeviceInstance", 3)
    tree.add("/Dc/0/Voltage", 53.1, text=unit_text("V", 2))
    tree.add("/Dc/0/Current", None, text=unit_text("A", 1))
    tree.add("/Soc", 80, signal=True)
    tree.add(
        "/Setting/Mode",
        1,
        writable=Writable((int,), lambda v: 0 <= v <= 3, lambda path, value: changes.append((path, value))),
    )
    for path, value in (setup or {}).items():
        tree.add(path, value)
    await tree.register(NAME)
    return tree, bus, changes


@pytest.fixture
async def served(session_bus: str):
    tree, bus, changes = await serve()
    yield tree, changes
    await tree.close()
    bus.disconnect()


async def test_get_items_returns_every_path_with_types_and_texts(served, client: MessageBus) -> None:
    tree, _ = served
    items = await get_items(client, NAME)
    assert set(items) == set(tree.paths())
    assert items["/DeviceInstance"]["Value"].signature == "i"
    assert items["/Dc/0/Voltage"]["Value"].signature == "d"
    assert items["/Dc/0/Voltage"]["Text"].value == "53.10V"
    assert items["/Mgmt/ProcessName"]["Value"].signature == "s"
    # invalid: an empty int array and '---'
    assert items["/Dc/0/Current"]["Value"].signature == "ai"
    assert items["/Dc/0/Current"]["Value"].value == []
    assert items["/Dc/0/Current"]["Text"].value == "---"
    assert all(entry["Text"].signature == "s" for entry in items.values())


async def test_get_value_and_text_on_root_and_subtrees_use_relative_keys(served, client: MessageBus) -> None:
    root = await call(client, NAME, "/", "GetValue")
    values = root.body[0].value
    assert root.body[0].signature == "a{sv}"
    assert values["Dc/0/Voltage"].value == 53.1
    assert "/Dc/0/Voltage" not in values
    texts = (await call(client, NAME, "/", "GetText")).body[0].value
    assert texts["Dc/0/Voltage"] == "53.10V"
    assert texts["Dc/0/Current"] == "---"
    dc = (await call(client, NAME, "/Dc/0", "GetValue")).body[0].value
    assert set(dc) == {"Voltage", "Current"}
    leaf = await call(client, NAME, "/Dc/0/Voltage", "GetText")
    assert leaf.body == ["53.10V"]


async def test_one_batch_sends_one_items_changed_with_only_changed_paths(served, client: MessageBus) -> None:
    tree, _ = served
    listener = await SignalListener(client, NAME).start()
    with tree.batch():
        tree["/Dc/0/Voltage"] = 53.2
        tree["/Dc/0/Current"] = -4.0
        tree["/DeviceInstance"] = 3  # unchanged: must not be sent
    changed = await listener.next_items_changed()
    assert set(changed) == {"/Dc/0/Voltage", "/Dc/0/Current"}
    assert changed["/Dc/0/Voltage"]["Text"].value == "53.20V"
    tree.update({"/Dc/0/Voltage": 53.2, "/Dc/0/Current": -4.0})  # nothing changes
    await listener.barrier()
    assert listener.drain() == []


async def test_properties_changed_only_where_enabled(served, client: MessageBus) -> None:
    tree, _ = served
    listener = await SignalListener(client, NAME).start()
    tree.update({"/Soc": 81, "/Dc/0/Voltage": 52.0})
    await listener.next_items_changed()
    await listener.barrier()
    got = []
    while not listener.properties_changed.empty():
        got.append(listener.properties_changed.get_nowait())
    assert [path for path, _ in got] == ["/Soc"]
    assert got[0][1]["Value"].value == 81
    assert got[0][1]["Text"].value == "81"


async def test_invalid_values_publish_as_invalid_never_zero(served, client: MessageBus) -> None:
    tree, _ = served
    listener = await SignalListener(client, NAME).start()
    tree.update({"/Dc/0/Voltage": math.nan, "/Soc": None})
    changed = await listener.next_items_changed()
    assert changed["/Dc/0/Voltage"]["Value"].signature == "ai"
    assert changed["/Soc"]["Value"].value == []
    reply = await call(client, NAME, "/Dc/0/Voltage", "GetValue")
    assert reply.body[0].signature == "ai" and reply.body[0].value == []
    assert (await call(client, NAME, "/Soc", "GetText")).body == ["---"]


async def test_type_change_is_a_change(served, client: MessageBus) -> None:
    tree, _ = served
    listener = await SignalListener(client, NAME).start()
    tree["/Soc"] = 80.0  # was int 80: the wire type differs
    changed = await listener.next_items_changed()
    assert changed["/Soc"]["Value"].signature == "d"


async def test_paths_added_after_registration_appear_in_next_signal_and_get_items(
    served, client: MessageBus
) -> None:
    tree, _ = served
    listener = await SignalListener(client, NAME).start()
    with tree.batch():
        tree.add("/Voltages/Cell1_17", 3.301)
        tree["/Dc/0/Voltage"] = 50.0
    changed = await listener.next_items_changed()
    assert set(changed) == {"/Voltages/Cell1_17", "/Dc/0/Voltage"}
    assert "/Voltages/Cell1_17" in await get_items(client, NAME)


async def test_set_value_rules(served, client: MessageBus) -> None:
    tree, changes = served

    async def set_value(path: str, signature: str, value: object) -> int:
        from dbus_fast import Variant

        reply = await call(client, NAME, path, "SetValue", "v", [Variant(signature, value)])
        assert reply.message_type is MessageType.METHOD_RETURN, reply.body
        return reply.body[0]

    listener = await SignalListener(client, NAME).start()
    assert await set_value("/Setting/Mode", "s", "2") == SET_NOT_WRITABLE  # wrong type
    assert await set_value("/Setting/Mode", "d", 2.0) == SET_NOT_WRITABLE  # int path, float offered
    assert await set_value("/Setting/Mode", "i", 9) == SET_REJECTED  # validator says no
    assert await set_value("/Dc/0/Voltage", "d", 1.0) == SET_NOT_WRITABLE  # read-only
    assert await set_value("/Dc/0", "d", 1.0) == SET_NOT_WRITABLE  # a subtree, not an item
    assert tree["/Setting/Mode"] == 1 and tree["/Dc/0/Voltage"] == 53.1
    assert changes == []
    assert await set_value("/Setting/Mode", "i", 2) == SET_OK
    assert tree["/Setting/Mode"] == 2
    assert changes == [("/Setting/Mode", 2)]
    changed = await listener.next_items_changed()
    assert set(changed) == {"/Setting/Mode"}
    assert await set_value("/Setting/Mode", "i", 2) == SET_OK  # same value: accepted, no new callback
    assert changes == [("/Setting/Mode", 2)]


async def test_unknown_path_is_unknown_object(served, client: MessageBus) -> None:
    for member in ("GetValue", "GetText"):
        reply = await call(client, NAME, "/No/Such/Path", member)
        assert reply.message_type is MessageType.ERROR
        assert reply.error_name == "org.freedesktop.DBus.Error.UnknownObject"


async def test_name_appears_only_when_every_path_exists(session_bus: str, client: MessageBus) -> None:
    """React to NameOwnerChanged the way Venus does: GetItems the instant the name appears."""
    first_items = await get_items_when_name_appears(client, NAME)
    many = {f"/Voltages/Cell{p}_{c}": 3.3 for p in range(1, 17) for c in range(1, 17)}
    tree, bus, _ = await serve(many)
    try:
        items = await asyncio.wait_for(first_items, 5)
        assert set(items) == set(tree.paths())
        assert "/Voltages/Cell16_16" in items
    finally:
        await tree.close()
        bus.disconnect()


async def test_second_owner_of_the_name_is_refused(served) -> None:
    bus = await connect_bus()
    other = BusItemTree(bus)
    other.add("/Mgmt/ProcessName", "intruder")
    with pytest.raises(RuntimeError, match="already owned"):
        await other.register(NAME)
    bus.disconnect()


async def test_close_releases_the_name(session_bus: str, client: MessageBus) -> None:
    tree, bus, _ = await serve()
    await tree.close()
    reply = await call(client, NAME, "/", "GetItems")
    assert reply.message_type is MessageType.ERROR
    assert reply.error_name == "org.freedesktop.DBus.Error.ServiceUnknown"
    bus.disconnect()


async def test_bus_choice(session_bus: str) -> None:
    """Session bus when DBUS_SESSION_BUS_ADDRESS is set; an explicit address wins over it."""
    with PrivateBus() as other:
        explicit = await connect_bus(other.address)
        session = await connect_bus()
        try:
            names_on = {}
            for label, bus in (("explicit", explicit), ("session", session)):
                reply = await bus.call(
                    Message(
                        destination="org.freedesktop.DBus",
                        path="/org/freedesktop/DBus",
                        interface="org.freedesktop.DBus",
                        member="GetId",
                    )
                )
                names_on[label] = reply.body[0]
            assert names_on["explicit"] != names_on["session"]
            probe = await MessageBus(bus_address=session_bus).connect()
            reply = await probe.call(
                Message(
                    destination="org.freedesktop.DBus",
                    path="/org/freedesktop/DBus",
                    interface="org.freedesktop.DBus",
                    member="GetId",
                )
            )
            assert reply.body[0] == names_on["session"]
            probe.disconnect()
        finally:
            explicit.disconnect()
            session.disconnect()


async def test_lost_bus_is_reported(session_bus: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A dead bus must end the service (runit restarts it), never leave it running deaf."""
    with PrivateBus() as doomed:
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", doomed.address)
        tree, _bus, _ = await serve()
        doomed.stop()
        error = await asyncio.wait_for(tree.wait_lost(), 5)
        assert isinstance(error, BaseException)
        tree["/Soc"] = 5  # publishing after the loss must not raise
    await tree.close()
