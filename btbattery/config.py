"""Configuration: built-in defaults -> the user's config.ini -> per-pack files, validated before starting.

The defaults live in ``configs/default_config.ini`` (every key, commented); this module only knows each key's
type and what values it accepts. The user's file is the first that exists of ``--config PATH``,
``/data/etc/dbus-btbattery/config.ini`` and ``/etc/dbus-btbattery/config.ini`` (the two system places can be
replaced with ``BTBATTERY_CONFIG_DIRS``, a ``:``-separated list of directories, or the ``search_dirs``
argument). Every problem raises :class:`ConfigError` naming the file, the key and what is accepted.
"""

from __future__ import annotations

import configparser
import itertools
import logging
import math
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

from btbattery.compat import EMPTY_IS_DEFAULT, RETIRED_KEYS, SERIALBATTERY_KEYS, differs
from btbattery.link.transport import NOTIFY_METHODS, WRITE_METHODS
from btbattery.model import Secret

log = logging.getLogger(__name__)

SYSTEM_CONFIG_DIRS = ("/data/etc/dbus-btbattery", "/etc/dbus-btbattery")
CONFIG_DIRS_ENV = "BTBATTERY_CONFIG_DIRS"
CONFIG_NAME = "config.ini"
_PACKAGE_DIR = Path(__file__).resolve().parent
# A checkout (the Venus install is one) keeps the defaults in configs/; a built package may carry a copy.
DEFAULTS_CANDIDATES = (
    _PACKAGE_DIR.parent / "configs" / "default_config.ini",
    _PACKAGE_DIR / "data" / "default_config.ini",
)

_MAC = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")


class ConfigError(ValueError):
    """Invalid configuration; the message names the file, the key and what is accepted."""


# ---- values ----


def parse_pack_argument(text: str, where: str = "command line") -> tuple[str, str | None]:
    """``"AA:BB:CC:DD:EE:FF:/path.ini"`` -> ``("AA:BB:CC:DD:EE:FF", "/path.ini")``; the path is optional."""
    text = text.strip()
    mac, sep, path = text[:17], text[17:18], text[18:]
    if not _MAC.match(mac) or (sep and sep != ":") or (sep and not path):
        raise ConfigError(
            f"{where}: {text!r} is not a pack: expected a Bluetooth address of six two-digit hex pairs "
            "like AA:BB:CC:DD:EE:FF, optionally followed by :/path/to/pack.ini"
        )
    return mac.upper(), (path or None)


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("not finite")
    return value


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "yes", "on", "1"):
        return True
    if lowered in ("false", "no", "off", "0"):
        return False
    raise ValueError("not a boolean")


class _Choices:
    """Parses one word out of a fixed set (a key that is no number)."""

    def __init__(self, *choices: str) -> None:
        self.choices = choices

    def __call__(self, text: str) -> str:
        value = text.strip().lower()
        if value not in self.choices:
            raise ValueError("not one of the choices")
        return value


def _choice(parse: _Choices) -> _Key:
    return _Key(parse, ", ".join(parse.choices[:-1]) + " or " + parse.choices[-1])


_NOTIFY_METHOD = _Choices(*NOTIFY_METHODS)  # the link's own tables of what it can do
_WRITE_METHOD = _Choices(*WRITE_METHODS)


def _floats(text: str) -> tuple[float, ...]:
    items = [item.strip() for item in text.split(",")]
    if not items or any(not item for item in items):
        raise ValueError("empty item")
    return tuple(_float(item) for item in items)


def _password(text: str) -> Secret | None:
    from btbattery.protocol.jbd import valid_password

    text = text.strip()
    if not text:
        return None
    if not valid_password(text):
        raise ValueError("not 6 letters or digits")
    return Secret(text)


def _passkey(text: str) -> Secret | None:
    text = text.strip()
    if not text:
        return None
    if not (text.isascii() and text.isdigit()) or int(text) > 999_999:
        raise ValueError("not a passkey")
    return Secret(str(int(text)))


def _or_empty(key: _Key, empty: float) -> _Key:
    """serialbattery's "leave empty to disable": an empty value means ``empty`` (the off value here too)."""
    return _Key(lambda text: empty if not text.strip() else key.parse(text), key.accepted + " (empty: off)",
                key.check, bounds=key.bounds)  # fmt: skip


def _sensor_numbers(text: str) -> tuple[int, ...]:
    """``"2, 3"`` -> ``(2, 3)``; empty -> ``()``. Sensors are numbered from 1 in the BMS's order."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    return tuple(int(item) for item in items)


def _adapter(text: str) -> str:
    from btbattery.link.bluez import is_adapter_spec

    value = text.strip()
    if not is_adapter_spec(value):
        raise ValueError("not an adapter")
    return value.upper() if ":" in value else value


def _whole(text: str) -> int:
    value = _float(text)
    if value != int(value):
        raise ValueError("not a whole number")
    return int(value)


def _count(accepted: str, low: int, high: int) -> _Key:
    bound = Bound(low, high)
    return _Key(_whole, accepted, bound.__contains__, bounds=bound)


def _absolute_path(text: str) -> str:
    path = text.strip()
    if not path.startswith("/"):
        raise ValueError("not an absolute path")
    return path


def _addresses(text: str) -> tuple[tuple[str, str | None], ...]:
    return tuple(parse_pack_argument(item) for item in re.split(r"[\s,]+", text.strip()) if item)


@dataclass(frozen=True, slots=True)
class _Key:
    parse: Callable[[str], object]
    accepted: str  # what the user may write, for error messages and the README
    check: Callable[[object], bool] = lambda value: True
    secret: bool = False  # never repeat the value in an error message (the user's terminal, the log)
    bounds: Bound | None = None  # every number must have them (checked below, at import)


@dataclass(frozen=True, slots=True)
class Bound:
    """What a number may be: ``low`` (exclusive when ``open_low``) to ``high``, both finite, and its unit."""

    low: float
    high: float
    unit: str = ""
    open_low: bool = False

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
            return False
        return (value > self.low if self.open_low else value >= self.low) and value <= self.high

    def describe(self) -> str:
        low = f"above {self.low:g} and up to" if self.open_low else f"from {self.low:g} to"
        return f"{low} {self.high:g}{' ' + self.unit if self.unit else ''}"


def _num(low: float, high: float, unit: str = "", what: str = "a number", open_low: bool = False) -> _Key:
    """A number within bounds: one line in :data:`KEYS` is all a new numeric key needs."""
    bound = Bound(low, high, unit, open_low)
    return _Key(_float, f"{what} {bound.describe()}", bound.__contains__, bounds=bound)


def _seconds(low: float, high: float, open_low: bool = False) -> _Key:
    return _num(low, high, "s", "a time", open_low)


def _amps(high: float) -> _Key:
    return _num(0, high, "A", "a current")


def _cell_volts() -> _Key:
    return _num(1.0, 5.0, "V", "a cell voltage")


def _nums(low: float, high: float, what: str) -> _Key:
    """A comma-separated list of numbers, each within bounds."""
    bound = Bound(low, high)
    return _Key(
        _floats,
        f"{what}, comma separated, each {bound.describe()}",
        lambda values: all(v in bound for v in values),  # type: ignore[attr-defined]
        bounds=bound,
    )


def _cable_alarm(text: str) -> float:
    """serialbattery's True/False (alarm after its fixed 60 s), or a number of seconds; 0 = off."""
    try:
        return BMS_CABLE_ALARM_SECONDS if _bool(text) else 0.0
    except ValueError:
        return _float(text)


BMS_CABLE_ALARM_SECONDS = 60.0  # what serialbattery's BMS_CABLE_ALARM = True waits before the alarm

_FRACTIONS = _nums(0, 1, "fractions")
_BOOL = _Key(_bool, "True or False (also yes/no, on/off, 1/0)")
_HOUR, _DAY = 3600.0, 86400.0
_CABLE_ALARM = Bound(0, _DAY, "s")
_SENSORS = Bound(1, 8)

# Every key, its type and bounds. The bounds are what a real installation can use (a 1e-9 s publish interval
# pegs a core; a 1e308 A limit reaches DVCC), not what a float can hold. The README's table lists them.
KEYS: dict[str, _Key] = {
    "BATTERY_ADDRESSES": _Key(_addresses, "MAC addresses AA:BB:CC:DD:EE:FF[:/path.ini] separated by spaces"),
    "BLUETOOTH_ADAPTER": _Key(
        _adapter, "an adapter name like hci0 or its Bluetooth address like 00:1A:7D:DA:71:13"
    ),
    "POLL_INTERVAL": _seconds(0.2, _HOUR),
    "NOTIFY_METHOD": _choice(_NOTIFY_METHOD),
    "WRITE_METHOD": _choice(_WRITE_METHOD),
    "PUBLISH_INTERVAL": _seconds(0.01, 60),  # replays tick finer than a device should; 1e-9 still pegs a core
    "PACK_STALE_AFTER": _seconds(0.5, _HOUR),
    "PACK_DROPOUT_GRACE": _seconds(0, _HOUR),
    "DISCONNECTED_AFTER": _seconds(0, _DAY),
    "MAX_BATTERY_CHARGE_CURRENT": _amps(5000),
    "MAX_BATTERY_DISCHARGE_CURRENT": _amps(5000),
    "MAX_PACK_CHARGE_CURRENT": _amps(1000),
    "MAX_PACK_DISCHARGE_CURRENT": _amps(1000),
    "MAX_CELL_VOLTAGE": _cell_volts(),
    "MIN_CELL_VOLTAGE": _cell_volts(),
    "MIN_CHARGE_CELL_VOLTAGE": _cell_volts(),
    "CELL_OVERVOLTAGE": _cell_volts(),
    "CELL_UNDERVOLTAGE": _cell_volts(),
    "CELL_VOLTAGES_WHILE_CHARGING": _nums(0, 5, "cell voltages in V, descending"),
    "MAX_CHARGE_CURRENT_CV_FRACTION": _FRACTIONS,
    "CELL_VOLTAGES_WHILE_DISCHARGING": _nums(0, 5, "cell voltages in V, ascending"),
    "MAX_DISCHARGE_CURRENT_CV_FRACTION": _FRACTIONS,
    "TEMPERATURES_WHILE_CHARGING": _nums(-50, 150, "temperatures in degC, ascending"),
    "MAX_CHARGE_CURRENT_T_FRACTION": _FRACTIONS,
    "TEMPERATURES_WHILE_DISCHARGING": _nums(-50, 150, "temperatures in degC, ascending"),
    "MAX_DISCHARGE_CURRENT_T_FRACTION": _FRACTIONS,
    "SHARE_MIN_BANK_CURRENT": _amps(1000),
    "CURRENT_LIMIT_RISE_RATE": _num(0, 1000, "A/s", "a rate", open_low=True),
    "CVL_RECOVERY_HOLD_SEC": _seconds(0, _DAY),
    "CVL_RECOVERY_RATE_V_PER_SEC": _num(0, 10, "V/s", "a rate (0: at once after the hold)"),
    "CCL_RECOVERY_HOLD_SEC": _seconds(0, _DAY),
    "DCL_RECOVERY_HOLD_SEC": _seconds(0, _DAY),
    "CHARGE_CURRENT_RECOVERY_THRESHOLD_PERCENT": _num(0, 1, what="a fraction"),
    "DISCHARGE_CURRENT_RECOVERY_THRESHOLD_PERCENT": _num(0, 1, what="a fraction"),
    "FLOAT_CELL_VOLTAGE": _cell_volts(),
    "SWITCH_TO_FLOAT_WAIT_FOR_SEC": _or_empty(_seconds(0, _DAY), 0.0),
    "SWITCH_TO_FLOAT_CELL_VOLTAGE_DIFF": _or_empty(_num(0, 10, "V", "a voltage"), 10.0),
    "SWITCH_TO_FLOAT_CELL_VOLTAGE_DEVIATION": _num(0, 10, "V", "a voltage"),
    "SWITCH_TO_BULK_SOC_THRESHOLD": _or_empty(_num(0, 100, "%", "a SoC (0: off)"), 0.0),
    "SWITCH_TO_BULK_CELL_VOLTAGE_DIFF": _or_empty(_num(0, 10, "V", "a voltage"), 10.0),
    "SOC_RESET_CELL_VOLTAGE": _cell_volts(),
    "SOC_RESET_AFTER_DAYS": _or_empty(_num(0, 3650, "days", "a time (0: never)"), 0.0),
    "CELL_TEMPERATURE_SENSORS": _Key(
        _sensor_numbers,
        "sensor numbers from 1 to 8, comma separated (empty: all but the MOSFET sensor)",
        lambda v: all(n in _SENSORS for n in v),  # type: ignore[attr-defined]
        bounds=_SENSORS,
    ),
    "MOSFET_TEMPERATURE_SENSOR": _Key(
        lambda text: int(text),
        "a sensor number from 1 to 8, or 0 for none",
        lambda v: 0 <= v <= 8,  # type: ignore[operator]
        bounds=Bound(0, 8),
    ),
    "MOSFET_TEMPERATURES_WHILE_CHARGING": _nums(-50, 150, "temperatures in degC, ascending"),
    "MAX_CHARGE_CURRENT_T_MOSFET_FRACTION": _FRACTIONS,
    "MOSFET_TEMPERATURES_WHILE_DISCHARGING": _nums(-50, 150, "temperatures in degC, ascending"),
    "MAX_DISCHARGE_CURRENT_T_MOSFET_FRACTION": _FRACTIONS,
    "TEMPERATURE_UNKNOWN_CHARGE_FRACTION": _num(0, 1, what="a fraction"),
    "TEMPERATURE_UNKNOWN_DISCHARGE_FRACTION": _num(0, 1, what="a fraction"),
    "CELLS_UNKNOWN_CHARGE_FRACTION": _num(0, 1, what="a fraction"),
    "PACK_DROPOUT_DISCHARGE_FRACTION": _num(0, 1, what="a fraction"),
    "IMBALANCE_WINDOW": _seconds(0, _DAY, open_low=True),
    "IMBALANCE_MIN_DURATION": _seconds(0, _DAY),
    "VOLTAGE_IMBALANCE_DETECTION_ENABLE": _BOOL,
    "VOLTAGE_IMBALANCE_THRESHOLD": _num(0, 10, "V", "a voltage", open_low=True),
    "VOLTAGE_IMBALANCE_CLEAR_THRESHOLD": _num(0, 10, "V", "a voltage"),
    "CURRENT_IMBALANCE_DETECTION_ENABLE": _BOOL,
    "CURRENT_IMBALANCE_THRESHOLD": _num(0, 1000, "%", "a deviation", open_low=True),
    "CURRENT_IMBALANCE_CLEAR_THRESHOLD": _num(0, 1000, "%", "a deviation"),
    "CURRENT_IMBALANCE_MIN_CURRENT": _amps(1000),
    "SOC_IMBALANCE_DETECTION_ENABLE": _BOOL,
    "SOC_IMBALANCE_THRESHOLD": _num(0, 100, "%", "a SoC difference", open_low=True),
    "SOC_IMBALANCE_CLEAR_THRESHOLD": _num(0, 100, "%", "a SoC difference"),
    "IMBALANCE_CVL_STEP": _num(0, 0.5, "V", "a cell voltage step"),
    "IMBALANCE_CHARGE_FRACTION": _num(0, 1, what="a fraction"),
    "BLOCK_ON_DISCONNECT": _BOOL,
    "BLOCK_ON_DISCONNECT_TIMEOUT_MINUTES": _num(0, 1440, "min", "a time"),
    "BLOCK_ON_DISCONNECT_VOLTAGE_MIN": _cell_volts(),
    "BLOCK_ON_DISCONNECT_VOLTAGE_MAX": _cell_volts(),
    "BMS_CABLE_ALARM": _Key(
        _cable_alarm,
        f"True, False or a time {_CABLE_ALARM.describe()}",
        _CABLE_ALARM.__contains__,
        bounds=_CABLE_ALARM,
    ),
    "SOC_LOW_WARNING": _num(0, 100, "%", "a SoC"),
    "SOC_LOW_ALARM": _num(0, 100, "%", "a SoC"),
    "PASSWORD": _Key(_password, "exactly 6 ASCII letters or digits, or nothing for no password", secret=True),
    "PASSKEY": _Key(_passkey, "a number from 0 to 999999, or nothing for no pairing", secret=True),
    "RECORDER_MINUTES": _num(0, 120, "min", "a time (0: recorder off)"),
    "RECORDER_DIR": _Key(_absolute_path, "an absolute directory path, e.g. /data/log/btbattery"),
    "RECORDER_MAX_FILES": _count("a whole number of files from 1 to 1000", 1, 1000),
}
# A passkey is digits, but a secret, not a number.
_NOT_NUMBERS = (
    _addresses,
    _adapter,
    _absolute_path,
    _bool,
    _password,
    _passkey,
    _NOTIFY_METHOD,
    _WRITE_METHOD,
)
assert all(
    key.bounds is not None and math.isfinite(key.bounds.low) and math.isfinite(key.bounds.high)
    for key in KEYS.values()
    if key.parse not in _NOT_NUMBERS
), "every numeric config key needs finite bounds: declare it with _num(low, high, unit) or _nums(...)"

# Command-line options of the service, bounded like the keys (checked in commands/run.py; README lists them).
MAX_PACKS = 16  # the bank size the policy's property tests and the load benchmark cover; more is untested
OPTIONS: dict[str, Bound] = {
    "--watchdog": Bound(1, _DAY, "s"),
    "--error-delay": Bound(0, _HOUR, "s"),
    "--device-instance": Bound(0, 999),
    "-p/--parallel": Bound(1, MAX_PACKS, "packs"),
}


# Keys a per-pack file may set; a one-battery config names its own limits MAX_BATTERY_*, so accept those too.
# BLUETOOTH_ADAPTER there puts that pack on its own adapter (a bank spread over two).
PACK_KEYS = {
    "BLUETOOTH_ADAPTER": "BLUETOOTH_ADAPTER",
    "MAX_PACK_CHARGE_CURRENT": "MAX_PACK_CHARGE_CURRENT",
    "MAX_PACK_DISCHARGE_CURRENT": "MAX_PACK_DISCHARGE_CURRENT",
    "MAX_BATTERY_CHARGE_CURRENT": "MAX_PACK_CHARGE_CURRENT",
    "MAX_BATTERY_DISCHARGE_CURRENT": "MAX_PACK_DISCHARGE_CURRENT",
    "PASSWORD": "PASSWORD",
    "PASSKEY": "PASSKEY",
    "CELL_TEMPERATURE_SENSORS": "CELL_TEMPERATURE_SENSORS",
    "MOSFET_TEMPERATURE_SENSOR": "MOSFET_TEMPERATURE_SENSOR",
}
# What a pack takes from the bank-wide values unless its own file says otherwise.
_PER_PACK = ("MAX_PACK_CHARGE_CURRENT", "MAX_PACK_DISCHARGE_CURRENT", "PASSWORD", "PASSKEY")

# (list of points, list of fractions, order the points must be in)
_CURVES = (
    ("CELL_VOLTAGES_WHILE_CHARGING", "MAX_CHARGE_CURRENT_CV_FRACTION", "descending"),
    ("CELL_VOLTAGES_WHILE_DISCHARGING", "MAX_DISCHARGE_CURRENT_CV_FRACTION", "ascending"),
    ("TEMPERATURES_WHILE_CHARGING", "MAX_CHARGE_CURRENT_T_FRACTION", "ascending"),
    ("TEMPERATURES_WHILE_DISCHARGING", "MAX_DISCHARGE_CURRENT_T_FRACTION", "ascending"),
    ("MOSFET_TEMPERATURES_WHILE_CHARGING", "MAX_CHARGE_CURRENT_T_MOSFET_FRACTION", "ascending"),
    ("MOSFET_TEMPERATURES_WHILE_DISCHARGING", "MAX_DISCHARGE_CURRENT_T_MOSFET_FRACTION", "ascending"),
)
# (lower key, higher key): the first must be strictly below the second
_ORDERED = (
    ("VOLTAGE_IMBALANCE_CLEAR_THRESHOLD", "VOLTAGE_IMBALANCE_THRESHOLD"),
    ("CURRENT_IMBALANCE_CLEAR_THRESHOLD", "CURRENT_IMBALANCE_THRESHOLD"),
    ("SOC_IMBALANCE_CLEAR_THRESHOLD", "SOC_IMBALANCE_THRESHOLD"),
    ("MIN_CELL_VOLTAGE", "MAX_CELL_VOLTAGE"),
    ("CELL_UNDERVOLTAGE", "MIN_CELL_VOLTAGE"),
    ("MAX_CELL_VOLTAGE", "CELL_OVERVOLTAGE"),
    ("BLOCK_ON_DISCONNECT_VOLTAGE_MIN", "BLOCK_ON_DISCONNECT_VOLTAGE_MAX"),
    ("SOC_LOW_ALARM", "SOC_LOW_WARNING"),
    ("MAX_CELL_VOLTAGE", "SOC_RESET_CELL_VOLTAGE"),
    ("MIN_CELL_VOLTAGE", "FLOAT_CELL_VOLTAGE"),
)
# (lower key, higher key): the first must not exceed the second
_NOT_ABOVE = (
    ("MIN_CHARGE_CELL_VOLTAGE", "MAX_CELL_VOLTAGE"),
    ("FLOAT_CELL_VOLTAGE", "MAX_CELL_VOLTAGE"),
)


# ---- the result ----


@dataclass(frozen=True, slots=True)
class PackSpec:
    """One pack as configured: its number (1..N in the user's order), address, own limits and locks."""

    number: int
    address: str
    charge_limit: float  # A, Lc
    discharge_limit: float  # A, Ld
    config_path: str | None = None
    password: Secret | None = None  # FF AA handshake password
    passkey: Secret | None = None  # LE pairing passkey
    # Temperature sensors of this pack (1-based): None = the bank-wide CELL_TEMPERATURE_SENSORS /
    # MOSFET_TEMPERATURE_SENSOR apply.
    cell_sensors: tuple[int, ...] | None = None
    mosfet_sensor: int | None = None
    adapter: str | None = None  # its own BLUETOOTH_ADAPTER, None: the bank's


@dataclass(frozen=True, slots=True)
class Config:
    """Every setting, validated. Field names are the ini keys in lower case."""

    battery_addresses: tuple[tuple[str, str | None], ...]
    bluetooth_adapter: str
    poll_interval: float
    notify_method: str  # auto | acquire | start (btbattery.link.transport)
    write_method: str  # auto | acquire | write
    publish_interval: float
    pack_stale_after: float
    pack_dropout_grace: float
    disconnected_after: float
    max_battery_charge_current: float
    max_battery_discharge_current: float
    max_pack_charge_current: float
    max_pack_discharge_current: float
    max_cell_voltage: float
    min_cell_voltage: float
    min_charge_cell_voltage: float
    cell_overvoltage: float
    cell_undervoltage: float
    cell_voltages_while_charging: tuple[float, ...]
    max_charge_current_cv_fraction: tuple[float, ...]
    cell_voltages_while_discharging: tuple[float, ...]
    max_discharge_current_cv_fraction: tuple[float, ...]
    temperatures_while_charging: tuple[float, ...]
    max_charge_current_t_fraction: tuple[float, ...]
    temperatures_while_discharging: tuple[float, ...]
    max_discharge_current_t_fraction: tuple[float, ...]
    share_min_bank_current: float
    current_limit_rise_rate: float
    cvl_recovery_hold_sec: float
    cvl_recovery_rate_v_per_sec: float
    ccl_recovery_hold_sec: float
    dcl_recovery_hold_sec: float
    charge_current_recovery_threshold_percent: float
    discharge_current_recovery_threshold_percent: float
    float_cell_voltage: float
    switch_to_float_wait_for_sec: float
    switch_to_float_cell_voltage_diff: float
    switch_to_float_cell_voltage_deviation: float
    switch_to_bulk_soc_threshold: float
    switch_to_bulk_cell_voltage_diff: float
    soc_reset_cell_voltage: float
    soc_reset_after_days: float
    cell_temperature_sensors: tuple[int, ...]
    mosfet_temperature_sensor: int
    mosfet_temperatures_while_charging: tuple[float, ...]
    max_charge_current_t_mosfet_fraction: tuple[float, ...]
    mosfet_temperatures_while_discharging: tuple[float, ...]
    max_discharge_current_t_mosfet_fraction: tuple[float, ...]
    temperature_unknown_charge_fraction: float
    temperature_unknown_discharge_fraction: float
    cells_unknown_charge_fraction: float
    pack_dropout_discharge_fraction: float
    imbalance_window: float
    imbalance_min_duration: float
    voltage_imbalance_detection_enable: bool
    voltage_imbalance_threshold: float
    voltage_imbalance_clear_threshold: float
    current_imbalance_detection_enable: bool
    current_imbalance_threshold: float
    current_imbalance_clear_threshold: float
    current_imbalance_min_current: float
    soc_imbalance_detection_enable: bool
    soc_imbalance_threshold: float
    soc_imbalance_clear_threshold: float
    imbalance_cvl_step: float
    imbalance_charge_fraction: float
    block_on_disconnect: bool
    block_on_disconnect_timeout_minutes: float
    block_on_disconnect_voltage_min: float
    block_on_disconnect_voltage_max: float
    bms_cable_alarm: float  # s, 0 = off
    soc_low_warning: float
    soc_low_alarm: float
    password: Secret | None
    passkey: Secret | None
    recorder_minutes: float
    recorder_dir: str
    recorder_max_files: int
    packs: tuple[PackSpec, ...] = ()  # resolved from -p arguments or BATTERY_ADDRESSES
    sources: tuple[str, ...] = field(default=())  # files used, defaults first

    def pack_spec(self, number: int, address: str) -> PackSpec:
        """A pack with the bank-wide per-pack limits (for packs not listed in the config)."""
        return PackSpec(
            number,
            address,
            self.max_pack_charge_current,
            self.max_pack_discharge_current,
            password=self.password,
            passkey=self.passkey,
        )


assert {f.name.upper() for f in fields(Config)} - {"PACKS", "SOURCES"} == set(KEYS)


# ---- reading files ----


def _edit_distance(a: str, b: str) -> int:
    """Levenshtein distance: inserts, deletes and substitutions turning ``a`` into ``b``."""
    row = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        diagonal, row[0] = row[0], i
        for j, char_b in enumerate(b, 1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (char_a != char_b))
    return row[-1]


def _nearest(key: str, known: Iterable[str]) -> str:
    """A hint naming the known key closest to a misspelt one (at most a third of its letters differ).

    Our own few lines: difflib is not in the Venus OS image (reference/venus-runtime.md).
    """
    scored = sorted((_edit_distance(key, name), name) for name in known)
    if scored and scored[0][0] * 3 <= max(len(key), len(scored[0][1])):
        return f"; did you mean {scored[0][1]}?"
    return ""


def read_ini(path: Path) -> dict[str, str]:
    """Raw ``KEY -> text`` of one ini file ([DEFAULT] section or none at all)."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # a BOM (Windows editors write one) is not a key
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a config file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (expected UTF-8 ini text)") from None
    parser = configparser.ConfigParser(interpolation=None, strict=True, inline_comment_prefixes=("#", ";"))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    lines = (line.strip() for line in text.splitlines())
    first = next((line for line in lines if line and line[0] not in "#;"), "")
    if not first.startswith("["):
        text = "[DEFAULT]\n" + text  # a bare list of KEY = value lines
    try:
        parser.read_string(text, source=str(path))
    except configparser.DuplicateOptionError as exc:
        raise ConfigError(f"{path}: key {exc.option.upper()} is set twice (line {exc.lineno})") from None
    except configparser.Error as exc:
        message = str(exc).splitlines()[0]
        raise ConfigError(f"{path}: not an ini file ({message}); expected KEY = value lines") from None
    for section in parser.sections():
        raise ConfigError(f"{path}: unknown section [{section}]; put every key under [DEFAULT] or no section")
    out: dict[str, str] = {}
    spelled: dict[str, str] = {}
    for key, value in parser.defaults().items():
        upper = key.upper()
        if upper in out:  # keys are case-insensitive: the second spelling would silently win
            raise ConfigError(f"{path}: key {upper} is set twice (as {spelled[upper]} and {key})")
        out[upper], spelled[upper] = value, key
    return out


def _check_known(raw: dict[str, str], path: Path, known: Iterable[str], what: str) -> None:
    known = list(known)
    for key in raw:
        if key not in known:
            raise ConfigError(f"{path}: unknown key {key}{_nearest(key, known)} ({what})")


def _user_keys(raw: dict[str, str], path: Path) -> dict[str, str]:
    """The user's keys this program uses. dbus-serialbattery's keys that it does not implement are accepted
    and named in one warning, so a serialbattery config.ini starts; so are keys an earlier release read
    (RETIRED_KEYS), one warning each; any other unknown key is an error."""
    known = [*KEYS, *SERIALBATTERY_KEYS]
    for key in raw:
        if key in RETIRED_KEYS:
            log.warning("%s: %s is no longer used (%s)", path, key, RETIRED_KEYS[key])
        elif key not in known:
            hint = _nearest(key, known)
            raise ConfigError(f"{path}: unknown key {key}{hint} (not a dbus-btbattery setting)")
    unused = [key for key in raw if key not in KEYS and key not in RETIRED_KEYS]
    if unused:
        log.warning(
            "%s: %d dbus-serialbattery key%s accepted but unused here: %s",
            path,
            len(unused),
            "" if len(unused) == 1 else "s",
            ", ".join(unused),
        )
    used = {key: text for key, text in raw.items() if key in KEYS}
    for key, text in list(used.items()):
        # serialbattery's "leave empty for the default" (POLL_INTERVAL =) means the same here
        if not text.strip() and key in EMPTY_IS_DEFAULT:
            del used[key]
            log.info("%s: %s is empty: the built-in default applies", path, key)
    return used


def _convert(key: str, text: str, origin: str) -> object:
    spec = KEYS[key]
    note = f" ({key}: {differs(key)})" if differs(key) else ""
    try:
        value = spec.parse(text)
    except ConfigError as exc:
        raise ConfigError(f"{origin}: {key}: {exc}{note}") from None
    except ValueError:
        problem = (
            f"{key} is not valid (value not shown)"
            if spec.secret
            else f"{key} = {text.strip()!r} is not valid"
        )
        raise ConfigError(f"{origin}: {problem}; accepted: {spec.accepted}{note}") from None
    if not spec.check(value):
        raise ConfigError(f"{origin}: {key} = {text.strip()!r} is out of range; accepted: {spec.accepted}")
    return value


def _check_curves(values: dict[str, object], origin: dict[str, str]) -> None:
    for points_key, fractions_key, order in _CURVES:
        points, fractions = values[points_key], values[fractions_key]
        assert isinstance(points, tuple) and isinstance(fractions, tuple)
        if len(points) != len(fractions):
            raise ConfigError(
                f"{origin[fractions_key]}: {fractions_key} has {len(fractions)} values but {points_key} has "
                f"{len(points)}; accepted: one fraction per point"
            )
        pairs = list(itertools.pairwise(points))
        ok = all(a > b for a, b in pairs) if order == "descending" else all(a < b for a, b in pairs)
        if not ok:
            raise ConfigError(
                f"{origin[points_key]}: {points_key} = {', '.join(map(str, points))} "
                f"is not strictly {order}; "
                f"accepted: points in {order} order"
            )


def _check_order(values: dict[str, object], origin: dict[str, str]) -> None:
    for low, high in _ORDERED:
        if not values[low] < values[high]:  # type: ignore[operator]
            raise ConfigError(
                f"{origin[low]}: {low} = {values[low]} must be below {high} = {values[high]} "
                f"(from {origin[high]})"
            )
    for low, high in _NOT_ABOVE:
        if values[low] > values[high]:  # type: ignore[operator]
            raise ConfigError(f"{origin[low]}: {low} must not exceed {high}")
    reset, stop = values["SOC_RESET_CELL_VOLTAGE"], values["CELL_OVERVOLTAGE"]
    if reset >= stop and values["SOC_RESET_AFTER_DAYS"]:  # type: ignore[operator]
        # serialbattery's default (3.65 V, a JBD's trip) must start: the reset charge aims below the stop.
        aim = soc_reset_cell_limit(reset, stop)  # type: ignore[arg-type]
        log.warning(
            "%s: SOC_RESET_CELL_VOLTAGE = %s is not below CELL_OVERVOLTAGE = %s: a SoC reset charge aims at "
            "%.3f V", origin["SOC_RESET_CELL_VOLTAGE"], reset, stop, aim,
        )  # fmt: skip


SOC_RESET_MARGIN = 0.01  # V below CELL_OVERVOLTAGE at most, so a reset charge never meets the stop rule


def soc_reset_cell_limit(reset: float, stop: float) -> float:
    """The cell voltage a SoC reset charge aims at: SOC_RESET_CELL_VOLTAGE, kept below CELL_OVERVOLTAGE."""
    return min(reset, stop - SOC_RESET_MARGIN)


def _clamp_disconnect_band(values: dict[str, object], origin: dict[str, str]) -> None:
    """As dbus-serialbattery does: the safe band for riding through an outage never reaches outside
    MIN_CELL_VOLTAGE..MAX_CELL_VOLTAGE; a wider one is narrowed, with a warning (it only errs safe)."""
    for key, bound, outside in (
        ("BLOCK_ON_DISCONNECT_VOLTAGE_MIN", "MIN_CELL_VOLTAGE", lambda v, b: v < b),
        ("BLOCK_ON_DISCONNECT_VOLTAGE_MAX", "MAX_CELL_VOLTAGE", lambda v, b: v > b),
    ):
        if outside(values[key], values[bound]):
            log.warning("%s: %s = %s lies outside %s = %s; using %s", origin[key], key, values[key], bound,
                        values[bound], values[bound])  # fmt: skip
            values[key] = values[bound]


def find_defaults() -> Path:
    for candidate in DEFAULTS_CANDIDATES:
        if candidate.is_file():
            return candidate
    raise ConfigError(f"built-in defaults not found (looked for {', '.join(map(str, DEFAULTS_CANDIDATES))})")


def config_dirs(search_dirs: Sequence[str | Path] | None = None) -> list[Path]:
    """Where a user config.ini is looked for when no --config is given, in order."""
    if search_dirs is not None:
        return [Path(d) for d in search_dirs]
    env = os.environ.get(CONFIG_DIRS_ENV)
    if env is not None:
        return [Path(d) for d in env.split(os.pathsep) if d]
    return [Path(d) for d in SYSTEM_CONFIG_DIRS]


def find_user_config(path: str | Path | None, search_dirs: Sequence[str | Path] | None = None) -> Path | None:
    if path is not None:
        given = Path(path)
        if given.is_dir():
            raise ConfigError(f"{given}: config file given with --config is a directory, not a file")
        if not given.is_file():
            raise ConfigError(f"{given}: config file given with --config does not exist")
        return given
    for directory in config_dirs(search_dirs):
        candidate = directory / CONFIG_NAME
        if candidate.is_file():
            return candidate
    return None


def _pack_specs(
    pack_args: Sequence[str], values: dict[str, object], origin: dict[str, str]
) -> tuple[PackSpec, ...]:
    if pack_args:
        entries = [parse_pack_argument(arg) for arg in pack_args]
        where = "command line"
    else:
        entries = list(values["BATTERY_ADDRESSES"])  # type: ignore[call-overload]
        where = f"{origin['BATTERY_ADDRESSES']}: BATTERY_ADDRESSES"
    if len(entries) > MAX_PACKS:
        raise ConfigError(
            f"{where}: {len(entries)} packs; accepted: at most {MAX_PACKS} (the bank size the charge-limit "
            "policy is property-tested and load-benchmarked with; larger banks are untested)"
        )
    seen: set[str] = set()
    specs = []
    for number, (mac, pack_path) in enumerate(entries, start=1):
        if mac in seen:
            raise ConfigError(f"{where}: pack {mac} is listed twice; accepted: each address once")
        seen.add(mac)
        own = {key: values[key] for key in _PER_PACK}
        if pack_path is not None:
            own.update(_pack_overrides(Path(pack_path)))
        charge, discharge = own["MAX_PACK_CHARGE_CURRENT"], own["MAX_PACK_DISCHARGE_CURRENT"]
        password, passkey = own["PASSWORD"], own["PASSKEY"]
        adapter = own.get("BLUETOOTH_ADAPTER")  # only from the pack's own file; else the bank's adapter
        assert isinstance(charge, float) and isinstance(discharge, float)
        assert isinstance(password, Secret | None) and isinstance(passkey, Secret | None)
        sensors, mosfet = own.get("CELL_TEMPERATURE_SENSORS"), own.get("MOSFET_TEMPERATURE_SENSOR")
        assert adapter is None or isinstance(adapter, str)
        specs.append(
            PackSpec(number, mac, charge, discharge, pack_path, password, passkey, sensors, mosfet, adapter)  # type: ignore[arg-type]
        )
    return tuple(specs)


def _pack_overrides(path: Path) -> dict[str, object]:
    raw = read_ini(path)
    out: dict[str, object] = {}
    for key, text in raw.items():
        if key not in PACK_KEYS:
            if key in KEYS:
                raise ConfigError(
                    f"{path}: {key} applies to the whole bank and cannot be set per pack; "
                    f"accepted here: {', '.join(PACK_KEYS)}"
                )
            raise ConfigError(
                f"{path}: unknown key {key}{_nearest(key, PACK_KEYS)} "
                f"(accepted in a pack file: {', '.join(PACK_KEYS)})"
            )
        target = PACK_KEYS[key]
        if target in out:
            raise ConfigError(f"{path}: {key} sets the same limit as another key in this file")
        out[target] = _convert(target, text, str(path))
    return out


def load_config(
    path: str | Path | None = None,
    pack_args: Sequence[str] = (),
    search_dirs: Sequence[str | Path] | None = None,
) -> Config:
    """Defaults, then the user's file (``path`` or the first in the search dirs), then per-pack files."""
    defaults = find_defaults()
    raw = read_ini(defaults)
    _check_known(raw, defaults, KEYS, "in the built-in defaults")
    missing = set(KEYS) - set(raw)
    if missing:
        raise ConfigError(f"{defaults}: built-in defaults lack {', '.join(sorted(missing))}")
    origin = dict.fromkeys(raw, str(defaults))
    sources = [str(defaults)]
    user = find_user_config(path, search_dirs)
    if user is not None:
        user_raw = _user_keys(read_ini(user), user)
        raw.update(user_raw)
        origin.update(dict.fromkeys(user_raw, str(user)))
        sources.append(str(user))
    values = {key: _convert(key, text, origin[key]) for key, text in raw.items()}
    _check_curves(values, origin)
    _clamp_disconnect_band(values, origin)
    _check_order(values, origin)
    packs = _pack_specs(pack_args, values, origin)
    sources += [spec.config_path for spec in packs if spec.config_path]
    log.info("config from %s", ", then ".join(sources))
    if user is None:
        searched = ", ".join(map(str, config_dirs(search_dirs)))
        log.info("no config.ini found in %s: built-in defaults only", searched)
    return Config(
        **{key.lower(): value for key, value in values.items()},
        packs=packs,
        sources=tuple(sources),  # type: ignore[arg-type]
    )


def default_config() -> Config:
    """The built-in defaults alone (for tests, replay without --config, the simulator)."""
    return load_config(search_dirs=())
