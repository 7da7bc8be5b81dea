"""Charge voltage and current limits (CVL, CCL, DCL) for the bank: the safety rules live here.

Every rule is listed in :data:`RULES` (the README's "Charge limits" section is generated from it), in the
order the code applies them. :func:`target_limits` is what one snapshot calls for; :func:`next_limits` adds
what time remembers (rise rates, recovery holds). Both are pure: time is an argument.
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
from btbattery.pipeline.sensors import PackTemperatures, judge_temperatures, sensor_roles

# V per cell: once a cell has gone above the cell limit, the cells hold the CVL until the highest cell is this
# far below it (the charge mode keeps that state). The penalty method keeps the highest cell at the limit,
# where the BMS's 1 mV steps read it a count above one poll and at it the next: without a margin "CVL held by
# the cells" (and the restart of the CVL's recovery hold) would flip every tick.
CELL_LIMIT_HYSTERESIS = 0.005

# The policy, one entry per rule, in the order applied: (name, what it does). The README's "Charge limits"
# section is generated from this table, so the documentation is the code's own account.
RULES: tuple[tuple[str, str], ...] = (
    (
        "CVL ceiling",
        "CVL = cells in series x the charge mode's cell voltage: MAX_CELL_VOLTAGE in bulk and absorption, "
        "SOC_RESET_CELL_VOLTAGE while a SoC reset charge is due, FLOAT_CELL_VOLTAGE in float (reached at "
        "0.001 V/s). Cells in series: the fewest any active pack has.",
    ),
    (
        "Penalty method",
        "While any cell of an active pack is above the mode's cell limit (MAX_CELL_VOLTAGE, or "
        "SOC_RESET_CELL_VOLTAGE during a SoC reset), CVL = the lowest measured pack voltage minus that "
        "pack's cells' summed excess: below the bank's voltage, so every charger stops pushing, including "
        "solar chargers that DVCC does not give the CCL to.",
    ),
    (
        "Cells unknown",
        "A fresh pack without cell voltages (no 0x04 answer) caps the CVL at its own voltage and gets at "
        "most CELLS_UNKNOWN_CHARGE_FRACTION of its charge limit.",
    ),
    (
        "Imbalance step",
        "While a voltage or SoC imbalance lasts the CVL is lowered by cells x IMBALANCE_CVL_STEP (not "
        "below cells x MIN_CHARGE_CELL_VOLTAGE), except during a SoC reset charge, which must reach the "
        "top so every BMS resynchronises its SoC.",
    ),
    (
        "CVL floor",
        "The CVL is never below cells x MIN_CELL_VOLTAGE, and never published as 0 V: before the first "
        "active pack it is unknown.",
    ),
    (
        "Pack limit",
        "Each fresh pack: its own limit x its cell-voltage taper (highest cell for charge, lowest for "
        "discharge) x its temperature curve (coldest and hottest cell sensor) x its MOSFET curve. FET off "
        "or a blocking protection: 0.",
    ),
    (
        "Temperature sensors",
        "Only cell sensors count as cell temperatures (CELL_TEMPERATURE_SENSORS, "
        "MOSFET_TEMPERATURE_SENSOR). A reading outside -40..100 degC or one that jumps faster than a pack "
        "can warm is dropped with one warning and /Alarms/TemperatureSensor; a pack left without a "
        "plausible cell sensor (none fitted, or all faulty) gets the TEMPERATURE_UNKNOWN_*_FRACTION of "
        "its limits.",
    ),
    (
        "Bank limit",
        "CCL (DCL) = the least of MAX_BATTERY_CHARGE_CURRENT (DISCHARGE), the sum of the pack limits and "
        "the share limit min(limit_i / share_i), so the pack taking the largest share of the current "
        "stays within its own limit. Shares are measured above SHARE_MIN_BANK_CURRENT, otherwise capacity "
        "shares (a pack tapered to 0 A with its FET on keeps its share).",
    ),
    (
        "Stop rules",
        "Any active pack with a cell at or above CELL_OVERVOLTAGE or reporting cell/pack over-voltage or "
        "a charge temperature protection sets the CCL to 0 for the whole bank; likewise CELL_UNDERVOLTAGE "
        "and the discharge protections for the DCL. A temperature protection from a pack whose sensor is "
        "judged faulty stops only that pack. A pack whose cells aged out (0x04 stopped answering, 0x03 still "
        "comes) keeps the verdict of its newest cells: if they stopped charging (a cell at or above "
        "CELL_OVERVOLTAGE, or the cell-voltage taper at 0) the CCL stays 0 until fresh cells clear it, and "
        "the current recovery applies from there; likewise the DCL. A pack whose last cells were fine is "
        "only stale (Dropout).",
    ),
    (
        "Dropout",
        "A pack inside PACK_DROPOUT_GRACE (stale) gives no CCL at once (it may have opened its FETs). If "
        "its last readings were safe (no protection, discharge FET on, a discharge limit above 0 by its "
        "cells and temperatures) it keeps PACK_DROPOUT_DISCHARGE_FRACTION of that limit in the DCL, so a "
        "short link loss of every pack (an adapter reset) does not black the bank out. Not with "
        "BLOCK_ON_DISCONNECT = True (discharge blocked at once, as in serialbattery). While no pack is "
        "fresh the DCL is the larger of this and what BLOCK_ON_DISCONNECT = False keeps (the last DCL, for "
        "BLOCK_ON_DISCONNECT_TIMEOUT_MINUTES, when the last cells lay in its voltage band).",
    ),
    (
        "Blind bank and stop",
        "With no fresh pack at all the CCL is 0 at once. With BLOCK_ON_DISCONNECT = False and every pack's "
        "last cells inside BLOCK_ON_DISCONNECT_VOLTAGE_MIN..MAX the last DCL is kept, never rising, for "
        "BLOCK_ON_DISCONNECT_TIMEOUT_MINUTES (pipeline/disconnect.py). The same policy sets the DCL "
        "published when the service stops (CCL 0 then, CVL the last one). The no-data watchdog (--watchdog, "
        "600 s by default) ends a long outage first: the service restarts and publishes no limits until a "
        "pack reports again, which Venus treats as the BMS gone.",
    ),
    ("Imbalance derate", "While any imbalance lasts the CCL is multiplied by IMBALANCE_CHARGE_FRACTION."),
    (
        "Rise rates",
        "Limits fall at once. CCL and DCL rise at most CURRENT_LIMIT_RISE_RATE A/s, after any outage as "
        "after any derate; only the first limits after the service starts are taken as computed.",
    ),
    (
        "CVL recovery",
        "The CVL does not rise while a cell holds it down (penalty method, cells unknown). A cell that went "
        f"above the cell limit holds it until the highest cell is {CELL_LIMIT_HYSTERESIS} V below the limit, "
        "so a cell reading 3.451 V and 3.450 V by turns does not flip '(CVL held by the cells)' in "
        "/Info/ChargeMode. After that, and after any fall, the CVL holds CVL_RECOVERY_HOLD_SEC, then rises "
        "at most CVL_RECOVERY_RATE_V_PER_SEC.",
    ),
    (
        "Current recovery",
        "A CCL (DCL) that fell to 0 by a cell-voltage, temperature or protection rule (not an outage) "
        "stays 0 until the computed limit has stayed at or above "
        "CHARGE_CURRENT_RECOVERY_THRESHOLD_PERCENT (DISCHARGE_...) x the bank maximum for "
        "CCL_RECOVERY_HOLD_SEC (DCL_...): no on/off cycling at the bottom of the discharge.",
    ),
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
    mosfet_points: tuple[float, ...]
    mosfet_fractions: tuple[float, ...]
    temperature_unknown: float  # fraction when no plausible cell sensor (or MOSFET sensor) is left
    cells_unknown: float  # fraction when the cell voltages are unknown
    dropout: float  # fraction of a stale pack's last safe limit that still counts
    recovery_threshold: float  # fraction of bank_max a limit at 0 must reach to recover
    recovery_hold: float  # s it must stay there


def _ascending(points: tuple[float, ...], fractions: tuple[float, ...]) -> tuple[tuple[float, ...], ...]:
    return (points[::-1], fractions[::-1]) if points[0] > points[-1] else (points, fractions)


_SIDES: dict[int, tuple[Config, tuple[_Side, _Side]]] = {}  # id(config) -> (config, sides), built once

# Protection bits about temperature: a faulty sensor may have caused them.
_TEMPERATURE_STOPS = int(
    Protection.CHARGE_OVERTEMPERATURE
    | Protection.CHARGE_UNDERTEMPERATURE
    | Protection.DISCHARGE_OVERTEMPERATURE
    | Protection.DISCHARGE_UNDERTEMPERATURE
)


def _sides(cfg: Config) -> tuple[_Side, _Side]:
    cached = _SIDES.get(id(cfg))
    if cached is not None and cached[0] is cfg:
        return cached[1]
    charge = _Side(
        "charge", 1.0, cfg.max_battery_charge_current, int(STOP_CHARGE), int(CHARGE_BLOCKING),
        *_ascending(cfg.cell_voltages_while_charging, cfg.max_charge_current_cv_fraction),
        *_ascending(cfg.temperatures_while_charging, cfg.max_charge_current_t_fraction),
        *_ascending(cfg.mosfet_temperatures_while_charging, cfg.max_charge_current_t_mosfet_fraction),
        cfg.temperature_unknown_charge_fraction, cfg.cells_unknown_charge_fraction, 0.0,
        cfg.charge_current_recovery_threshold_percent, cfg.ccl_recovery_hold_sec,
    )  # fmt: skip
    discharge = _Side(
        "discharge", -1.0, cfg.max_battery_discharge_current, int(STOP_DISCHARGE), int(DISCHARGE_BLOCKING),
        *_ascending(cfg.cell_voltages_while_discharging, cfg.max_discharge_current_cv_fraction),
        *_ascending(cfg.temperatures_while_discharging, cfg.max_discharge_current_t_fraction),
        *_ascending(cfg.mosfet_temperatures_while_discharging, cfg.max_discharge_current_t_mosfet_fraction),
        cfg.temperature_unknown_discharge_fraction, 1.0,
        # BLOCK_ON_DISCONNECT = True: discharge is blocked at once on a lost link, as in serialbattery
        0.0 if cfg.block_on_disconnect else cfg.pack_dropout_discharge_fraction,
        cfg.discharge_current_recovery_threshold_percent, cfg.dcl_recovery_hold_sec,
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


def _cells_known(status: PackStatus) -> bool:
    assert status.reading is not None
    return status.reading.cells is not None and bool(status.reading.cells.voltages)


def _extremes(status: PackStatus) -> tuple[float, float] | None:
    """(lowest, highest) cell of the pack, once per tick: both directions and the stop rules need them."""
    cells = _cells(status)
    return (min(cells), max(cells)) if cells else None


def pack_temperatures(
    snapshot: BankSnapshot, specs: Sequence[PackSpec], cfg: Config
) -> dict[int, PackTemperatures]:
    """Every active pack's sensors judged on this snapshot alone (range only; the pipeline checks jumps)."""
    by_number = {spec.number: spec for spec in specs}
    out: dict[int, PackTemperatures] = {}
    for status in snapshot.packs:
        if status.active and status.reading is not None:
            temps = status.reading.info.temperatures
            roles = sensor_roles(by_number.get(status.pack), cfg, len(temps))
            out[status.pack] = judge_temperatures(temps, status.reading.time, roles)[0]
    return out


def _temperature_fraction(temps: PackTemperatures, side: _Side) -> tuple[float, str]:
    """The pack's temperature derating and its name, cell sensors and MOSFET sensor together."""
    if temps.cells_known:
        fraction = min(
            _interpolate_ascending(min(temps.cells), side.temp_points, side.temp_fractions),
            _interpolate_ascending(max(temps.cells), side.temp_points, side.temp_fractions),
        )
        why = "temperature"
    else:
        fraction, why = side.temperature_unknown, "temperature unknown"
    if temps.mosfet is not None:
        mosfet = _interpolate_ascending(temps.mosfet, side.mosfet_points, side.mosfet_fractions)
        if mosfet < fraction:
            fraction, why = mosfet, "MOSFET temperature"
    elif temps.mosfet_expected and side.temperature_unknown < fraction:
        fraction, why = side.temperature_unknown, "MOSFET temperature unknown"
    return fraction, why


def pack_limit(
    status: PackStatus,
    limit: float,
    side: _Side,
    extremes: tuple[float, float] | None,
    temps: PackTemperatures | None = None,
) -> tuple[float, str | None]:
    """One pack's effective limit (A) and, when it is below ``limit``, why ("FET off", a protection,
    "cell voltage", "cells unknown", "temperature", "temperature unknown", "MOSFET temperature")."""
    assert status.reading is not None
    info = status.reading.info
    fet = info.charge_fet if side.sign > 0 else info.discharge_fet
    if not fet:
        return 0.0, "FET off"
    blocked = int(info.protection) & side.blocking
    if blocked:
        return 0.0, ",".join(Protection(blocked).names())
    fractions: list[tuple[float, str]] = []
    if extremes is not None:
        cell = extremes[1] if side.sign > 0 else extremes[0]
        taper = _interpolate_ascending(cell, side.cell_points, side.cell_fractions)
        fractions.append((taper, "cell voltage"))
    if not _cells_known(status):
        fractions.append((side.cells_unknown, "cells unknown"))
    if temps is None:
        temps = PackTemperatures(tuple(t for t in info.temperatures if math.isfinite(t)))
    fractions.append(_temperature_fraction(temps, side))
    fraction, why = min(fractions, key=lambda pair: pair[0])
    effective = limit * fraction
    if effective >= limit:
        return limit, None
    return effective, why


def _stop_reason(
    active: Sequence[PackStatus],
    side: _Side,
    cfg: Config,
    extremes: dict[int, tuple[float, float] | None],
    temperatures: dict[int, PackTemperatures],
) -> str | None:
    for status in active:
        assert status.reading is not None
        hit = int(status.reading.info.protection) & side.stop
        temps = temperatures.get(status.pack)
        if hit and temps is not None and temps.faults:
            hit &= ~_TEMPERATURE_STOPS  # its own FET stays off; the bank does not follow a broken sensor
        if hit:
            return f"pack {status.pack} {','.join(Protection(hit).names())}"
        cells = extremes[status.pack]
        if cells is None:
            continue
        if side.sign > 0 and cells[1] >= cfg.cell_overvoltage:
            return f"pack {status.pack} cell over-voltage {cells[1]:.3f} V"
        if side.sign < 0 and cells[0] <= cfg.cell_undervoltage:
            return f"pack {status.pack} cell under-voltage {cells[0]:.3f} V"
        held = _last_cells_stop(status, side, cfg)
        if held is not None:
            return held
    return None


def _last_cells_stop(status: PackStatus, side: _Side, cfg: Config) -> str | None:
    """A stop the pack's newest cells called for, once they have aged out (0x04 stopped answering, 0x03
    still comes): the cells were last seen at the stop threshold, or where the taper allows the pack nothing,
    and nothing fresher says they came back. Without it the stale pack would give only its own share (0) and
    the other packs would charge it along with them. A pack whose last cells were fine is merely stale."""
    if status.last_cells is None or not status.last_cells.voltages:
        return None
    voltages = status.last_cells.voltages
    cell = max(voltages) if side.sign > 0 else min(voltages)
    stop = cell >= cfg.cell_overvoltage if side.sign > 0 else cell <= cfg.cell_undervoltage
    if not stop and _interpolate_ascending(cell, side.cell_points, side.cell_fractions) > 0:
        return None
    return f"pack {status.pack} {side.name} stopped by cell {cell:.3f} V, cells stale"


def shares(fresh: Sequence[PackStatus], side: _Side, min_bank_current: float) -> dict[int, float] | None:
    """Each fresh pack's measured share of the bank current in this direction; None below the minimum.

    A pack counts by the current it measures, whatever its FET flag says: one that reports its FET off while
    still carrying current (the poll that caught the moment it tripped) is taking current, so its share (and
    its limit of 0) count, and the bank falls to 0 for that moment rather than trusting the flag."""
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


def _capacity_shares(packs: Sequence[PackStatus], side: _Side) -> dict[int, float]:
    """Packs that can take current split it by capacity (the prior when shares cannot be measured).

    A pack tapered or derated to 0 A still has its FET on and takes its share: it must stay in here, or the
    bank limit would be set by the other packs alone and push current into the pack that must get none."""
    open_packs = [s for s in packs if s.reading is not None and _conducts(s, side)]
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


def _share_limit(limits: dict[int, float], by_share: dict[int, float]) -> float:
    return min((limits[p] / share for p, share in by_share.items() if share > 0), default=math.inf)


def side_limit(
    snapshot: BankSnapshot,
    specs: Sequence[PackSpec],
    side: _Side,
    cfg: Config,
    extremes: dict[int, tuple[float, float] | None] | None = None,
    temperatures: dict[int, PackTemperatures] | None = None,
) -> tuple[float, list[str]]:
    """CCL or DCL before imbalance derating and rate limiting, with the reasons it is below the maximum."""
    active = [s for s in snapshot.packs if s.active and s.reading is not None]
    if not active:
        return 0.0, ["no active pack"]
    if extremes is None:
        extremes = {s.pack: _extremes(s) for s in active}
    if temperatures is None:
        temperatures = pack_temperatures(snapshot, specs, cfg)
    stop = _stop_reason(active, side, cfg, extremes, temperatures)
    if stop is not None:
        return 0.0, [stop]
    by_number = {spec.number: spec for spec in specs}
    fresh = [s for s in active if s.fresh]
    stale = [s for s in active if not s.fresh]
    limits: dict[int, float] = {}
    lowered: dict[str, list[str]] = {}  # why -> pack numbers, so 16 tapering packs make one reason
    for status in active:
        spec = by_number.get(status.pack)
        own = (spec.charge_limit if side.sign > 0 else spec.discharge_limit) if spec else 0.0
        limit, why = pack_limit(status, own, side, extremes[status.pack], temperatures.get(status.pack))
        if not status.fresh:
            limit, why = limit * side.dropout, None
        limits[status.pack] = limit
        if why:
            lowered.setdefault(why, []).append(str(status.pack))
    reasons = [f"pack {s.pack} stale" for s in stale]
    reasons += [
        f"{side.name} {why}: pack{'s' if len(numbers) > 1 else ''} {','.join(numbers)}"
        for why, numbers in lowered.items()
    ]
    total = sum(limits.values())
    if fresh:
        measured = shares(fresh, side, cfg.share_min_bank_current)
        by_share = measured if measured is not None else _capacity_shares(fresh, side)
        kind = "measured" if measured is not None else "capacity"
    else:  # only stale packs: nothing measured now, assume the packs that last conducted split by capacity
        by_share, kind = _capacity_shares(stale, side), "capacity"
    share_limit = _share_limit(limits, by_share)
    result = min(side.bank_max, total, share_limit)
    if result == share_limit and share_limit < min(side.bank_max, total):
        reasons.append(f"{side.name} share limit ({kind} shares)")
    return max(0.0, result), reasons


@dataclass(frozen=True, slots=True)
class VoltageTarget:
    """What the charge mode asks of the CVL: the cell voltage it aims at, the cell limit the penalty method
    holds every cell to, whether a SoC reset charge is under way (it overrides the imbalance step), and
    whether a cell went above the cell limit and has not fallen clearly below it yet (the hysteresis the
    charge mode keeps: the cells still hold the CVL)."""

    cell_voltage: float
    cell_limit: float
    soc_reset: bool = False
    cells_high: bool = False


def bulk_target(cfg: Config) -> VoltageTarget:
    return VoltageTarget(cfg.max_cell_voltage, cfg.max_cell_voltage)


def measured_voltage(active: Sequence[PackStatus]) -> float | None:
    """The bank's voltage for the penalty method: the lowest any active pack measures, by its 0x03 voltage or
    its cells' sum (the packs share one bus; the lowest reading errs toward a lower CVL)."""
    values = []
    for status in active:
        assert status.reading is not None
        values.append(status.reading.info.voltage)
        if status.reading.cells is not None and status.reading.cells.voltages:
            values.append(sum(status.reading.cells.voltages))
    finite = [v for v in values if math.isfinite(v) and v > 0]
    return min(finite) if finite else None


def charge_voltage(
    snapshot: BankSnapshot, imbalance: ImbalanceStatus, cfg: Config, target: VoltageTarget | None = None
) -> tuple[float, list[str], bool]:
    """CVL (see :data:`RULES`), why it is below the ceiling, and whether the cells hold it down; 0 when no
    pack is active (unknown: :func:`next_limits` keeps the last one)."""
    cells = snapshot.cells_per_pack
    if not cells:
        return 0.0, [], False
    target = target or bulk_target(cfg)
    ceiling = cells * target.cell_voltage
    floor = cells * cfg.min_cell_voltage
    cvl, reasons = ceiling, []
    if (imbalance.voltage or imbalance.soc) and not target.soc_reset:
        cvl = min(ceiling, max(ceiling - cells * cfg.imbalance_cvl_step, cells * cfg.min_charge_cell_voltage))
        reasons.append("voltage imbalance" if imbalance.voltage else "soc imbalance")
    active = [s for s in snapshot.packs if s.active and s.reading is not None]
    bank_voltage = measured_voltage(active)
    by_cells = target.cells_high
    for status in active:
        assert status.reading is not None
        if not _cells_known(status):
            own = status.reading.info.voltage
            cvl = min(cvl, own if math.isfinite(own) and own > 0 else floor)
            reasons.append(f"pack {status.pack} cells unknown")
            by_cells = True
            continue
        assert status.reading.cells is not None
        excess = sum(v - target.cell_limit for v in status.reading.cells.voltages if v > target.cell_limit)
        if excess > 0:
            cvl = min(cvl, bank_voltage - excess if bank_voltage is not None else floor)
            high = max(status.reading.cells.voltages)
            reasons.append(f"pack {status.pack} cell {high:.3f} V above {target.cell_limit:.3f} V")
            by_cells = True
    return min(ceiling, max(cvl, floor)), reasons, by_cells


def target_limits(
    snapshot: BankSnapshot,
    imbalance: ImbalanceStatus,
    specs: Sequence[PackSpec],
    cfg: Config,
    voltage_target: VoltageTarget | None = None,
    temperatures: dict[int, PackTemperatures] | None = None,
) -> ChargeLimits:
    """The limits this snapshot calls for, before rise rates and recovery holds."""
    charge, discharge = _sides(cfg)
    extremes = {s.pack: _extremes(s) for s in snapshot.packs if s.active and s.reading is not None}
    if temperatures is None:
        temperatures = pack_temperatures(snapshot, specs, cfg)
    ccl, charge_reasons = side_limit(snapshot, specs, charge, cfg, extremes, temperatures)
    dcl, discharge_reasons = side_limit(snapshot, specs, discharge, cfg, extremes, temperatures)
    if imbalance.any and ccl > 0:
        ccl *= cfg.imbalance_charge_fraction
        charge_reasons.append("imbalance derate")
    cvl, cvl_reasons, by_cells = charge_voltage(snapshot, imbalance, cfg, voltage_target)
    reasons = dict.fromkeys(charge_reasons + discharge_reasons + cvl_reasons)  # ordered, no duplicates
    ccl, dcl = _safe(ccl), _safe(dcl)
    return ChargeLimits(
        _safe(cvl), ccl, dcl, tuple(reasons),
        _reason(ccl, charge.bank_max, charge_reasons), _reason(dcl, discharge.bank_max, discharge_reasons),
        by_cells,
    )  # fmt: skip


def _reason(value: float, maximum: float, reasons: list[str]) -> str:
    """Short text of the rule that binds a current limit; "" at the bank maximum (D-Bus names the key)."""
    if value >= maximum:
        return ""
    return "; ".join(reasons) or "pack limits"


def _safe(value: float) -> float:
    """Every published limit is finite and >= 0, whatever went in."""
    return value if math.isfinite(value) and value > 0 else 0.0


@dataclass(frozen=True, slots=True)
class LimitMemory:
    """What the limits remember between ticks (pure state, replaced each tick)."""

    limits: ChargeLimits | None = None  # last published
    cvl_cut_at: float | None = None  # when the CVL last fell (its recovery hold runs from here)
    charge_held: bool = False  # CCL at 0 by a rule, waiting for recovery
    charge_ok_since: float | None = None  # since when the computed CCL is above its recovery threshold
    discharge_held: bool = False
    discharge_ok_since: float | None = None


def _recover(
    held: bool,
    ok_since: float | None,
    previous: float,
    target: float,
    side: _Side,
    now: float,
    step: float,
    outage: bool,
) -> tuple[float, bool, float | None]:
    """One current limit after the rise rate and the recovery hold: (value, held, ok_since)."""
    if held:
        ok = target > 0 and target >= side.recovery_threshold * side.bank_max
        ok_since = (now if ok_since is None else ok_since) if ok else None
        if ok_since is None or now - ok_since < side.recovery_hold:
            return 0.0, True, ok_since
        held, ok_since = False, None
    value = min(target, previous + step)
    # A 0 from a rule (cells, temperature, protection) is held; a 0 from an outage recovers by the rise rate.
    return value, value <= 0 and target <= 0 and not outage, None


def next_limits(
    memory: LimitMemory, target: ChargeLimits, now: float, dt: float, cfg: Config, outage: bool = False
) -> tuple[ChargeLimits, LimitMemory]:
    """The limits to publish now, from the target and what the previous ticks left (see :data:`RULES`).

    ``memory.limits`` None (the first limits since the service started) takes the target as it is: ramping
    from an uninformed 0 would only throttle the inverter after every restart. ``outage``: no pack is fresh,
    so a 0 is the lack of data, not a rule that needs a recovery hold. ``dt``: what the rise rates may use."""
    charge, discharge = _sides(cfg)
    previous = memory.limits
    if previous is None:
        charge_held = target.charge_current <= 0 and not outage
        discharge_held = target.discharge_current <= 0 and not outage
        first = LimitMemory(target, None, charge_held, None, discharge_held, None)
        return target, first
    step = max(dt, 0.0) * cfg.current_limit_rise_rate
    ccl, charge_held, charge_ok = _recover(
        memory.charge_held, memory.charge_ok_since, previous.charge_current, target.charge_current, charge,
        now, step, outage,
    )  # fmt: skip
    dcl, discharge_held, discharge_ok = _recover(
        memory.discharge_held, memory.discharge_ok_since, previous.discharge_current,
        target.discharge_current, discharge, now, step, outage,
    )  # fmt: skip
    cut = memory.cvl_cut_at
    if target.cvl_by_cells:  # while a cell is too high (or unknown) the hold restarts: the CVL may not rise
        cut = now
    cvl, cut_at = _next_cvl(previous.charge_voltage, target.charge_voltage, cut, now, dt, cfg)
    reasons = target.reasons
    charge_reason = _rising(target.charge_reason, ccl < target.charge_current, charge_held)
    discharge_reason = _rising(target.discharge_reason, dcl < target.discharge_current, discharge_held)
    if ccl < target.charge_current or dcl < target.discharge_current or cvl < target.charge_voltage:
        reasons = (*reasons, "rising")
    limits = ChargeLimits(cvl, ccl, dcl, reasons, charge_reason, discharge_reason, target.cvl_by_cells)
    return limits, LimitMemory(limits, cut_at, charge_held, charge_ok, discharge_held, discharge_ok)


def _next_cvl(
    previous: float, target: float, cut_at: float | None, now: float, dt: float, cfg: Config
) -> tuple[float, float | None]:
    """CVL falls at once; after a fall it holds CVL_RECOVERY_HOLD_SEC, then rises at
    CVL_RECOVERY_RATE_V_PER_SEC (0: at once). An unknown target (0: no active pack) keeps the last value."""
    if target == 0.0 or previous == 0.0:
        return target or previous, cut_at
    if target < previous:
        return target, now
    if cut_at is not None and now - cut_at < cfg.cvl_recovery_hold_sec:
        return previous, cut_at
    rate = cfg.cvl_recovery_rate_v_per_sec
    cvl = target if rate <= 0 else min(target, previous + max(dt, 0.0) * rate)
    return cvl, None if cvl >= target else cut_at


def _rising(reason: str, rising: bool, held: bool) -> str:
    """The target's reason, and why the published limit is below it (held for recovery, or rising)."""
    if not rising:
        return reason
    why = "recovery hold" if held else "rising"
    return f"{reason}, {why}" if reason else why
