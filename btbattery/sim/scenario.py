"""Scenarios: data files that describe a simulated bank, its load profile, link faults and physics events.

A scenario is JSON::

    {"name": "default", "seed": 1, "poll_interval": 1.0, "duration": 300,
     "defaults": {"capacity_ah": 100, "soc": 60},            # applied to every pack, any PackParams field
     "packs": [{"address": "A4:C1:37:00:00:01", "soc": 62}, ...],
     "load": [{"duration": 120, "current": 60}, {"duration": 60, "current": -80}],   # repeats cyclically
     "faults": [{"at": 30, "pack": 2, "kind": "drop", "duration": 40}],
     "changes": [{"at": 90, "pack": 3, "set": {"resistance_ohm": 0.06}}],
     "pack_files": {"2": {"PASSWORD": "123456"}}}                # what the service's per-pack files say

A pack may be locked like newer units: ``"password": "123456"`` (FF AA handshake), ``"pairing": "passkey"``
or ``"echo"`` with ``"passkey": 123456``. ``pack_files`` are the per-pack config files the demo starts the
service with (pack number -> keys), so a scenario can show a right, a wrong and a missing secret.

Built-in names ("default", "dropout", "imbalance", "weak3") are files in ``btbattery/sim/scenarios/``; any
other argument is read as a path. Every error names the file and the key that is wrong.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from btbattery.protocol.jbd import valid_password
from btbattery.sim.pack import PAIRING_KINDS, STATE_CHANGES, PackParams, SimBank, SimPack

FAULT_KINDS = ("drop", "drop_midframe", "silent", "corrupt", "truncate", "delay", "adapter_loss")
_MAC = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")
_FIXED = ("address", "cell_count", "ntc_count")  # a running pack cannot change these


class ScenarioError(ValueError):
    """A scenario file that cannot be used; the message names the file and the key."""


@dataclass(frozen=True, slots=True)
class LoadSegment:
    duration: float  # s
    current: float  # A into the bank, + = charging


@dataclass(frozen=True, slots=True)
class Fault:
    """A link fault on one pack (``adapter_loss`` affects the whole adapter, whatever ``pack`` says)."""

    at: float  # s from the start
    pack: int  # 1-based
    kind: str
    duration: float = 0.0  # s
    delay: float = 0.0  # s, for kind "delay"

    def active(self, t: float) -> bool:
        return self.at <= t < self.at + self.duration


@dataclass(frozen=True, slots=True)
class PackChange:
    """A physics event: at ``at`` seconds set fields of pack ``pack`` (see :meth:`SimPack.apply`)."""

    at: float
    pack: int
    set: dict[str, object]


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    packs: list[PackParams]
    poll_interval: float = 1.0
    load: list[LoadSegment] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    changes: list[PackChange] = field(default_factory=list)
    seed: int = 0
    duration: float = 300.0  # s, how long record/demo run it unless told otherwise
    description: str = ""
    pack_files: dict[int, dict[str, str]] = field(default_factory=dict)  # pack -> config keys

    def bank_current(self, t: float) -> float:
        """Bank current (A) the load profile asks for at ``t`` seconds; the profile repeats."""
        period = sum(seg.duration for seg in self.load)
        if period <= 0:
            return 0.0
        t %= period
        for seg in self.load:
            if t < seg.duration:
                return seg.current
            t -= seg.duration
        return self.load[-1].current

    def build_bank(self) -> SimBank:
        """Fresh simulated packs in their initial state, deterministic under :attr:`seed`."""
        return SimBank([SimPack(params, seed=self.seed) for params in self.packs])

    def advance(self, bank: SimBank, t: float, dt: float) -> None:
        """Run the bank from ``t`` to ``t + dt``: apply the changes due in that interval, then step with
        the load current at ``t``. Keep ``dt`` small (<= 1 s) so changes land on time."""
        for change in self.changes:
            if t <= change.at < t + dt:
                pack = bank.packs[change.pack - 1]
                for key, value in change.set.items():
                    pack.apply(key, value)
        bank.step(dt, self.bank_current(t))

    def faults_for(self, pack: int, t: float) -> list[Fault]:
        """Faults affecting 1-based ``pack`` at ``t`` (adapter loss affects every pack)."""
        return [f for f in self.faults if f.active(t) and (f.pack == pack or f.kind == "adapter_loss")]


def builtin_names() -> list[str]:
    folder = resources.files("btbattery.sim") / "scenarios"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json"))


def load_scenario(name_or_path: str) -> Scenario:
    """A built-in scenario by name, or a scenario file by path."""
    path = Path(name_or_path)
    if path.suffix == ".json" or path.exists() or "/" in name_or_path:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ScenarioError(f"{path}: cannot read scenario ({exc.strerror})") from None
        return parse_scenario(text, str(path))
    resource = resources.files("btbattery.sim") / "scenarios" / f"{name_or_path}.json"
    if not resource.is_file():
        known = ", ".join(builtin_names())
        raise ScenarioError(f"{name_or_path}: no such built-in scenario (known: {known}) and no such file")
    return parse_scenario(resource.read_text(encoding="utf-8"), f"scenarios/{name_or_path}.json")


def parse_scenario(text: str, where: str) -> Scenario:
    """Parse scenario JSON; ``where`` names the source in errors."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ScenarioError(f"{where}:{exc.lineno}: not JSON ({exc.msg})") from None
    return _Parser(where).scenario(doc)


# Types of PackParams fields, from their annotations (strings under postponed evaluation).
_PARAM_TYPES = {f.name: str(f.type) for f in dataclasses.fields(PackParams)}


class _Parser:
    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, key: str, problem: str) -> ScenarioError:
        return ScenarioError(f"{self.where}: {key}: {problem}")

    def obj(self, value: object, key: str, allowed: set[str]) -> dict[str, object]:
        if not isinstance(value, dict):
            raise self.fail(key, f"expected an object, got {type(value).__name__}")
        for name in value:
            if name not in allowed:
                raise self.fail(f"{key}.{name}" if key else name, "unknown key")
        return value

    def number(self, value: object, key: str, minimum: float | None = None) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(key, f"expected a number, got {value!r}")
        if minimum is not None and value < minimum:
            raise self.fail(key, f"must be >= {minimum}, got {value!r}")
        return float(value)

    def integer(self, value: object, key: str, lo: int, hi: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"expected an integer, got {value!r}")
        if not lo <= value <= hi:
            raise self.fail(key, f"must be between {lo} and {hi}, got {value}")
        return value

    def list_of(self, value: object, key: str) -> list[object]:
        if not isinstance(value, list):
            raise self.fail(key, f"expected a list, got {type(value).__name__}")
        return value

    def scenario(self, doc: object) -> Scenario:
        keys = {"name", "description", "seed", "poll_interval", "duration", "defaults", "packs", "load"}
        keys |= {"pack_files"}
        doc = self.obj(doc, "", keys | {"faults", "changes"})
        defaults = self.obj(doc.get("defaults", {}), "defaults", set(_PARAM_TYPES) - {"address"})
        packs = [
            self.pack(raw, f"packs[{i}]", defaults, i)
            for i, raw in enumerate(self.list_of(doc.get("packs"), "packs"))
        ]
        if not packs:
            raise self.fail("packs", "a scenario needs at least one pack")
        seen: set[str] = set()
        for i, p in enumerate(packs):
            if p.address.upper() in seen:
                raise self.fail(f"packs[{i}].address", f"{p.address} appears twice")
            seen.add(p.address.upper())
        name = doc.get("name", Path(self.where).stem)
        if not isinstance(name, str):
            raise self.fail("name", "expected a string")
        return Scenario(
            name=name,
            packs=packs,
            poll_interval=self.number(doc.get("poll_interval", 1.0), "poll_interval", 0.05),
            load=[
                self.segment(s, f"load[{i}]") for i, s in enumerate(self.list_of(doc.get("load", []), "load"))
            ],
            faults=[
                self.fault(f, f"faults[{i}]", len(packs))
                for i, f in enumerate(self.list_of(doc.get("faults", []), "faults"))
            ],
            changes=[
                self.change(c, f"changes[{i}]", packs)
                for i, c in enumerate(self.list_of(doc.get("changes", []), "changes"))
            ],
            seed=self.integer(doc.get("seed", 0), "seed", 0, 2**31),
            duration=self.number(doc.get("duration", 300.0), "duration", 0),
            description=str(doc.get("description", "")),
            pack_files=self.pack_files(doc.get("pack_files", {}), len(packs)),
        )

    def pack_files(self, raw: object, pack_count: int) -> dict[int, dict[str, str]]:
        files = self.obj(raw, "pack_files", {str(n) for n in range(1, pack_count + 1)})
        out: dict[int, dict[str, str]] = {}
        for number, keys in files.items():
            if not isinstance(keys, dict) or not all(isinstance(v, str | int) for v in keys.values()):
                raise self.fail(f"pack_files.{number}", "expected an object of KEY: value")
            out[int(number)] = {str(k): str(v) for k, v in keys.items()}
        return out

    def pack(self, raw: object, key: str, defaults: dict[str, object], index: int) -> PackParams:
        raw = self.obj(raw, key, set(_PARAM_TYPES))
        merged = {**defaults, **raw}
        merged.setdefault("address", f"A4:C1:37:00:00:{index + 1:02X}")
        values = {name: self.param(name, value, f"{key}.{name}") for name, value in merged.items()}
        try:
            return PackParams(**values)  # type: ignore[arg-type]
        except TypeError as exc:
            raise self.fail(key, str(exc)) from None

    def param(self, name: str, value: object, key: str) -> object:
        """One PackParams value, type- and range-checked."""
        kind = _PARAM_TYPES[name]
        if name == "address":
            if not isinstance(value, str) or not _MAC.match(value):
                raise self.fail(key, f"expected a Bluetooth address like A4:C1:37:00:00:01, got {value!r}")
            return value.upper()
        if name == "cell_count":
            return self.integer(value, key, 1, 32)
        if name == "password":
            if value is not None and not (isinstance(value, str) and valid_password(value)):
                raise self.fail(key, "expected 6 ASCII letters or digits, or null")
            return value
        if name == "passkey":
            return None if value is None else self.integer(value, key, 0, 999_999)
        if name == "pairing":
            if value not in PAIRING_KINDS:
                raise self.fail(key, f"expected one of {', '.join(PAIRING_KINDS)}, got {value!r}")
            return value
        if name == "ntc_count":
            return self.integer(value, key, 0, 8)
        if name == "soc":
            soc = self.number(value, key, 0)
            if soc > 100:
                raise self.fail(key, f"must be at most 100, got {value!r}")
            return soc
        if name in ("capacity_ah", "resistance_ohm", "heat_capacity_j_k", "thermal_resistance_k_w"):
            number = self.number(value, key, 0)
            if number == 0:
                raise self.fail(key, "must be greater than 0")
            if name == "capacity_ah" and number > 655:
                raise self.fail(key, f"at most 655 Ah fit the JBD capacity register, got {value!r}")
            return number
        if kind == "float":
            return self.number(value, key)
        if kind == "int":
            return self.integer(value, key, 0, 1_000_000)
        if kind == "str":
            if not isinstance(value, str):
                raise self.fail(key, f"expected a string, got {value!r}")
            return value
        if "datetime.date" in kind:
            if value is None:
                return None
            try:
                return datetime.date.fromisoformat(str(value))
            except ValueError:
                raise self.fail(key, f"expected a date YYYY-MM-DD, got {value!r}") from None
        raise self.fail(key, f"cannot be set from a scenario (type {kind})")

    def segment(self, raw: object, key: str) -> LoadSegment:
        raw = self.obj(raw, key, {"duration", "current"})
        if "duration" not in raw or "current" not in raw:
            raise self.fail(key, "needs 'duration' and 'current'")
        return LoadSegment(
            self.number(raw["duration"], f"{key}.duration", 0), self.number(raw["current"], f"{key}.current")
        )

    def fault(self, raw: object, key: str, pack_count: int) -> Fault:
        raw = self.obj(raw, key, {"at", "pack", "kind", "duration", "delay"})
        for needed in ("at", "pack", "kind"):
            if needed not in raw:
                raise self.fail(f"{key}.{needed}", "missing")
        kind = raw["kind"]
        if kind not in FAULT_KINDS:
            raise self.fail(f"{key}.kind", f"{kind!r} is not one of {', '.join(FAULT_KINDS)}")
        return Fault(
            at=self.number(raw["at"], f"{key}.at", 0),
            pack=self.integer(raw["pack"], f"{key}.pack", 1, pack_count),
            kind=str(kind),
            duration=self.number(raw.get("duration", 0.0), f"{key}.duration", 0),
            delay=self.number(raw.get("delay", 0.0), f"{key}.delay", 0),
        )

    def change(self, raw: object, key: str, packs: list[PackParams]) -> PackChange:
        raw = self.obj(raw, key, {"at", "pack", "set"})
        for needed in ("at", "pack", "set"):
            if needed not in raw:
                raise self.fail(f"{key}.{needed}", "missing")
        pack = self.integer(raw["pack"], f"{key}.pack", 1, len(packs))
        allowed = (set(_PARAM_TYPES) - set(_FIXED)) | set(STATE_CHANGES)
        settings = self.obj(raw["set"], f"{key}.set", allowed)
        values: dict[str, object] = {}
        for name, value in settings.items():
            where = f"{key}.set.{name}"
            if name == "cell_soc":
                values[name] = self.cell_soc(value, where, packs[pack - 1].cell_count)
            elif name == "temperature_c":
                values[name] = self.number(value, where)
            elif name == "ntc_fault":
                values[name] = self.ntc_fault(value, where, packs[pack - 1].ntc_count)
            else:
                values[name] = self.param(name, value, where)
        return PackChange(self.number(raw["at"], f"{key}.at", 0), pack, values)

    def ntc_fault(self, value: object, key: str, ntc_count: int) -> dict[int, float | None]:
        if not isinstance(value, dict):
            raise self.fail(key, "expected an object {sensor number: degC it reads, or null}")
        out: dict[int, float | None] = {}
        for sensor, reads in value.items():
            if not str(sensor).isdigit() or not 1 <= int(sensor) <= ntc_count:
                raise self.fail(f"{key}.{sensor}", f"not a sensor number between 1 and {ntc_count}")
            out[int(sensor)] = None if reads is None else self.number(reads, f"{key}.{sensor}")
        return out

    def cell_soc(self, value: object, key: str, cell_count: int) -> dict[int, float]:
        if not isinstance(value, dict):
            raise self.fail(key, "expected an object {cell number: SoC %}")
        out: dict[int, float] = {}
        for cell, soc in value.items():
            if not str(cell).isdigit() or not 1 <= int(cell) <= cell_count:
                raise self.fail(f"{key}.{cell}", f"not a cell number between 1 and {cell_count}")
            out[int(cell)] = self.number(soc, f"{key}.{cell}", -3)
        return out
