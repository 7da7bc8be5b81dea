"""Pure bank math: what each pack's feed means at a given time, and the packs rolled up into one battery.

Time is always an argument. Nothing here reads a clock or keeps state between calls.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from btbattery.model import (
    CHARGE_BLOCKING,
    DISCHARGE_BLOCKING,
    BankSnapshot,
    CellVoltages,
    LinkEvent,
    LinkState,
    PackReading,
    PackStatus,
    Protection,
)

_CHARGE_BLOCKING, _DISCHARGE_BLOCKING = int(CHARGE_BLOCKING), int(DISCHARGE_BLOCKING)
# Link states in which a pack's readings keep coming; every other state means its data is ageing.
LINK_UP = frozenset({LinkState.POLLING})


@dataclass(frozen=True, slots=True)
class PackFeed:
    """The latest of one pack's stream: newest reading (maybe old), link state, when the link went down."""

    pack: int
    address: str
    reading: PackReading | None = None
    link_state: LinkState = LinkState.OFFLINE
    link_down_since: float | None = None  # s, first down state after the newest reading
    reason: str = ""  # why the link is down, or the stream's error
    cells_time: float | None = None  # s, when the newest reading's cells arrived (carried ones keep theirs)
    last_cells: CellVoltages | None = None  # the newest cells the pack delivered, however old


def feed_reading(
    feed: PackFeed, reading: PackReading, now: float, cells_max_age: float = math.inf
) -> PackFeed:
    """A new reading, restamped with its arrival on the pipeline's clock.

    A poll that lost its cell register keeps the previous cells while they are at most ``cells_max_age``
    old, so a flaky 0x04 never hides the highest cell from the limits; older cells are dropped, so a 0x04
    that stopped answering cannot hold the taper on a cell level the pack left long ago (the limits then
    work from the pack's mean cell voltage), but the newest cells are remembered (``last_cells``): a stop
    they called for outlives their register (:func:`judge_pack`). A reading taken before the link went down
    (a held poll flushed on disconnect) updates the values but does not make the pack fresh again: only data
    from after the outage does.
    """
    cells, cells_time = reading.cells, now
    if cells is None:
        young = feed.cells_time is not None and now - feed.cells_time <= cells_max_age
        carried = feed.reading.cells if young and feed.reading is not None else None
        cells, cells_time = carried, feed.cells_time if carried is not None else None
    down = feed.link_down_since
    leftover = down is not None and reading.time < down
    stamped = PackReading(reading.pack, reading.address, now, reading.info, cells)
    last_cells = reading.cells if reading.cells is not None else feed.last_cells
    return replace(
        feed,
        reading=stamped,
        link_down_since=down if leftover else None,
        cells_time=cells_time,
        last_cells=last_cells,
    )


def feed_link(feed: PackFeed, event: LinkEvent, now: float) -> PackFeed:
    """A link change. Only the first down state counts: backoff -> scanning -> connecting is one outage."""
    down_since = feed.link_down_since
    if event.state not in LINK_UP and down_since is None:
        down_since = now
    return replace(feed, link_state=event.state, link_down_since=down_since, reason=event.reason)


def feed_error(feed: PackFeed, error: Exception, now: float) -> PackFeed:
    """The pack's stream failed: treat it as a lost link (its data ages out, the bank carries on)."""
    down_since = now if feed.link_down_since is None else feed.link_down_since
    reason = f"stream error: {type(error).__name__}: {error}"
    return replace(feed, link_state=LinkState.OFFLINE, link_down_since=down_since, reason=reason)


def stale_since(feed: PackFeed, stale_after: float) -> float | None:
    """When the pack's newest reading stopped being fresh (None: no reading yet)."""
    if feed.reading is None:
        return None
    by_age = feed.reading.time + stale_after
    down = feed.link_down_since  # set only by an outage after the newest fresh reading
    return by_age if down is None else min(by_age, down)


def judge_pack(feed: PackFeed, now: float, stale_after: float, grace: float) -> PackStatus:
    """Fresh while the reading and its cells are young and the link has not dropped; active (its 0x03 values
    count in the bank) until ``grace`` after the reading stopped being fresh.

    A pack whose 0x04 stopped answering keeps reporting 0x03, but its taper would then rest on the mean cell
    voltage, which hides the highest cell: without cells younger than ``stale_after`` it is stale for the
    limits (it contributes no current limit), however fresh its 0x03. Once its cells have aged out of the
    reading, its newest cells come along as ``last_cells``: a stop they called for still stands."""
    until = stale_since(feed, stale_after)
    cells_young = feed.cells_time is not None and now < feed.cells_time + stale_after
    fresh = until is not None and now < until and cells_young
    active = until is not None and now < until + grace
    aged_out = feed.reading is not None and feed.reading.cells is None
    last_cells = feed.last_cells if aged_out else None
    return PackStatus(feed.pack, feed.address, feed.link_state, feed.reading, fresh, active, last_cells)


def _cell_extremes(statuses: Sequence[PackStatus]) -> tuple[float, str, float, str] | None:
    low: tuple[float, str] | None = None
    high: tuple[float, str] | None = None
    for status in statuses:
        assert status.reading is not None
        if status.reading.cells is None:
            continue
        for number, volts in enumerate(status.reading.cells.voltages, start=1):
            if low is None or volts < low[0]:
                low = (volts, f"{status.pack}-{number}")
            if high is None or volts > high[0]:
                high = (volts, f"{status.pack}-{number}")
    if low is None or high is None:
        return None
    return low[0], low[1], high[0], high[1]


def _cells_in_series(statuses: Sequence[PackStatus]) -> int | None:
    """The fewest cells in series any active pack has: the CVL is this times MAX_CELL_VOLTAGE, so of 0x03's
    count and the cells 0x04 measured the smaller wins, and a count of 0 (a glitch) has no say."""
    counts = []
    for status in statuses:
        assert status.reading is not None
        claimed = status.reading.info.cell_count
        measured = len(status.reading.cells.voltages) if status.reading.cells is not None else 0
        known = [n for n in (claimed, measured) if n > 0]
        if known:
            counts.append(min(known))
    return min(counts, default=None)


def _soc(statuses: Sequence[PackStatus]) -> float:
    """Capacity-weighted SoC: a 200 Ah pack at 50 % counts twice as much as a 100 Ah pack."""
    infos = [s.reading.info for s in statuses if s.reading is not None]
    weight = sum(info.nominal_capacity for info in infos)
    if weight <= 0:
        return sum(info.soc for info in infos) / len(infos)
    return sum(info.soc * info.nominal_capacity for info in infos) / weight


def aggregate(
    now: float, statuses: Sequence[PackStatus], temperatures: Mapping[int, Sequence[float]] | None = None
) -> BankSnapshot:
    """Active packs rolled into one battery; every value None when no pack is active.

    ``temperatures``: each pack's plausible cell-sensor readings (:mod:`~btbattery.pipeline.sensors`); without
    it every reported sensor counts."""
    packs = tuple(statuses)
    active = [s for s in packs if s.active and s.reading is not None]
    if not active:
        return BankSnapshot(now, packs, len(packs), 0)
    infos = [s.reading.info for s in active if s.reading is not None]
    voltage = sum(info.voltage for info in infos) / len(infos)
    current = sum(info.current for info in infos)
    if temperatures is None:
        temps = [t for info in infos for t in info.temperatures]
    else:
        temps = [t for s in active for t in temperatures.get(s.pack, ())]
    protection = 0  # plain ints: IntFlag arithmetic costs ~1 us an operation on a small CPU
    blocking_charge = blocking_discharge = 0
    for info in infos:
        bits = int(info.protection)
        protection |= bits
        blocking_charge += not info.charge_fet or bool(bits & _CHARGE_BLOCKING)
        blocking_discharge += not info.discharge_fet or bool(bits & _DISCHARGE_BLOCKING)
    cells = _cell_extremes(active)
    return BankSnapshot(
        time=now,
        packs=packs,
        total_packs=len(packs),
        active_packs=len(active),
        voltage=voltage,
        current=current,
        power=voltage * current,
        # A BMS may report a little more than its nominal (plausibility lets 10 % through): never show more
        # charge than the bank holds.
        remaining_capacity=sum(
            min(info.remaining_capacity, info.nominal_capacity)
            if info.nominal_capacity > 0
            else info.remaining_capacity
            for info in infos
        ),
        nominal_capacity=sum(info.nominal_capacity for info in infos),
        soc=_soc(active),
        min_cell_voltage=cells[0] if cells else None,
        min_cell_id=cells[1] if cells else None,
        max_cell_voltage=cells[2] if cells else None,
        max_cell_id=cells[3] if cells else None,
        cells_per_pack=_cells_in_series(active),
        min_temperature=min(temps) if temps else None,
        max_temperature=max(temps) if temps else None,
        temperature=max(temps) if temps else None,
        cycles=max(info.cycles for info in infos),
        balancing=any(info.balance_bits for info in infos),
        charge_fet=all(info.charge_fet for info in infos),
        discharge_fet=all(info.discharge_fet for info in infos),
        protection=Protection(protection),
        blocking_charge=blocking_charge,
        blocking_discharge=blocking_discharge,
    )
