"""What a pack may plausibly report: the one place between decoding and the bank that judges the values.

A frame can pass its checksum and still be wrong (a BMS glitch, a relayed frame mixed up, a sensor gone open).
The decoder only checks the format; this module checks the physics, pack by pack, before a reading reaches
the bank, the limits and the D-Bus paths:

- a value outside :data:`BOUNDS` (SoC 255 %, a cell of 65.535 V, 255 cells) drops the register it came in:
  a 0x03 value drops the whole poll, a cell value drops that poll's cells. One warning per pack and kind,
  and every drop is counted (:attr:`PackPlausibility.dropped`). Temperatures are the exception: one open or
  shorted NTC must not silence a pack whose other sensors work, so each sensor is judged on its own, with
  its own alarm, by :mod:`btbattery.pipeline.sensors` (an open NTC's 6280 degC never reaches the limits).
- a cell count that disagrees with the last accepted one is held back until the new count has come
  :data:`CELL_COUNT_CONFIRM_POLLS` polls in a row: one frame saying 8 cells on a 16S bank must not take CVL
  from 55 V to 28 V (and then need minutes to climb back), nor add paths for 255 cells. The first count is
  accepted once 0x03's count and the cells 0x04 measured agree, or the same count came that many polls in a
  row (a pack whose 0x04 never answers).

Pure: no clock, no I/O besides the log.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from btbattery.model import BasicInfo, PackReading

log = logging.getLogger(__name__)

CELL_COUNT_CONFIRM_POLLS = 5  # polls in a row a new cell count must come before it is believed
MAX_CELLS = 32  # JBD balance bits cover 32 cells; no JBD unit has more in series


@dataclass(frozen=True, slots=True)
class Bound:
    """Physical bounds of one reported quantity, both inclusive, and why."""

    low: float
    high: float
    why: str


# One line per quantity a pack reports. A JBD's own ranges are narrower; these only catch what cannot be.
BOUNDS: dict[str, Bound] = {
    "voltage": Bound(0.0, MAX_CELLS * 5.0, "V, at most 32 cells of 5 V"),
    "current": Bound(-1000.0, 1000.0, "A, beyond any JBD shunt"),
    "soc": Bound(0, 100, "%"),
    "remaining_capacity": Bound(0.0, 10_000.0, "Ah"),
    "nominal_capacity": Bound(0.0, 10_000.0, "Ah"),
    "cell_count": Bound(0, MAX_CELLS, "cells in series"),
    "cell_voltage": Bound(0.0, 5.0, "V, no lithium cell holds more"),
}
# Remaining capacity may exceed the nominal by a little (a BMS that has not re-learnt its capacity), not more.
CAPACITY_SLACK = 1.1


def _outside(name: str, value: float) -> bool:
    bound = BOUNDS[name]
    return not (math.isfinite(value) and bound.low <= value <= bound.high)


def basic_problem(info: BasicInfo) -> str | None:
    """The first implausible 0x03 value, described, or None."""
    for name, value in (
        ("voltage", info.voltage),
        ("current", info.current),
        ("soc", info.soc),
        ("remaining_capacity", info.remaining_capacity),
        ("nominal_capacity", info.nominal_capacity),
        ("cell_count", info.cell_count),
    ):
        if _outside(name, value):
            return f"{name} {value:g} outside {BOUNDS[name].low:g}..{BOUNDS[name].high:g} {BOUNDS[name].why}"
    if info.nominal_capacity > 0 and info.remaining_capacity > info.nominal_capacity * CAPACITY_SLACK:
        return f"remaining capacity {info.remaining_capacity:g} Ah above nominal {info.nominal_capacity:g} Ah"
    return None


def cells_problem(voltages: tuple[float, ...]) -> str | None:
    if len(voltages) > MAX_CELLS:
        return f"{len(voltages)} cells, more than {MAX_CELLS}"
    for number, volts in enumerate(voltages, start=1):
        if _outside("cell_voltage", volts):
            return f"cell {number} {volts:g} V outside 0..5 V"
    return None


def reading_cell_count(reading: PackReading) -> int | None:
    """The reading's cells in series: the smaller of 0x03's count and the cells 0x04 measured (a count of
    0 has no say), as the bank counts them (aggregate._cells_in_series)."""
    claimed = reading.info.cell_count
    measured = len(reading.cells.voltages) if reading.cells is not None else 0
    known = [n for n in (claimed, measured) if n > 0]
    return min(known) if known else None


class PackPlausibility:
    """One pack's judge. ``check(reading)`` returns the reading to use (maybe without its cells) or None."""

    def __init__(
        self,
        pack: int,
        address: str,
        cells: int | None = None,
        confirm_polls: int = CELL_COUNT_CONFIRM_POLLS,
        on_drop: Callable[[str], None] | None = None,
    ) -> None:
        self.pack = pack
        self.address = address
        self.accepted_cells = cells or None  # configured, or learnt from the first stable count
        self.confirm_polls = confirm_polls
        self.dropped: Counter[str] = Counter()  # kind -> readings (or cell registers) dropped
        self._candidate: int | None = None
        self._streak = 0
        self._warned: set[str] = set()
        self._on_drop = on_drop

    def check(self, reading: PackReading) -> PackReading | None:
        try:
            return self._check(reading)
        except (AttributeError, TypeError, ValueError) as error:  # not a reading at all: a producer's bug
            return self._drop("unreadable reading", repr(error))

    def _check(self, reading: PackReading) -> PackReading | None:
        problem = basic_problem(reading.info)
        if problem is not None:
            return self._drop("value", problem)
        if reading.cells is not None:
            problem = cells_problem(reading.cells.voltages)
            if problem is not None:
                self._drop("cell value", problem)
                reading = PackReading(reading.pack, reading.address, reading.time, reading.info, None)
        return self._check_count(reading)

    def _check_count(self, reading: PackReading) -> PackReading | None:
        count = reading_cell_count(reading)
        if count is None or count == self.accepted_cells:
            self._candidate, self._streak = None, 0
            return reading
        agree = reading.cells is not None and len(reading.cells.voltages) == reading.info.cell_count
        if self.accepted_cells is None and agree:
            self.accepted_cells = count  # 0x03 and 0x04 agree: a stable first count
            return reading
        self._streak = self._streak + 1 if count == self._candidate else 1
        self._candidate = count
        if self._streak >= self.confirm_polls:
            log.warning(
                "pack %d (%s): now %d cells in series (was %s), reported %d polls in a row",
                self.pack, self.address, count, self.accepted_cells or "unknown", self._streak,
            )  # fmt: skip
            self.accepted_cells, self._candidate, self._streak = count, None, 0
            return reading
        was = self.accepted_cells or "not yet known"
        return self._drop("cell count", f"{count} cells (accepted: {was}); held back until it repeats")

    def _drop(self, kind: str, problem: str) -> None:
        self.dropped[kind] += 1
        if kind not in self._warned:
            self._warned.add(kind)
            log.warning(
                "pack %d (%s): implausible %s dropped: %s (further ones counted, not logged)",
                self.pack, self.address, kind, problem,
            )  # fmt: skip
        if self._on_drop is not None:
            self._on_drop(kind)
        return None
