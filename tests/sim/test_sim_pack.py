"""Simulator physics and protocol: the pack behaves like an LFP battery and answers like a JBD BMS."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from btbattery.model import BasicInfo, CellVoltages, HardwareInfo, Protection
from btbattery.protocol import jbd
from btbattery.protocol.poll import PollDecoder
from btbattery.sim.pack import PackParams, SimBank, SimPack, lfp_ocv


def pack(n: int = 1, **overrides: object) -> SimPack:
    return SimPack(PackParams(address=f"A4:C1:37:00:00:{n:02X}", **overrides), seed=7)  # type: ignore[arg-type]


def run(bank: SimBank, seconds: float, current: float, dt: float = 1.0) -> None:
    for _ in range(round(seconds / dt)):
        bank.step(dt, current)


def test_lfp_curve_is_flat_in_the_middle_with_knees_at_the_ends() -> None:
    assert 3.2 <= lfp_ocv(0.2) < lfp_ocv(0.5) < lfp_ocv(0.8) <= 3.35
    assert lfp_ocv(0.8) - lfp_ocv(0.2) < 0.1  # plateau
    assert lfp_ocv(1.0) - lfp_ocv(0.95) > 0.1  # upper knee
    assert lfp_ocv(0.05) - lfp_ocv(0.0) > 0.4  # lower knee


def test_charging_raises_soc_and_voltage() -> None:
    sim = pack(soc=50)
    bank = SimBank([sim])
    before_v, before_soc, before_ah = sim.ocv, sim.true_soc, sim.basic_info().remaining_capacity
    run(bank, 600, 50.0)
    info = sim.basic_info()
    assert sim.true_soc > before_soc + 7  # 50 A for 10 min is 8.3 Ah of 100
    assert sim.ocv > before_v
    assert info.remaining_capacity == pytest.approx(before_ah + 50 * 600 / 3600, abs=0.05)
    assert info.current == pytest.approx(50.0, abs=0.5)
    # Under charge the terminal voltage sits above the open-circuit voltage by I*R.
    assert info.voltage == pytest.approx(sim.ocv + 50 * sim.resistance, abs=0.03)


def test_discharging_lowers_soc_and_counts_cycles() -> None:
    sim = pack(soc=90, capacity_ah=10, cycles=3, discharge_limit_a=200)
    run(SimBank([sim]), 600, -100.0)  # 16.7 Ah out of a 10 Ah pack would be too much: stops at UV
    assert sim.basic_info().cycles >= 4
    assert sim.true_soc < 5


def test_parallel_pack_currents_sum_to_the_bank_current() -> None:
    bank = SimBank([pack(1, soc=40), pack(2, soc=70, resistance_ohm=0.03), pack(3, soc=55, capacity_ah=80)])
    for current in (120.0, -90.0, 0.0, 5.0):
        before = [(sim.ocv, sim.resistance) for sim in bank.packs]
        bank.step(1.0, current)
        assert sum(bank.pack_currents) == pytest.approx(current, abs=1e-9)
        assert bank.bank_current == pytest.approx(current, abs=1e-9)
        for (ocv, resistance), i in zip(before, bank.pack_currents, strict=True):
            # Every pack sees the same busbar voltage: V = OCV + I R.
            assert ocv + i * resistance == pytest.approx(bank.terminal_voltage, abs=1e-9)


def test_a_weaker_pack_takes_less_current_and_its_soc_drifts() -> None:
    strong = [pack(1, soc=60), pack(2, soc=60)]
    weak = pack(3, soc=60, capacity_ah=70, resistance_ohm=0.04, cell_spread=0.0)
    bank = SimBank([*strong, weak])
    run(bank, 1200, -150.0, dt=2.0)
    currents = bank.pack_currents
    assert abs(currents[2]) < 0.8 * abs(currents[0])  # current-share imbalance
    # Its share per Ah of capacity differs from the others', so the SoCs drift apart (SoC imbalance).
    assert abs(weak.true_soc - strong[0].true_soc) > 2.0
    assert strong[0].true_soc == pytest.approx(strong[1].true_soc, abs=1.0)
    share = currents[2] / sum(currents)
    capacity_share = 70 / 270
    assert share != pytest.approx(capacity_share, abs=0.02)


def test_circulating_current_flows_from_the_fuller_pack_at_rest() -> None:
    bank = SimBank([pack(1, soc=90), pack(2, soc=20)])
    bank.step(1.0, 0.0)
    full, empty = bank.pack_currents
    assert full < -1 and empty > 1
    assert full == pytest.approx(-empty)


def test_an_overvoltage_cell_sets_the_flag_and_opens_the_charge_fet() -> None:
    sim = pack(soc=96, cell_spread=0.0)
    sim.apply("cell_soc", {5: 100.5})
    bank = SimBank([sim])
    assert sim.basic_info().charge_fet
    run(bank, 120, 40.0)
    info = sim.basic_info()
    assert Protection.CELL_OVERVOLTAGE in info.protection
    assert not info.charge_fet and info.discharge_fet
    assert info.remaining_capacity == sim.params.capacity_ah  # gauge resynchronised to full
    # With the charge FET open the pack takes no charge current ...
    bank.step(1.0, 40.0)
    assert bank.pack_currents == (0.0,)
    # ... but can still be discharged, and the FET closes again once the cell falls below release.
    run(bank, 600, -30.0)
    assert Protection.CELL_OVERVOLTAGE not in sim.basic_info().protection
    assert sim.basic_info().charge_fet


def test_a_blocked_pack_is_left_out_of_the_current_split() -> None:
    full = pack(1, soc=96, cell_spread=0.0)
    full.apply("cell_soc", {1: 102})
    other = pack(2, soc=50)
    bank = SimBank([full, other])
    run(bank, 10, 60.0)
    assert not full.basic_info().charge_fet
    # It takes no charge; being fuller it may even discharge into the other pack (through the body diode).
    assert bank.pack_currents[0] <= 0.0
    assert sum(bank.pack_currents) == pytest.approx(60.0)
    assert Protection.CELL_OVERVOLTAGE in full.basic_info().protection


def test_undervoltage_opens_the_discharge_fet() -> None:
    sim = pack(soc=2, cell_spread=0.0)
    run(SimBank([sim]), 300, -50.0)
    info = sim.basic_info()
    assert Protection.CELL_UNDERVOLTAGE in info.protection
    assert info.charge_fet and not info.discharge_fet


def test_temperature_rises_with_current_and_relaxes_to_ambient() -> None:
    sim = pack(soc=50, heat_capacity_j_k=2000.0, charge_limit_a=300)
    bank = SimBank([sim])
    run(bank, 600, 150.0)
    hot = sim.temperature
    assert hot > 30
    run(bank, 6000, 0.0, dt=10.0)
    assert hot > sim.temperature
    assert sim.temperature == pytest.approx(25.0, abs=0.5)


def test_overtemperature_blocks_charging() -> None:
    sim = pack(soc=50, temperature_c=58.0, ambient_c=58.0)
    SimBank([sim]).step(1.0, 0.0)
    info = sim.basic_info()
    assert Protection.CHARGE_OVERTEMPERATURE in info.protection
    assert not info.charge_fet


def test_high_cells_balance_while_charging() -> None:
    sim = pack(soc=97, cell_spread=0.0)
    sim.apply("cell_soc", {3: 99.5, 7: 99.3})
    run(SimBank([sim]), 5, 10.0)
    assert sim.basic_info().balancing_cells == [3, 7]
    run(SimBank([sim]), 5, -10.0)
    assert sim.basic_info().balance_bits == 0  # only while charging


def test_respond_answers_the_three_registers_through_the_real_decoder() -> None:
    sim = pack(soc=60)
    SimBank([sim]).step(1.0, 20.0)
    decoder = PollDecoder(1, sim.params.address)
    readings = []
    for request in (jbd.HARDWARE_REQUEST, jbd.BASIC_INFO_REQUEST, jbd.CELL_VOLTAGES_REQUEST):
        chunks = sim.notifications(request)
        assert chunks and all(len(c) <= 20 for c in chunks)
        assert b"".join(chunks) == sim.respond(request)
        for chunk in chunks:
            readings += decoder.feed(chunk, 1.0)
    (reading,) = readings
    assert reading.info == sim.basic_info()
    assert reading.cells == sim.cell_voltages()
    assert decoder.hardware == HardwareInfo(sim.params.model)
    assert isinstance(reading.info, BasicInfo) and isinstance(reading.cells, CellVoltages)
    assert len(reading.cells.voltages) == 16


def test_respond_ignores_what_a_bms_would_ignore() -> None:
    sim = pack()
    assert sim.respond(b"\x00\x01garbage") is None
    assert sim.respond(jbd.build_request(0xE1, b"\x00\x00", op=jbd.WRITE)) is None
    assert sim.respond(jbd.build_request(0x06)) is None
    assert sim.notifications(jbd.build_request(0x06)) == []


def test_same_seed_same_answers_different_seed_different_noise() -> None:
    def trace(seed: int) -> list[bytes]:
        sims = [SimPack(PackParams(address=f"A4:C1:37:00:00:0{i}", soc=50 + i), seed=seed) for i in (1, 2)]
        bank = SimBank(sims)
        out = []
        for step in range(50):
            bank.step(1.0, 80.0 if step < 25 else -60.0)
            out += [s.respond(jbd.CELL_VOLTAGES_REQUEST) or b"" for s in sims]
            out += [s.respond(jbd.BASIC_INFO_REQUEST) or b"" for s in sims]
        return out

    assert trace(1) == trace(1)
    assert trace(1) != trace(2)


def test_changes_apply_to_parameters_and_state() -> None:
    sim = pack(soc=50)
    r = sim.resistance
    sim.apply("resistance_ohm", 0.06)
    assert sim.resistance == pytest.approx(3 * r)
    sim.apply("capacity_ah", 50.0)
    assert sim.basic_info().nominal_capacity == 50.0
    assert sim.basic_info().remaining_capacity == pytest.approx(25.0)
    sim.apply("soc", 80)
    assert sim.true_soc == pytest.approx(80, abs=0.5)
    with pytest.raises(ValueError, match="cell_count"):
        sim.apply("cell_count", 8)


bank_packs = st.lists(
    st.tuples(
        st.floats(1, 99),  # soc %
        st.floats(0.005, 0.2),  # resistance
        st.sampled_from([Protection.NONE, Protection.CELL_OVERVOLTAGE, Protection.CELL_UNDERVOLTAGE]),
    ),
    min_size=1,
    max_size=5,
)


@settings(max_examples=150, deadline=None)
@given(bank_packs, st.floats(-400, 400))
def test_the_current_split_obeys_physics_and_the_fets(spec: list, bank_current: float) -> None:
    sims = []
    for n, (soc, resistance, protection) in enumerate(spec, start=1):
        sim = pack(n, soc=soc, resistance_ohm=resistance, cell_spread=0.0)
        sim.protection = protection  # what the FETs allow is all the split looks at
        sims.append(sim)
    bank = SimBank(sims)
    before = [(s.ocv, s.resistance, s.fet_allows_charge, s.fet_allows_discharge) for s in sims]
    bank.step(0.001, bank_current)
    for (ocv, resistance, charge, discharge), current in zip(before, bank.pack_currents, strict=True):
        assert charge or current <= 0
        assert discharge or current >= 0
        if current != 0:  # a conducting pack sits on the busbar: V = OCV + I R
            assert ocv + current * resistance == pytest.approx(bank.terminal_voltage, abs=1e-6)
    reachable = (
        bank_current == 0
        or (bank_current > 0 and any(c for _, _, c, _ in before))
        or (bank_current < 0 and any(d for _, _, _, d in before))
    )
    if reachable:
        assert sum(bank.pack_currents) == pytest.approx(bank_current, abs=1e-6)
    else:
        assert bank.pack_currents == (0.0,) * len(sims)


def test_a_huge_current_saturates_the_register_instead_of_breaking_the_answer() -> None:
    sim = pack(soc=50, charge_limit_a=1000)
    SimBank([sim]).step(0.1, 500.0)
    assert sim.basic_info().current == 327.67
    assert sim.respond(jbd.BASIC_INFO_REQUEST) is not None


def test_the_bms_judges_temperature_by_its_ntcs_only() -> None:
    """A broken NTC reads -273.1 degC (raw 0) and the BMS trips on it; a pack with no NTC fitted cannot see
    the cold at all (what the issue-10 review found: no protection, no derating)."""
    broken = pack(1)
    broken.apply("ntc_fault", {1: -273.1})
    broken.step(1.0, 10.0)
    assert broken.basic_info().temperatures[0] == -273.1
    assert broken.protection & Protection.CHARGE_UNDERTEMPERATURE and not broken.fet_allows_charge
    broken.apply("ntc_fault", {1: None})
    broken.step(1.0, 0.0)
    assert not broken.protection & Protection.CHARGE_UNDERTEMPERATURE
    blind = pack(2, ntc_count=0, temperature_c=-10.0, ambient_c=-10.0)
    blind.step(1.0, 10.0)
    assert blind.basic_info().temperatures == () and blind.fet_allows_charge
