"""A simulated JBD LFP pack that behaves like a battery, and a bank of them wired in parallel.

The physics is deliberately small but honest: cells in series, each with its own capacity, state of charge,
resistance and an LFP open-circuit-voltage curve; pack temperature from I²R heating relaxing to ambient;
passive balancing of the highest cells while charging; protections with release hysteresis that open the
charge or discharge FET; a coulomb counter that is what the BMS reports as remaining capacity.

A :class:`SimBank` puts packs in parallel: one terminal voltage, the bank current split by each pack's OCV and
resistance (only through packs whose FETs let that direction pass), so different SoC, capacity and age make
the imbalance appear by themselves. The caller owns time: nothing here reads a clock or uses asyncio.
Randomness (per-cell manufacturing spread, measurement noise) comes from a seeded ``random.Random``.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime
import math
import random
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from btbattery.model import (
    CHARGE_BLOCKING,
    DISCHARGE_BLOCKING,
    BasicInfo,
    CellVoltages,
    HardwareInfo,
    Protection,
)
from btbattery.protocol import jbd

# LFP cell open-circuit voltage against state of charge (fraction). Flat plateau 3.2-3.35 V with knees at
# both ends; beyond 0..1 the curve continues steeply so over-charging or over-discharging a cell drives it
# through its protection limits the way a real cell does.
_OCV_SOC = (
    -0.03,
    0.0,
    0.01,
    0.03,
    0.06,
    0.10,
    0.20,
    0.35,
    0.50,
    0.65,
    0.80,
    0.90,
    0.95,
    0.97,
    0.99,
    1.00,
    1.02,
    1.05,
)
_OCV_V = (
    2.00,
    2.50,
    2.80,
    3.00,
    3.12,
    3.20,
    3.25,
    3.27,
    3.29,
    3.30,
    3.32,
    3.33,
    3.34,
    3.36,
    3.42,
    3.52,
    3.75,
    4.20,
)
SOC_MIN = _OCV_SOC[0]
SOC_MAX = _OCV_SOC[-1]


def lfp_ocv(soc: float) -> float:
    """Open-circuit voltage (V) of one LFP cell at ``soc`` (fraction, clamped to the curve's ends)."""
    if soc <= SOC_MIN:
        return _OCV_V[0]
    if soc >= SOC_MAX:
        return _OCV_V[-1]
    i = bisect.bisect_right(_OCV_SOC, soc)
    s0, s1 = _OCV_SOC[i - 1], _OCV_SOC[i]
    v0, v1 = _OCV_V[i - 1], _OCV_V[i]
    return v0 + (v1 - v0) * (soc - s0) / (s1 - s0)


@dataclass(frozen=True, slots=True)
class PackParams:
    """What a simulated pack is: identity, size, age, and the BMS settings it protects itself with."""

    address: str
    name: str = "JBD-SP04S034"
    cell_count: int = 16
    capacity_ah: float = 100.0
    soc: float = 60.0  # %, initial
    resistance_ohm: float = 0.02  # whole pack at 25 degC, cells plus busbars
    temperature_c: float = 25.0  # initial pack temperature
    ambient_c: float = 25.0
    cycles: int = 0
    model: str = "SP04S034-L16S-100A"
    charge_limit_a: float = 100.0  # above this for long the BMS trips charge over-current
    discharge_limit_a: float = 100.0
    cell_spread: float = 0.5  # %, initial per-cell SoC spread (max - min)
    ntc_count: int = 2
    production_date: datetime.date | None = datetime.date(2023, 6, 1)
    software_version: float = 3.8
    # Thermal: J/K of the whole pack and K/W to ambient.
    heat_capacity_j_k: float = 20000.0
    thermal_resistance_k_w: float = 0.5
    # BMS protection settings (typical JBD LFP defaults).
    cell_ov_v: float = 3.65
    cell_ov_release_v: float = 3.50
    cell_uv_v: float = 2.50
    cell_uv_release_v: float = 2.90
    charge_ot_c: float = 55.0
    charge_ot_release_c: float = 50.0
    charge_ut_c: float = 0.0
    charge_ut_release_c: float = 5.0
    discharge_ot_c: float = 65.0
    discharge_ot_release_c: float = 55.0
    discharge_ut_c: float = -20.0
    discharge_ut_release_c: float = -15.0
    overcurrent_release_s: float = 32.0
    # Passive balancing: bleed the cells above start voltage and more than delta above the lowest.
    balance_start_v: float = 3.40
    balance_delta_v: float = 0.015
    balance_current_a: float = 0.06
    # Locks of newer Bluetooth modules (../shared/reference/jbd-auth.md). ``password``: the FF AA handshake
    # password; DD A5 requests go unanswered until it is given. ``pairing``: "none", "passkey" (GATT refused
    # with "Not paired" until a passkey bond exists) or "echo" (every write comes back as its own echo
    # until a passkey bond exists, esphome-jbd-bms #245); ``passkey`` is the one such a unit wants.
    password: str | None = None
    pairing: str = "none"
    passkey: int | None = None


PAIRING_KINDS = ("none", "passkey", "echo")

# Changes that are not plain parameters: they act on the state.
STATE_CHANGES = ("soc", "temperature_c", "cell_soc", "ntc_fault")
# What a JBD reports for an open (broken) NTC: the register holds 0.1 K units, raw 0 decodes as -273.1 degC,
# the reading the issue-10 review saw from a pack with a broken sensor.
OPEN_NTC_C = -273.1


@dataclass(slots=True)
class _Cell:
    capacity_ah: float
    resistance_ohm: float
    soc: float  # fraction, may leave 0..1 slightly when mistreated


class SimPack:
    """One simulated JBD pack: physics state plus the protocol answers a real BMS gives."""

    def __init__(self, params: PackParams, seed: int = 0) -> None:
        self.params = params
        # Stable across processes (str hash is salted): each pack gets its own stream from one seed.
        self._rng = random.Random(seed * 1_000_003 + zlib.crc32(params.address.encode()))
        self.current = 0.0  # A, + = charging, true value
        self.temperature = params.temperature_c
        self.protection = Protection.NONE
        self.balance_bits = 0
        self.cycles = params.cycles
        self._discharged_ah = 0.0
        self._overcurrent_timer = 0.0
        self._ntc_offsets = tuple(self._rng.uniform(-0.4, 0.4) for _ in range(params.ntc_count))
        self._ntc_faults: dict[int, float] = {}  # sensor number -> the fixed value a broken NTC reads
        self.cells = [self._make_cell(params) for _ in range(params.cell_count)]
        self._spread_offsets = [self._rng.uniform(-0.5, 0.5) * params.cell_spread / 100 for _ in self.cells]
        self._set_soc(params.soc)
        self._info: BasicInfo
        self._cells: CellVoltages
        self._measure()
        # The handshake's random bytes come from their own stream, so a lock does not change the physics.
        self._auth_rng = random.Random(seed * 1_000_003 + zlib.crc32(params.address.encode()) + 1)
        self._random: int | None = None
        self.unlocked = params.password is None
        self.handshakes = 0  # 0x18 frames answered, right or wrong

    def new_session(self) -> None:
        """A new BLE connection: a locked module wants the handshake again."""
        self.unlocked = self.params.password is None
        self._random = None

    def _make_cell(self, params: PackParams) -> _Cell:
        capacity = params.capacity_ah * (1 + self._rng.gauss(0, 0.005))
        resistance = params.resistance_ohm / params.cell_count * (1 + self._rng.gauss(0, 0.05))
        return _Cell(capacity, max(resistance, 1e-5), params.soc / 100)

    def _set_soc(self, soc_pct: float) -> None:
        for cell, offset in zip(self.cells, self._spread_offsets, strict=True):
            cell.soc = min(max(soc_pct / 100 + offset, 0.0), 1.0)
        self.remaining_ah = min(max(soc_pct, 0.0), 100.0) / 100 * self.params.capacity_ah

    # ----- electrical model ------------------------------------------------------------------------------

    @property
    def fet_allows_charge(self) -> bool:
        return not self.protection & CHARGE_BLOCKING

    @property
    def fet_allows_discharge(self) -> bool:
        return not self.protection & DISCHARGE_BLOCKING

    def _resistance_factor(self) -> float:
        # LFP internal resistance rises in the cold and falls a little when warm.
        return max(0.7, 1 + 0.015 * (25.0 - self.temperature))

    @property
    def ocv(self) -> float:
        """Open-circuit voltage of the pack (V): its cells' OCVs in series."""
        return sum(lfp_ocv(c.soc) for c in self.cells)

    @property
    def resistance(self) -> float:
        """Pack internal resistance now (ohm), temperature included."""
        return sum(c.resistance_ohm for c in self.cells) * self._resistance_factor()

    def cell_terminal_voltages(self) -> list[float]:
        factor = self._resistance_factor()
        return [lfp_ocv(c.soc) + self.current * c.resistance_ohm * factor for c in self.cells]

    @property
    def terminal_voltage(self) -> float:
        return self.ocv + self.current * self.resistance

    @property
    def true_soc(self) -> float:
        """Mean cell SoC in % (what a perfect gauge would say), for tests and scenarios."""
        return 100 * sum(c.soc for c in self.cells) / len(self.cells)

    # ----- time step -------------------------------------------------------------------------------------

    def step(self, dt: float, current: float) -> None:
        """Advance ``dt`` seconds carrying ``current`` (A, + = charging) through the pack's cells."""
        if dt <= 0:
            return
        self.current = current
        self._flow_charge(dt, current)
        self._heat(dt, current)
        self._balance(dt, current)
        self._count(dt, current)
        self._protect(dt, current)
        self._measure()

    def _flow_charge(self, dt: float, current: float) -> None:
        for cell in self.cells:
            cell.soc = min(max(cell.soc + current * dt / 3600 / cell.capacity_ah, SOC_MIN), SOC_MAX)

    def _heat(self, dt: float, current: float) -> None:
        p = self.params
        heat_w = current * current * self.resistance
        heat_w += bin(self.balance_bits).count("1") * p.balance_current_a * 3.4
        # C dT/dt = heat - (T - ambient) / R_th, solved exactly over the step so large steps stay stable.
        target = p.ambient_c + heat_w * p.thermal_resistance_k_w
        tau = p.heat_capacity_j_k * p.thermal_resistance_k_w
        self.temperature = target + (self.temperature - target) * math.exp(-dt / tau)

    def _balance(self, dt: float, current: float) -> None:
        p = self.params
        bits = 0
        if current > 0.1:
            volts = self.cell_terminal_voltages()
            floor = min(volts) + p.balance_delta_v
            for i, (v, cell) in enumerate(zip(volts, self.cells, strict=True)):
                if v >= p.balance_start_v and v > floor:
                    bits |= 1 << i
                    cell.soc -= p.balance_current_a * dt / 3600 / cell.capacity_ah
        self.balance_bits = bits

    def _count(self, dt: float, current: float) -> None:
        """The BMS's own coulomb counter and cycle count (it cannot see the cells' true SoC)."""
        p = self.params
        self.remaining_ah = min(max(self.remaining_ah + current * dt / 3600, 0.0), p.capacity_ah)
        if current < 0:
            self._discharged_ah -= current * dt / 3600
            # JBD counts a cycle per 80 % of nominal capacity discharged.
            while self._discharged_ah >= 0.8 * p.capacity_ah:
                self._discharged_ah -= 0.8 * p.capacity_ah
                self.cycles += 1

    def _ntc_values(self) -> list[float]:
        """What the BMS's NTCs read (noise aside): the pack temperature, or a broken sensor's fixed value."""
        return [
            self._ntc_faults.get(n, self.temperature + offset)
            for n, offset in enumerate(self._ntc_offsets, 1)
        ]

    def _protect(self, dt: float, current: float) -> None:
        p = self.params
        volts = self.cell_terminal_voltages()
        high, low = max(volts), min(volts)
        flags = self.protection
        flags = _latch(flags, Protection.CELL_OVERVOLTAGE, high > p.cell_ov_v, high < p.cell_ov_release_v)
        flags = _latch(flags, Protection.CELL_UNDERVOLTAGE, low < p.cell_uv_v, low > p.cell_uv_release_v)
        n = p.cell_count
        pack_v = sum(volts)
        flags = _latch(
            flags, Protection.PACK_OVERVOLTAGE, pack_v > n * p.cell_ov_v, pack_v < n * p.cell_ov_release_v
        )
        flags = _latch(
            flags, Protection.PACK_UNDERVOLTAGE, pack_v < n * p.cell_uv_v, pack_v > n * p.cell_uv_release_v
        )
        # The BMS knows the temperature only through its NTCs: it judges their hottest and coldest reading (a
        # broken one included), and with none fitted it has no temperature protection at all.
        ntcs = self._ntc_values()
        if ntcs:
            hot, cold = max(ntcs), min(ntcs)
            flags = _latch(
                flags, Protection.CHARGE_OVERTEMPERATURE, hot > p.charge_ot_c, hot < p.charge_ot_release_c
            )
            flags = _latch(
                flags, Protection.CHARGE_UNDERTEMPERATURE, cold < p.charge_ut_c, cold > p.charge_ut_release_c
            )
            flags = _latch(
                flags,
                Protection.DISCHARGE_OVERTEMPERATURE,
                hot > p.discharge_ot_c,
                hot < p.discharge_ot_release_c,
            )
            flags = _latch(
                flags,
                Protection.DISCHARGE_UNDERTEMPERATURE,
                cold < p.discharge_ut_c,
                cold > p.discharge_ut_release_c,
            )
        flags = self._overcurrent(flags, dt, current)
        if flags & Protection.CELL_OVERVOLTAGE and not self.protection & Protection.CELL_OVERVOLTAGE:
            self.remaining_ah = p.capacity_ah  # full: the BMS resynchronises its gauge
        if flags & Protection.CELL_UNDERVOLTAGE and not self.protection & Protection.CELL_UNDERVOLTAGE:
            self.remaining_ah = 0.0
        self.protection = flags

    def _overcurrent(self, flags: Protection, dt: float, current: float) -> Protection:
        """Over-current trips at once and releases by itself after a fixed delay, as JBD firmware does."""
        p = self.params
        oc = Protection.CHARGE_OVERCURRENT | Protection.DISCHARGE_OVERCURRENT
        if flags & oc:
            self._overcurrent_timer -= dt
            if self._overcurrent_timer <= 0:
                flags &= ~oc
        if current > p.charge_limit_a * 1.1:
            flags |= Protection.CHARGE_OVERCURRENT
            self._overcurrent_timer = p.overcurrent_release_s
        elif current < -p.discharge_limit_a * 1.1:
            flags |= Protection.DISCHARGE_OVERCURRENT
            self._overcurrent_timer = p.overcurrent_release_s
        return flags

    # ----- what the BMS reports --------------------------------------------------------------------------

    def _measure(self) -> None:
        """Sample the state as the BMS's ADC sees it (small seeded noise), rounded to the wire's units."""
        rng = self._rng
        cells = tuple(round(v + rng.gauss(0, 0.0005), 3) for v in self.cell_terminal_voltages())
        current = self.current + rng.gauss(0, 0.01 + 0.002 * abs(self.current))
        if abs(current) < 0.05:
            current = 0.0  # the BMS's zero-current deadband
        current = min(max(current, -327.68), 327.67)  # the 16-bit register saturates, as the BMS's does
        p = self.params
        temps = tuple(
            self._ntc_faults[n]
            if n in self._ntc_faults
            else round(self.temperature + off + rng.gauss(0, 0.05), 1)
            for n, off in enumerate(self._ntc_offsets, start=1)
        )
        self._cells = CellVoltages(cells)
        self._info = BasicInfo(
            voltage=round(sum(cells), 2),
            current=round(current, 2),
            remaining_capacity=round(self.remaining_ah, 2),
            nominal_capacity=round(p.capacity_ah, 2),
            cycles=self.cycles,
            production_date=p.production_date,
            balance_bits=self.balance_bits,
            protection=self.protection,
            software_version=p.software_version,
            soc=round(100 * self.remaining_ah / p.capacity_ah) if p.capacity_ah > 0 else 0,
            charge_fet=self.fet_allows_charge,
            discharge_fet=self.fet_allows_discharge,
            cell_count=p.cell_count,
            temperatures=temps,
        )

    def basic_info(self) -> BasicInfo:
        """Register 0x03 as the BMS would answer now."""
        return self._info

    def cell_voltages(self) -> CellVoltages:
        """Register 0x04 as the BMS would answer now."""
        return self._cells

    def hardware(self) -> HardwareInfo:
        return HardwareInfo(self.params.model)

    def respond(self, request: bytes) -> bytes | None:
        """The full response frame to a read of 0x03, 0x04 or 0x05, or to an FF AA handshake frame; None for
        anything else (as a BMS that ignores what it does not understand) and for every read while the
        module is locked (users report silence: BMS_BLE-HA #41)."""
        if jbd.is_auth_frame(request):
            return self._handshake(request)
        if not self.unlocked:
            return None
        try:
            op, register, _ = jbd.parse_request(request)
        except jbd.JbdError:
            return None
        if op != jbd.READ:
            return None
        if register == jbd.REG_BASIC_INFO:
            return jbd.encode_basic_info(self._info)
        if register == jbd.REG_CELL_VOLTAGES:
            return jbd.encode_cell_voltages(self._cells)
        if register == jbd.REG_HARDWARE:
            return jbd.encode_hardware(self.hardware())
        return None

    def _handshake(self, request: bytes) -> bytes | None:
        """Answer FF AA frames like the captured modules; a module without a password ignores them."""
        password = self.params.password
        if password is None:
            return None
        try:
            frame = jbd.parse_auth(request)
        except jbd.JbdError:
            return None
        if frame.command == jbd.AUTH_APP_KEY:
            return jbd.auth_answer(frame.command, 0 if frame.data == jbd.APP_KEY else 1)
        if frame.command == jbd.AUTH_RANDOM:
            self._random = self._auth_rng.randrange(256)
            return jbd.auth_answer(frame.command, self._random)
        if frame.command == jbd.AUTH_PASSWORD:
            self.handshakes += 1
            right = self._random is not None and jbd.check_password(
                self.params.address, password, self._random, frame
            )
            self.unlocked = self.unlocked or right
            return jbd.auth_answer(frame.command, 0 if right else 1)
        if frame.command == jbd.AUTH_ROOT_PASSWORD and self._random is not None:
            right = frame.data == jbd.mix_password(self.params.address, jbd.ROOT_PASSWORD, self._random)
            return jbd.auth_answer(frame.command, 0 if right else 1)
        return None  # 0x16 (change password) and unknown commands: this simulator never changes its password

    def notifications(self, request: bytes) -> list[bytes]:
        """The answer to ``request`` as 20-byte BLE notifications (empty when there is no answer)."""
        frame = self.respond(request)
        return jbd.split_notifications(frame) if frame is not None else []

    # ----- scenario events -------------------------------------------------------------------------------

    def apply(self, field: str, value: object) -> None:
        """Change one thing about the pack mid-run: a :class:`PackParams` field (``resistance_ohm``,
        ``capacity_ah``, ...), or state: ``soc`` (%), ``temperature_c``, ``cell_soc`` ({cell: %}),
        ``ntc_fault`` ({sensor: degC a broken NTC reads, or None})."""
        if field == "soc":
            self._set_soc(float(value))  # type: ignore[arg-type]
        elif field == "temperature_c":
            self.temperature = float(value)  # type: ignore[arg-type]
        elif field == "cell_soc":
            for cell_no, soc in dict(value).items():  # type: ignore[call-overload]
                self.cells[int(cell_no) - 1].soc = min(max(float(soc) / 100, SOC_MIN), SOC_MAX)
        elif field == "ntc_fault":  # {sensor: degC it now reads, or None: repaired}
            for sensor, reads in dict(value).items():  # type: ignore[call-overload]
                if reads is None:
                    self._ntc_faults.pop(int(sensor), None)
                else:
                    self._ntc_faults[int(sensor)] = float(reads)
        else:
            self._apply_param(field, value)
        self._measure()

    def _apply_param(self, field: str, value: object) -> None:
        old = self.params
        if field in ("address", "cell_count", "ntc_count") or field not in PackParams.__dataclass_fields__:
            raise ValueError(f"{field!r} cannot be changed while the pack runs")
        self.params = dataclasses.replace(old, **{field: value})
        if field == "resistance_ohm":
            scale = float(value) / old.resistance_ohm  # type: ignore[arg-type]
            for cell in self.cells:
                cell.resistance_ohm *= scale
        elif field == "capacity_ah":
            # Ageing: the cells lose capacity, keep their charge fraction; the BMS rescales its gauge.
            scale = float(value) / old.capacity_ah  # type: ignore[arg-type]
            for cell in self.cells:
                cell.capacity_ah *= scale
            self.remaining_ah *= scale
        elif field == "cycles":
            self.cycles = int(value)  # type: ignore[call-overload]


def _latch(flags: Protection, bit: Protection, trip: bool, release: bool) -> Protection:
    """Set ``bit`` on ``trip``; clear it only on ``release`` (hysteresis between the two thresholds)."""
    if trip:
        return flags | bit
    if release:
        return flags & ~bit
    return flags


class SimBank:
    """Packs in parallel on one pair of busbars: one terminal voltage, currents split by physics."""

    def __init__(self, packs: Sequence[SimPack]) -> None:
        if not packs:
            raise ValueError("a bank needs at least one pack")
        self.packs = list(packs)
        self._currents: tuple[float, ...] = (0.0,) * len(self.packs)
        self._voltage = self._solve(0.0)[0]

    @property
    def terminal_voltage(self) -> float:
        """Busbar voltage (V) after the last step."""
        return self._voltage

    @property
    def pack_currents(self) -> tuple[float, ...]:
        """Each pack's current (A, + = charging) in the last step; they sum to :attr:`bank_current`."""
        return self._currents

    @property
    def bank_current(self) -> float:
        """The current that actually flowed: less than asked when no pack's FETs let it through."""
        return sum(self._currents)

    def step(self, dt: float, bank_current: float) -> None:
        """Advance every pack by ``dt`` seconds with ``bank_current`` (A, + = charging) into the bank."""
        voltage, currents = self._solve(bank_current)
        self._voltage, self._currents = voltage, currents
        for pack, current in zip(self.packs, currents, strict=True):
            pack.step(dt, current)

    def _solve(self, bank_current: float) -> tuple[float, tuple[float, ...]]:
        """Busbar voltage V and pack currents with V = OCV_i + I_i R_i and sum I_i = bank current, where a
        pack whose FET blocks a direction carries no current that way (its I_i(V) is clamped at 0).

        Sum I_i(V) is continuous, piecewise linear and non-decreasing in V, with kinks only at the OCVs
        of packs with a blocked FET: find the segment between kinks where it reaches the bank current,
        then solve the linear equation exactly over the packs that conduct there."""
        packs = [(p.ocv, p.resistance, p.fet_allows_charge, p.fet_allows_discharge) for p in self.packs]
        kinks = sorted({ocv for ocv, _, charge, discharge in packs if not (charge and discharge)})
        lo, hi = -math.inf, math.inf
        for kink in kinks:
            if _total_current(packs, kink) >= bank_current:
                hi = kink
                break
            lo = kink
        probe = _inside(lo, hi, packs)
        conducting = [
            (ocv, r) for ocv, r, charge, discharge in packs if _conducts(probe, ocv, charge, discharge)
        ]
        if conducting:
            conductance = sum(1 / r for _, r in conducting)
            voltage = (bank_current + sum(ocv / r for ocv, r in conducting)) / conductance
            voltage = min(max(voltage, lo), hi)
        else:
            # No pack conducts here: the charger or load meets an open bank and no current flows.
            voltage = hi if hi < math.inf else lo if lo > -math.inf else probe
        currents = tuple(_pack_current(voltage, *pack) for pack in packs)
        return voltage, currents


_Pack = tuple[float, float, bool, bool]  # ocv, resistance, charge allowed, discharge allowed


def _pack_current(voltage: float, ocv: float, resistance: float, charge: bool, discharge: bool) -> float:
    current = (voltage - ocv) / resistance
    if (current > 0 and not charge) or (current < 0 and not discharge):
        return 0.0
    return current


def _total_current(packs: Sequence[_Pack], voltage: float) -> float:
    return sum(_pack_current(voltage, *pack) for pack in packs)


def _conducts(voltage: float, ocv: float, charge: bool, discharge: bool) -> bool:
    # Both FETs on: linear everywhere. One FET off: linear only on the side the other one passes.
    return (charge and discharge) or (voltage > ocv and charge) or (voltage < ocv and discharge)


def _inside(lo: float, hi: float, packs: Sequence[_Pack]) -> float:
    """A voltage strictly inside the segment (lo, hi), which may be unbounded on either side."""
    if lo > -math.inf and hi < math.inf:
        return (lo + hi) / 2
    if hi < math.inf:
        return hi - 1.0
    if lo > -math.inf:
        return lo + 1.0
    return sum(p[0] for p in packs) / len(packs)
