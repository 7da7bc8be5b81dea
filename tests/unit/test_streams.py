"""Rx wiring in virtual time (TestScheduler): cadence, stale/grace/rejoin, errors contained, /Connected."""

from __future__ import annotations

import dataclasses
import itertools
import logging

import pytest
import reactivex
from reactivex.testing import ReactiveTest, TestScheduler

from btbattery.config import default_config
from btbattery.model import (
    BankState,
    BasicInfo,
    CellVoltages,
    LinkEvent,
    LinkState,
    PackReading,
    Protection,
)
from btbattery.pipeline.streams import build_pipeline

CONFIG = dataclasses.replace(default_config(), max_pack_charge_current=40.0, max_pack_discharge_current=60.0)
ADDRESSES = ["A4:C1:37:00:00:01", "A4:C1:37:00:00:02", "A4:C1:37:00:00:03"]
on_next, on_error, on_completed = ReactiveTest.on_next, ReactiveTest.on_error, ReactiveTest.on_completed


def reading(pack: int, time: float, soc: int = 60, current: float = 0.0) -> PackReading:
    info = BasicInfo(
        53.2, current, 60.0, 100.0, 5, None, 0, Protection.NONE, 3.8, soc, True, True, 4, (25.0,)
    )
    cells = CellVoltages((3.25, 3.25, 3.26, 3.25))  # below the taper
    return PackReading(pack, ADDRESSES[pack - 1], time, info, cells)


def polled(pack: int, times, **kwargs) -> list:
    return [on_next(t + 0.25, reading(pack, t + 0.2, **kwargs)) for t in times]


def run(scheduler: TestScheduler, readings, links, until: float, config=CONFIG) -> list[BankState]:
    packs = [config.pack_spec(n, ADDRESSES[n - 1]) for n in range(1, len(readings) + 1)]
    sources = [scheduler.create_hot_observable(*messages) for messages in readings]
    link_sources = [scheduler.create_hot_observable(*messages) for messages in links]
    out: list[BankState] = []
    errors: list[Exception] = []
    done: list[bool] = []
    build_pipeline(packs, sources, link_sources, config, scheduler).subscribe(
        out.append, errors.append, lambda: done.append(True)
    )
    scheduler.advance_to(until)
    assert not errors and not done  # the bank never ends while the service runs
    return out


def at(states: list[BankState], t: float) -> BankState:
    return next(s for s in states if s.snapshot.time == t)


def test_one_state_per_publish_interval_even_without_data() -> None:
    scheduler = TestScheduler()
    states = run(scheduler, [[]], [[]], 100.0)
    assert [s.snapshot.time for s in states[:3]] == [0.0, 1.0, 2.0] and len(states) == 101
    assert all(s.snapshot.active_packs == 0 and s.limits.charge_current == 0 for s in states)
    assert at(states, 59.0).connected and not at(states, 60.0).connected  # DISCONNECTED_AFTER = 60 s


def test_dropout_stale_grace_and_rejoin() -> None:
    scheduler = TestScheduler()
    pack2 = [*polled(2, range(0, 60)), *polled(2, range(100, 200))]
    link2 = [
        on_next(0.1, LinkEvent(2, ADDRESSES[1], 0, LinkState.POLLING)),
        on_next(60.5, LinkEvent(2, ADDRESSES[1], 0, LinkState.BACKOFF, "link lost")),
        on_next(80.0, LinkEvent(2, ADDRESSES[1], 0, LinkState.CONNECTING)),
        on_next(99.0, LinkEvent(2, ADDRESSES[1], 0, LinkState.POLLING)),
    ]
    states = run(scheduler, [polled(1, range(200)), pack2], [[], link2], 200.0)
    before = at(states, 60.0)
    assert before.snapshot.active_packs == 2 and before.limits.charge_current == 80.0  # 2 x 40 A, fully risen
    lost = at(states, 61.0)  # link down at 60.5: stale at once, limits shrink to the remaining pack at once
    assert lost.snapshot.active_packs == 2 and not lost.snapshot.packs[1].fresh
    assert lost.limits.charge_current == 40.0 and lost.limits.discharge_current == 60.0
    assert "pack 2 stale" in lost.limits.reasons
    assert at(states, 70.0).snapshot.active_packs == 2 and at(states, 71.0).snapshot.active_packs == 1
    assert at(states, 99.0).snapshot.active_packs == 1  # link up is not enough
    back = at(states, 101.0)  # fresh data at 100.25
    assert back.snapshot.active_packs == 2 and back.snapshot.packs[1].fresh
    rise = [at(states, t).limits.charge_current for t in range(100, 125)]
    assert rise[0] == 40.0 and rise[-1] == 80.0
    steps = [b - a for a, b in itertools.pairwise(rise)]
    assert all(0 <= step <= CONFIG.current_limit_rise_rate + 1e-9 for step in steps)
    assert all(s.connected for s in states)


def test_a_poll_flushed_after_the_link_went_down_does_not_make_the_pack_fresh() -> None:
    scheduler = TestScheduler()
    pack2 = [*polled(2, range(0, 20)), on_next(20.6, reading(2, 20.2))]  # held poll, flushed on teardown
    link2 = [on_next(20.5, LinkEvent(2, ADDRESSES[1], 20.5, LinkState.BACKOFF, "link lost"))]
    states = run(scheduler, [polled(1, range(60)), pack2], [[], link2], 60.0)
    assert not at(states, 21.0).snapshot.packs[1].fresh and at(states, 21.0).snapshot.packs[1].active
    assert at(states, 31.0).snapshot.active_packs == 1  # grace counted from the link loss at 20.5


def test_silent_pack_ages_out_without_any_link_event() -> None:
    scheduler = TestScheduler()
    states = run(scheduler, [polled(1, range(100)), polled(2, range(20))], [[], []], 60.0)
    # last reading of pack 2 at 19.25: stale from 24.25, out of the bank from 34.25
    assert at(states, 24.0).snapshot.packs[1].fresh and not at(states, 25.0).snapshot.packs[1].fresh
    assert at(states, 34.0).snapshot.active_packs == 2 and at(states, 35.0).snapshot.active_packs == 1


def test_one_pack_erroring_or_completing_never_ends_the_bank() -> None:
    scheduler = TestScheduler()
    broken = [*polled(1, range(10)), on_error(10.5, RuntimeError("adapter gone"))]
    finished = [*polled(3, range(10)), on_completed(10.5)]
    links = [[on_error(12.0, ValueError("bad link event"))], [], []]
    states = run(scheduler, [broken, polled(2, range(100)), finished], links, 100.0)
    assert len(states) == 101
    late = at(states, 99.0)
    assert late.snapshot.active_packs == 1 and late.snapshot.packs[1].fresh
    assert late.snapshot.packs[0].link_state == "offline" and not late.snapshot.packs[0].active
    assert late.limits.charge_current == 40.0


def test_imbalance_raised_and_cleared_through_the_pipeline() -> None:
    scheduler = TestScheduler()
    pack1 = polled(1, range(300), soc=60)
    pack2 = [
        *polled(2, range(0, 100), soc=60),
        *polled(2, range(100, 200), soc=80),
        *polled(2, range(200, 300), soc=60),
    ]
    states = run(scheduler, [pack1, pack2], [[], []], 300.0)
    flags = [(s.snapshot.time, s.imbalance.soc) for s in states]
    raised = next(t for t, on in flags if on)
    cleared = next(t for t, on in flags if t > raised and not on)
    assert 100 < raised <= 160 and 200 < cleared <= 260
    assert at(states, raised).limits.charge_voltage < at(states, raised - 1).limits.charge_voltage


def test_subscribing_twice_gives_independent_banks() -> None:
    scheduler = TestScheduler()
    pack = [CONFIG.pack_spec(1, ADDRESSES[0])]
    bank = build_pipeline(pack, [reactivex.never()], [reactivex.never()], CONFIG, scheduler)
    first: list[BankState] = []
    second: list[BankState] = []
    bank.subscribe(first.append)
    scheduler.advance_to(5.0)
    bank.subscribe(second.append)
    scheduler.advance_to(10.0)
    assert len(first) == 11 and len(second) == 6 and second[0].snapshot.time == 5.0


def test_a_reading_that_breaks_the_bank_math_gives_zero_currents_not_an_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    scheduler = TestScheduler()
    good = reading(2, 10.2)  # a producer's bug that plausibility cannot see (it judges values, not types)
    broken = dataclasses.replace(good, info=dataclasses.replace(good.info, protection=None))
    pack2 = [*polled(2, range(10)), on_next(10.25, broken)]
    with caplog.at_level(logging.INFO, logger="btbattery.pipeline.streams"):
        states = run(scheduler, [polled(1, range(60)), pack2], [[], []], 60.0)
    assert at(states, 10.0).limits.charge_current > 0
    failed = at(states, 11.0)
    assert failed.limits.charge_current == failed.limits.discharge_current == 0
    assert failed.limits.reasons == ("internal error",) and failed.limits.charge_voltage > 0
    # the bad reading ages out (stale 15.25, out 25.25) and the bank carries on with pack 1
    recovered = at(states, 40.0)
    assert recovered.snapshot.active_packs == 1 and recovered.limits.charge_current > 0
    assert caplog.text.count("bank update failed") == 1 and "works again" in caplog.text
