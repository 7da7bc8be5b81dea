"""Charge voltage and current limits (CVL, CCL, DCL) for the bank: the safety rules live here.

Policy (design.md, refined):
- Each fresh pack gets an effective limit: its own configured limit x cell-voltage taper (its highest cell for
  charge, lowest for discharge) x temperature derating (its coldest and hottest sensor). A pack whose FET is
  off or whose BMS reports a blocking protection contributes 0.
- The bank limit is the least of: the configured bank maximum; the sum of the effective limits; and the
  share limit, min over packs of ``limit_i / share_i``, so the pack that takes the largest share of the bank
  current never exceeds its own limit. Shares are measured once the bank current is large enough; below
  that each pack is assumed to take its capacity share (a better guess than "all limits add up").
- Only fresh packs count for limits: a stale pack (still shown during its grace period) may already have
  cut its FETs, and then the others carry its current. Limits fail toward zero.
- Any active pack (stale ones too) with a cell at or above CELL_OVERVOLTAGE, or a cell over-voltage, pack
  over-voltage or charge temperature protection, stops charging for the whole bank (likewise discharge).
- Limits fall at once and rise at a configured rate (:func:`rate_limit`).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass

from btbattery.config import Config, PackSpec
from btbattery.model import (
    CHARGE_BLOCKING,
    DISCHARGE_BLOCKING,
    BankSnapshot,
    ChargeLimits,
    ImbalanceStatus,
    PackStatus,
    Protection,
)

# Protections that stop the whole bank, not only the pack that reports them: the packs share one voltage
# and one temperature environment, so what one pack reports is about to happen to the others.
STOP_CHARGE = (
    Protection.CELL_OVERVOLTAGE
    | Protection.PACK_OVERVOLTAGE
    | Protection.CHARGE_OVERTEMPERATURE
    | Protection.CHARGE_UNDERTEMPERATURE
)
STOP_DISCHARGE = (
    Protection.CELL_UNDERVOLTAGE
    | Protection.PACK_UNDERVOLTAGE
    | Protection.DISCHARGE_OVERTEMPERATURE
    | Protection.DISCHARGE_UNDERTEMPERATURE
)
# A; a pack current below this is measurement noise, not a share of the bank current.
PACK_CURRENT_NOISE = 0.5


def interpolate(x: float, points: Sequence[float], fractions: Sequence[float]) -> float:
    """Piecewise-linear curve through (points, fractions); points ascending or descending; flat outside."""
    if points[0] > points[-1]:
        points, fractions = points[::-1], fractions[::-1]
    return _interpolate_ascending(x, points, fractions)


def _interpolate_ascending(x: float, points: Sequence[float], fractions: Sequence[float]) -> float:
    i = bisect_left(points, x)
    if i == 0:
        return fractions[0]
    if i == len(points):
        return fractions[-1]
    x0, x1, f0, f1 = points[i - 1], points[i], fractions[i - 1], fractions[i]
    return f0 + (f1 - f0) * (x - x0) / (x1 - x0)


@dataclass(frozen=True, slots=True)
class _Side:
    """What differs between the charge and the discharge direction (curves stored ascending)."""

    name: str  # "charge" / "discharge"
    sign: float  # +1: charging current is positive
    bank_max: float
    stop: int  # Protection bits, as int: IntFlag arithmetic is slow on a small CPU
    blocking: int
    cell_points: tuple[float, ...]
    cell_fractions: tuple[float, ...]
    temp_points: tuple[float, ...]
    temp_fractions: tuple[float, ...]


def _ascending(points: tuple[float, ...], fractions: tuple[float, ...]) -> tuple[tuple[float, ...], ...]:
    return (points[::-1], fractions[::-1]) if points[0] > points[-1] else (points, fractions)


_SIDES: dict[int, tuple[Config, tuple[_Side, _Side]]] = {}  # id(config) -> (config, sides), built once


def _sides(cfg: Config) -> tuple[_Side, _Side]:
    cached = _SIDES.get(id(cfg))
    if cached is not None and cached[0] is cfg:
        return cached[1]
    charge = _Side(
        "charge", 1.0, cfg.max_battery_charge_current, int(STOP_CHARGE), int(CHARGE_BLOCKING),
        *_ascending(cfg.cell_voltages_while_charging, cfg.max_charge_current_cv_fraction),
        *_ascending(cfg.temperatures_while_charging, cfg.max_charge_current_t_fraction),
    )  # fmt: skip
    discharge = _Side(
        "discharge", -1.0, cfg.max_battery_discharge_current, int(STOP_DISCHARGE), int(DISCHARGE_BLOCKING),
        *_ascending(cfg.cell_voltages_while_discharging, cfg.max_discharge_current_cv_fraction),
        *_ascending(cfg.temperatures_while_discharging, cfg.max_discharge_current_t_fraction),
    )  # fmt: skip
    if len(_SIDES) > 16:  # tests make many configs; a service has one
        _SIDES.clear()
    _SIDES[id(cfg)] = (cfg, (charge, discharge))
    return charge, discharge


def _cells(status: PackStatus) -> tuple[float, ...]:
    """The pack's cell voltages, or its mean cell voltage when the cell register never arrived."""
    assert status.reading is not None
    if status.reading.cells is not None and status.reading.cells.voltages:
        return status.reading.cells.voltages
    info = status.reading.info
    return (info.voltage / info.cell_count,) if info.cell_count else ()


def _extremes(status: PackStatus) -> tuple[float, float] | None:
    """(lowest, highest) cell of the pack, once per tick: both directions and the stop rules need them."""
    cells = _cells(status)
    return (min(cells), max(cells)) if cells else None


def pack_limit(
    status: PackStatus, limit: float, side: _Side, extremes: tuple[float, float] | None
) -> tuple[float, str | None]:
    """One fresh pack's effective limit (A) and, when it is below ``limit``, why ("FET off", a protection,
    "cell voltage" or "temperature")."""
    assert status.reading is not None
    info = status.reading.info
    fet = info.charge_fet if side.sign > 0 else info.discharge_fet
    if not fet:
        return 0.0, "FET off"
    blocked = int(info.protection) & side.blocking
    if blocked:
        return 0.0, ",".join(Protection(blocked).names())
    cell_fraction = 1.0
    if extremes is not None:
        cell = extremes[1] if side.sign > 0 else extremes[0]
        cell_fraction = _interpolate_ascending(cell, side.cell_points, side.cell_fractions)
    temps = info.temperatures
    temp_fraction = 1.0
    if temps:
        temp_fraction = min(
            _interpolate_ascending(min(temps), side.temp_points, side.temp_fractions),
            _interpolate_ascending(max(temps), side.temp_points, side.temp_fractions),
        )
    effective = limit * cell_fraction * temp_fraction
    if effective >= limit:
        return limit, None
    return effective, "cell voltage" if cell_fraction <= temp_fraction else "temperature"


def _stop_reason(
    active: Sequence[PackStatus], side: _Side, cfg: Config, extremes: dict[int, tuple[float, float] | None]
) -> str | None:
    for status in active:
        assert status.reading is not None
        hit = int(status.reading.info.protection) & side.stop
        if hit:
            return f"pack {status.pack} {','.join(Protection(hit).names())}"
        cells = extremes[status.pack]
        if cells is None:
            continue
        if side.sign > 0 and cells[1] >= cfg.cell_overvoltage:
            return f"pack {status.pack} cell over-voltage {cells[1]:.3f} V"
        if side.sign < 0 and cells[0] <= cfg.cell_undervoltage:
            return f"pack {status.pack} cell under-voltage {cells[0]:.3f} V"
    return None


def shares(fresh: Sequence[PackStatus], side: _Side, min_bank_current: float) -> dict[int, float] | None:
    """Each fresh pack's measured share of the bank current in this direction; None below the minimum."""
    currents = {s.pack: s.reading.info.current * side.sign for s in fresh if s.reading is not None}
    total = sum(currents.values())
    # A non-finite current would make every share NaN, and NaN shares drop out of the share limit.
    if not (math.isfinite(total) and total >= max(min_bank_current, PACK_CURRENT_NOISE)):
        return None
    return {pack: current / total for pack, current in currents.items() if current > PACK_CURRENT_NOISE}


def _conducts(status: PackStatus, side: _Side) -> bool:
    """Whether the pack's BMS lets current through in this direction (FET on, no blocking protection)."""
    assert status.reading is not None
    info = status.reading.info
    fet = info.charge_fet if side.sign > 0 else info.discharge_fet
    return fet and not int(info.protection) & side.blocking


def _capacity_shares(fresh: Sequence[PackStatus], side: _Side) -> dict[int, float]:
    """Packs that can take current split it by capacity (the prior when shares cannot be measured).

    A pack tapered or derated to 0 A still has its FET on and takes its share: it must stay in here, or the
    bank limit would be set by the other packs alone and push current into the pack that must get none."""
    open_packs = [s for s in fresh if s.reading is not None and _conducts(s, side)]
    capacity = {s.pack: s.reading.info.nominal_capacity for s in open_packs if s.reading is not None}
    known = {pack: c for pack, c in capacity.items() if math.isfinite(c) and c > 0}
    total = sum(known.values())
    if total <= 0:
        return {pack: 1 / len(capacity) for pack in capacity}
    by_capacity = {pack: c / total for pack, c in known.items()}
    # A pack reporting no capacity (design capacity unset) still takes current, how much is unknown: assume
    # as much as the biggest known pack. The shares then add up to more than 1, which only errs low.
    biggest = max(by_capacity.values())
    return {pack: by_capacity.get(pack, biggest) for pack in capacity}


def side_limit(
    snapshot: BankSnapshot,
    specs: Sequence[PackSpec],
    side: _Side,
    cfg: Config,
    extremes: dict[int, tuple[float, float] | None] | None = None,
) -> tuple[float, list[str]]:
    """CCL or DCL before imbalance derating and rate limiting, with the reasons it is below the maximum."""
    active = [s for s in snapshot.packs if s.active and s.reading is not None]
    if not active:
        return 0.0, ["no active pack"]
    if extremes is None:
        extremes = {s.pack: _extremes(s) for s in active}
    stop = _stop_reason(active, side, cfg, extremes)
    if stop is not None:
        return 0.0, [stop]
    by_number = {spec.number: spec for spec in specs}
    fresh = [s for s in active if s.fresh]
    reasons = [f"pack {s.pack} stale" for s in active if not s.fresh]
    limits: dict[int, float] = {}
    lowered: dict[str, list[str]] = {}  # why -> pack numbers, so 16 tapering packs make one reason
    for status in fresh:
        spec = by_number.get(status.pack)
        own = (spec.charge_limit if side.sign > 0 else spec.discharge_limit) if spec else 0.0
        limits[status.pack], why = pack_limit(status, own, side, extremes[status.pack])
        if why:
            lowered.setdefault(why, []).append(str(status.pack))
    for why, numbers in lowered.items():
        reasons.append(f"{side.name} {why}: pack{'s' if len(numbers) > 1 else ''} {','.join(numbers)}")
    total = sum(limits.values())
    measured = shares(fresh, side, cfg.share_min_bank_current)
    by_share = measured if measured is not None else _capacity_shares(fresh, side)
    share_limit = min((limits[p] / share for p, share in by_share.items() if share > 0), default=math.inf)
    result = min(side.bank_max, total, share_limit)
    if result == share_limit and share_limit < min(side.bank_max, total):
        kind = "measured" if measured is not None else "capacity"
        reasons.append(f"{side.name} share limit ({kind} shares)")
    return max(0.0, result), reasons


def charge_voltage(
    snapshot: BankSnapshot, imbalance: ImbalanceStatus, cfg: Config
) -> tuple[float, list[str]]:
    """CVL: cells x MAX_CELL_VOLTAGE, lowered by the highest cell's excess and by an imbalance step.

    0 when no pack is active (the cell count is unknown); :func:`rate_limit` then keeps the last value.
    """
    cells = snapshot.cells_per_pack
    if not cells:
        return 0.0, []
    ceiling = cells * cfg.max_cell_voltage
    cvl, reasons = ceiling, []
    high = snapshot.max_cell_voltage
    if high is not None and high > cfg.max_cell_voltage:
        cvl -= cells * (high - cfg.max_cell_voltage)
        reasons.append(f"cell {snapshot.max_cell_id} {high:.3f} V above {cfg.max_cell_voltage:.3f} V")
    if imbalance.voltage or imbalance.soc:
        cvl -= cells * cfg.imbalance_cvl_step
        reasons.append("voltage imbalance" if imbalance.voltage else "soc imbalance")
    return min(ceiling, max(cvl, cells * cfg.min_charge_cell_voltage)), reasons


def target_limits(
    snapshot: BankSnapshot, imbalance: ImbalanceStatus, specs: Sequence[PackSpec], cfg: Config
) -> ChargeLimits:
    """The limits this snapshot calls for, before rate limiting."""
    charge, discharge = _sides(cfg)
    extremes = {s.pack: _extremes(s) for s in snapshot.packs if s.active and s.reading is not None}
    ccl, charge_reasons = side_limit(snapshot, specs, charge, cfg, extremes)
    dcl, discharge_reasons = side_limit(snapshot, specs, discharge, cfg, extremes)
    if imbalance.any and ccl > 0:
        ccl *= cfg.imbalance_charge_fraction
        charge_reasons.append("imbalance derate")
    cvl, cvl_reasons = charge_voltage(snapshot, imbalance, cfg)
    reasons = dict.fromkeys(charge_reasons + discharge_reasons + cvl_reasons)  # ordered, no duplicates
    return ChargeLimits(
        _safe(cvl),
        _safe(ccl),
        _safe(dcl),
        tuple(reasons),
        "; ".join(charge_reasons),  # "" = at its maximum
        "; ".join(discharge_reasons),
    )


def _safe(value: float) -> float:
    """Every published limit is finite and >= 0, whatever went in."""
    return value if math.isfinite(value) and value > 0 else 0.0


def rate_limit(previous: ChargeLimits | None, target: ChargeLimits, dt: float, cfg: Config) -> ChargeLimits:
    """Fall at once, rise at most at the configured rates; an unknown CVL (0, no active pack) keeps the
    previous one, since the currents are 0 then anyway.

    ``previous`` None (the first limits after start or after a total outage) takes the target as is: the rise
    rate is there against oscillation, and ramping from an uninformed 0 would only throttle the inverter for
    a minute after every restart (DCL 0 -> 150 A at 2 A/s). The target itself keeps every safety rule."""
    if previous is None:
        return target
    step = max(dt, 0.0) * cfg.current_limit_rise_rate
    ccl = min(target.charge_current, previous.charge_current + step)
    dcl = min(target.discharge_current, previous.discharge_current + step)
    if target.charge_voltage == 0.0 or previous.charge_voltage == 0.0:
        cvl = target.charge_voltage or previous.charge_voltage
    else:
        cvl = min(
            target.charge_voltage, previous.charge_voltage + max(dt, 0.0) * cfg.charge_voltage_rise_rate
        )
    reasons = target.reasons
    if ccl < target.charge_current or dcl < target.discharge_current or cvl < target.charge_voltage:
        reasons = (*reasons, "rising")
    charge_reason = _rising(target.charge_reason, ccl < target.charge_current)
    discharge_reason = _rising(target.discharge_reason, dcl < target.discharge_current)
    return ChargeLimits(cvl, ccl, dcl, reasons, charge_reason, discharge_reason)


def _rising(reason: str, rising: bool) -> str:
    return f"{reason}, rising" if rising and reason else "rising" if rising else reason
