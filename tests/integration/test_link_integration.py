"""Real link code over real bleak against the fake BlueZ on a private system bus."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from linkharness import FAST_RADIO, POLL, LinkRig

from btbattery.model import LinkState

pytestmark = pytest.mark.usefixtures("system_bus")

# BlueZ knows no pack before the first scan: ask it, scan, connect, subscribe, poll.
START = [
    LinkState.LOCATING,
    LinkState.SCANNING,
    LinkState.CONNECTING,
    LinkState.SUBSCRIBING,
    LinkState.POLLING,
]


async def test_every_pack_reaches_polling_and_delivers_decoded_readings() -> None:
    async with LinkRig(packs=3) as rig:
        await rig.rec.all_polling(rig.packs)
        for pack in rig.packs:
            await rig.rec.readings_after(pack, 2, since=0, timeout=5.0)
        for sim_pack in rig.fake.packs:
            assert rig.rec.states_of(sim_pack.number)[:5] == START
            reading = next(r for r in rig.rec.readings[sim_pack.number] if r.cells is not None)
            assert reading.address == sim_pack.address
            assert reading.info.cell_count == sim_pack.sim.params.cell_count == len(reading.cells.voltages)
            assert reading.info.nominal_capacity == pytest.approx(sim_pack.sim.params.capacity_ah, abs=0.01)
            # LFP cells and a pack voltage close to their sum (the simulator adds the IR drop of the current).
            assert all(2.5 <= v <= 3.65 for v in reading.cells.voltages)
            assert reading.info.voltage == pytest.approx(sum(reading.cells.voltages), abs=1.0)
        times = [r.time for r in rig.rec.readings[1]]
        assert times == sorted(times)
        assert rig.manager is not None and set(rig.manager.drops.values()) == {0}
        assert rig.fake.stats.max_connects_in_flight == 1


FAULTS = {
    # kind: (duration s, extra inject kwargs)
    "drop": (1.5, {}),
    "drop_midframe": (0.6, {}),
    "silent": (1.5, {}),
    "corrupt": (1.5, {}),
    "truncate": (1.5, {}),
    "delay": (2.5, {"delay": 2.0}),  # later than dead_after polls: the link must call it dead
}


@pytest.mark.parametrize("kind", list(FAULTS))
async def test_link_backs_off_and_recovers_after_fault(kind: str) -> None:
    duration, extra = FAULTS[kind]
    # Devices expire quickly here, so after a long drop the old device object is gone and only a new scan
    # can find the pack again.
    timing = dataclasses.replace(FAST_RADIO, device_expiry=0.5)
    async with LinkRig(packs=3, timing=timing) as rig:
        rec = rig.rec
        await rec.all_polling(rig.packs)
        await rec.readings_after(1, 1, since=0, timeout=5.0)
        loop = asyncio.get_running_loop()
        events_before = len(rec.events)
        seen = {p: len(rec.readings[p]) for p in rig.packs}
        start = loop.time()
        rig.fake.inject(2, kind, duration, **extra)

        def left_polling() -> bool:
            # A link lost while delivering goes straight back to the known device; others back off.
            return any(
                e.pack == 2 and e.state in (LinkState.BACKOFF, LinkState.LOCATING)
                for e in rec.events[events_before:]
            )

        await rec.wait(left_polling, 10.0, f"pack 2 to give up the link after {kind}")
        await rec.wait(lambda: rec.state(2) == LinkState.POLLING, 15.0, f"pack 2 polling again after {kind}")
        await rec.readings_after(2, 2, since=seen[2], timeout=10.0)
        end = loop.time()
        # The others kept their pace throughout: never more than one interval late.
        for other in (1, 3):
            assert rec.max_gap(other, start, end) <= 2 * POLL, f"pack {other} stalled during {kind} on 2"
            assert LinkState.BACKOFF not in rec.states_of(other)
        assert rig.fake.stats.max_connects_in_flight == 1
        assert rig.manager is not None
        if kind == "drop":  # BlueZ forgot the device meanwhile: the link found it again by scanning
            assert rig.fake.stats.expired_devices >= 1
        if kind in ("corrupt", "truncate"):
            assert rig.manager.drops[2] > 0
            assert rig.manager.drops[1] == rig.manager.drops[3] == 0


async def test_adapter_vanishing_and_returning() -> None:
    async with LinkRig(packs=3) as rig:
        rec = rig.rec
        await rec.all_polling(rig.packs)
        mark = len(rec.events)
        seen = {p: len(rec.readings[p]) for p in rig.packs}
        rig.fake.inject(1, "adapter_loss", 1.0)
        await rig.fake.wait_until(lambda f: not f.adapter_present, 5.0)
        await rec.wait(
            lambda: all(
                any(e.pack == p and e.state == LinkState.BACKOFF for e in rec.events[mark:])
                for p in rig.packs
            ),
            10.0,
            "every pack to back off when the adapter vanishes",
        )
        await rig.fake.wait_until(lambda f: f.adapter_present, 5.0)
        await rec.all_polling(rig.packs, timeout=20.0)
        for pack in rig.packs:
            await rec.readings_after(pack, 1, since=seen[pack], timeout=10.0)
        assert rig.fake.stats.max_connects_in_flight == 1


async def test_connects_are_serialised_on_the_adapter() -> None:
    async with LinkRig(packs=6) as rig:
        await rig.rec.all_polling(rig.packs, timeout=30.0)
        stats = rig.fake.stats
        assert stats.connects >= 6
        assert stats.max_connects_in_flight == 1
        assert stats.in_progress_errors == 0
        # One discovery served every pack that needed one (bleak allows one per client).
        assert rig.manager is not None and rig.manager.port is not None
        assert rig.manager.port.scanner.scans <= 2


async def test_fake_refuses_a_second_connect_like_bluez() -> None:
    """The serialisation test above means something only if the fake really refuses overlapping connects."""
    from bleak import BleakClient, BleakScanner
    from bleak.exc import BleakDBusError

    from btbattery.sim.bluez import FakeBluez

    timing = dataclasses.replace(FAST_RADIO, connect_delay=0.5)
    async with FakeBluez(_two_packs(), timing=timing, scripted_faults=False) as fake:
        devices = [await BleakScanner.find_device_by_address(a, timeout=5.0) for a in fake.addresses]
        clients = [BleakClient(d, timeout=5.0) for d in devices if d is not None]
        results = await asyncio.gather(*(c.connect() for c in clients), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        assert len(errors) == 1 and isinstance(errors[0], BleakDBusError)
        assert errors[0].dbus_error == "org.bluez.Error.InProgress"
        assert fake.stats.max_connects_in_flight == 2
        for client in clients:
            await client.disconnect()


def _two_packs():  # type: ignore[no-untyped-def]
    from linkharness import scenario

    return scenario(2)


async def test_shutdown_leaves_no_connection_open() -> None:
    rig = LinkRig(packs=3)
    async with rig:
        await rig.rec.all_polling(rig.packs)
        assert sorted(rig.fake.connected()) == rig.packs
        assert rig.manager is not None
        loop = asyncio.get_running_loop()
        start = loop.time()
        assert await rig.manager.stop(timeout=5.0)
        assert loop.time() - start < 5.0
        assert rig.fake.connected() == []
        assert not any(p.notifying for p in rig.fake.packs)
        assert rig.fake.stats.disconnects == 3
        for pack in rig.packs:
            assert rig.rec.state(pack) == LinkState.IDLE
        rig.manager = None  # already stopped


async def test_stop_while_connecting_releases_the_pack() -> None:
    timing = dataclasses.replace(FAST_RADIO, connect_delay=1.0)
    rig = LinkRig(packs=2, timing=timing)
    async with rig:
        await rig.fake.wait_until(lambda f: f.stats.connects_in_flight == 1, 10.0)
        assert rig.manager is not None
        assert await rig.manager.stop(timeout=5.0)
        await rig.fake.wait_until(lambda f: not f.connected() and f.stats.connects_in_flight == 0, 3.0)
        assert rig.fake.stats.connects == 0  # the attempt was cancelled, not completed and leaked
        rig.manager = None


async def test_alternative_gatt_layout_fff0() -> None:
    async with LinkRig(packs=2, variants={1: "fff0"}) as rig:
        await rig.rec.all_polling(rig.packs)
        await rig.rec.readings_after(1, 2, since=0, timeout=5.0)
        assert rig.fake.packs[0].uuids[1].startswith("0000fff1")


async def test_scenario_faults_play_on_their_timeline() -> None:
    from btbattery.sim.scenario import Fault

    faults = [Fault(at=1.0, pack=1, kind="drop", duration=0.5)]
    async with LinkRig(packs=2, faults=faults) as rig:
        rec = rig.rec
        await rec.all_polling(rig.packs)
        await rec.wait(lambda: LinkState.BACKOFF in rec.states_of(1), 10.0, "the scripted drop of pack 1")
        assert rig.fake.now() >= 1.0
        await rec.wait(lambda: rec.state(1) == LinkState.POLLING, 10.0, "pack 1 polling again")
        assert LinkState.BACKOFF not in rec.states_of(2)
