"""Charge modes as a pure state machine: Bulk -> Absorption -> Float -> Bulk, declared once as a table.

LFP wants to be charged to its absorption voltage, held there until the cells have levelled, then kept lower
(float) until it is used again. The machine decides which cell voltage the CVL aims at; the limits
(:mod:`btbattery.pipeline.limits`) keep every safety rule on top of it. The same :data:`TRANSITIONS` table
drives :func:`step` and draws ``diagrams/charge-modes.mmd`` (:func:`mermaid`).

Conditions are judged on the fresh packs: every fresh pack must meet a condition for the bank to move towards
Float (one pack short of full keeps the bank charging), and any fresh pack that needs charge sends the bank
back to Bulk. A fresh pack without cell voltages can never meet a cell condition. With no fresh pack nothing
moves. Time is an argument (seconds on the pipeline's clock); nothing here reads a clock or a file: the
service saves :func:`to_saved` in the state file and restores it with :func:`from_saved`.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass, replace

from btbattery.config import Config, soc_reset_cell_limit
from btbattery.model import BankSnapshot, PackStatus
from btbattery.pipeline.limits import CELL_LIMIT_HYSTERESIS, VoltageTarget

# V/s of bank voltage: how fast the CVL moves down to float (serialbattery uses the same step).
FLOAT_TRANSITION_RATE = 0.001
# V per cell: a bank this close below the charge voltage has reached it (chargers regulate a little low).
REACHED_TOLERANCE = 0.01
# V per cell: in absorption, a bank this far below the charge voltage is being discharged again: back to bulk
# (serialbattery's 0.5 V on a 16S battery).
LOST_TOLERANCE = 0.03
DAY = 86400.0


class Mode(enum.StrEnum):
    BULK = "Bulk"
    ABSORPTION = "Absorption"
    FLOAT = "Float"


@dataclass(frozen=True, slots=True)
class ChargeState:
    """Where the machine stands. Times are on the pipeline's clock."""

    mode: Mode = Mode.BULK
    since: float | None = None  # when this mode began (None: not yet known)
    balanced_since: float | None = None  # absorption: since when every pack's cells are balanced
    float_from: float | None = None  # float: the per-cell voltage the transition starts from
    last_soc_reset: float | None = None  # when a SoC reset charge last reached float (None: count from now)
    reason: str = ""  # why the last transition happened
    cells_high: bool = False  # a cell went above the cell limit and is not CELL_LIMIT_HYSTERESIS below it yet


@dataclass(frozen=True, slots=True)
class _Pack:
    """What the machine needs of one fresh pack."""

    number: int
    cells: tuple[float, ...] | None  # None: unknown (no 0x04)
    soc: float

    @property
    def diff(self) -> float | None:
        return max(self.cells) - min(self.cells) if self.cells else None


@dataclass(frozen=True, slots=True)
class _View:
    packs: tuple[_Pack, ...]
    cells: int  # cells in series of the bank
    charge_cell_voltage: float  # what bulk/absorption aims at now (reset voltage while a reset is due)
    soc_reset_due: bool


def _pack(status: PackStatus) -> _Pack:
    assert status.reading is not None
    cells = status.reading.cells.voltages if status.reading.cells is not None else None
    return _Pack(status.pack, cells or None, float(status.reading.info.soc))


# ---- conditions (named in the table) ----


def _reached(view: _View, state: ChargeState, cfg: Config, now: float) -> str | None:
    need = view.charge_cell_voltage - REACHED_TOLERANCE
    for pack in view.packs:
        if pack.cells is None or sum(pack.cells) < len(pack.cells) * need:
            return None
    return f"every pack at {view.charge_cell_voltage:.3f} V per cell"


def _balanced_long_enough(view: _View, state: ChargeState, cfg: Config, now: float) -> str | None:
    if state.balanced_since is None or now - state.balanced_since < cfg.switch_to_float_wait_for_sec:
        return None
    held = now - state.balanced_since
    return f"cells within {cfg.switch_to_float_cell_voltage_diff * 1000:.0f} mV for {held:.0f} s"


def _voltage_lost(view: _View, state: ChargeState, cfg: Config, now: float) -> str | None:
    need = view.charge_cell_voltage - LOST_TOLERANCE
    for pack in view.packs:
        if pack.cells is not None and sum(pack.cells) < len(pack.cells) * need:
            return f"pack {pack.number} fell below the charge voltage"
    return None


def _needs_charge(view: _View, state: ChargeState, cfg: Config, now: float) -> str | None:
    if view.soc_reset_due:
        return "SoC reset due"
    for pack in view.packs:
        if pack.soc < cfg.switch_to_bulk_soc_threshold:
            return f"pack {pack.number} SoC {pack.soc:.0f} % below {cfg.switch_to_bulk_soc_threshold:.0f} %"
        diff = pack.diff
        if diff is not None and diff >= cfg.switch_to_bulk_cell_voltage_diff:
            return f"pack {pack.number} cell difference {diff * 1000:.0f} mV"
    return None


Condition = Callable[[_View, ChargeState, Config, float], "str | None"]
CONDITIONS: dict[str, Condition] = {
    "reached": _reached,
    "balanced_long_enough": _balanced_long_enough,
    "voltage_lost": _voltage_lost,
    "needs_charge": _needs_charge,
}

# The machine: from each mode, the first transition whose condition holds fires (in this order).
TRANSITIONS: tuple[dict[str, str], ...] = (
    {"source": Mode.BULK, "dest": Mode.ABSORPTION, "when": "reached",
     "text": "every pack at the charge voltage"},
    {"source": Mode.ABSORPTION, "dest": Mode.BULK, "when": "voltage_lost",
     "text": "a pack 0.03 V/cell below it"},
    {"source": Mode.ABSORPTION, "dest": Mode.FLOAT, "when": "balanced_long_enough",
     "text": "cells within SWITCH_TO_FLOAT_CELL_VOLTAGE_DIFF for SWITCH_TO_FLOAT_WAIT_FOR_SEC"},
    {"source": Mode.FLOAT, "dest": Mode.BULK, "when": "needs_charge",
     "text": "a pack's SoC below SWITCH_TO_BULK_SOC_THRESHOLD, its cells SWITCH_TO_BULK_CELL_VOLTAGE_DIFF "
             "apart, or a SoC reset due"},
)  # fmt: skip


def _soc_reset_due(state: ChargeState, cfg: Config, now: float) -> bool:
    if cfg.soc_reset_after_days <= 0 or state.last_soc_reset is None:
        return False
    return now - state.last_soc_reset >= cfg.soc_reset_after_days * DAY


def _track_balance(state: ChargeState, view: _View, cfg: Config, now: float) -> ChargeState:
    """The absorption timer: starts when every pack's cells are within the float difference, restarts when
    one exceeds it by the deviation (serialbattery's SWITCH_TO_FLOAT_CELL_VOLTAGE_DEVIATION)."""
    diffs = [p.diff for p in view.packs]
    if not diffs or any(d is None for d in diffs):
        return replace(state, balanced_since=None)
    worst = max(d for d in diffs if d is not None)
    if worst > cfg.switch_to_float_cell_voltage_diff + cfg.switch_to_float_cell_voltage_deviation:
        return replace(state, balanced_since=None)
    if state.balanced_since is None and worst <= cfg.switch_to_float_cell_voltage_diff:
        return replace(state, balanced_since=now)
    return state


def step(state: ChargeState, snapshot: BankSnapshot, cfg: Config, now: float) -> ChargeState:
    """The state after this tick."""
    return _track_cells_high(_step_mode(state, snapshot, cfg, now), snapshot, cfg, now)


def _track_cells_high(state: ChargeState, snapshot: BankSnapshot, cfg: Config, now: float) -> ChargeState:
    """Whether the cells hold the CVL, with CELL_LIMIT_HYSTERESIS: set by any active pack's cell above the
    mode's cell limit, cleared once the highest is that far below it (no cells known: unchanged)."""
    highest = snapshot.max_cell_voltage
    if highest is None:
        return state
    limit = voltage_target(state, cfg, snapshot.cells_per_pack, now).cell_limit
    high = highest > limit or (state.cells_high and highest > limit - CELL_LIMIT_HYSTERESIS)
    return state if high == state.cells_high else replace(state, cells_high=high)


def _step_mode(state: ChargeState, snapshot: BankSnapshot, cfg: Config, now: float) -> ChargeState:
    if state.last_soc_reset is None:  # the first reset is due SOC_RESET_AFTER_DAYS after the first start
        state = replace(state, last_soc_reset=now)
    if state.since is None:
        state = replace(state, since=now)
    fresh = tuple(_pack(s) for s in snapshot.packs if s.fresh and s.reading is not None)
    if not fresh or not snapshot.cells_per_pack:
        return state
    due = _soc_reset_due(state, cfg, now)
    view = _View(fresh, snapshot.cells_per_pack, _charge_cell_voltage(cfg, due), due)
    if state.mode is Mode.ABSORPTION:
        state = _track_balance(state, view, cfg, now)
    for transition in TRANSITIONS:
        if transition["source"] != state.mode:
            continue
        why = CONDITIONS[transition["when"]](view, state, cfg, now)
        if why is not None:
            return _enter(state, Mode(transition["dest"]), why, view, cfg, now)
    return state


def _charge_cell_voltage(cfg: Config, soc_reset_due: bool) -> float:
    if soc_reset_due:
        return soc_reset_cell_limit(cfg.soc_reset_cell_voltage, cfg.cell_overvoltage)
    return cfg.max_cell_voltage


def _enter(state: ChargeState, mode: Mode, why: str, view: _View, cfg: Config, now: float) -> ChargeState:
    new = replace(state, mode=mode, since=now, balanced_since=None, float_from=None, reason=why)
    if mode is Mode.ABSORPTION:
        return _track_balance(new, view, cfg, now)
    if mode is Mode.FLOAT:
        last = now if view.soc_reset_due else state.last_soc_reset  # a reset charge completed
        return replace(new, float_from=view.charge_cell_voltage, last_soc_reset=last)
    return new


def voltage_target(state: ChargeState, cfg: Config, cells: int | None, now: float) -> VoltageTarget:
    """The cell voltage the CVL aims at in this state, and the cell limit for the penalty method."""
    due = _soc_reset_due(state, cfg, now)
    charge = _charge_cell_voltage(cfg, due)
    if state.mode is not Mode.FLOAT:
        return VoltageTarget(charge, charge, due, state.cells_high)
    start = state.float_from if state.float_from is not None else cfg.float_cell_voltage
    elapsed = max(0.0, now - (state.since if state.since is not None else now))
    per_cell_rate = FLOAT_TRANSITION_RATE / cells if cells else math.inf
    cell_voltage = max(cfg.float_cell_voltage, start - per_cell_rate * elapsed)
    return VoltageTarget(cell_voltage, cfg.max_cell_voltage, False, state.cells_high)


def describe(state: ChargeState, cfg: Config, cells: int | None, now: float) -> str:
    """/Info/ChargeMode: the mode and why (serialbattery's words where they mean the same)."""
    if state.mode is Mode.FLOAT:
        target = voltage_target(state, cfg, cells, now)
        name = "Float" if target.cell_voltage <= cfg.float_cell_voltage else "Float Transition"
    elif state.mode is Mode.ABSORPTION:
        waited = 0.0 if state.balanced_since is None else now - state.balanced_since
        name = f"Absorption ({waited:.0f} of {cfg.switch_to_float_wait_for_sec:.0f} s balanced)"
    else:
        name = "Bulk"
    if _soc_reset_due(state, cfg, now) and state.mode is not Mode.FLOAT:
        name += " & SoC Reset"
    return f"{name}: {state.reason}" if state.reason and state.mode is Mode.BULK else name


# ---- the state file ----


def to_saved(state: ChargeState, now: float, wall_now: float) -> dict[str, object]:
    """What survives a restart: the mode and when the last SoC reset was reached, on the wall clock (the
    pipeline's clock starts afresh with every process)."""
    saved: dict[str, object] = {"mode": str(state.mode)}
    if state.last_soc_reset is not None:
        saved["last_soc_reset"] = round(wall_now - (now - state.last_soc_reset))
    return saved


def from_saved(saved: object, now: float, wall_now: float) -> ChargeState:
    """The state to start from; anything unreadable starts in Bulk (the safe mode to be wrong in)."""
    if not isinstance(saved, dict):
        return ChargeState()
    try:
        mode = Mode(saved.get("mode", Mode.BULK))
    except ValueError:
        mode = Mode.BULK
    last = saved.get("last_soc_reset")
    ok = (
        isinstance(last, int | float)
        and not isinstance(last, bool)
        and math.isfinite(last)
        and last <= wall_now
    )
    restored = now - (wall_now - last) if ok else None  # type: ignore[operator]
    # A restored float starts at the float voltage: the bank floated before the restart.
    return ChargeState(mode, now, None, None, restored, "restored" if mode is not Mode.BULK else "")


# ---- the diagram ----


def mermaid() -> str:
    """Mermaid ``stateDiagram-v2`` of :data:`TRANSITIONS` (``diagrams/charge-modes.mmd``)."""
    lines = ["stateDiagram-v2", "  direction LR", f"  [*] --> {Mode.BULK}"]
    for t in TRANSITIONS:
        lines.append(f"  {t['source']} --> {t['dest']}: {t['text']}")
    lines.append(f"  note right of {Mode.FLOAT}: CVL = cells x FLOAT_CELL_VOLTAGE, reached at 0.001 V/s")
    lines.append(
        f"  note right of {Mode.BULK}: CVL = cells x MAX_CELL_VOLTAGE (SOC_RESET_CELL_VOLTAGE when due)"
    )
    return "\n".join(lines) + "\n"
