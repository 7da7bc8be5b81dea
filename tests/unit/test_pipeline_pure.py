"""Bank aggregation, freshness, imbalance hysteresis and limit rules on hand-made packs."""

from __future__ import annotations

import dataclasses

from bankgen import banks
from hypothesis import given, settings

from btbattery.config import default_config
from btbattery.model import (
    BasicInfo,
    CellVoltages,
    ImbalanceStatus,
    LinkEvent,
    LinkState,
    PackReading,
    PackStatus,
    Protection,
)
from btbattery.pipeline.aggregate import PackFeed, aggregate, feed_error, feed_link, feed_reading, judge_pack
from btbattery.pipeline.imbalance import Flag, ImbalanceDetector, step_flag
from btbattery.pipeline.limits import LimitMemory, interpolate, next_limits, target_limits

CONFIG = default_config()


def info(**changes) -> BasicInfo:
    base = BasicInfo(
        voltage=53.0,
        current=0.0,
        remaining_capacity=50.0,
        nominal_capacity=100.0,
        cycles=10,
        production_date=None,
        balance_bits=0,
        protection=Protection.NONE,
        software_version=3.8,
        soc=50,
        charge_fet=True,
        discharge_fet=True,
        cell_count=4,
        temperatures=(25.0, 26.0),
    )
    return dataclasses.replace(base, **changes)


def status(pack: int, fresh: bool = True, active: bool = True, cells=(3.25, 3.26, 3.27, 3.25), **changes):
    reading = PackReading(pack, f"A4:C1:37:00:00:0{pack}", 0.0, info(**changes), CellVoltages(cells))
    return PackStatus(pack, reading.address, LinkState.POLLING, reading, fresh, active)


def specs(*limits: tuple[float, float]):
    return [CONFIG.pack_spec(n, f"A4:C1:37:00:00:0{n}") for n in range(1, len(limits) + 1)] and [
        dataclasses.replace(CONFIG.pack_spec(n, f"A4:C1:37:00:00:0{n}"), charge_limit=c, discharge_limit=d)
        for n, (c, d) in enumerate(limits, start=1)
    ]


# ---- aggregation ----


def test_aggregate_rolls_active_packs_into_one_battery() -> None:
    packs = [
        status(1, voltage=53.0, current=10.0, soc=40, nominal_capacity=100, remaining_capacity=40),
        status(2, voltage=53.2, current=-4.0, soc=70, nominal_capacity=200, remaining_capacity=140,
               cells=(3.30, 3.45, 3.28, 3.31), balance_bits=2, charge_fet=False, temperatures=(31.0,)),
        status(3, active=False, fresh=False, voltage=10.0, soc=0),  # out of the bank: ignored
    ]  # fmt: skip
    bank = aggregate(5.0, packs)
    assert (bank.total_packs, bank.active_packs) == (3, 2)
    assert bank.voltage == 53.1 and bank.current == 6.0 and abs(bank.power - 318.6) < 1e-9
    assert bank.remaining_capacity == 180 and bank.nominal_capacity == 300
    assert bank.soc == (40 * 100 + 70 * 200) / 300  # capacity-weighted
    assert (bank.max_cell_voltage, bank.max_cell_id) == (3.45, "2-2")
    assert (bank.min_cell_voltage, bank.min_cell_id) == (3.25, "1-1")  # first of equals
    assert (bank.min_temperature, bank.max_temperature, bank.temperature) == (25.0, 31.0, 31.0)
    assert bank.balancing and not bank.charge_fet and bank.discharge_fet
    assert (bank.blocking_charge, bank.blocking_discharge) == (1, 0)


def test_aggregate_without_active_packs_is_empty() -> None:
    bank = aggregate(1.0, [status(1, active=False, fresh=False)])
    assert bank.active_packs == 0 and bank.voltage is None and bank.soc is None and bank.max_cell_id is None


@settings(max_examples=60, deadline=None)
@given(banks())
def test_aggregate_values_stay_within_the_packs(bank) -> None:
    snapshot, _ = bank
    active = [s for s in snapshot.packs if s.active]
    assert snapshot.active_packs == len(active)
    if active:
        socs = [s.reading.info.soc for s in active]
        assert min(socs) - 1e-9 <= snapshot.soc <= max(socs) + 1e-9
        if snapshot.max_cell_voltage is not None:
            assert snapshot.min_cell_voltage <= snapshot.max_cell_voltage
            pack, cell = map(int, snapshot.max_cell_id.split("-"))
            assert snapshot.packs[pack - 1].reading.cells.voltages[cell - 1] == snapshot.max_cell_voltage


# ---- freshness ----


def feed_at(time: float) -> PackFeed:
    reading = PackReading(1, "A4:C1:37:00:00:01", 0.0, info(), CellVoltages((3.3,) * 4))
    return feed_reading(PackFeed(1, reading.address), reading, time)


def test_pack_is_fresh_then_stale_then_out_by_age() -> None:
    feed = feed_at(10.0)
    stale, grace = CONFIG.pack_stale_after, CONFIG.pack_dropout_grace
    assert judge_pack(feed, 10.0 + stale - 0.01, stale, grace).fresh
    late = judge_pack(feed, 10.0 + stale, stale, grace)
    assert not late.fresh and late.active
    assert not judge_pack(feed, 10.0 + stale + grace, stale, grace).active


def test_lost_link_makes_a_pack_stale_at_once_and_fresh_data_brings_it_back() -> None:
    stale, grace = 5.0, 10.0
    feed = feed_link(feed_at(10.0), LinkEvent(1, "x", 0, LinkState.BACKOFF, "link lost"), 11.0)
    feed = feed_link(feed, LinkEvent(1, "x", 0, LinkState.CONNECTING), 13.0)  # same outage: grace not reset
    assert not judge_pack(feed, 11.0, stale, grace).fresh
    assert judge_pack(feed, 20.9, stale, grace).active and not judge_pack(feed, 21.0, stale, grace).active
    feed = feed_link(feed, LinkEvent(1, "x", 0, LinkState.POLLING), 30.0)
    assert not judge_pack(feed, 30.0, stale, grace).active  # link up is not enough: it needs fresh data
    back = feed_reading(feed, dataclasses.replace(feed.reading, time=30.5), 31.0)
    assert judge_pack(back, 31.0, stale, grace).fresh
    leftover = feed_reading(feed, dataclasses.replace(feed.reading, time=10.5), 31.0)  # polled before 11.0
    assert not judge_pack(leftover, 31.0, stale, grace).active


def test_reading_without_cells_keeps_the_previous_cells() -> None:
    feed = feed_at(1.0)
    bare = PackReading(1, "A4:C1:37:00:00:01", 0.0, info(), None)
    assert feed_reading(feed, bare, 2.0).reading.cells == feed.reading.cells


def test_stream_error_is_a_lost_link() -> None:
    feed = feed_error(feed_at(1.0), RuntimeError("boom"), 2.0)
    assert feed.link_state is LinkState.OFFLINE and "boom" in feed.reason
    assert not judge_pack(feed, 2.0, 5.0, 10.0).fresh


# ---- imbalance ----


def test_flag_needs_the_minimum_duration_both_ways() -> None:
    flag = Flag()
    for t in range(0, 10):
        flag = step_flag(flag, 12.0, float(t), on=10, off=7, min_duration=10)
    assert not flag.on
    flag = step_flag(flag, 12.0, 10.0, 10, 7, 10)
    assert flag.on
    flag = step_flag(flag, 8.0, 11.0, 10, 7, 10)  # between the thresholds: stays on
    assert flag.on and flag.pending_since is None
    assert step_flag(flag, None, 12.0, 10, 7, 10).on  # nothing to judge: hold


def run_detector(config, soc_gap_at, until: float) -> list[tuple[float, ImbalanceStatus]]:
    detector = ImbalanceDetector(config)
    out = []
    for t in range(int(until)):
        gap = soc_gap_at(t)
        packs = [status(1, soc=50), status(2, soc=50 + gap)]
        out.append((float(t), detector.update(aggregate(float(t), packs))))
    return out


def first_time(history, predicate) -> float | None:
    return next((t for t, s in history if predicate(s)), None)


def test_soc_imbalance_rises_within_a_minute_and_clears_with_hysteresis() -> None:
    history = run_detector(CONFIG, lambda t: 15 if 100 <= t < 300 else 0, 450)
    raised = first_time(history, lambda s: s.soc)
    assert raised is not None and 100 < raised <= 160
    cleared = first_time([(t, s) for t, s in history if t > raised], lambda s: not s.soc)
    assert cleared is not None and 300 < cleared <= 360
    assert not any(s.voltage or s.current for _, s in history)


def test_a_transient_of_a_few_seconds_never_raises_a_flag() -> None:
    history = run_detector(CONFIG, lambda t: 40 if t % 60 >= 55 else 0, 400)
    assert not any(s.soc for _, s in history)
    assert max(s.soc_spread or 0 for _, s in history) == 0  # the median ignores short spikes


def test_soc_detection_can_be_disabled() -> None:
    config = dataclasses.replace(CONFIG, soc_imbalance_detection_enable=False)
    history = run_detector(config, lambda t: 30, 200)
    assert not any(s.soc for _, s in history) and history[-1][1].soc_spread == 30


def test_current_imbalance_judges_share_against_capacity_share() -> None:
    detector = ImbalanceDetector(CONFIG)
    for t in range(120):  # equal capacity, but pack 2 takes 80 % of the current
        packs = [status(1, current=4.0), status(2, current=16.0)]
        result = detector.update(aggregate(float(t), packs))
    assert result.current and abs(result.current_spread - 0.6) < 1e-9  # 80 % taken vs 50 % fair: 0.6 more


# ---- limits: the rules one by one ----


def test_taper_curve_interpolates_and_is_flat_outside() -> None:
    points, fractions = CONFIG.cell_voltages_while_charging, CONFIG.max_charge_current_cv_fraction
    assert interpolate(3.0, points, fractions) == 1.0
    assert interpolate(3.6, points, fractions) == 0.0
    assert abs(interpolate(3.475, points, fractions) - 0.275) < 1e-9


def test_share_limit_keeps_the_busiest_pack_within_its_limit() -> None:
    packs = [status(1, current=30.0), status(2, current=10.0)]  # pack 1 takes 75 %
    limits = target_limits(aggregate(0.0, packs), ImbalanceStatus(), specs((50, 100), (50, 100)), CONFIG)
    assert abs(limits.charge_current - 50 / 0.75) < 1e-9
    assert any("measured shares" in r for r in limits.reasons)


def test_capacity_shares_are_the_prior_at_low_current() -> None:
    packs = [status(1, nominal_capacity=200.0), status(2, nominal_capacity=100.0)]
    limits = target_limits(aggregate(0.0, packs), ImbalanceStatus(), specs((50, 100), (50, 100)), CONFIG)
    assert abs(limits.charge_current - 50 / (2 / 3)) < 1e-9


def test_stale_pack_no_longer_counts_and_fet_off_pack_adds_nothing() -> None:
    packs = [status(1), status(2, fresh=False), status(3, charge_fet=False)]
    limits = target_limits(
        aggregate(0.0, packs), ImbalanceStatus(), specs((30, 40), (30, 40), (30, 40)), CONFIG
    )
    assert limits.charge_current == 30 and limits.discharge_current == 80
    assert "pack 2 stale" in limits.reasons and "charge FET off: pack 3" in limits.reasons


def test_protection_and_high_cells_stop_or_taper_charging() -> None:
    two = specs((50, 50), (50, 50))
    hot = [status(1), status(2, protection=Protection.CHARGE_OVERTEMPERATURE)]
    assert target_limits(aggregate(0.0, hot), ImbalanceStatus(), two, CONFIG).charge_current == 0
    high = [status(1), status(2, cells=(3.3, 3.5, 3.3, 3.3))]  # taper 0.05 for pack 2
    limits = target_limits(aggregate(0.0, high), ImbalanceStatus(), two, CONFIG)
    assert abs(limits.charge_current - 2.5 * 2) < 1e-9  # capacity share 1/2 -> 2.5 A / 0.5
    # Penalty method: the lowest measured pack voltage (pack 1's cells, 13.03 V) minus the excess of pack 2's
    # 3.5 V cell over 3.45 V: below the bank, so the chargers stop pushing.
    assert abs(limits.charge_voltage - (13.03 - 0.05)) < 1e-9


def test_imbalance_lowers_cvl_and_derates_ccl() -> None:
    packs = [status(1), status(2)]
    limits = target_limits(
        aggregate(0.0, packs), ImbalanceStatus(soc=True), specs((50, 50), (50, 50)), CONFIG
    )
    assert abs(limits.charge_voltage - 4 * (3.45 - CONFIG.imbalance_cvl_step)) < 1e-9
    assert limits.charge_current == 100 * CONFIG.imbalance_charge_fraction


def test_limits_fall_at_once_rise_slowly_and_keep_cvl_without_packs() -> None:
    from btbattery.model import ChargeLimits

    memory = LimitMemory(ChargeLimits(55.2, 10.0, 80.0))
    limits, memory = next_limits(memory, ChargeLimits(56.0, 100.0, 20.0), 100.0, 1.0, CONFIG)
    assert limits.charge_current == 10.0 + CONFIG.current_limit_rise_rate
    assert limits.discharge_current == 20.0
    assert limits.charge_voltage == 55.2 + CONFIG.cvl_recovery_rate_v_per_sec  # never cut: no hold
    assert next_limits(memory, ChargeLimits(0.0, 0.0, 0.0), 101.0, 1.0, CONFIG, True)[0].charge_voltage == (
        limits.charge_voltage
    )
    first = ChargeLimits(55.2, 100.0, 150.0)
    assert next_limits(LimitMemory(), first, 0.0, 1.0, CONFIG)[0] == first  # first limits after start


def test_cvl_holds_after_a_cut_then_rises_at_the_recovery_rate() -> None:
    from btbattery.model import ChargeLimits

    memory = LimitMemory(ChargeLimits(55.2, 50.0, 50.0))
    limits, memory = next_limits(memory, ChargeLimits(54.0, 50.0, 50.0), 10.0, 1.0, CONFIG)
    assert limits.charge_voltage == 54.0  # falls at once
    for t in range(11, 10 + int(CONFIG.cvl_recovery_hold_sec)):
        limits, memory = next_limits(memory, ChargeLimits(55.2, 50.0, 50.0), float(t), 1.0, CONFIG)
        assert limits.charge_voltage == 54.0, t  # held
    t = 10.0 + CONFIG.cvl_recovery_hold_sec
    limits, memory = next_limits(memory, ChargeLimits(55.2, 50.0, 50.0), t, 1.0, CONFIG)
    assert abs(limits.charge_voltage - (54.0 + CONFIG.cvl_recovery_rate_v_per_sec)) < 1e-9


def test_a_current_limit_cut_to_zero_by_a_rule_waits_for_threshold_and_hold() -> None:
    """The bottom-of-discharge sag: DCL 0 by the cells, the cells recover a little (below the threshold),
    then enough, and the DCL comes back only after DCL_RECOVERY_HOLD_SEC above the threshold."""
    from btbattery.model import ChargeLimits

    threshold = CONFIG.discharge_current_recovery_threshold_percent * CONFIG.max_battery_discharge_current
    memory = LimitMemory(ChargeLimits(55.2, 50.0, 100.0))
    limits, memory = next_limits(memory, ChargeLimits(55.2, 50.0, 0.0), 0.0, 1.0, CONFIG)
    assert limits.discharge_current == 0.0 and memory.discharge_held
    limits, memory = next_limits(memory, ChargeLimits(55.2, 50.0, threshold / 2), 1.0, 1.0, CONFIG)
    assert limits.discharge_current == 0.0 and limits.discharge_reason.endswith("recovery hold")
    for t in range(2, 2 + int(CONFIG.dcl_recovery_hold_sec)):
        limits, memory = next_limits(memory, ChargeLimits(55.2, 50.0, 100.0), float(t), 1.0, CONFIG)
        assert limits.discharge_current == 0.0, t
    t = 2.0 + CONFIG.dcl_recovery_hold_sec
    limits, memory = next_limits(memory, ChargeLimits(55.2, 50.0, 100.0), t, 1.0, CONFIG)
    assert limits.discharge_current == CONFIG.current_limit_rise_rate  # then it ramps


def test_a_zero_from_an_outage_recovers_by_the_rise_rate_alone() -> None:
    from btbattery.model import ChargeLimits

    memory = LimitMemory(ChargeLimits(55.2, 50.0, 100.0))
    limits, memory = next_limits(memory, ChargeLimits(0.0, 0.0, 0.0), 0.0, 1.0, CONFIG, outage=True)
    assert limits.discharge_current == 0.0 and not memory.discharge_held
    limits, memory = next_limits(memory, ChargeLimits(55.2, 50.0, 100.0), 1.0, 1.0, CONFIG)
    assert limits.discharge_current == CONFIG.current_limit_rise_rate
