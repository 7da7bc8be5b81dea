"""Limit paths found in the second safety review: each test pins one way a limit could have gone up."""

from __future__ import annotations

from reactivex.testing import ReactiveTest, TestScheduler
from test_pipeline_pure import CONFIG, info, specs, status

from btbattery.model import CellVoltages, ImbalanceStatus, PackReading
from btbattery.pipeline.aggregate import PackFeed, aggregate, feed_reading
from btbattery.pipeline.limits import target_limits
from btbattery.pipeline.streams import BankCycle, build_pipeline


def test_pack_tapered_to_zero_with_its_fet_on_still_takes_its_capacity_share() -> None:
    """A pack whose highest cell reached the end of the taper (3.55 V: limit 0 A, below over-voltage) still
    has its charge FET on, so in parallel it takes its share of whatever the bank is given. Below the share
    current that share is its capacity share; the bank limit must therefore be 0, not the other pack's."""
    full = status(1, cells=(3.40, 3.56, 3.40, 3.40))  # taper fraction 0, no protection, FET on
    empty = status(2, cells=(3.30, 3.30, 3.30, 3.30))
    limits = target_limits(
        aggregate(0.0, [full, empty]), ImbalanceStatus(), specs((50, 50), (50, 50)), CONFIG
    )
    assert limits.charge_current == 0.0
    cold = status(1, temperatures=(-1.0,))  # temperature fraction 0 at 0 degC and below, FET on
    limits = target_limits(
        aggregate(0.0, [cold, empty]), ImbalanceStatus(), specs((50, 50), (50, 50)), CONFIG
    )
    assert limits.charge_current == 0.0


def test_pack_with_its_fet_off_takes_no_share() -> None:
    """The other side of the rule: a pack that cannot take current (FET off) leaves the bank to the others."""
    off = status(1, charge_fet=False)
    limits = target_limits(
        aggregate(0.0, [off, status(2)]), ImbalanceStatus(), specs((50, 50), (50, 50)), CONFIG
    )
    assert limits.charge_current == 50.0


def test_cells_are_carried_over_a_missing_cell_register_only_while_they_are_young() -> None:
    """A poll without 0x04 keeps the previous cells for a moment (a flaky register must not hide the highest
    cell), but not for ever: cells from long ago (the 0x04 stopped answering, or the pack comes back after
    an outage without it) would keep the taper and the over-voltage stop on a cell level long left."""
    young = PackReading(1, "A4:C1:37:00:00:01", 0.0, info(voltage=13.2), CellVoltages((3.30,) * 4))
    feed = feed_reading(PackFeed(1, young.address), young, 100.0, cells_max_age=5.0)
    bare = PackReading(1, young.address, 0.0, info(voltage=14.2), None)
    assert feed_reading(feed, bare, 104.0, cells_max_age=5.0).reading.cells == young.cells
    # A chain of bare polls does not renew the old cells' age.
    chained = feed_reading(feed_reading(feed, bare, 104.0, cells_max_age=5.0), bare, 106.0, cells_max_age=5.0)
    assert chained.reading.cells is None
    old = feed_reading(feed, bare, 3700.0, cells_max_age=5.0)
    assert old.reading.cells is None  # judged on its mean cell voltage (14.2 / 4) again


def test_pipeline_forgets_cells_older_than_the_stale_age() -> None:
    """Through the Rx wiring: after PACK_STALE_AFTER seconds of polls without 0x04 the pack's cell paths go
    invalid, and the pack is stale for the limits (issue 16: the mean cell voltage hides the highest cell),
    while its 0x03 values still count in the bank."""
    scheduler = TestScheduler()
    spec = CONFIG.pack_spec(1, "A4:C1:37:00:00:01")
    with_cells = PackReading(1, spec.address, 0.0, info(voltage=13.2), CellVoltages((3.30,) * 4))
    without = PackReading(1, spec.address, 0.0, info(voltage=14.2), None)  # 3.55 V a cell: taper to 0
    readings = scheduler.create_hot_observable(
        ReactiveTest.on_next(0.5, with_cells), *(ReactiveTest.on_next(t + 0.5, without) for t in range(1, 30))
    )
    out: list = []
    build_pipeline([spec], [readings], [scheduler.create_hot_observable()], CONFIG, scheduler).subscribe(
        out.append
    )
    scheduler.advance_to(30.0)
    last = out[-1]
    pack = last.snapshot.packs[0]
    assert pack.active and not pack.fresh and pack.reading.cells is None
    assert last.limits.charge_current == 0.0  # before: full current on the 3.30 V cells of t=0.5
    assert "pack 1 stale" in last.limits.reasons


def test_cvl_counts_the_cells_a_pack_measures_when_its_0x03_claims_more() -> None:
    """0x03 says 5 cells in series, 0x04 measures 4: one of them is wrong, and only the smaller count keeps
    the CVL from asking a 4-cell pack for 5 x MAX_CELL_VOLTAGE (4.3 V a cell)."""
    packs = [status(1, cell_count=5), status(2, cell_count=5)]
    bank = aggregate(0.0, packs)
    assert bank.cells_per_pack == 4
    limits = target_limits(bank, ImbalanceStatus(), specs((50, 50), (50, 50)), CONFIG)
    assert limits.charge_voltage <= 4 * CONFIG.max_cell_voltage + 1e-9


def test_a_pack_claiming_zero_cells_does_not_blank_the_cvl() -> None:
    """A 0x03 with a cell count of 0 (a glitch) must not make the CVL unknown for the bank: the rate limiter
    would then hold the previous CVL instead of following the highest cell down."""
    glitch = status(1, cell_count=0, cells=(3.50, 3.60, 3.50, 3.50))  # above MAX_CELL_VOLTAGE
    bank = aggregate(0.0, [glitch, status(2)])
    assert bank.cells_per_pack == 4
    limits = target_limits(bank, ImbalanceStatus(), specs((50, 50), (50, 50)), CONFIG)
    assert 0 < limits.charge_voltage < 4 * CONFIG.max_cell_voltage


def test_a_non_finite_reading_lowers_the_limit_instead_of_dropping_out_of_the_minimum() -> None:
    """The wire cannot carry NaN, but a bug upstream could. A NaN temperature is a faulty sensor: the pack's
    temperature is unknown and its limits take the TEMPERATURE_UNKNOWN fractions (capacity shares of 1/2 then
    bound the bank by that pack); a NaN current made every measured share NaN, and NaN shares dropped out of
    the share limit altogether."""
    nan = float("nan")
    odd = status(1, temperatures=(nan,))
    limits = target_limits(
        aggregate(0.0, [odd, status(2)]), ImbalanceStatus(), specs((50, 50), (50, 50)), CONFIG
    )
    assert limits.charge_current == 50 * CONFIG.temperature_unknown_charge_fraction / 0.5
    assert limits.discharge_current == 50 * CONFIG.temperature_unknown_discharge_fraction / 0.5
    busy = [status(1, current=nan), status(2, current=30.0)]  # shares cannot be measured: capacity shares
    limits = target_limits(aggregate(0.0, busy), ImbalanceStatus(), specs((10, 50), (50, 50)), CONFIG)
    assert limits.charge_current == 20.0  # pack 1 takes half: 10 A / 0.5 (before: 60 A, the sum)


def test_a_pack_reporting_no_capacity_is_not_assumed_to_take_no_current() -> None:
    """A BMS whose design capacity is unset reports 0 Ah, yet the pack still takes current. Its capacity share
    is unknown, so it is assumed as large as the largest known one, never 0 (which let the CCL rest on the
    other packs alone: 100 A here, a third of which a real 100 Ah pack limited to 20 A would take)."""
    packs = [status(1, nominal_capacity=200.0), status(2, nominal_capacity=0.0)]
    limits = target_limits(aggregate(0.0, packs), ImbalanceStatus(), specs((100, 100), (20, 20)), CONFIG)
    assert limits.charge_current == 20.0 and limits.discharge_current == 20.0
    unknown = [status(1, nominal_capacity=0.0), status(2, nominal_capacity=0.0)]  # nothing known: equal split
    limits = target_limits(aggregate(0.0, unknown), ImbalanceStatus(), specs((100, 100), (20, 20)), CONFIG)
    assert limits.charge_current == 40.0


def test_a_late_tick_does_not_release_a_limit_in_one_step() -> None:
    """Ticks come every PUBLISH_INTERVAL; one that comes 30 s late (the loop was blocked, the watchdog allows
    up to a minute) must not raise a limit by 30 s worth of rise at once: that is the jump the rate limiter
    exists to prevent. The rise per tick is bounded by one interval's worth."""
    spec = CONFIG.pack_spec(1, "A4:C1:37:00:00:01")
    cycle = BankCycle([spec], CONFIG, 0.0)

    def feed(t: float, cells: tuple[float, ...]) -> PackFeed:
        reading = PackReading(1, spec.address, t, info(), CellVoltages(cells))
        return feed_reading(PackFeed(1, spec.address), reading, t)

    high = (3.30, 3.50, 3.30, 3.30)  # taper: 5 % of the pack's charge limit
    cycle.tick([feed(0.0, high)], 0.0)
    before = cycle.tick([feed(1.0, high)], 1.0).limits.charge_current
    late = cycle.tick([feed(31.0, (3.30,) * 4)], 31.0).limits.charge_current
    assert late <= before + CONFIG.current_limit_rise_rate * CONFIG.publish_interval + 1e-9  # was 50 A
    assert late > before  # it still rises
