"""Malformed calls get D-Bus errors and a flood of calls does not starve the service."""

from __future__ import annotations

import asyncio

from dbus_bank import BUSITEM, ServiceFactory, SignalListener, bank_state, call, get_items, with_snapshot
from dbus_fast import Message, MessageFlag, MessageType, Variant
from dbus_fast.aio import MessageBus

from btbattery.dbus.battery import SERVICE_NAME

IN_FLIGHT = 100  # dbus-daemon refuses more than 128 pending replies per connection


async def tool(*argv: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode is not None
    return proc.returncode, (out + err).decode()


async def test_malformed_calls_from_dbus_send_get_errors(
    start_service: ServiceFactory, session_bus: str
) -> None:
    await start_service(packs=2, cells_per_pack=4)
    send = ["dbus-send", f"--bus={session_bus}", "--print-reply", f"--dest={SERVICE_NAME}"]
    cases = {
        ("/Soc", f"{BUSITEM}.GetValue", "string:extra"): "InvalidArgs",
        ("/CustomName", f"{BUSITEM}.SetValue", "string:not-a-variant"): "InvalidArgs",
        ("/CustomName", f"{BUSITEM}.SetValue"): "InvalidArgs",
        ("/CustomName", f"{BUSITEM}.SetValue", "variant:string:a", "variant:string:b"): "InvalidArgs",
        ("/", f"{BUSITEM}.GetItems", "int32:1"): "InvalidArgs",
        ("/Soc", f"{BUSITEM}.GetItems"): "UnknownMethod",
        ("/Soc", f"{BUSITEM}.Explode"): "UnknownMethod",
        ("/Soc", "org.example.Other.GetValue"): "UnknownMethod",
        ("/No/Such", f"{BUSITEM}.GetValue"): "UnknownObject",
        ("/No/Such", f"{BUSITEM}.SetValue", "variant:int32:1"): "UnknownObject",
    }
    for args, error in cases.items():
        code, out = await tool(*send, *args)
        assert code != 0 and f"org.freedesktop.DBus.Error.{error}" in out, (args, out)
    code, out = await tool(*send, "/", f"{BUSITEM}.GetItems")
    assert code == 0 and "/Voltages/Cell2_4" in out


async def test_malformed_calls_from_a_raw_client_get_errors(
    start_service: ServiceFactory, client: MessageBus
) -> None:
    await start_service(packs=1, cells_per_pack=4)
    weird = [
        Message(
            destination=SERVICE_NAME,
            path="/Soc",
            interface=BUSITEM,
            member="GetValue",
            signature="ai",
            body=[[1]],
        ),
        Message(
            destination=SERVICE_NAME, path="/Soc", member="GetValue", signature="s", body=["x"]
        ),  # no interface
        Message(
            destination=SERVICE_NAME,
            path="/CustomName",
            interface=BUSITEM,
            member="SetValue",
            signature="as",
            body=[["a"]],
        ),
    ]
    for msg in weird:
        reply = await client.call(msg)
        assert reply is not None and reply.message_type is MessageType.ERROR, msg.member
        assert reply.error_name == "org.freedesktop.DBus.Error.InvalidArgs"
    # no interface, valid call: served like velib does
    reply = await client.call(Message(destination=SERVICE_NAME, path="/ProductId", member="GetValue"))
    assert reply is not None and reply.body[0].value == 0xBA77
    # fire-and-forget calls are applied but never answered
    await client.send(
        Message(
            destination=SERVICE_NAME,
            path="/CustomName",
            interface=BUSITEM,
            member="SetValue",
            signature="v",
            body=[Variant("s", "quiet")],
            flags=MessageFlag.NO_REPLY_EXPECTED,
        )
    )
    assert (await call(client, SERVICE_NAME, "/CustomName", "GetValue")).body[0].value == "quiet"
    # introspection lists children, as dbus-spy and busctl tree need
    reply = await client.call(
        Message(
            destination=SERVICE_NAME,
            path="/Voltages",
            interface="org.freedesktop.DBus.Introspectable",
            member="Introspect",
        )
    )
    assert reply is not None and '<node name="Cell1_4"/>' in reply.body[0]


async def test_busctl_tree_walks_every_path(start_service: ServiceFactory, session_bus: str) -> None:
    service = await start_service(packs=2, cells_per_pack=4)
    code, out = await tool("busctl", f"--address={session_bus}", "tree", "--list", SERVICE_NAME)
    assert code == 0, out
    listed = set(out.split())
    assert set(service.tree.paths()) <= listed


async def test_stays_responsive_under_a_flood_of_calls(start_service: ServiceFactory, client: MessageBus,
                                                       session_bus: str) -> None:  # fmt: skip
    service = await start_service(packs=4, cells_per_pack=16)
    state = bank_state()
    listener = await SignalListener(client, SERVICE_NAME).start()
    service.publish(state)
    await listener.next_items_changed()  # the first, full publish
    flooder = await MessageBus(bus_address=session_bus).connect()
    gate = asyncio.Semaphore(IN_FLIGHT)
    paths = [f"/Voltages/Cell{p}_{c}" for p in range(1, 5) for c in range(1, 17)] + ["/No/Such"]

    async def one(i: int) -> MessageType:
        async with gate:
            reply = await call(flooder, SERVICE_NAME, paths[i % len(paths)], "GetValue")
            return reply.message_type

    flood = asyncio.gather(*(one(i) for i in range(6000)))
    try:
        # while the flood runs, Venus-like reads and publishing still work
        for step in range(5):
            items = await asyncio.wait_for(get_items(client, SERVICE_NAME), 5)
            assert len(items) == len(list(service.tree.paths()))
            service.publish(with_snapshot(state, voltage=50.0 + step))
            changed = await listener.next_items_changed()
            assert set(changed) == {"/Dc/0/Voltage"}
        results = await asyncio.wait_for(flood, 60)
    finally:
        flood.cancel()
        flooder.disconnect()
    unknown = sum(1 for i in range(6000) if paths[i % len(paths)] == "/No/Such")
    assert sum(1 for r in results if r is MessageType.ERROR) == unknown
    assert sum(1 for r in results if r is MessageType.METHOD_RETURN) == 6000 - unknown
