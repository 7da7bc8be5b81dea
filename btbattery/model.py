"""Frozen value types shared by every stage: protocol, link, pipeline, D-Bus sink and simulator.

Units are SI throughout (V, A, Ah, degC, %). Times are seconds on the pipeline scheduler's clock,
never read from a wall clock inside the logic.
"""

from __future__ import annotations

import datetime
import enum
from dataclasses import dataclass, field


class Protection(enum.IntFlag):
    """JBD register 0x03 protection status bits (bit 0 = cell over-voltage)."""

    NONE = 0
    CELL_OVERVOLTAGE = 1 << 0
    CELL_UNDERVOLTAGE = 1 << 1
    PACK_OVERVOLTAGE = 1 << 2
    PACK_UNDERVOLTAGE = 1 << 3
    CHARGE_OVERTEMPERATURE = 1 << 4
    CHARGE_UNDERTEMPERATURE = 1 << 5
    DISCHARGE_OVERTEMPERATURE = 1 << 6
    DISCHARGE_UNDERTEMPERATURE = 1 << 7
    CHARGE_OVERCURRENT = 1 << 8
    DISCHARGE_OVERCURRENT = 1 << 9
    SHORT_CIRCUIT = 1 << 10
    FRONT_END_IC_ERROR = 1 << 11
    MOSFET_SOFTWARE_LOCK = 1 << 12
    CHARGE_TIMEOUT = 1 << 13

    def names(self) -> list[str]:
        """Lower-case names of the active bits, lowest bit first (``["cell_overvoltage", ...]``)."""
        return [flag.name.lower() for flag in Protection if flag and flag in self and flag.name]


# Protections after which the pack must not be charged / discharged at all.
CHARGE_BLOCKING = (
    Protection.CELL_OVERVOLTAGE
    | Protection.PACK_OVERVOLTAGE
    | Protection.CHARGE_OVERTEMPERATURE
    | Protection.CHARGE_UNDERTEMPERATURE
    | Protection.CHARGE_OVERCURRENT
    | Protection.SHORT_CIRCUIT
    | Protection.FRONT_END_IC_ERROR
    | Protection.CHARGE_TIMEOUT
)
DISCHARGE_BLOCKING = (
    Protection.CELL_UNDERVOLTAGE
    | Protection.PACK_UNDERVOLTAGE
    | Protection.DISCHARGE_OVERTEMPERATURE
    | Protection.DISCHARGE_UNDERTEMPERATURE
    | Protection.DISCHARGE_OVERCURRENT
    | Protection.SHORT_CIRCUIT
    | Protection.FRONT_END_IC_ERROR
)


@dataclass(frozen=True, slots=True)
class BasicInfo:
    """Register 0x03: the pack's headline values."""

    voltage: float  # V, pack terminal voltage
    current: float  # A, positive = charging
    remaining_capacity: float  # Ah
    nominal_capacity: float  # Ah
    cycles: int
    production_date: datetime.date | None  # None when the BMS reports an impossible date
    balance_bits: int  # bit 0 = cell 1 balancing (cells 1..32)
    protection: Protection
    software_version: float  # 0x38 -> 3.8
    soc: int  # %, as the BMS reports it (RSOC)
    charge_fet: bool
    discharge_fet: bool
    cell_count: int
    temperatures: tuple[float, ...]  # degC, one per NTC

    @property
    def balancing_cells(self) -> list[int]:
        """1-based numbers of the cells the BMS is balancing now."""
        return [i + 1 for i in range(32) if self.balance_bits >> i & 1]


@dataclass(frozen=True, slots=True)
class CellVoltages:
    """Register 0x04: one voltage per cell in series, V."""

    voltages: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class HardwareInfo:
    """Register 0x05: the BMS model string."""

    model: str


Register = BasicInfo | CellVoltages | HardwareInfo


class LinkState(enum.StrEnum):
    """Where a pack's BLE link lifecycle stands. OFFLINE is the pipeline's initial state for a pack."""

    OFFLINE = "offline"
    IDLE = "idle"
    LOCATING = "locating"
    SCANNING = "scanning"
    CONNECTING = "connecting"
    PAIRING = "pairing"
    SUBSCRIBING = "subscribing"
    AUTHENTICATING = "authenticating"
    POLLING = "polling"
    BACKOFF = "backoff"
    REFUSED = "refused"  # locked against us (password or passkey): retried only after minutes
    RESETTING = "resetting"  # power-cycling a wedged adapter


@dataclass(frozen=True, slots=True)
class PackReading:
    """One complete poll of one pack: 0x03 and (when it arrived) 0x04, stamped with scheduler time."""

    pack: int  # 1-based pack number, in the order the user listed the packs
    address: str
    time: float  # s, scheduler clock
    info: BasicInfo
    cells: CellVoltages | None = None


@dataclass(frozen=True, slots=True)
class LinkEvent:
    """A pack's link changed state."""

    pack: int
    address: str
    time: float
    state: LinkState
    reason: str = ""


@dataclass(frozen=True, slots=True)
class LinkStats:
    """What a pack's link knows beyond its readings, taken when the bank is published. None = unknown."""

    model: str | None = None  # register 0x05, read once per connection (the last answer is kept)
    rssi: int | None = None  # dBm, the last value BlueZ reported for the pack
    rssi_time: float | None = None  # when it did (scheduler clock)
    link_quality: int | None = None  # % of requests answered over the last minute; None when none were sent
    reconnects: int | None = None  # connections after the first, since start
    lock: str = ""  # why the pack refuses us and what to set ("needs a password (PASSWORD = ...)..."), or ""


@dataclass(frozen=True, slots=True)
class PackStatus:
    """One pack as the bank sees it at a given time."""

    pack: int
    address: str
    link_state: LinkState
    reading: PackReading | None  # last reading, possibly stale
    fresh: bool  # reading younger than the stale age
    active: bool  # counts in the bank (fresh, or stale but still within grace)
    # The newest cells the pack delivered, when its reading no longer carries them (they aged out: 0x04
    # stopped answering). Too old to taper on, but a stop they called for stands until fresher cells clear it.
    last_cells: CellVoltages | None = None


@dataclass(frozen=True, slots=True)
class BankSnapshot:
    """The parallel bank as one battery. Values are None when no pack is active."""

    time: float
    packs: tuple[PackStatus, ...]
    total_packs: int
    active_packs: int
    voltage: float | None = None  # V, mean of active packs
    current: float | None = None  # A, sum, positive = charging
    power: float | None = None  # W
    remaining_capacity: float | None = None  # Ah, sum
    nominal_capacity: float | None = None  # Ah, sum
    soc: float | None = None  # %, capacity-weighted
    min_cell_voltage: float | None = None
    min_cell_id: str | None = None  # "2-5" = pack 2 cell 5
    max_cell_voltage: float | None = None
    max_cell_id: str | None = None
    cells_per_pack: int | None = None
    min_temperature: float | None = None
    max_temperature: float | None = None
    temperature: float | None = None  # degC, hottest sensor: what matters for protection
    cycles: int | None = None  # highest cycle count among active packs
    balancing: bool = False
    charge_fet: bool = False  # every active pack may be charged
    discharge_fet: bool = False
    protection: Protection = Protection.NONE  # union over active packs
    blocking_charge: int = 0  # active packs with charge FET off or charge protection
    blocking_discharge: int = 0


@dataclass(frozen=True, slots=True)
class ImbalanceStatus:
    """Imbalance flags (with hysteresis) and the windowed spreads they are judged on."""

    voltage: bool = False
    current: bool = False
    soc: bool = False
    voltage_spread: float | None = None  # V, max - min pack voltage over the window
    current_spread: float | None = None  # fraction, largest |share / capacity share - 1|
    soc_spread: float | None = None  # %, max - min pack SoC

    @property
    def any(self) -> bool:
        return self.voltage or self.current or self.soc


@dataclass(frozen=True, slots=True)
class ChargeLimits:
    """What DVCC is told. Every value finite and >= 0; a CVL of 0.0 means unknown (no active pack yet) and is
    never to be published as a valid voltage."""

    charge_voltage: float  # V, CVL
    charge_current: float  # A, CCL
    discharge_current: float  # A, DCL
    reasons: tuple[str, ...] = field(default=())  # why a limit is below its configured maximum (for the log)
    charge_reason: str = ""  # short text of the rule that binds the CCL (for /Info/ChargeLimitation)
    discharge_reason: str = ""  # likewise for the DCL (/Info/DischargeLimitation)
    cvl_by_cells: bool = False  # the CVL is held down by the cells (a cell too high, or cells unknown)


@dataclass(frozen=True, slots=True)
class BankAlerts:
    """Alarm levels (0 ok, 1 warning, 2 alarm; None unknown) and requests that need the bank's history."""

    bms_cable: int = 0
    low_soc: int | None = None
    charge_request: bool = False


@dataclass(frozen=True, slots=True)
class BankState:
    """Everything the D-Bus sink publishes for one pipeline tick."""

    snapshot: BankSnapshot
    imbalance: ImbalanceStatus
    limits: ChargeLimits
    connected: bool  # False only after no pack has been active for the long timeout
    alerts: BankAlerts = field(default_factory=BankAlerts)
    # What to publish if the service stops after this tick: CCL 0, DCL per the disconnect policy, CVL no
    # higher than now. None: CCL = DCL = 0.
    stop_limits: ChargeLimits | None = None
    charge_mode: str = ""  # "Bulk", "Absorption", "Float" ... with the reason (/Info/ChargeMode)
    sensor_faults: tuple[str, ...] = ()  # temperature sensors dropped as implausible, "pack 2 sensor 1"


class Secret:
    """A password or passkey from the config. It prints as ``***`` in every log line, message and repr, so
    a secret can only leave the process through :meth:`reveal`, called where the radio needs it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)
