"""The safety invariants of design.md, over generated banks of 1-16 packs."""

from __future__ import annotations

import dataclasses
import math

from bankgen import banks, close_enough
from hypothesis import given, settings
from hypothesis import strategies as st

from btbattery.config import default_config
from btbattery.model import CHARGE_BLOCKING, DISCHARGE_BLOCKING, ChargeLimits, ImbalanceStatus, Protection
from btbattery.pipeline.limits import PACK_CURRENT_NOISE, interpolate, rate_limit, target_limits

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


def check_cell_voltage_stops(snapshot, specs, config, limits) -> None:
    over = any(
        s.reading.info.protection & Protection.CELL_OVERVOLTAGE or max(cells_of(s)) >= config.cell_overvoltage
        for s in active(snapshot)
    )
    under = any(
        s.reading.info.protection & Protection.CELL_UNDERVOLTAGE
        or min(cells_of(s)) <= config.cell_undervoltage
        for s in active(snapshot)
    )
    if over:
        assert limits.charge_current == 0
    if under:
        assert limits.discharge_current == 0


def check_no_active_pack(snapshot, specs, config, limits) -> None:
    if snapshot.active_packs == 0 or not any(s.fresh for s in snapshot.packs):
        assert limits.charge_current == limits.discharge_current == 0


def check_cvl(snapshot, specs, config, limits) -> None:
    if snapshot.cells_per_pack:
        assert close_enough(limits.charge_voltage, snapshot.cells_per_pack * config.max_cell_voltage)
        assert limits.charge_voltage >= snapshot.cells_per_pack * config.min_charge_cell_voltage - 1e-9
    else:
        assert limits.charge_voltage == 0


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
        ]  # fmt: skip
        if min(fractions) == 0:
            assert limits.charge_current == 0, status.pack


INVARIANTS = (
    check_finite,
    check_sum_of_enabled_active_packs,
    check_known_shares,
    check_cell_voltage_stops,
    check_no_active_pack,
    check_cvl,
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
    assert seen >= wanted | {"capacity shares", "over-voltage", "stale", "big bank"}


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(banks(max_packs=6), imbalances), min_size=2, max_size=12), st.floats(0.1, 5))
def test_rate_limited_limits_fall_at_once_and_rise_slowly(sequence, dt) -> None:
    previous: ChargeLimits | None = None
    for (snapshot, specs), imbalance in sequence:
        target = target_limits(snapshot, imbalance, specs, CONFIG)
        limits = rate_limit(previous, target, dt, CONFIG)
        assert limits.charge_current <= target.charge_current  # never above what the bank allows now
        assert limits.discharge_current <= target.discharge_current
        if target.charge_voltage:
            assert limits.charge_voltage <= target.charge_voltage
        if previous is not None:
            step = CONFIG.current_limit_rise_rate * dt + 1e-9
            assert limits.charge_current - previous.charge_current <= step
            assert limits.discharge_current - previous.discharge_current <= step
            if previous.charge_voltage:
                assert (
                    limits.charge_voltage - previous.charge_voltage
                    <= CONFIG.charge_voltage_rise_rate * dt + 1e-9
                )
        previous = limits
