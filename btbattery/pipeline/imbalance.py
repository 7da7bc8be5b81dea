"""Imbalance between parallel packs: voltage spread, current-share deviation and SoC spread.

Each spread is measured on the fresh packs at every publish tick, judged by its median over a time window
(a spike shorter than half the window never moves a median), and turned into a flag with hysteresis: raised
after the median stayed at or above the on-threshold for a minimum duration, cleared after it stayed at or
below the off-threshold as long. The step functions are pure; :class:`ImbalanceDetector` only keeps the
windows and the three flags between ticks.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from btbattery.config import Config
from btbattery.model import BankSnapshot, BasicInfo, ImbalanceStatus


@dataclass(frozen=True, slots=True)
class Spreads:
    """Instantaneous spreads; None = cannot be measured now (see :func:`measure_spreads`)."""

    voltage: float | None  # V
    current: float | None  # fraction
    soc: float | None  # %
    packs: int  # fresh packs measured


def measure_spreads(snapshot: BankSnapshot, min_current: float) -> Spreads:
    """Spreads over the fresh packs. Current shares are measured only above ``min_current`` (A)."""
    infos = [s.reading.info for s in snapshot.packs if s.fresh and s.reading is not None]
    if len(infos) < 2:
        return Spreads(None, None, None, len(infos))
    volts = [info.voltage for info in infos]
    socs = [info.soc for info in infos]
    return Spreads(
        max(volts) - min(volts), _share_deviation(infos, min_current), max(socs) - min(socs), len(infos)
    )


def _share_deviation(infos: list[BasicInfo], min_current: float) -> float | None:
    """Largest relative deviation of a pack's current share from its capacity share (0.3 = one pack takes 30 %
    more or less than its capacity says it should). Relative, so one threshold fits 2 packs and 16 alike."""
    total_current = sum(info.current for info in infos)
    total_capacity = sum(info.nominal_capacity for info in infos)
    if abs(total_current) < min_current or total_current == 0 or total_capacity <= 0:
        return None
    return max(
        abs(info.current / total_current * total_capacity / info.nominal_capacity - 1)
        if info.nominal_capacity > 0
        else 1.0  # a pack that claims no capacity cannot have a fair share: count it as fully off
        for info in infos
    )


@dataclass(frozen=True, slots=True)
class Flag:
    """One hysteresis flag: whether it is raised, and since when the opposite condition has held."""

    on: bool = False
    pending_since: float | None = None


def step_flag(
    flag: Flag, value: float | None, now: float, on: float, off: float, min_duration: float
) -> Flag:
    """Advance a flag by one sample. ``value`` None holds the flag as it is (nothing to judge)."""
    if value is None:
        return Flag(flag.on, None)
    crossing = value <= off if flag.on else value >= on
    if not crossing:
        return Flag(flag.on, None)
    since = now if flag.pending_since is None else flag.pending_since
    if now - since >= min_duration:
        return Flag(not flag.on, None)
    return Flag(flag.on, since)


def median(values: list[float]) -> float:
    """The middle value (the mean of the two middle ones for an even count); our own because the Venus OS
    image lacks the statistics module (reference/venus-runtime.md)."""
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


class _Window:
    """Samples of one spread over the last ``length`` seconds; None samples are kept out."""

    __slots__ = ("length", "samples")

    def __init__(self, length: float) -> None:
        self.length = length
        self.samples: deque[tuple[float, float]] = deque()

    def add(self, now: float, value: float | None) -> float | None:
        if value is not None:
            self.samples.append((now, value))
        while self.samples and self.samples[0][0] <= now - self.length:
            self.samples.popleft()
        return median([v for _, v in self.samples]) if self.samples else None


class ImbalanceDetector:
    """Windows and flags for the three imbalances, fed one snapshot per publish tick."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._windows = {name: _Window(config.imbalance_window) for name in ("voltage", "current", "soc")}
        self._flags = {name: Flag() for name in ("voltage", "current", "soc")}

    def update(self, snapshot: BankSnapshot) -> ImbalanceStatus:
        cfg = self.config
        spreads = measure_spreads(snapshot, cfg.current_imbalance_min_current)
        medians = {
            "voltage": self._windows["voltage"].add(snapshot.time, spreads.voltage),
            "current": self._windows["current"].add(snapshot.time, spreads.current),
            "soc": self._windows["soc"].add(snapshot.time, spreads.soc),
        }
        rules = {
            "voltage": (cfg.voltage_imbalance_detection_enable, cfg.voltage_imbalance_threshold,
                        cfg.voltage_imbalance_clear_threshold),
            "current": (cfg.current_imbalance_detection_enable, cfg.current_imbalance_threshold / 100,
                        cfg.current_imbalance_clear_threshold / 100),
            "soc": (cfg.soc_imbalance_detection_enable, cfg.soc_imbalance_threshold,
                    cfg.soc_imbalance_clear_threshold),
        }  # fmt: skip
        for name, (enabled, on, off) in rules.items():
            judged = medians[name]
            if spreads.packs < 2:
                judged = 0.0  # one pack (or none) cannot be out of balance with itself: let a flag clear
            flag = step_flag(self._flags[name], judged, snapshot.time, on, off, cfg.imbalance_min_duration)
            self._flags[name] = flag if enabled else Flag()
        return ImbalanceStatus(
            voltage=self._flags["voltage"].on,
            current=self._flags["current"].on,
            soc=self._flags["soc"].on,
            voltage_spread=medians["voltage"],
            current_spread=medians["current"],
            soc_spread=medians["soc"],
        )
