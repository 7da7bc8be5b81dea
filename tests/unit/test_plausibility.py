"""Plausibility between decoding and the bank (issue 16, findings 2-4), through the real Rx pipeline in
virtual time: one odd frame must not move CVL, reach the paths, or be published; a pack without fresh cells
is stale for the limits."""

from __future__ import annotations

import dataclasses
import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reactivex.testing import ReactiveTest, TestScheduler

from btbattery.config import Config, default_config
from btbattery.model import BankState, BasicInfo, CellVoltages, PackReading, Protection
from btbattery.pipeline.plausibility import CELL_COUNT_CONFIRM_POLLS, PackPlausibility
from btbattery.pipeline.streams import build_pipeline

CONFIG = default_config()
ADDRESSES = [f"A4:C1:37:00:00:{n:02X}" for n in range(1, 5)]
CELLS = 16
on_next = ReactiveTest.on_next


def reading(
    pack: int, time: float, *, cells: tuple[float, ...] | None = (3.30,) * CELLS, **info
) -> PackReading:
    values = dict(
        voltage=52.8, current=0.0, remaining_capacity=60.0, nominal_capacity=100.0, cycles=5,
        production_date=None, balance_bits=0, protection=Protection.NONE, software_version=3.8, soc=60,
        charge_fet=True, discharge_fet=True, cell_count=CELLS, temperatures=(25.0,),
    )  # fmt: skip
    values.update(info)
    voltages = None if cells is None else CellVoltages(cells)
    return PackReading(pack, ADDRESSES[pack - 1], time, BasicInfo(**values), voltages)


def run(per_pack: list[dict[int, PackReading | None]], until: float = 60.0, config: Config = CONFIG):
    """Pack i polled every second with a normal reading (taken at t+0.4, arriving at t+0.5), except where
    ``per_pack[i]`` says otherwise (None: no answer that second)."""
    scheduler = TestScheduler()
    specs = [config.pack_spec(n, ADDRESSES[n - 1]) for n in range(1, len(per_pack) + 1)]
    judges = [PackPlausibility(s.number, s.address) for s in specs]
    sources = [
        scheduler.create_hot_observable(
            *(
                on_next(t + 0.5, polled)
                for t in range(int(until))
                if (polled := special.get(t, reading(n, t + 0.4))) is not None
            )
        )
        for n, special in enumerate(per_pack, start=1)
    ]
    links = [scheduler.create_hot_observable() for _ in specs]
    states: list[BankState] = []
    build_pipeline(specs, sources, links, config, scheduler, plausibility=judges).subscribe(states.append)
    scheduler.advance_to(until)
    return {s.snapshot.time: s for s in states}, judges


FULL_CVL = CELLS * CONFIG.max_cell_voltage


@pytest.mark.parametrize(
    "odd",
    [
        reading(1, 10.4, cell_count=8),  # 0x03 says 8 cells on a 16S pack
        reading(1, 10.4, cells=(3.30,) * 4),  # 0x04 carries 4 cells
        reading(1, 10.4, cell_count=255),  # no JBD has 255 cells in series
    ],
    ids=["0x03-says-8", "0x04-carries-4", "count-255"],
)
def test_one_frame_with_a_wrong_cell_count_does_not_move_cvl(odd: PackReading) -> None:
    states, judges = run([{10: odd}, {}])
    assert all(states[t].limits.charge_voltage == pytest.approx(FULL_CVL) for t in range(3, 60))
    assert all(states[t].snapshot.cells_per_pack == CELLS for t in range(3, 60))
    assert sum(judges[0].dropped.values()) == 1


def test_a_cell_count_that_persists_is_believed() -> None:
    """A pack rewired to 15 cells (or a BMS that always says so) is not held back for ever."""
    changed = {t: reading(1, t + 0.4, cells=(3.30,) * 15, cell_count=15) for t in range(20, 60)}
    states, judges = run([changed])
    assert states[20.0].snapshot.cells_per_pack == CELLS  # held back: the bank still shows the old pack
    settled = 20 + CELL_COUNT_CONFIRM_POLLS + 1
    assert states[float(settled)].snapshot.cells_per_pack == 15
    assert judges[0].accepted_cells == 15 and judges[0].dropped["cell count"] == CELL_COUNT_CONFIRM_POLLS - 1


@pytest.mark.parametrize(
    ("odd", "kind"),
    [
        (reading(1, 10.4, soc=255), "value"),
        (reading(1, 10.4, remaining_capacity=250.0), "value"),  # above a 100 Ah pack's nominal
        (reading(1, 10.4, cells=(3.30,) * 15 + (65.535,)), "cell value"),
    ],
    ids=["soc-255", "capacity-above-nominal", "cell-65V"],
)
def test_values_outside_physical_bounds_are_dropped_counted_and_warned_once(
    odd: PackReading, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="btbattery.pipeline.plausibility"):
        states, judges = run([{10: odd, 20: odd, 30: odd}, {}])
    for state in states.values():
        snap = state.snapshot
        assert snap.soc is None or 0 <= snap.soc <= 100
        assert snap.max_temperature is None or snap.max_temperature < 100
        assert snap.max_cell_voltage is None or snap.max_cell_voltage < 5
        assert snap.remaining_capacity is None or snap.remaining_capacity <= snap.nominal_capacity
    assert judges[0].dropped[kind] == 3
    assert caplog.text.count("implausible") == 1


def test_a_pack_whose_cell_register_stops_is_stale_for_the_limits() -> None:
    """Finding 4: a 3.64 V cell tapers CCL to 0; then 0x04 stops answering. Before, after PACK_STALE_AFTER
    the limits worked from the mean cell voltage and CCL climbed to 60 A within seconds."""
    high = (3.30,) * 15 + (3.64,)
    per_pack = {t: reading(1, t + 0.4, cells=high) for t in range(10)}
    per_pack |= {t: reading(1, t + 0.4, cells=None) for t in range(10, 60)}
    states, _ = run([per_pack])
    assert states[9.0].limits.charge_current == 0.0
    for t in range(10, 60):
        assert states[float(t)].limits.charge_current == 0.0, t
    late = states[40.0].snapshot.packs[0]
    assert late.active and not late.fresh  # its 0x03 values still shown; no limit rests on it


def test_an_open_ntc_is_judged_by_the_sensor_rules_not_published() -> None:
    """Raw 0xFFFF (6280 degC) from one sensor: the pack keeps reporting (its other sensor works), and the
    value reaches neither the bank temperature nor the limits (pipeline/sensors.py drops it, alarms)."""
    odd = {t: reading(1, t + 0.4, temperatures=(25.0, 6280.4)) for t in range(10, 60)}
    states, _ = run([odd, {}])
    for t in range(10, 60):
        snap = states[float(t)].snapshot
        assert snap.max_temperature is not None and snap.max_temperature < 100, t
        assert snap.packs[0].fresh
    assert states[59.0].limits.charge_current > 0


def stale_cells_timeline(last_cells: tuple[float, ...], cleared_at: int | None = None, until: float = 160.0):
    """Two packs. Pack 1's 0x04 delivers ``last_cells`` until t=10, then stops answering while its 0x03 keeps
    coming (active, stale for the limits); from ``cleared_at`` its 0x04 answers again with 3.30 V cells."""
    per_pack = {t: reading(1, t + 0.4, cells=last_cells) for t in range(10)}
    per_pack |= {t: reading(1, t + 0.4, cells=None) for t in range(10, int(until))}
    if cleared_at is not None:
        per_pack |= {t: reading(1, t + 0.4) for t in range(cleared_at, int(until))}
    states, _ = run([per_pack, {}], until)
    return states


@pytest.mark.parametrize(
    "high",
    [CONFIG.cell_overvoltage, CONFIG.cell_overvoltage + 0.02, CONFIG.cell_voltages_while_charging[0] + 0.005],
    ids=["at-CELL_OVERVOLTAGE", "above-CELL_OVERVOLTAGE", "taper-at-0"],
)
def test_a_charge_stop_by_the_cells_outlives_their_register(high: float) -> None:
    """Fail toward zero: pack 1's highest cell stopped charging (at CELL_OVERVOLTAGE, or the taper at 0), then
    its 0x04 stops answering. Before, once its cells aged out (PACK_STALE_AFTER) it was merely stale, pack 2
    carried on and the CCL came back after the recovery hold (2 A at t=46, 50 A by t=70), charging the full
    pack along with pack 2."""
    states = stale_cells_timeline((3.30,) * 15 + (high,))
    assert states[9.0].limits.charge_current == 0.0
    for t in range(10, 160):
        state = states[float(t)]
        assert state.limits.charge_current == 0.0, t
    late = states[100.0]
    assert late.snapshot.packs[0].active and not late.snapshot.packs[0].fresh
    assert late.limits.discharge_current > 0  # discharging the full pack is fine
    assert any("pack 1" in r and "cells stale" in r for r in late.limits.reasons), late.limits.reasons


def test_fresh_cells_clear_the_held_stop_after_the_recovery_hold() -> None:
    states = stale_cells_timeline((3.30,) * 15 + (3.62,), cleared_at=60)
    assert all(states[float(t)].limits.charge_current == 0.0 for t in range(10, 61))
    hold = CONFIG.ccl_recovery_hold_sec
    assert all(states[float(t)].limits.charge_current == 0.0 for t in range(61, 61 + int(hold)))
    assert states[150.0].limits.charge_current > 0


def test_a_pack_never_above_the_limit_keeps_the_stale_derate() -> None:
    """A pack whose last cells were healthy is only stale when its 0x04 stops: the bank derates, no zero."""
    states = stale_cells_timeline((3.30,) * 16)
    for t in range(10, 160):
        assert states[float(t)].limits.charge_current > 0, t
    assert "pack 1 stale" in states[100.0].limits.reasons


def test_a_discharge_stop_by_the_cells_outlives_their_register() -> None:
    """The same rule for the DCL: a cell at CELL_UNDERVOLTAGE keeps the DCL at 0 while the cells are stale."""
    states = stale_cells_timeline((3.30,) * 15 + (CONFIG.cell_undervoltage,))
    for t in range(10, 160):
        assert states[float(t)].limits.discharge_current == 0.0, t
    assert states[100.0].limits.charge_current > 0


# A stretch of a pack's traffic in the property below: its 0x04 answers (with this highest cell), only its
# 0x03 answers, or nothing does, for some seconds.
stretches = st.tuples(
    st.sampled_from(["cells", "cells", "no 0x04", "silent"]), st.floats(3.20, 3.70), st.integers(1, 20)
)
SECONDS = 60


def timeline(stretches_: list[tuple[str, float, int]]) -> list[tuple[str, float]]:
    seconds = [(kind, round(high, 3)) for kind, high, length in stretches_ for _ in range(length)]
    return (seconds + [("cells", 3.30)] * SECONDS)[:SECONDS]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.lists(stretches, min_size=1, max_size=8).map(timeline), min_size=2, max_size=3),
    st.sampled_from([0.0, CONFIG.ccl_recovery_hold_sec]),
)
def test_no_charge_while_an_active_packs_last_cells_stopped_it(timelines, hold: float) -> None:
    """The invariant, through the real pipeline: at every tick, if the newest cells an active pack delivered
    had one at or above CELL_OVERVOLTAGE (no fresher cells cleared it), the published CCL is 0, however long
    its 0x04 has been silent and however fresh its 0x03. (Without a recovery hold the CCL would show a
    lapse at once.)"""
    config = dataclasses.replace(CONFIG, ccl_recovery_hold_sec=hold)
    per_pack: list[dict[int, PackReading | None]] = []
    delivered: list[list[tuple[float, float]]] = []  # per pack: (arrival, highest cell) of each 0x04 answer
    for number, seconds in enumerate(timelines, start=1):
        special: dict[int, PackReading | None] = {}
        arrivals = []
        for t, (kind, high) in enumerate(seconds):
            if kind == "cells":
                special[t] = reading(number, t + 0.4, cells=(3.30,) * (CELLS - 1) + (high,))
                arrivals.append((t + 0.5, high))
            else:
                special[t] = reading(number, t + 0.4, cells=None) if kind == "no 0x04" else None
        per_pack.append(special)
        delivered.append(arrivals)
    states, _ = run(per_pack, SECONDS, config)
    for now, state in states.items():
        for status, arrivals in zip(state.snapshot.packs, delivered, strict=True):
            newest = [high for arrival, high in arrivals if arrival < now]
            if status.active and newest and newest[-1] >= config.cell_overvoltage:
                assert state.limits.charge_current == 0.0, (now, status.pack, newest[-1])
