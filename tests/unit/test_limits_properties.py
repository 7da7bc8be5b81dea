"""The safety invariants of the README's "Charge limits", over generated banks of 1-16 packs."""

from __future__ import annotations

import dataclasses
import math

from bankgen import banks, close_enough
from hypothesis import given, settings
from hypothesis import strategies as st

from btbattery.config import default_config
from btbattery.model import CHARGE_BLOCKING, DISCHARGE_BLOCKING, ImbalanceStatus, Protection
from btbattery.pipeline.aggregate import aggregate
from btbattery.pipeline.limits import (
    PACK_CURRENT_NOISE,
    LimitMemory,
    interpolate,
    measured_voltage,
    next_limits,
    target_limits,
)

CONFIG = default_config()
imbalances = st.builds(ImbalanceStatus, st.booleans(), st.booleans(), st.booleans())
configs = st.builds(
    lambda charge, discharge, share_min: dataclasses.replace(
        CONFIG,
        max_battery_charge_current=charge,
        max_battery_discharge_current=discharge,
        share_min_bank_current=share_min,
    ),
    st.floats(0, 1000),
    st.floats(0, 1000),
    st.floats(0, 20),
)


def active(snapshot):
    return [s for s in snapshot.packs if s.active and s.reading is not None]


def cells_of(status):
    if status.reading.cells is not None:
        return status.reading.cells.voltages
    return (status.reading.info.voltage / status.reading.info.cell_count,)


def check_finite(snapshot, specs, config, limits) -> None:
    for value in (limits.charge_voltage, limits.charge_current, limits.discharge_current):
        assert math.isfinite(value) and value >= 0


def check_sum_of_enabled_active_packs(snapshot, specs, config, limits) -> None:
    by_number = {spec.number: spec for spec in specs}
    charge_sum = sum(
        by_number[s.pack].charge_limit
        for s in active(snapshot)
        if s.reading.info.charge_fet and not s.reading.info.protection & CHARGE_BLOCKING
    )
    discharge_sum = sum(
        by_number[s.pack].discharge_limit
        for s in active(snapshot)
        if s.reading.info.discharge_fet and not s.reading.info.protection & DISCHARGE_BLOCKING
    )
    assert close_enough(limits.charge_current, charge_sum)
    assert close_enough(limits.discharge_current, discharge_sum)
    assert close_enough(limits.charge_current, config.max_battery_charge_current)
    assert close_enough(limits.discharge_current, config.max_battery_discharge_current)


def check_known_shares(snapshot, specs, config, limits) -> None:
    """With measurable shares, no pack's estimated current (its share x the bank limit) exceeds its limit."""
    by_number = {spec.number: spec for spec in specs}
    fresh = [s for s in snapshot.packs if s.fresh]
    for sign, bank_limit, own in (
        (1, limits.charge_current, lambda spec: spec.charge_limit),
        (-1, limits.discharge_current, lambda spec: spec.discharge_limit),
    ):
        total = sum(s.reading.info.current * sign for s in fresh)
        if total < max(config.share_min_bank_current, PACK_CURRENT_NOISE):
            continue  # shares not measurable
        for status in fresh:
            current = status.reading.info.current * sign
            if current > PACK_CURRENT_NOISE:
                estimated = bank_limit * current / total
                assert close_enough(estimated, own(by_number[status.pack])), (status.pack, estimated)


def last_cells_of(status):
    """The newest cells of a pack whose cells aged out (nothing when its reading still carries cells)."""
    return status.last_cells.voltages if status.last_cells is not None else ()


def check_cell_voltage_stops(snapshot, specs, config, limits) -> None:
    """A cell at a stop threshold stops that direction, also when it is the newest cell of a pack whose 0x04
    stopped answering (no fresher cells cleared it), and so does a taper at 0 on such a pack's last cells."""
    over = any(
        s.reading.info.protection & Protection.CELL_OVERVOLTAGE
        or max(cells_of(s)) >= config.cell_overvoltage
        or max(last_cells_of(s), default=0.0) >= config.cell_overvoltage
        or interpolate(max(last_cells_of(s), default=0.0), config.cell_voltages_while_charging,
                       config.max_charge_current_cv_fraction) == 0
        for s in active(snapshot)
    )  # fmt: skip
    under = any(
        s.reading.info.protection & Protection.CELL_UNDERVOLTAGE
        or min(cells_of(s)) <= config.cell_undervoltage
        or min(last_cells_of(s), default=9.0) <= config.cell_undervoltage
        or interpolate(min(last_cells_of(s), default=9.0), config.cell_voltages_while_discharging,
                       config.max_discharge_current_cv_fraction) == 0
        for s in active(snapshot)
    )  # fmt: skip
    if over:
        assert limits.charge_current == 0
    if under:
        assert limits.discharge_current == 0


def check_no_fresh_pack(snapshot, specs, config, limits) -> None:
    """Without a fresh pack nothing is charged; a DCL is left only by stale packs, derated."""
    if not any(s.fresh for s in snapshot.packs):
        assert limits.charge_current == 0
        by_number = {spec.number: spec for spec in specs}
        stale = sum(by_number[s.pack].discharge_limit for s in active(snapshot))
        assert close_enough(limits.discharge_current, stale * config.pack_dropout_discharge_fraction)


def check_cvl(snapshot, specs, config, limits) -> None:
    """Within cells x MIN_CELL_VOLTAGE .. cells x MAX_CELL_VOLTAGE, and never a valid 0 V: 0 only when no
    pack is active (unknown, kept from before by next_limits and never published as valid)."""
    if snapshot.cells_per_pack:
        assert close_enough(limits.charge_voltage, snapshot.cells_per_pack * config.max_cell_voltage)
        assert limits.charge_voltage >= snapshot.cells_per_pack * config.min_cell_voltage - 1e-9
        assert limits.charge_voltage > 0
    else:
        assert limits.charge_voltage == 0


def check_cvl_below_the_bank_while_a_cell_is_high(snapshot, specs, config, limits) -> None:
    """The penalty method: while any cell is above MAX_CELL_VOLTAGE the CVL is at or below the measured bank
    voltage (the chargers stop pushing), unless that would break the floor cells x MIN_CELL_VOLTAGE."""
    packs = active(snapshot)
    high = any(s.reading.cells is not None and max(s.reading.cells.voltages) > config.max_cell_voltage
               for s in packs)  # fmt: skip
    if high and snapshot.cells_per_pack:
        floor = snapshot.cells_per_pack * config.min_cell_voltage
        assert limits.charge_voltage <= max(snapshot.voltage, floor) + 1e-9
        assert limits.charge_voltage <= max(measured_voltage(packs), floor) + 1e-9


def check_cells_unknown_caps_cvl(snapshot, specs, config, limits) -> None:
    """A pack without cell voltages caps the CVL at its own voltage (or the floor)."""
    if not snapshot.cells_per_pack:
        return
    floor = snapshot.cells_per_pack * config.min_cell_voltage
    for status in active(snapshot):
        if status.reading.cells is None:
            assert limits.charge_voltage <= max(status.reading.info.voltage, floor) + 1e-9


def check_cvl_fits_the_smallest_pack(snapshot, specs, config, limits) -> None:
    """Whatever 0x03 claims, no active pack is asked for more than its measured cells x MAX_CELL_VOLTAGE."""
    for status in active(snapshot):
        counts = [status.reading.info.cell_count]
        if status.reading.cells is not None:
            counts.append(len(status.reading.cells.voltages))
        fewest = min(n for n in counts if n > 0)
        assert close_enough(limits.charge_voltage, fewest * config.max_cell_voltage)


def check_no_charge_into_a_pack_that_must_get_none(snapshot, specs, config, limits) -> None:
    """While shares cannot be measured, a fresh pack whose FET conducts but whose taper or temperature curve
    is at 0 still takes its part of the bank current, so the bank may not be given any."""
    fresh = [s for s in snapshot.packs if s.fresh]
    if sum(s.reading.info.current for s in fresh) >= max(config.share_min_bank_current, PACK_CURRENT_NOISE):
        return  # measured shares: check_known_shares covers them
    for status in fresh:
        info = status.reading.info
        if not info.charge_fet or info.protection & CHARGE_BLOCKING:
            continue
        fractions = [
            interpolate(max(cells_of(status)), config.cell_voltages_while_charging,
                        config.max_charge_current_cv_fraction),
            *(interpolate(t, config.temperatures_while_charging, config.max_charge_current_t_fraction)
              for t in info.temperatures),
        ] if info.temperatures else [1.0]  # fmt: skip
        if min(fractions) == 0:
            assert limits.charge_current == 0, status.pack


INVARIANTS = (
    check_finite,
    check_sum_of_enabled_active_packs,
    check_known_shares,
    check_cell_voltage_stops,
    check_no_fresh_pack,
    check_cvl,
    check_cvl_below_the_bank_while_a_cell_is_high,
    check_cells_unknown_caps_cvl,
    check_cvl_fits_the_smallest_pack,
    check_no_charge_into_a_pack_that_must_get_none,
)


def coverage_tags(snapshot, limits) -> set[str]:
    tags = {"no active" if snapshot.active_packs == 0 else "active"}
    tags.add("ccl zero" if limits.charge_current == 0 else "ccl positive")
    tags.add("dcl zero" if limits.discharge_current == 0 else "dcl positive")
    if any("share limit (measured" in r for r in limits.reasons):
        tags.add("measured shares")
    if any("share limit (capacity" in r for r in limits.reasons):
        tags.add("capacity shares")
    if any("over-voltage" in r or "overvoltage" in r for r in limits.reasons):
        tags.add("over-voltage")
    if any(not s.fresh and s.active for s in snapshot.packs):
        tags.add("stale")
    if any(max(last_cells_of(s), default=0.0) >= CONFIG.cell_overvoltage for s in active(snapshot)):
        tags.add("stale cells stop")
    if any(" above " in r for r in limits.reasons):
        tags.add("penalty")
    if any("cells unknown" in r for r in limits.reasons):
        tags.add("cells unknown")
    if len(snapshot.packs) >= 10:
        tags.add("big bank")
    return tags


def test_invariants_hold_for_generated_banks() -> None:
    """Every invariant on every generated bank; the generator must also reach the cases they are about."""
    seen: set[str] = set()

    # Small banks half the time: an all-offline bank is rare among 16 packs but must be reached every run.
    @settings(max_examples=250, deadline=None)
    @given(st.one_of(banks(), banks(max_packs=2)), imbalances, configs)
    def prop(bank, imbalance, config) -> None:
        snapshot, specs = bank
        limits = target_limits(snapshot, imbalance, specs, config)
        for check in INVARIANTS:
            check(snapshot, specs, config, limits)
        seen.update(coverage_tags(snapshot, limits))

    prop()
    wanted = {"no active", "active", "ccl zero", "ccl positive", "dcl positive", "measured shares"}
    assert seen >= wanted | {
        "capacity shares",
        "over-voltage",
        "stale",
        "big bank",
        "penalty",
        "cells unknown",
        "stale cells stop",
    }


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(banks(max_packs=6), imbalances), min_size=2, max_size=12), st.floats(0.1, 5))
def test_published_limits_fall_at_once_and_rise_slowly(sequence, dt) -> None:
    memory = LimitMemory()
    for tick, ((snapshot, specs), imbalance) in enumerate(sequence):
        previous = memory.limits
        target = target_limits(snapshot, imbalance, specs, CONFIG)
        outage = not any(s.fresh for s in snapshot.packs)
        limits, memory = next_limits(memory, target, tick * dt, dt, CONFIG, outage)
        assert limits.charge_current <= target.charge_current  # never above what the bank allows now
        assert limits.discharge_current <= target.discharge_current
        if target.charge_voltage:
            assert limits.charge_voltage <= target.charge_voltage
            check_cvl_below_the_bank_while_a_cell_is_high(snapshot, specs, CONFIG, limits)
        if previous is not None:
            step = CONFIG.current_limit_rise_rate * dt + 1e-9
            assert limits.charge_current - previous.charge_current <= step
            assert limits.discharge_current - previous.discharge_current <= step
            if previous.charge_voltage:
                assert (
                    limits.charge_voltage - previous.charge_voltage
                    <= CONFIG.cvl_recovery_rate_v_per_sec * dt + 1e-9
                )


def _with_temperatures(snapshot, pack: int, temperatures: tuple[float, ...]):
    statuses = []
    for s in snapshot.packs:
        if s.pack == pack and s.reading is not None:
            info = dataclasses.replace(s.reading.info, temperatures=temperatures)
            s = dataclasses.replace(s, reading=dataclasses.replace(s.reading, info=info))
        statuses.append(s)
    return aggregate(snapshot.time, statuses)


BROKEN = st.sampled_from([-273.1, -50.0, 101.0, 150.0, 6280.0, math.nan])


@settings(max_examples=150, deadline=None)
@given(banks(max_packs=6), BROKEN, st.data())
def test_a_broken_sensor_never_zeroes_the_bank(bank, broken, data) -> None:
    """An implausible reading is dropped: beside plausible sensors it changes nothing; as a pack's only
    sensors it leaves the pack "temperature unknown" (derated, not 0), so a bank that could be charged and
    discharged with that pack at 25 degC still can."""
    snapshot, specs = bank
    fresh = [s for s in snapshot.packs if s.fresh and s.reading is not None]
    if not fresh:
        return
    pack = data.draw(st.sampled_from(fresh))
    info = pack.reading.info
    assume_no_temperature_stop = not info.protection & (
        Protection.CHARGE_OVERTEMPERATURE | Protection.CHARGE_UNDERTEMPERATURE
        | Protection.DISCHARGE_OVERTEMPERATURE | Protection.DISCHARGE_UNDERTEMPERATURE
    )  # fmt: skip
    if not assume_no_temperature_stop:
        return
    imbalance = ImbalanceStatus()
    if info.temperatures:
        before = target_limits(snapshot, imbalance, specs, CONFIG)
        extra = _with_temperatures(snapshot, pack.pack, (*info.temperatures, broken))
        after = target_limits(extra, imbalance, specs, CONFIG)
        assert (after.charge_current, after.discharge_current) == (
            before.charge_current,
            before.discharge_current,
        )
    comfortable = target_limits(_with_temperatures(snapshot, pack.pack, (25.0,)), imbalance, specs, CONFIG)
    only_broken = target_limits(_with_temperatures(snapshot, pack.pack, (broken,)), imbalance, specs, CONFIG)
    for healthy, faulty in (
        (comfortable.charge_current, only_broken.charge_current),
        (comfortable.discharge_current, only_broken.discharge_current),
    ):
        assert healthy < 1e-9 or faulty > 0  # (a denormal limit times 0.1 may underflow to 0)


@settings(max_examples=150, deadline=None)
@given(banks(max_packs=6), st.data())
def test_a_dropout_inside_the_grace_keeps_a_dcl_when_the_last_cells_were_safe(bank, data) -> None:
    """One pack (or every pack, as when the adapter resets) loses its link: inside the grace it is stale.
    If its last readings were safe and the other packs are healthy, the DCL stays above 0."""
    snapshot, specs = bank
    before = target_limits(snapshot, ImbalanceStatus(), specs, CONFIG)
    fresh = [s for s in snapshot.packs if s.fresh]
    if before.discharge_current <= 0 or not fresh:
        return
    dropped = data.draw(st.one_of(st.just(fresh), st.lists(st.sampled_from(fresh), min_size=1, unique=True)))
    numbers = {s.pack for s in dropped}
    by_number = {spec.number: spec for spec in specs}

    def safe(status) -> bool:  # every discharge fraction above 0, FET on, no protection
        info = status.reading.info
        if info.protection or not info.discharge_fet or by_number[status.pack].discharge_limit <= 0:
            return False
        temps = info.temperatures or (25.0,)
        fractions = [
            interpolate(min(cells_of(status)), CONFIG.cell_voltages_while_discharging,
                        CONFIG.max_discharge_current_cv_fraction),
            *(interpolate(t, CONFIG.temperatures_while_discharging, CONFIG.max_discharge_current_t_fraction)
              for t in temps),
        ]  # fmt: skip
        # (a denormal limit times the dropout fraction underflows to 0: that is no limit left to keep)
        own = by_number[status.pack].discharge_limit
        kept = own * min(fractions) * CONFIG.pack_dropout_discharge_fraction
        return min(fractions) > 0 and kept > 0

    if not all(safe(s) for s in active(snapshot)):
        return
    statuses = [dataclasses.replace(s, fresh=False) if s.pack in numbers else s for s in snapshot.packs]
    after = target_limits(aggregate(snapshot.time, statuses), ImbalanceStatus(), specs, CONFIG)
    assert after.discharge_current > 0
    if not any(s.fresh for s in statuses):
        assert after.charge_current == 0
