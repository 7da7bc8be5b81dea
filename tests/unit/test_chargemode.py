"""Charge modes (Bulk -> Absorption -> Float -> Bulk, SoC reset) and temperature sensor judgement, pure."""

from __future__ import annotations

import dataclasses
import itertools

from test_pipeline_pure import CONFIG, specs, status
from test_plausibility import reading
from test_plausibility import run as run_pipeline

from btbattery.model import ImbalanceStatus
from btbattery.pipeline import chargemode
from btbattery.pipeline.aggregate import aggregate
from btbattery.pipeline.chargemode import ChargeState, Mode
from btbattery.pipeline.limits import CELL_LIMIT_HYSTERESIS, target_limits
from btbattery.pipeline.sensors import judge_temperatures, sensor_roles

FULL = (3.45, 3.452, 3.448, 3.451)  # 4S at the absorption voltage, 4 mV apart: balanced
SPREAD = (3.40, 3.47, 3.44, 3.45)  # at the voltage on average, but 70 mV apart


def bank(*cells, soc=99):
    return aggregate(0.0, [status(n, cells=c, soc=soc) for n, c in enumerate(cells, start=1)])


def run(state: ChargeState, snapshot, start: float, seconds: int) -> ChargeState:
    for t in range(seconds):
        state = chargemode.step(state, snapshot, CONFIG, start + t)
    return state


def test_bulk_absorption_float_and_back() -> None:
    state = run(ChargeState(), bank(FULL, FULL), 0.0, 1)
    assert state.mode is Mode.ABSORPTION and state.balanced_since == 0.0
    wait = int(CONFIG.switch_to_float_wait_for_sec)
    state = run(state, bank(FULL, FULL), 1.0, wait - 1)
    assert state.mode is Mode.ABSORPTION  # not yet held long enough
    state = run(state, bank(FULL, FULL), float(wait), 1)
    assert state.mode is Mode.FLOAT
    # The CVL moves down to float at 0.001 V/s of bank voltage (4 cells: 0.00025 V per cell per second).
    target = chargemode.voltage_target(state, CONFIG, 4, wait + 100.0)
    assert abs(target.cell_voltage - (CONFIG.max_cell_voltage - 0.00025 * 100)) < 1e-9
    assert chargemode.describe(state, CONFIG, 4, wait + 100.0) == "Float Transition"
    late = chargemode.voltage_target(state, CONFIG, 4, wait + 10_000.0)
    assert late.cell_voltage == CONFIG.float_cell_voltage
    # Rebulk when a pack's SoC falls below the threshold.
    low = aggregate(0.0, [status(1, cells=FULL, soc=99), status(2, cells=FULL, soc=70)])
    state = chargemode.step(state, low, CONFIG, wait + 20_000.0)
    assert state.mode is Mode.BULK and "pack 2 SoC 70 %" in state.reason


def test_every_pack_must_meet_the_condition() -> None:
    """One pack short of the charge voltage keeps the bank in bulk; one unbalanced pack stops the timer."""
    low = (3.40, 3.40, 3.40, 3.40)
    assert run(ChargeState(), bank(FULL, low), 0.0, 5).mode is Mode.BULK
    state = run(ChargeState(), bank(FULL, SPREAD), 0.0, 3 * int(CONFIG.switch_to_float_wait_for_sec))
    assert state.mode is Mode.ABSORPTION and state.balanced_since is None


def test_a_pack_without_cell_voltages_never_meets_a_cell_condition() -> None:
    blind = status(2, cells=FULL)
    blind = dataclasses.replace(blind, reading=dataclasses.replace(blind.reading, cells=None))
    snapshot = aggregate(0.0, [status(1, cells=FULL), blind])
    assert run(ChargeState(), snapshot, 0.0, 5).mode is Mode.BULK


def test_soc_reset_charges_to_the_reset_voltage_and_overrides_the_imbalance_step() -> None:
    days = CONFIG.soc_reset_after_days * chargemode.DAY
    state = chargemode.step(ChargeState(), bank(FULL, FULL), CONFIG, 0.0)
    assert state.last_soc_reset == 0.0  # counted from the first start
    target = chargemode.voltage_target(state, CONFIG, 4, days)
    assert target.soc_reset and target.cell_voltage == target.cell_limit == CONFIG.soc_reset_cell_voltage
    snapshot = bank((3.3, 3.3, 3.3, 3.3), (3.3, 3.3, 3.3, 3.3))
    limits = target_limits(snapshot, ImbalanceStatus(soc=True), specs((50, 50), (50, 50)), CONFIG, target)
    assert abs(limits.charge_voltage - 4 * CONFIG.soc_reset_cell_voltage) < 1e-9  # no imbalance step
    assert "SoC Reset" in chargemode.describe(state, CONFIG, 4, days)
    # Reaching float at the reset voltage completes it: the next one is due SOC_RESET_AFTER_DAYS later.
    reset_full = tuple(CONFIG.soc_reset_cell_voltage for _ in range(4))
    state = run(state, bank(reset_full, reset_full), days, int(CONFIG.switch_to_float_wait_for_sec) + 2)
    assert state.mode is Mode.FLOAT and state.last_soc_reset is not None and state.last_soc_reset >= days


def test_the_state_survives_a_restart_through_the_wall_clock() -> None:
    state = ChargeState(Mode.FLOAT, 500.0, None, 3.45, 100.0)
    saved = chargemode.to_saved(state, now=1000.0, wall_now=1_700_000_000.0)
    assert saved == {"mode": "Float", "last_soc_reset": 1_700_000_000 - 900}
    restored = chargemode.from_saved(saved, now=5.0, wall_now=1_700_000_100.0)
    assert restored.mode is Mode.FLOAT and restored.last_soc_reset == 5.0 - 1000.0
    assert chargemode.voltage_target(restored, CONFIG, 4, 6.0).cell_voltage == CONFIG.float_cell_voltage
    for bad in (None, [], {"mode": "Turbo"}, {"last_soc_reset": "soon"}, {"last_soc_reset": 1e300}):
        assert chargemode.from_saved(bad, 0.0, 1_700_000_000.0).mode in (Mode.BULK, Mode.FLOAT)
    assert chargemode.from_saved({"mode": "Turbo"}, 0.0, 0.0).mode is Mode.BULK


def test_the_diagram_is_drawn_from_the_table() -> None:
    source = chargemode.mermaid()
    for transition in chargemode.TRANSITIONS:
        assert f"{transition['source']} --> {transition['dest']}: {transition['text']}" in source


def test_sensors_faulty_by_range_or_jump_and_the_mosfet_sensor_apart() -> None:
    cfg = dataclasses.replace(CONFIG, mosfet_temperature_sensor=1)
    roles = sensor_roles(None, cfg, 3)
    assert roles == ((2, 3), 1)
    judged, memory = judge_temperatures((45.0, 20.0, -273.1), 0.0, roles)
    assert judged.cells == (20.0,) and judged.mosfet == 45.0 and judged.faults == (3,)
    judged, memory = judge_temperatures((46.0, 31.0, 21.0), 1.0, roles, memory)
    assert judged.faults == (2,) and judged.cells == (21.0,)  # 20 -> 31 degC in 1 s: a glitch
    judged, _ = judge_temperatures((46.0, 31.0, 21.0), 60.0, roles, memory)
    assert judged.faults == () and judged.cells == (31.0, 21.0)  # a minute later it is plausible


def test_a_warm_mosfet_is_not_a_warm_cell() -> None:
    """50 degC on the MOSFET sensor: with the sensor named, the MOSFET curve (full current below 70 degC)
    applies instead of the cell curve (which halves the DCL at 50 degC by default)."""
    packs = [status(1, temperatures=(50.0, 25.0)), status(2, temperatures=(50.0, 25.0))]
    snapshot = aggregate(0.0, packs)
    two = specs((50, 50), (50, 50))
    as_cell = target_limits(snapshot, ImbalanceStatus(), two, CONFIG)
    named = target_limits(
        snapshot, ImbalanceStatus(), two, dataclasses.replace(CONFIG, mosfet_temperature_sensor=1)
    )
    assert as_cell.discharge_current < 100 and named.discharge_current == 100


def test_the_checked_in_diagram_is_the_tables() -> None:
    from pathlib import Path

    checked_in = Path(__file__).resolve().parents[2] / "diagrams" / "charge-modes.mmd"
    assert checked_in.read_text(encoding="utf-8") == chargemode.mermaid(), "run: dbus-btbattery diagram"


def test_a_short_run_writes_no_state_file_a_long_one_keeps_its_reference() -> None:
    """The first start's SoC-reset reference is saved after an hour of running, not on the first tick: a
    test or demo that gave no state file leaves none behind. A mode change is saved at once."""
    from btbattery.pipeline.streams import FIRST_SAVE_AFTER, BankCycle

    saved: list[tuple[ChargeState, float]] = []
    cycle = BankCycle(specs((50, 50), (50, 50)), CONFIG, 0.0, None, lambda s, t: saved.append((s, t)))
    low = bank((3.3, 3.3, 3.3, 3.3), (3.3, 3.3, 3.3, 3.3), soc=50)
    cycle._step_charge_mode(low, 1.0)
    cycle._step_charge_mode(low, FIRST_SAVE_AFTER - 1)
    assert saved == []
    cycle._step_charge_mode(low, FIRST_SAVE_AFTER)
    assert len(saved) == 1 and saved[0][0].last_soc_reset == 1.0
    cycle._step_charge_mode(bank(FULL, FULL), FIRST_SAVE_AFTER + 1)
    assert len(saved) == 2 and saved[1][0].mode is Mode.ABSORPTION


def test_cells_hovering_at_the_limit_do_not_flip_the_cvl_held_text() -> None:
    """The penalty method holds the highest cell at MAX_CELL_VOLTAGE, where it reads 3.451 V one poll and
    3.450 V the next. Before, /Info/ChargeMode flipped with it every tick ("Bulk (CVL held by the cells)" /
    "Bulk"); now the cells hold the CVL until the highest cell is CELL_LIMIT_HYSTERESIS below the limit."""
    limit = CONFIG.max_cell_voltage
    hover = {
        t: reading(1, t + 0.4, cells=(3.30,) * 15 + (round(limit + 0.001 * (t % 2 == 0), 3),))
        for t in range(10, 40)
    }
    below = (3.30,) * 15 + (limit - CELL_LIMIT_HYSTERESIS,)
    settled = {t: reading(1, t + 0.4, cells=below) for t in range(40, 80)}
    states, _ = run_pipeline([hover | settled], 81.0)
    held = [states[float(t)].charge_mode.endswith("(CVL held by the cells)") for t in range(11, 81)]
    assert held == [True] * 30 + [False] * 40
    cvls = [states[float(t)].limits.charge_voltage for t in range(11, 41)]
    assert all(later <= earlier for earlier, later in itertools.pairwise(cvls))  # never rises meanwhile
