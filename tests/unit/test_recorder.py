"""The flight recorder's pure parts: the ring (bounded by age and bytes), incidents, the rate limit."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from bankgen import banks
from hypothesis import given, settings
from hypothesis import strategies as st

from btbattery.model import BankState, ChargeLimits, ImbalanceStatus, LinkEvent, LinkState, Protection
from btbattery.protocol import jbd
from btbattery.recorder import (
    RX,
    SEGMENT_SECONDS,
    TX,
    FlightRecorder,
    Incidents,
    incidents,
    link_incident,
    write_recording,
)
from btbattery.replay import LinkChange, Traffic, read_recording

PACKS = ("A4:C1:37:00:00:01", "A4:C1:37:00:00:02")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_events_come_back_in_the_recording_format_with_times_from_the_first() -> None:
    clock = Clock()
    ring = FlightRecorder(PACKS, minutes=1, clock=clock)
    ring.link(LinkEvent(1, PACKS[0], 0.0, LinkState.POLLING))
    clock.now += 0.25
    ring.traffic(1, TX, jbd.BASIC_INFO_REQUEST)
    clock.now += 0.05
    ring.traffic(2, RX, b"\xdd\x03\x00")
    events = list(ring.snapshot().events())
    assert events == [
        LinkChange(0.0, PACKS[0], LinkState.POLLING, ""),
        Traffic(0.25, PACKS[0], "tx", jbd.BASIC_INFO_REQUEST),
        Traffic(events[2].t, PACKS[1], "rx", b"\xdd\x03\x00"),
    ]
    assert abs(events[2].t - 0.30) < 1e-9


def test_old_segments_go_and_the_link_state_at_the_window_start_is_kept() -> None:
    clock = Clock()
    ring = FlightRecorder(PACKS, minutes=1, clock=clock)
    ring.link(LinkEvent(2, PACKS[1], 0.0, LinkState.BACKOFF, "link lost"))
    for _ in range(200):  # 200 s of one request a second
        clock.now += 1.0
        ring.traffic(1, TX, jbd.BASIC_INFO_REQUEST)
    events = list(ring.snapshot().events())
    traffic = [e for e in events if isinstance(e, Traffic)]
    assert 60 <= len(traffic) <= 60 + SEGMENT_SECONDS  # the last minute, in whole segments
    assert events[0] == LinkChange(0.0, PACKS[1], LinkState.BACKOFF, "link lost")  # from an evicted segment


def test_password_frames_never_enter_the_ring() -> None:
    ring = FlightRecorder(PACKS, minutes=1, clock=Clock())
    secret = jbd.password_request(PACKS[0], "123456", 0x5A)
    ring.traffic(1, TX, secret)
    (event,) = list(ring.snapshot().events())
    assert event.data[:4] == secret[:4] and not any(event.data[4:])


@settings(max_examples=60, deadline=None)
@given(
    minutes=st.floats(0.05, 2),
    packs=st.integers(1, 4),
    chunks=st.lists(st.tuples(st.floats(0, 3), st.integers(1, 4), st.integers(0, 300)), max_size=400),
)
def test_memory_stays_within_the_ring_budget(minutes: float, packs: int, chunks: list) -> None:
    """Whatever the traffic (even far above a JBD's ~250 B/s), the ring holds at most its budget plus one
    segment, which is at most 1/16 of the budget (or 4 kB)."""
    clock = Clock()
    ring = FlightRecorder([f"A4:C1:37:00:00:{n:02X}" for n in range(1, packs + 1)], minutes, clock=clock)
    for gap, pack, size in chunks:
        clock.now += gap
        ring.traffic(min(pack, packs), RX, bytes(size))
        assert ring.size <= ring.max_bytes + max(4096, ring.max_bytes // 16) + 12 + 300


def test_a_recorder_set_to_zero_minutes_keeps_nothing() -> None:
    ring = FlightRecorder(PACKS, minutes=0, clock=Clock())
    ring.traffic(1, TX, jbd.BASIC_INFO_REQUEST)
    assert not ring.enabled and ring.size == 0 and list(ring.snapshot().events()) == []


def test_written_files_replay_and_the_oldest_go(tmp_path: Path) -> None:
    ring = FlightRecorder(PACKS, minutes=1, clock=Clock())
    ring.traffic(1, TX, jbd.BASIC_INFO_REQUEST)
    paths = [write_recording(ring.snapshot(), tmp_path, f"test {n}", max_files=2) for n in range(3)]
    assert [p.exists() for p in paths] == [False, True, True]
    assert len({p.name for p in paths}) == 3  # same second, distinct names
    header, events = read_recording(paths[-1])
    assert header.packs == PACKS and header.meta["reason"] == "test 2" and len(list(events)) == 1
    assert not list(tmp_path.glob("*.part"))


# ----- incidents -----------------------------------------------------------------------------------------


def _state(snapshot, ccl: float = 50.0, dcl: float = 50.0) -> BankState:
    return BankState(snapshot, ImbalanceStatus(), ChargeLimits(55.0, ccl, dcl, ("why",)), True)


@settings(max_examples=80, deadline=None)
@given(bank=banks(max_packs=6))
def test_the_same_state_twice_is_never_an_incident(bank) -> None:
    snapshot, _ = bank
    assert incidents(_state(snapshot), _state(snapshot)) == []
    assert incidents(None, _state(snapshot, 0, 0)) == []  # the first state has nothing to compare with


@settings(max_examples=80, deadline=None)
@given(bank=banks(max_packs=6), data=st.data())
def test_each_incident_kind_is_spotted(bank, data) -> None:
    snapshot, _ = bank
    before = _state(snapshot)
    # a limit falling to 0
    assert "CCL fell to 0 A (why)" in incidents(before, _state(snapshot, ccl=0.0))
    assert "DCL fell to 0 A (why)" in incidents(before, _state(snapshot, dcl=0.0))
    assert incidents(_state(snapshot, ccl=0.0), _state(snapshot, ccl=0.0)) == []  # staying at 0 is not new
    # an active pack leaving the bank
    active = [i for i, p in enumerate(snapshot.packs) if p.active]
    if active:
        i = data.draw(st.sampled_from(active))
        packs = list(snapshot.packs)
        packs[i] = dataclasses.replace(packs[i], active=False, fresh=False)
        after = _state(dataclasses.replace(snapshot, packs=tuple(packs)))
        assert any(w.startswith(f"pack {packs[i].pack} dropped") for w in incidents(before, after))
    # a protection bit rising on a pack with a reading (and only the new bits are named)
    with_reading = [i for i, p in enumerate(snapshot.packs) if p.reading is not None]
    if with_reading:
        i = data.draw(st.sampled_from(with_reading))
        old = snapshot.packs[i].reading.info.protection
        new_bit = data.draw(st.sampled_from([f for f in Protection if f and not f & old]))
        packs = list(snapshot.packs)
        reading = packs[i].reading
        info = dataclasses.replace(reading.info, protection=old | new_bit)
        packs[i] = dataclasses.replace(packs[i], reading=dataclasses.replace(reading, info=info))
        after = _state(dataclasses.replace(snapshot, packs=tuple(packs)))
        assert f"pack {packs[i].pack} protection: {new_bit.name.lower()}" in incidents(before, after)


def test_a_link_that_was_polling_and_backs_off_is_an_incident() -> None:
    lost = LinkEvent(2, PACKS[1], 5.0, LinkState.BACKOFF, "link lost")
    assert link_incident(lost, LinkState.POLLING) == "pack 2 link lost (link lost)"
    assert link_incident(lost, LinkState.CONNECTING) is None  # a failed attempt is not a drop
    assert link_incident(LinkEvent(2, PACKS[1], 5.0, LinkState.POLLING), LinkState.SUBSCRIBING) is None


def test_incidents_are_rate_limited_and_wait_for_the_aftermath() -> None:
    clock = Clock()
    scheduled: list[tuple[float, object]] = []
    written: list[str] = []
    trigger = Incidents(
        lambda delay, action: scheduled.append((delay, action)), written.append, clock, 300, 5
    )
    trigger("pack 1 link lost")
    trigger("pack 1 dropped out of the bank")  # same burst: one file naming both
    assert [delay for delay, _ in scheduled] == [5]
    scheduled.pop()[1]()
    assert written == ["pack 1 link lost; pack 1 dropped out of the bank"]
    clock.now += 100
    trigger("pack 2 link lost")  # within the gap: covered by the file just written
    assert scheduled == []
    clock.now += 201
    trigger("CCL fell to 0 A")
    scheduled.pop()[1]()
    assert written[-1] == "CCL fell to 0 A" and trigger.triggers == 4
