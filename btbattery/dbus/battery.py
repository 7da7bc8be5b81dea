"""The parallel bank as one Victron battery: ``BankState`` -> BusItem paths.

Path names follow what Venus clients read (see the Victron D-Bus reference) plus the user's guide's
``/Parallel/*`` paths. Cell paths use ``Cell<pack>_<cell>`` because D-Bus object paths cannot hold the
guide's hyphen. Invalid (unknown) values publish as invalid, never as 0; only the DVCC limits fail
toward zero, because a missing limit must stop charging rather than lift the cap.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dbus_fast.aio import MessageBus

from btbattery import __version__
from btbattery.dbus.busitem import BusItemTree, TextFormat, Writable, unit_text
from btbattery.model import (
    BankAlerts,
    BankSnapshot,
    BankState,
    BasicInfo,
    ChargeLimits,
    ImbalanceStatus,
    LinkState,
    LinkStats,
    PackStatus,
    Protection,
)
from btbattery.pipeline.plausibility import reading_cell_count
from btbattery.statefile import DEFAULT_STATE_FILE, read_state, update_state

log = logging.getLogger(__name__)

SERVICE_NAME = "com.victronenergy.battery.virtual_parallel"
PRODUCT_ID = 0xBA77  # the community battery drivers' id; never one that triggers vendor DVCC quirks
CUSTOM_NAME_MAX = 64

# Venus battery /State values (Lynx BMS numbering).
STATE_RUNNING = 9
STATE_STANDBY = 14

# Alarm levels.
OK, WARNING, ALARM = 0, 1, 2
CELL_DIFF_WARNING = 0.15  # V, highest minus lowest cell in the bank
CELL_DIFF_ALARM = 0.30
TIME_TO_GO_MIN_CURRENT = 0.5  # A of discharge below which time-to-go means nothing

VOLT = unit_text("V", 2)
CELL_VOLT = unit_text("V", 3)
AMP = unit_text("A", 1)
WATT = unit_text("W", 0)
PERCENT = unit_text("%", 0)
DEGREES = unit_text("°C", 1)
AMP_HOURS = unit_text("Ah", 1)
SECONDS = unit_text("s", 0)
DBM = unit_text("dBm", 0)

# Protection bits behind each alarm (raised as ALARM while the BMS reports them).
PROTECTION_ALARMS: dict[str, Protection] = {
    "/Alarms/LowVoltage": Protection.PACK_UNDERVOLTAGE,
    "/Alarms/HighVoltage": Protection.PACK_OVERVOLTAGE,
    "/Alarms/LowCellVoltage": Protection.CELL_UNDERVOLTAGE,
    "/Alarms/HighCellVoltage": Protection.CELL_OVERVOLTAGE,
    "/Alarms/HighChargeCurrent": Protection.CHARGE_OVERCURRENT,
    "/Alarms/HighDischargeCurrent": Protection.DISCHARGE_OVERCURRENT | Protection.SHORT_CIRCUIT,
    "/Alarms/InternalFailure": Protection.FRONT_END_IC_ERROR | Protection.MOSFET_SOFTWARE_LOCK,
    "/Alarms/HighChargeTemperature": Protection.CHARGE_OVERTEMPERATURE,
    "/Alarms/LowChargeTemperature": Protection.CHARGE_UNDERTEMPERATURE,
    "/Alarms/HighTemperature": Protection.DISCHARGE_OVERTEMPERATURE,
    "/Alarms/LowTemperature": Protection.DISCHARGE_UNDERTEMPERATURE,
}


@dataclass(frozen=True, slots=True)
class PathSpec:
    """One published path: what it means (the README's table is made from these) and its text format."""

    meaning: str
    text: TextFormat | None = None


def _bit_names(bits: Protection) -> str:
    return " or ".join(f"`{name.upper()}`" for name in bits.names())


# The one table of published paths: identity (set once), bank (from every BankState), per pack, per cell.
# The tree is built from it and the README's path table is generated from it; a test checks that the
# service publishes exactly these.
IDENTITY_PATHS: dict[str, PathSpec] = {
    "/Mgmt/ProcessName": PathSpec("program name"),
    "/Mgmt/ProcessVersion": PathSpec("program version"),
    "/Mgmt/Connection": PathSpec("how the packs are reached"),
    "/DeviceInstance": PathSpec("VRM device instance (from localsettings, else `--device-instance`)"),
    "/ProductId": PathSpec("0xBA77, the community battery drivers' id"),
    "/ProductName": PathSpec("product name"),
    "/FirmwareVersion": PathSpec("program version"),
    "/HardwareVersion": PathSpec("number of packs"),
    "/Connected": PathSpec("1 while any pack is active; 0 after none was for DISCONNECTED_AFTER"),
    "/CustomName": PathSpec("user's name for the bank (writable, persisted in the state file)"),
    "/Serial": PathSpec("stable id derived from the pack addresses"),
}

BANK_PATHS: dict[str, PathSpec] = {
    "/Dc/0/Voltage": PathSpec("mean voltage of the active packs", VOLT),
    "/Dc/0/Current": PathSpec("sum of the active packs' currents, + = charging", AMP),
    "/Dc/0/Power": PathSpec("voltage x current", WATT),
    "/Dc/0/Temperature": PathSpec("hottest pack sensor", DEGREES),
    "/Soc": PathSpec("capacity-weighted state of charge", PERCENT),
    "/Capacity": PathSpec("remaining capacity, summed", AMP_HOURS),
    "/InstalledCapacity": PathSpec("nominal capacity, summed", AMP_HOURS),
    "/ConsumedAmphours": PathSpec("installed minus remaining (<= 0)", AMP_HOURS),
    "/TimeToGo": PathSpec("time to empty at the present discharge current", unit_text("s", 0)),
    "/Info/MaxChargeVoltage": PathSpec("CVL: charge voltage limit for DVCC", VOLT),
    "/Info/MaxChargeCurrent": PathSpec("CCL: charge current limit for DVCC", AMP),
    "/Info/MaxDischargeCurrent": PathSpec("DCL: discharge current limit for DVCC", AMP),
    "/Info/BatteryLowVoltage": PathSpec("cells x MIN_CELL_VOLTAGE", VOLT),
    "/Info/ChargeRequest": PathSpec("1 from an under-voltage event until recharged (Venus shows Recharging)"),
    "/Info/ChargeLimitation": PathSpec("what holds the CCL down; the key's name when at its maximum"),
    "/Info/DischargeLimitation": PathSpec("what holds the DCL down; the key's name when at its maximum"),
    "/Info/ChargeMode": PathSpec("Bulk, Absorption, Float (Transition), with the reason (see Charge limits)"),
    "/Io/AllowToCharge": PathSpec("1 when the CCL is above 0"),
    "/Io/AllowToDischarge": PathSpec("1 when the DCL is above 0"),
    "/Io/AllowToBalance": PathSpec("1 when the packs may balance"),
    "/System/MinCellVoltage": PathSpec("lowest cell of all packs", CELL_VOLT),
    "/System/MaxCellVoltage": PathSpec("highest cell of all packs", CELL_VOLT),
    "/System/MinVoltageCellId": PathSpec("which cell: `2-5` = pack 2, cell 5"),
    "/System/MaxVoltageCellId": PathSpec("which cell: `2-5` = pack 2, cell 5"),
    "/System/MinCellTemperature": PathSpec("coldest pack sensor", DEGREES),
    "/System/MaxCellTemperature": PathSpec("hottest pack sensor", DEGREES),
    "/System/MinSoc": PathSpec("SoC of the emptiest active pack", PERCENT),
    "/System/MinSocBatteryId": PathSpec("which pack: n as in `/Parallel/Battery<n>`"),
    "/System/MaxSoc": PathSpec("SoC of the fullest active pack", PERCENT),
    "/System/MaxSocBatteryId": PathSpec("which pack: n as in `/Parallel/Battery<n>`"),
    "/System/NrOfCellsPerBattery": PathSpec("cells in series per pack"),
    "/System/NrOfModulesOnline": PathSpec("active packs"),
    "/System/NrOfModulesOffline": PathSpec("packs not active"),
    "/System/NrOfModulesBlockingCharge": PathSpec("active packs refusing charge (FET off or protection)"),
    "/System/NrOfModulesBlockingDischarge": PathSpec("active packs refusing discharge"),
    "/Balancing": PathSpec("1 while any pack balances a cell"),
    "/History/ChargeCycles": PathSpec("highest cycle count of the packs"),
    "/Voltages/Sum": PathSpec("sum of a pack's cells (mean over packs)", VOLT),
    "/Voltages/Diff": PathSpec("highest minus lowest cell of the bank", CELL_VOLT),
    "/State": PathSpec("9 running, 14 standby (no active pack)"),
    "/Alarms/LowSoc": PathSpec("0 ok, 1 warning (SoC below SOC_LOW_WARNING), 2 alarm (below SOC_LOW_ALARM)"),
    "/Alarms/CellImbalance": PathSpec("0 ok, 1 warning (cell spread 0.15 V), 2 alarm (0.30 V)"),
    "/Alarms/TemperatureSensor": PathSpec("1 while a pack's temperature sensor reads implausibly (dropped)"),
    "/Alarms/BmsCable": PathSpec("1 once a pack sent no data for BMS_CABLE_ALARM s, 2 once no pack did"),
    **{
        path: PathSpec(f"2 while a pack reports the protection {_bit_names(bits)}")
        for path, bits in PROTECTION_ALARMS.items()
    },
    "/Parallel/VoltageImbalance": PathSpec("1 while the packs' voltages are imbalanced"),
    "/Parallel/CurrentImbalance": PathSpec("1 while the current is not shared by capacity"),
    "/Parallel/SocImbalance": PathSpec("1 while the packs' SoCs are imbalanced"),
    "/Parallel/TotalBatteries": PathSpec("packs configured"),
    "/Parallel/ActiveBatteries": PathSpec("packs online with fresh data"),
    "/Parallel/VoltageSpread": PathSpec("highest minus lowest pack voltage over the window", CELL_VOLT),
    "/Parallel/CurrentSpread": PathSpec(
        "largest deviation of a pack's current share from its capacity share", lambda v: f"{v * 100:.1f}%"
    ),
    "/Parallel/SocSpread": PathSpec("highest minus lowest pack SoC", PERCENT),
}

# Short words for the BMS's protections, lowest bit first, as /Parallel/Battery<n>/Protection shows them.
PROTECTION_WORDS: dict[Protection, str] = {
    Protection.CELL_OVERVOLTAGE: "cell OV",
    Protection.CELL_UNDERVOLTAGE: "cell UV",
    Protection.PACK_OVERVOLTAGE: "pack OV",
    Protection.PACK_UNDERVOLTAGE: "pack UV",
    Protection.CHARGE_OVERTEMPERATURE: "charge OT",
    Protection.CHARGE_UNDERTEMPERATURE: "charge UT",
    Protection.DISCHARGE_OVERTEMPERATURE: "discharge OT",
    Protection.DISCHARGE_UNDERTEMPERATURE: "discharge UT",
    Protection.CHARGE_OVERCURRENT: "charge OC",
    Protection.DISCHARGE_OVERCURRENT: "discharge OC",
    Protection.SHORT_CIRCUIT: "short circuit",
    Protection.FRONT_END_IC_ERROR: "AFE error",
    Protection.MOSFET_SOFTWARE_LOCK: "FET lock",
    Protection.CHARGE_TIMEOUT: "charge timeout",
}


_PROTECTION_BITS = tuple((int(flag), word) for flag, word in PROTECTION_WORDS.items())
_PROTECTION_TEXTS: dict[int, str] = {0: ""}  # raw bits -> text: every pack, every tick, nearly always 0


def protection_text(flags: Protection) -> str:
    """``"cell OV, charge OT"``; empty when the BMS reports no protection."""
    raw = int(flags)
    text = _PROTECTION_TEXTS.get(raw)
    if text is None:
        text = ", ".join(word for bit, word in _PROTECTION_BITS if raw & bit)
        if len(_PROTECTION_TEXTS) < 256:  # the decoder caps what it keeps the same way
            _PROTECTION_TEXTS[raw] = text
    return text


@dataclass(frozen=True, slots=True)
class PackFacts:
    """What one pack's paths are computed from on one tick. ``info`` and ``cells`` are only there while
    the pack is active: a pack out of the bank shows its measurements as invalid, not as old numbers."""

    status: PackStatus
    info: BasicInfo | None
    cells: tuple[float, ...]
    link: LinkStats
    now: float  # the tick's time, on the clock readings and RSSI are stamped with


@dataclass(frozen=True, slots=True)
class PackPath:
    """One ``/Parallel/Battery<n>/<leaf>`` path: what the README says, how its value and text come about."""

    leaf: str
    meaning: str
    value: Callable[[PackFacts], Any]
    text: TextFormat | None = None
    measured: bool = False  # the BMS measured it: invalid while the pack is out of the bank


def _measured(
    leaf: str, meaning: str, get: Callable[[BasicInfo], Any], text: TextFormat | None = None
) -> PackPath:
    return PackPath(leaf, meaning, lambda f: None if f.info is None else get(f.info), text, measured=True)


def _cells(leaf: str, meaning: str, pick: Callable[[tuple[float, ...]], float]) -> PackPath:
    return PackPath(leaf, meaning, lambda f: pick(f.cells) if f.cells else None, CELL_VOLT, measured=True)


AGE_FINE_FOR = 60  # s: ages count in seconds up to here, then in whole minutes


def _age(now: float, then: float | None) -> int | None:
    """Whole seconds, then whole minutes (still in s): a connected pack's RSSI ages for hours, and a path
    that changes every tick for every pack costs a Cerbo more than the second's precision is worth."""
    if then is None:
        return None
    age = max(0, int(now - then))
    return age if age < AGE_FINE_FOR else age - age % 60


# The per-pack paths: this table builds the tree, computes the values and writes the README's rows.
PACK_PATHS: dict[str, PackPath] = {
    row.leaf: row
    for row in (
        PackPath("Address", "pack n's Bluetooth address", lambda f: f.status.address),
        PackPath(
            "LinkState",
            ", ".join(state.value for state in LinkState),  # the model's enum: a new state is one line
            lambda f: str(f.status.link_state),
        ),
        PackPath("Connected", "1 while pack n is active", lambda f: 1 if f.status.active else 0),
        _measured("Voltage", "pack n's voltage", lambda i: i.voltage, VOLT),
        _measured("Current", "pack n's current, + = charging", lambda i: i.current, AMP),
        _measured("Soc", "pack n's state of charge", lambda i: i.soc, PERCENT),
        _measured(
            "Temperature",
            "pack n's hottest sensor",
            lambda i: max(i.temperatures) if i.temperatures else None,
            DEGREES,
        ),
        _cells("MinCellVoltage", "pack n's lowest cell", min),
        _cells("MaxCellVoltage", "pack n's highest cell", max),
        # 0 cells or 0 Ah means the BMS was never told: unknown, not a measured zero.
        _measured("CellCount", "cells in series the BMS reports (0x03)", lambda i: i.cell_count or None),
        _measured("Capacity", "pack n's remaining capacity", lambda i: i.remaining_capacity, AMP_HOURS),
        _measured(
            "InstalledCapacity",
            "pack n's nominal capacity",
            lambda i: i.nominal_capacity or None,
            AMP_HOURS,
        ),
        _measured("Cycles", "pack n's charge cycles", lambda i: i.cycles),
        _measured("ChargeFet", "1 while pack n's charge FET is on", lambda i: int(i.charge_fet)),
        _measured("DischargeFet", "1 while pack n's discharge FET is on", lambda i: int(i.discharge_fet)),
        _measured("Balancing", "1 while pack n balances a cell", lambda i: int(i.balance_bits != 0)),
        _measured(
            "Protection",
            "active protections in short words (`cell OV, charge OT`), empty when none",
            lambda i: protection_text(i.protection),
        ),
        PackPath("Model", "BMS model (register 0x05, read once per connection)", lambda f: f.link.model),
        PackPath("Rssi", "signal strength BlueZ last reported for pack n", lambda f: f.link.rssi, DBM),
        PackPath(
            "RssiAge",
            "age of that RSSI (BlueZ reports it only while scanning); whole minutes after the first",
            lambda f: _age(f.now, f.link.rssi_time),
            SECONDS,
        ),
        PackPath(
            "LinkQuality",
            "% of requests answered over the last 60 s (an outage counts the polls it missed)",
            lambda f: f.link.link_quality,
            PERCENT,
        ),
        PackPath(
            "Reconnects", "connections to pack n after the first, since start", lambda f: f.link.reconnects
        ),
        PackPath(
            "Lock",
            "why pack n refuses us and what to set (`needs a password (PASSWORD = ...)`, `needs pairing "
            "(PASSKEY = ...)`, `password refused`, ...); empty when none (never a secret)",
            lambda f: f.link.lock,
        ),
        PackPath(
            "LastUpdate",
            "s since pack n's last reading; whole minutes after the first",
            lambda f: _age(f.now, f.status.reading.time if f.status.reading else None),
            SECONDS,
        ),
    )
}
UNKNOWN_LINK = LinkStats()
LinkStatsSource = Callable[[], Mapping[int, LinkStats]]

# Every cell of every pack; D-Bus paths cannot hold the guide's hyphen.
CELL_PATHS: dict[str, PathSpec] = {
    "/Voltages/Cell<n>_<c>": PathSpec("cell c of pack n (the guide's `Cell<n>-<c>`)", CELL_VOLT),
    "/Balances/Cell<n>_<c>": PathSpec("1 while cell c of pack n is balancing"),
}


def all_paths() -> dict[str, PathSpec | PackPath]:
    """Every path the service publishes, per-pack and per-cell ones as patterns (for the README)."""
    packs = {f"/Parallel/Battery<n>/{leaf}": spec for leaf, spec in PACK_PATHS.items()}
    return {**IDENTITY_PATHS, **BANK_PATHS, **packs, **CELL_PATHS}


def bank_serial(addresses: Sequence[str]) -> str:
    """A stable identifier for this set of packs: the same MACs give the same serial and VRM instance."""
    joined = ",".join(a.upper() for a in addresses)
    return "BTB" + hashlib.sha256(joined.encode()).hexdigest()[:10].upper()


def bank_unique_id(addresses: Sequence[str]) -> str:
    """The key under which localsettings keeps this bank's device instance (``[A-Za-z0-9_]`` only)."""
    return "btbattery_" + bank_serial(addresses)


def cell_voltage_path(pack: int, cell: int) -> str:
    return f"/Voltages/Cell{pack}_{cell}"


def cell_balance_path(pack: int, cell: int) -> str:
    return f"/Balances/Cell{pack}_{cell}"


def _limit(value: float | None) -> float:
    """A DVCC limit: anything unknown, negative or non-finite becomes 0 (stop), never 'no limit'."""
    if value is None or not math.isfinite(value) or value < 0:
        return 0.0
    return float(value)


LIMIT_PATHS = (
    "/Info/MaxChargeVoltage",
    "/Info/MaxChargeCurrent",
    "/Info/MaxDischargeCurrent",
    "/Info/ChargeLimitation",
    "/Info/DischargeLimitation",
)


def limit_values(limits: ChargeLimits, last_cvl: float | None) -> dict[str, Any]:
    """The DVCC limits to publish, given the last CVL published (None: none yet).

    A CVL of 0 V is never a limit (DVCC would pass it to the chargers): it means "unknown", so the last
    published CVL stays. Before the first real CVL the three limits are invalid: Venus then treats the
    service as a battery without BMS control rather than obeying made-up numbers. The currents fail toward
    0; charging and discharging are allowed exactly when their limit is above 0.
    """
    cvl = _limit(limits.charge_voltage) or last_cvl
    if not cvl:
        return {**dict.fromkeys(LIMIT_PATHS), "/Io/AllowToCharge": 0, "/Io/AllowToDischarge": 0}
    charge, discharge = _limit(limits.charge_current), _limit(limits.discharge_current)
    return {
        "/Info/MaxChargeVoltage": cvl,
        "/Info/MaxChargeCurrent": charge,
        "/Info/MaxDischargeCurrent": discharge,
        "/Info/ChargeLimitation": limits.charge_reason or "MAX_BATTERY_CHARGE_CURRENT",
        "/Info/DischargeLimitation": limits.discharge_reason or "MAX_BATTERY_DISCHARGE_CURRENT",
        "/Io/AllowToCharge": int(charge > 0),
        "/Io/AllowToDischarge": int(discharge > 0),
    }


class CustomNameStore:
    """``/CustomName`` survives restarts in the state file (under /data on a GX device)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def load(self) -> str:
        name = read_state(self.path).get("CustomName", "")
        return name if isinstance(name, str) else ""

    def save(self, name: str) -> None:
        update_state(self.path, "CustomName", name)


def _valid_custom_name(name: str) -> bool:
    return len(name) <= CUSTOM_NAME_MAX and name.isprintable()


class BatteryService:
    """The bank on D-Bus. ``await start()`` once, ``publish(state)`` every pipeline tick, ``await stop()``."""

    def __init__(
        self,
        bus: MessageBus,
        packs: Sequence[tuple[int, str]],
        *,
        cells_per_pack: int | None = None,
        service_name: str = SERVICE_NAME,
        device_instance: int = 1,
        custom_name_store: str | os.PathLike[str] = DEFAULT_STATE_FILE,
        product_name: str = "JBD parallel battery bank",
        process_name: str = "dbus-btbattery",
        low_cell_voltage: float = 2.9,
        link_stats: LinkStatsSource | None = None,
    ) -> None:
        self.service_name = service_name
        self._link_stats = link_stats
        self.packs = list(packs)
        self.serial = bank_serial([address for _, address in self.packs])
        self._low_cell_voltage = low_cell_voltage
        self._store = CustomNameStore(custom_name_store)
        # pack number -> (voltage path, balance path) per cell published so far; built once, not per tick
        self._cell_paths: dict[int, list[tuple[str, str]]] = {}
        # per pack: (cells, balance bits, cell paths) as last written, so a tick writes only what moved
        self._cells_shown: dict[int, tuple[tuple[float, ...], int | None, int]] = {}
        # pack number -> (path, how its value comes about) for every per-pack path, likewise
        self._pack_paths: dict[int, list[tuple[str, Callable[[PackFacts], Any]]]] = {}
        self.tree = BusItemTree(bus)
        self._add_identity(device_instance, product_name, process_name)
        for path, spec in BANK_PATHS.items():
            self.tree.add(path, text=spec.text)
        self.tree["/Parallel/TotalBatteries"] = len(self.packs)
        # Until the first real limits the limit paths stay invalid (limit_values); nothing is allowed.
        self.tree.update({**limit_values(ChargeLimits(0.0, 0.0, 0.0), None), "/Info/ChargeRequest": 0})
        self.tree["/Alarms/BmsCable"] = OK
        for number, address in self.packs:
            self._add_pack(number, address)
            self._ensure_cells(number, cells_per_pack or 0)

    @property
    def unique_id(self) -> str:
        """The key for this bank's device instance in localsettings (see settings.device_instance)."""
        return bank_unique_id([address for _, address in self.packs])

    def _add_identity(self, device_instance: int, product_name: str, process_name: str) -> None:
        values = {
            "/Mgmt/ProcessName": process_name,
            "/Mgmt/ProcessVersion": __version__,
            "/Mgmt/Connection": f"Bluetooth LE, {len(self.packs)} packs in parallel",
            "/DeviceInstance": device_instance,
            "/ProductId": PRODUCT_ID,
            "/ProductName": product_name,
            "/FirmwareVersion": __version__,
            "/HardwareVersion": f"{len(self.packs)} x JBD BMS",
            "/Connected": 0,
            "/CustomName": self._store.load(),
            "/Serial": self.serial,
        }
        name = Writable((str,), _valid_custom_name, self._save_custom_name)
        for path, spec in IDENTITY_PATHS.items():
            custom = path == "/CustomName"
            self.tree.add(
                path, values[path], text=spec.text, writable=name if custom else None, signal=custom
            )

    def _save_custom_name(self, _path: str, name: str) -> None:
        try:
            self._store.save(name)
            log.info("custom name set to %r", name)
        except OSError as err:
            log.error("custom name %r not saved to %s: %s", name, self._store.path, err)

    def _add_pack(self, number: int, address: str) -> None:
        paths = self._pack_paths[number] = []
        for leaf, row in PACK_PATHS.items():
            path = f"/Parallel/Battery{number}/{leaf}"
            self.tree.add(path, text=row.text)
            paths.append((path, row.value))
        self.tree[f"/Parallel/Battery{number}/Address"] = address
        self.tree[f"/Parallel/Battery{number}/Connected"] = 0

    def _ensure_cells(self, pack: int, count: int) -> None:
        """Cell paths exist for every cell seen so far; a pack first seen with more cells gains paths."""
        paths = self._cell_paths.setdefault(pack, [])
        for cell in range(len(paths) + 1, count + 1):
            voltage, balance = cell_voltage_path(pack, cell), cell_balance_path(pack, cell)
            self.tree.add(voltage, text=CELL_PATHS["/Voltages/Cell<n>_<c>"].text)
            self.tree.add(balance, text=CELL_PATHS["/Balances/Cell<n>_<c>"].text)
            paths.append((voltage, balance))

    async def start(self) -> None:
        await self.tree.register(self.service_name)

    async def stop(self) -> None:
        await self.tree.close()

    async def wait_lost(self) -> BaseException:
        return await self.tree.wait_lost()

    def publish(self, state: BankState) -> None:
        """Map one pipeline tick to paths; at most one ItemsChanged leaves, carrying only changes."""
        with self.tree.batch():
            values = bank_values(state.snapshot, state.imbalance, state.limits, self._low_cell_voltage)
            cvl = self.tree["/Info/MaxChargeVoltage"]
            values.update(limit_values(state.limits, cvl if isinstance(cvl, float) else None))
            values.update(alert_values(state.alerts))
            values["/Connected"] = 1 if state.connected else 0
            values.update(charge_values(state))
            links = self._link_stats() if self._link_stats is not None else {}
            for pack in state.snapshot.packs:
                self._pack_values(pack, links.get(pack.pack, UNKNOWN_LINK), state.snapshot.time, values)
            self.tree.update(values)

    def _pack_values(self, pack: PackStatus, link: LinkStats, now: float, values: dict[str, Any]) -> None:
        if pack.pack not in self._pack_paths:  # a pack the service was not told about: still show it
            self._add_pack(pack.pack, pack.address)
        live = pack.reading if pack.active else None
        info = live.info if live is not None else None
        cells = live.cells.voltages if live is not None and live.cells is not None else ()
        facts = PackFacts(pack, info, cells, link, now)
        for path, value in self._pack_paths[pack.pack]:
            values[path] = value(facts)
        # Sized like the bank counts cells (the smaller of 0x03's count and 0x04's, after plausibility).
        count = reading_cell_count(live) if live is not None else None
        self._ensure_cells(pack.pack, count or 0)
        bits = info.balance_bits if info else None
        count = len(cells)
        paths = self._cell_paths[pack.pack]
        shown, self._cells_shown[pack.pack] = self._cells_shown.get(pack.pack), (cells, bits, len(paths))
        if shown is not None and shown[1] == bits and len(shown[0]) == count and shown[2] == len(paths):
            # Same cells and balancers as last tick: only the voltages that moved (a few of 16 at 1 Hz).
            # paths may be fewer than cells (sized by the smaller of 0x03 and 0x04 counts)
            for (voltage_path, _), voltage, before in zip(paths, cells, shown[0], strict=False):
                if voltage != before:
                    values[voltage_path] = voltage
            return
        for index, (voltage_path, balance_path) in enumerate(paths):
            if index < count:
                values[voltage_path] = cells[index]
                values[balance_path] = None if bits is None else bits >> index & 1
            else:
                values[voltage_path] = values[balance_path] = None


def bank_values(
    snap: BankSnapshot, imbalance: ImbalanceStatus, limits: ChargeLimits, low_cell_voltage: float
) -> dict[str, Any]:
    """Every bank-level path's value for one tick (None = invalid)."""
    active = snap.active_packs > 0
    values: dict[str, Any] = {
        "/Dc/0/Voltage": snap.voltage,
        "/Dc/0/Current": snap.current,
        "/Dc/0/Power": snap.power,
        "/Dc/0/Temperature": snap.temperature,
        "/Soc": snap.soc,
        "/Capacity": snap.remaining_capacity,
        "/InstalledCapacity": snap.nominal_capacity,
        "/ConsumedAmphours": _consumed(snap),
        "/TimeToGo": _time_to_go(snap),
        "/System/MinCellVoltage": snap.min_cell_voltage,
        "/System/MaxCellVoltage": snap.max_cell_voltage,
        "/System/MinVoltageCellId": snap.min_cell_id,
        "/System/MaxVoltageCellId": snap.max_cell_id,
        "/System/MinCellTemperature": snap.min_temperature,
        "/System/MaxCellTemperature": snap.max_temperature,
        "/System/NrOfCellsPerBattery": snap.cells_per_pack,
        "/System/NrOfModulesOnline": snap.active_packs,
        "/System/NrOfModulesOffline": snap.total_packs - snap.active_packs,
        "/System/NrOfModulesBlockingCharge": snap.blocking_charge,
        "/System/NrOfModulesBlockingDischarge": snap.blocking_discharge,
        "/History/ChargeCycles": snap.cycles,
        "/Voltages/Sum": _cell_sum(snap),
        "/Voltages/Diff": _cell_diff(snap),
        "/State": STATE_RUNNING if active else STATE_STANDBY,
        "/Parallel/TotalBatteries": snap.total_packs,
        "/Parallel/ActiveBatteries": snap.active_packs,
    }
    values.update(_limit_values(snap, limits, low_cell_voltage))
    values.update(soc_extremes(snap))
    values.update(_imbalance_values(imbalance))
    values.update(_alarm_values(snap, active))
    values["/Balancing"] = int(snap.balancing) if active else None
    return values


def charge_values(state: BankState) -> dict[str, Any]:
    """The charge mode text, and a warning while a temperature sensor's readings are dropped as faulty."""
    active = state.snapshot.active_packs > 0
    return {
        "/Info/ChargeMode": state.charge_mode or None,
        "/Alarms/TemperatureSensor": (WARNING if state.sensor_faults else OK) if active else None,
    }


def _limit_values(snap: BankSnapshot, limits: ChargeLimits, low_cell_voltage: float) -> dict[str, Any]:
    """The limits' companions (the limits themselves need the last CVL: :func:`limit_values`)."""
    low = snap.cells_per_pack * low_cell_voltage if snap.cells_per_pack else None
    return {
        "/Info/BatteryLowVoltage": low,
        "/Io/AllowToBalance": 1 if snap.active_packs else 0,
    }


def alert_values(alerts: BankAlerts) -> dict[str, Any]:
    return {
        "/Alarms/BmsCable": alerts.bms_cable,
        "/Alarms/LowSoc": alerts.low_soc,
        "/Info/ChargeRequest": int(alerts.charge_request),
    }


def soc_extremes(snap: BankSnapshot) -> dict[str, Any]:
    """The emptiest and fullest active pack: in parallel the bank is as empty as its emptiest pack."""
    socs = [(p.reading.info.soc, p.pack) for p in snap.packs if p.active and p.reading is not None]
    low, high = (min(socs), max(socs)) if socs else ((None, None), (None, None))
    return {
        "/System/MinSoc": low[0],
        "/System/MinSocBatteryId": low[1],
        "/System/MaxSoc": high[0],
        "/System/MaxSocBatteryId": high[1],
    }


def _imbalance_values(imbalance: ImbalanceStatus) -> dict[str, Any]:
    return {
        "/Parallel/VoltageImbalance": int(imbalance.voltage),
        "/Parallel/CurrentImbalance": int(imbalance.current),
        "/Parallel/SocImbalance": int(imbalance.soc),
        "/Parallel/VoltageSpread": imbalance.voltage_spread,
        "/Parallel/CurrentSpread": imbalance.current_spread,
        "/Parallel/SocSpread": imbalance.soc_spread,
    }


def _alarm_values(snap: BankSnapshot, active: bool) -> dict[str, Any]:
    """The BMS alarms; none while no pack is active, so the paths keep their last levels: an alarm must not
    clear exactly when the bank goes blind (that is /Alarms/BmsCable's news)."""
    if not active:
        return {}
    values: dict[str, Any] = {
        path: ALARM if snap.protection & bits else OK for path, bits in PROTECTION_ALARMS.items()
    }
    diff = _cell_diff(snap)
    level = OK
    if diff is not None and diff >= CELL_DIFF_ALARM:
        level = ALARM
    elif diff is not None and diff >= CELL_DIFF_WARNING:
        level = WARNING
    values["/Alarms/CellImbalance"] = level
    return values


def _consumed(snap: BankSnapshot) -> float | None:
    if snap.remaining_capacity is None or snap.nominal_capacity is None:
        return None
    return min(0.0, snap.remaining_capacity - snap.nominal_capacity)


def _time_to_go(snap: BankSnapshot) -> int | None:
    if snap.current is None or snap.remaining_capacity is None or snap.current > -TIME_TO_GO_MIN_CURRENT:
        return None
    return round(snap.remaining_capacity / -snap.current * 3600)


def _cell_diff(snap: BankSnapshot) -> float | None:
    if snap.max_cell_voltage is None or snap.min_cell_voltage is None:
        return None
    return round(snap.max_cell_voltage - snap.min_cell_voltage, 4)


def _cell_sum(snap: BankSnapshot) -> float | None:
    """Mean over active packs of the sum of their cells: in parallel every pack sees the same bus voltage."""
    sums = [
        sum(p.reading.cells.voltages)
        for p in snap.packs
        if p.active and p.reading is not None and p.reading.cells is not None and p.reading.cells.voltages
    ]
    return round(sum(sums) / len(sums), 3) if sums else None
