"""Notifications and requests over BlueZ's AcquireNotify/AcquireWrite sockets, or over D-Bus, and the
fallbacks between them: the real link and real bleak against the fake BlueZ (which hands out socketpairs
as BlueZ 5.72 does)."""

from __future__ import annotations

import dataclasses
import logging

import pytest
from linkharness import FAST_RADIO, LinkRig

from btbattery.link.manager import LinkManager
from btbattery.link.transport import GattTransport
from btbattery.model import PackReading

pytestmark = pytest.mark.usefixtures("system_bus")


def transports(manager: LinkManager) -> dict[int, GattTransport | None]:
    return {link.pack: link._transport for link in manager.links}


def sim_cells(rig: LinkRig, pack: int) -> int:
    return rig.fake.packs[pack - 1].sim.params.cell_count


def check_readings(rig: LinkRig, pack: int) -> PackReading:
    """A decoded reading that matches the simulated pack (same values whichever way they came)."""
    reading = next(r for r in reversed(rig.rec.readings[pack]) if r.cells is not None)
    sim = rig.fake.packs[pack - 1]
    assert reading.address == sim.address
    assert reading.info is not None and reading.info.cell_count == sim_cells(rig, pack)
    assert len(reading.cells.voltages) == sim_cells(rig, pack)
    assert reading.info.nominal_capacity == pytest.approx(sim.sim.params.capacity_ah, abs=0.01)
    assert all(2.5 <= v <= 3.65 for v in reading.cells.voltages)
    return reading


@pytest.mark.parametrize(
    ("notify", "write", "acquired"),
    [("auto", "auto", (True, True)), ("start", "write", (False, False)), ("acquire", "write", (True, False))],
)
async def test_each_transport_delivers_the_same_readings(notify: str, write: str, acquired: tuple) -> None:
    async with LinkRig(packs=2, link={"notify_method": notify, "write_method": write}) as rig:
        await rig.rec.all_polling(rig.packs)
        for pack in rig.packs:
            await rig.rec.readings_after(pack, 3, since=0, timeout=8.0)
            check_readings(rig, pack)
        assert rig.manager is not None
        for transport in transports(rig.manager).values():
            assert transport is not None
            assert (transport.notify_acquired, transport.write_acquired) == acquired
        stats = rig.fake.stats
        if acquired[0]:
            assert stats.socket_notifications > 0 and stats.notify_acquires == 2
        else:
            assert stats.socket_notifications == 0 and stats.notify_acquires == 0
        if acquired[1]:
            assert stats.socket_writes > 0 and stats.write_acquires == 2
        else:
            assert stats.socket_writes == 0


async def test_refused_acquire_falls_back_to_dbus_for_that_pack_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="btbattery.link.pack_link")
    async with LinkRig(packs=2, fake={"refuse_acquire": {2}}) as rig:
        await rig.rec.all_polling(rig.packs)
        for pack in rig.packs:
            await rig.rec.readings_after(pack, 3, since=0, timeout=8.0)
            check_readings(rig, pack)
        assert rig.manager is not None
        one, two = transports(rig.manager)[1], transports(rig.manager)[2]
        assert one is not None and one.notify_acquired and one.write_acquired
        assert two is not None and not two.notify_acquired and not two.write_acquired
        methods = rig.manager.links[1].methods
        assert (methods.notify, methods.write) == ("start", "write")
        assert rig.fake.stats.acquire_refusals == 2
    said = [r.getMessage() for r in caplog.records if "from now on" in r.getMessage()]
    assert len(said) == 2 and all("pack 2" in text for text in said)


async def test_forced_acquire_refused_never_polls() -> None:
    async with LinkRig(packs=1, fake={"refuse_acquire": {1}}, link={"notify_method": "acquire"}) as rig:
        refused = lambda: any("AcquireNotify failed" in e.reason for e in rig.rec.events)  # noqa: E731
        await rig.rec.wait(refused, 10.0, "a refused subscribe")
        assert not rig.rec.readings[1]


async def test_a_socket_that_closes_falls_back_for_the_rest_of_the_run() -> None:
    async with LinkRig(packs=1) as rig:
        await rig.rec.all_polling(rig.packs)
        await rig.rec.readings_after(1, 2, since=0, timeout=8.0)
        assert rig.manager is not None
        link = rig.manager.links[0]
        assert link.methods.notify == "auto"
        connects = rig.fake.stats.connects
        rig.fake.inject(1, "acquire_closes", duration=2.0)
        await rig.rec.wait(lambda: link.methods.notify == "start", 10.0, "the fall back to StartNotify")
        await rig.rec.wait(lambda: rig.fake.stats.connects > connects, 10.0, "a new connection")
        since = len(rig.rec.readings[1])
        await rig.rec.readings_after(1, 3, since=since, timeout=10.0)
        check_readings(rig, 1)
        transport = transports(rig.manager)[1]
        assert transport is not None and not transport.notify_acquired
        assert transport.write_acquired  # only the notifications misbehaved


async def test_disconnect_closes_the_sockets_and_reconnects_on_them() -> None:
    async with LinkRig(packs=1) as rig:
        await rig.rec.all_polling(rig.packs)
        await rig.rec.readings_after(1, 2, since=0, timeout=8.0)
        sim = rig.fake.packs[0]
        assert sim.notify_sock is not None and sim.write_sock is not None
        assert rig.manager is not None
        before = transports(rig.manager)[1]
        assert before is not None and before.write_acquired
        rig.fake.inject(1, "drop", duration=0.5)
        await rig.fake.wait_until(lambda fake: not fake.packs[0].connected, 5.0)
        assert sim.notify_sock is None and sim.write_sock is None  # BlueZ closed them with the link
        await rig.rec.wait(lambda: rig.fake.stats.notify_acquires == 2, 10.0, "a second AcquireNotify")
        since = len(rig.rec.readings[1])
        await rig.rec.readings_after(1, 3, since=since, timeout=10.0)
        assert not before.write_acquired  # our end saw BlueZ close it
        transport = transports(rig.manager)[1]
        assert transport is not None and transport.notify_acquired and transport.write_acquired
        assert rig.fake.stats.write_acquires == 2


# What BlueZ answers a second client while our link holds the characteristic (src/gatt-client.c):
# (link's NOTIFY_METHOD, member, characteristic, error name)
MIXING = [
    ("start", "AcquireNotify", "notify", "org.bluez.Error.InProgress"),  # a StartNotify session is open
    ("auto", "StartNotify", "notify", "org.bluez.Error.NotPermitted"),  # "Notify acquired"
    ("auto", "AcquireNotify", "notify", "org.bluez.Error.NotPermitted"),
    ("auto", "AcquireWrite", "write", "org.bluez.Error.NotPermitted"),  # "Write acquired"
    ("auto", "WriteValue", "write", "org.bluez.Error.NotPermitted"),
]


@pytest.mark.parametrize(("notify", "member", "char", "error"), MIXING)
async def test_fake_refuses_mixing_acquire_and_dbus_like_bluez(
    notify: str, member: str, char: str, error: str
) -> None:
    from dbus_fast import Message, MessageType
    from dbus_fast.aio import MessageBus

    async with LinkRig(packs=1, link={"notify_method": notify}) as rig:
        await rig.rec.all_polling(rig.packs)
        sim = rig.fake.packs[0]
        signature, body = {
            "AcquireNotify": ("a{sv}", [{}]),
            "AcquireWrite": ("a{sv}", [{}]),
            "StartNotify": ("", []),
            "WriteValue": ("aya{sv}", [b"\xdd\xa5\x03\x00\xff\xfd\x77", {}]),
        }[member]
        bus = await MessageBus(bus_address=rig.fake.bus_address, negotiate_unix_fd=True).connect()
        try:
            reply = await bus.call(
                Message(
                    destination="org.bluez",
                    path=sim.notify_path if char == "notify" else sim.write_path,
                    interface="org.bluez.GattCharacteristic1",
                    member=member,
                    signature=signature,
                    body=body,
                )
            )
        finally:
            bus.disconnect()
        assert reply is not None and reply.message_type == MessageType.ERROR
        assert reply.error_name == error


async def test_a_bank_on_sockets_reads_its_answers_together_once_the_delay_is_learned() -> None:
    # Packs answering out of step, as real ones do (the fake's response_jitter): each answer would wake the
    # loop on its own; the bank's drain reads them all on one timer instead.
    timing = dataclasses.replace(FAST_RADIO, response_jitter=0.01)
    async with LinkRig(packs=3, timing=timing) as rig:
        await rig.rec.all_polling(rig.packs)
        manager = rig.manager
        assert manager is not None
        drain = manager.drain
        await rig.rec.wait(lambda: drain.drains >= 4, 15.0, "the first drains")
        sockets = [t.notify_socket for t in transports(manager).values() if t is not None]
        assert len(sockets) == 3 and all(sock is not None for sock in sockets)
        wakeups = sum(sock.wakeups for sock in sockets if sock is not None)
        datagrams = sum(sock.datagrams for sock in sockets if sock is not None)
        drains, since = drain.drains, {pack: len(rig.rec.readings[pack]) for pack in rig.packs}
        await rig.rec.wait(lambda: drain.drains >= drains + 20, 20.0, "twenty more drains")
        for pack in rig.packs:
            await rig.rec.readings_after(pack, 3, since=since[pack], timeout=8.0)
            check_readings(rig, pack)
        more_wakeups = sum(sock.wakeups for sock in sockets if sock is not None) - wakeups
        more_datagrams = sum(sock.datagrams for sock in sockets if sock is not None) - datagrams
        assert drain.delay is not None and drain.delay <= drain.ceiling
        # Three packs' answers, 2-3 notifications each, read per drain; a late one now and then reads the
        # rest of its answer on its own wake-ups.
        assert more_datagrams >= 40
        assert more_wakeups <= more_datagrams // 4, (more_wakeups, more_datagrams, drain.late)
