"""Hypothesis strategies for generated banks: 1-16 packs, any mix of fresh, stale and offline packs, FET
states, protection flags, cell voltages, temperatures (none too), currents, 0 Ah capacities and cell counts
that disagree between 0x03 and 0x04."""

from __future__ import annotations

import math

from hypothesis import strategies as st

from btbattery.config import PackSpec
from btbattery.model import BasicInfo, CellVoltages, LinkState, PackReading, PackStatus, Protection
from btbattery.pipeline.aggregate import aggregate

NOW = 1000.0
PROTECTIONS = [flag for flag in Protection if flag]

volts = st.floats(2.0, 3.9, allow_nan=False)
temperature = st.one_of(st.floats(15, 35), st.floats(-30, 75))  # mostly comfortable
amps = st.floats(-250, 250, allow_nan=False).map(lambda a: round(a, 2))


@st.composite
def protection(draw: st.DrawFn) -> Protection:
    if draw(st.integers(0, 3)):  # mostly healthy packs
        return Protection.NONE
    flags = draw(st.lists(st.sampled_from(PROTECTIONS), max_size=3))
    result = Protection.NONE
    for flag in flags:
        result |= flag
    return result


@st.composite
def pack_status(draw: st.DrawFn, number: int, cell_count: int) -> PackStatus:
    kind = draw(st.sampled_from(["fresh", "fresh", "fresh", "stale", "out", "offline"]))
    address = f"A4:C1:37:00:00:{number:02X}"
    if kind == "offline":
        return PackStatus(number, address, LinkState.OFFLINE, None, False, False)
    # Mostly healthy cells near one level, sometimes one outlier anywhere (over- or under-voltage included).
    base = draw(st.floats(2.9, 3.6))
    cells = [round(base + 0.002 * (i % 5), 3) for i in range(cell_count)]
    if draw(st.integers(0, 3)) == 0:
        cells[draw(st.integers(0, cell_count - 1))] = draw(volts)
    cells = tuple(cells)
    # Sometimes a BMS with its design capacity unset (0 Ah), sometimes a 0x03 whose cell count disagrees
    # with the cells 0x04 measured: both once let a limit rest on the other packs alone.
    capacity = draw(st.floats(5, 400)) if draw(st.integers(0, 9)) else 0.0
    claimed = cell_count if draw(st.integers(0, 7)) else draw(st.sampled_from([4, 8, 15, 16]))
    info = BasicInfo(
        voltage=round(sum(cells), 2),
        current=draw(amps),
        remaining_capacity=capacity * draw(st.floats(0, 1)),
        nominal_capacity=capacity,
        cycles=draw(st.integers(0, 5000)),
        production_date=None,
        balance_bits=draw(st.integers(0, 2**cell_count - 1)),
        protection=draw(protection()),
        software_version=3.8,
        soc=draw(st.integers(0, 100)),
        charge_fet=draw(st.booleans()) if draw(st.integers(0, 4)) == 0 else True,
        discharge_fet=draw(st.booleans()) if draw(st.integers(0, 4)) == 0 else True,
        cell_count=claimed,
        temperatures=tuple(draw(st.lists(temperature, max_size=3))),
    )
    fresh, active = {"fresh": (True, True), "stale": (False, True), "out": (False, False)}[kind]
    # A stale pack more often lost its 0x04 than a fresh one lacks it (its cells aged out).
    with_cells = draw(st.integers(0, 5)) > 0 if fresh else draw(st.integers(0, 2)) == 0
    reading = PackReading(number, address, NOW - 1, info, CellVoltages(cells) if with_cells else None)
    # A stale pack whose 0x04 stopped answering still knows its newest cells, which may have stopped a
    # direction (a cell at a stop threshold or where the taper is 0) or not.
    last_cells = None
    if not fresh and not with_cells and draw(st.integers(0, 3)):
        last = list(cells)
        last[draw(st.integers(0, cell_count - 1))] = draw(st.one_of(st.floats(3.55, 3.7), volts))
        last_cells = CellVoltages(tuple(last))
    return PackStatus(
        number, address, LinkState.POLLING if fresh else LinkState.BACKOFF, reading, fresh, active, last_cells
    )


@st.composite
def banks(draw: st.DrawFn, max_packs: int = 16):
    """(snapshot, pack specs) for a bank of 1..max_packs packs."""
    count = draw(st.integers(1, max_packs))
    cell_count = draw(st.sampled_from([4, 8, 15, 16]))
    statuses = [draw(pack_status(n, cell_count)) for n in range(1, count + 1)]
    specs = [
        PackSpec(n, s.address, draw(st.floats(0, 200)), draw(st.floats(0, 300)))
        for n, s in zip(range(1, count + 1), statuses, strict=True)
    ]
    return aggregate(NOW, statuses), specs


def close_enough(value: float, limit: float) -> bool:
    return value <= limit + 1e-9 * max(1.0, abs(limit)) or math.isclose(value, limit, rel_tol=1e-9)
