"""The soak: a simulated bank with random faults of every kind the simulator knows, through the real decoder,
plausibility and pipeline in virtual time, with the design invariants checked at every publish tick.

Used by tests/unit/test_soak.py (a whole day, seconds of wall time) and tests/bench/bench_soak.py (a seed
sweep). Faults: every link fault kind of the scenario format (drop, drop mid-frame, silence, corruption,
truncation, delay, adapter loss), physics events (protection by heat and cold, imbalance by a cell knocked
off its SoC, a pack's resistance rising) and frames with the edge values of issue 16 (SoC 255, 255 cells, a
cell of 65.535 V, an open NTC at 0xFFFF, a wrong cell count).
"""

from __future__ import annotations

import dataclasses
import gc
import math
import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from btbattery.commands.record import simulate
from btbattery.commands.replay import pack_specs, replay_events
from btbattery.config import Config, default_config
from btbattery.model import BankState, CellVoltages, Protection
from btbattery.pipeline.plausibility import PackPlausibility
from btbattery.protocol import jbd
from btbattery.replay import Event, Traffic
from btbattery.sim.pack import PackParams
from btbattery.sim.scenario import FAULT_KINDS, Fault, LoadSegment, PackChange, Scenario

CELLS = 16
LINK_FAULTS = ("drop", "drop_midframe", "silent", "adapter_loss")  # the pack's data stops: it must come back
EDGE_KINDS = ("soc 255", "255 cells", "cell 65.535 V", "open NTC", "8 cells", "4 cells")


def soak_config(poll: float) -> Config:
    """The defaults, freshness times scaled to the poll interval (a coarse poll makes a day cheap)."""
    scale = max(1.0, poll)
    return dataclasses.replace(
        default_config(),
        poll_interval=poll,
        publish_interval=poll,
        pack_stale_after=5.0 * scale,
        pack_dropout_grace=10.0 * scale,
        disconnected_after=60.0 * scale,
        imbalance_window=max(60.0, 6 * poll),
    )


def soak_scenario(packs: int, seed: int, duration: float) -> Scenario:
    rng = random.Random(seed)
    params = [
        PackParams(
            address=f"A4:C1:37:5A:00:{n:02X}",
            capacity_ah=rng.choice((100.0, 200.0, 280.0)),
            soc=rng.uniform(20, 90),
            resistance_ohm=rng.uniform(0.015, 0.03),
            temperature_c=rng.uniform(10, 30),
        )
        for n in range(1, packs + 1)
    ]
    load = [
        LoadSegment(rng.uniform(600, 3600), rng.uniform(-40, 40) * packs)
        for _ in range(max(4, int(duration // 5000)))
    ]
    hours = max(1.0, duration / 3600)
    faults = []
    for kind in FAULT_KINDS:
        for _ in range(max(2, int(hours * 2))):
            long = kind in LINK_FAULTS and rng.random() < 0.3
            faults.append(
                Fault(
                    at=rng.uniform(60, duration - 60),
                    pack=rng.randint(1, packs),
                    kind=kind,
                    duration=rng.uniform(60, 900) if long else rng.uniform(2, 40),
                    delay=rng.uniform(0.2, 3.0),
                )
            )
    changes = []
    for _ in range(max(2, int(hours))):
        pack, at = rng.randint(1, packs), rng.uniform(60, duration - 600)
        event = rng.choice(("hot", "cold", "cell", "resistance"))
        if event == "hot":
            changes += [
                PackChange(at, pack, {"temperature_c": 62.0}),
                PackChange(at + 300, pack, {"temperature_c": 25.0}),
            ]
        elif event == "cold":
            changes += [
                PackChange(at, pack, {"temperature_c": -3.0}),
                PackChange(at + 300, pack, {"temperature_c": 20.0}),
            ]
        elif event == "cell":
            changes.append(PackChange(at, pack, {"cell_soc": {rng.randint(1, CELLS): rng.uniform(5, 99)}}))
        else:
            changes.append(PackChange(at, pack, {"resistance_ohm": rng.uniform(0.03, 0.08)}))
    changes.sort(key=lambda c: c.at)
    return Scenario(f"soak-{packs}-{seed}", params, 1.0, load, faults, changes, seed, duration)


def _edge_frame(kind: str, info: jbd.BasicInfo | None) -> bytes:
    """A well-formed frame (valid checksum) carrying one of issue 16's edge values."""
    assert info is not None
    if kind == "soc 255":
        return jbd.encode_basic_info(dataclasses.replace(info, soc=255))
    if kind == "255 cells":
        return jbd.encode_basic_info(dataclasses.replace(info, cell_count=255))
    if kind == "open NTC":
        return jbd.encode_basic_info(dataclasses.replace(info, temperatures=(25.0, 6280.4)))
    if kind == "8 cells":
        return jbd.encode_basic_info(dataclasses.replace(info, cell_count=8))
    if kind == "cell 65.535 V":
        return jbd.encode_cell_voltages(CellVoltages((3.3,) * (CELLS - 1) + (65.535,)))
    return jbd.encode_cell_voltages(CellVoltages((3.3,) * 4))  # "4 cells"


def _with_edges(
    events: Iterator[Event], scenario: Scenario, rng: random.Random, every: float
) -> Iterator[Event]:
    """The recorded traffic, plus now and then an edge-value frame ahead of a pack's next answer."""
    bank = scenario.build_bank()
    next_edge = rng.uniform(0, every)
    for event in events:
        yield event
        if event.t >= next_edge and isinstance(event, Traffic) and event.direction == "tx":
            kind = rng.choice(EDGE_KINDS)
            number = scenario.packs.index(next(p for p in scenario.packs if p.address == event.pack))
            frame = _edge_frame(kind, bank.packs[number].basic_info())
            for chunk in jbd.split_notifications(frame):
                yield Traffic(event.t + 0.01, event.pack, "rx", chunk)
            next_edge = event.t + rng.uniform(0.5, 1.5) * every


@dataclass
class SoakResult:
    packs: int
    seed: int
    duration: float
    ticks: int = 0
    wall: float = 0.0
    violations: list[str] = field(default_factory=list)
    frame_drops: dict[str, int] = field(default_factory=dict)
    implausible: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    recovered: int = 0
    objects_growth: int = 0
    max_ccl: float = 0.0


class Invariants:
    """The design invariants, checked on every BankState as it is published."""

    def __init__(self, config: Config, result: SoakResult) -> None:
        self.config = config
        self.result = result
        self.previous: BankState | None = None
        self.fresh_times: dict[int, list[float]] = {}

    def fail(self, state: BankState, what: str) -> None:
        if len(self.result.violations) < 20:
            self.result.violations.append(f"t={state.snapshot.time:.1f}: {what}")

    def __call__(self, state: BankState) -> None:
        cfg, snap, lim = self.config, state.snapshot, state.limits
        self.result.ticks += 1
        for value in (lim.charge_voltage, lim.charge_current, lim.discharge_current):
            if not (math.isfinite(value) and value >= 0):
                self.fail(state, f"limit not finite and >= 0: {lim}")
        if lim.charge_current > cfg.max_battery_charge_current + 1e-9:
            self.fail(state, f"CCL {lim.charge_current} above the bank maximum")
        if lim.discharge_current > cfg.max_battery_discharge_current + 1e-9:
            self.fail(state, f"DCL {lim.discharge_current} above the bank maximum")
        if snap.cells_per_pack not in (None, CELLS):
            self.fail(state, f"cells per pack {snap.cells_per_pack}: an odd frame reached the bank")
        if lim.charge_voltage > CELLS * cfg.max_cell_voltage + 1e-9:
            self.fail(state, f"CVL {lim.charge_voltage} above {CELLS} x MAX_CELL_VOLTAGE")
        if snap.soc is not None and not 0 <= snap.soc <= 100:
            self.fail(state, f"SoC {snap.soc}")
        if snap.remaining_capacity is not None and snap.remaining_capacity > snap.nominal_capacity + 1e-9:
            self.fail(state, "capacity above installed capacity")
        if snap.max_temperature is not None and not -50 <= snap.max_temperature <= 150:
            self.fail(state, f"temperature {snap.max_temperature}")
        if snap.max_cell_voltage is not None and snap.max_cell_voltage > 5:
            self.fail(state, f"cell {snap.max_cell_voltage} V")
        self._freshness(state)
        self._stops(state)
        self._rise(state)
        self.result.max_ccl = max(self.result.max_ccl, lim.charge_current)
        self.previous = state

    def _freshness(self, state: BankState) -> None:
        cfg, now = self.config, state.snapshot.time
        for status in state.snapshot.packs:
            if status.reading is None:
                continue
            age = now - status.reading.time
            if status.fresh and age >= cfg.pack_stale_after:
                self.fail(state, f"pack {status.pack} fresh on a reading {age:.1f} s old")
            if status.active and age >= cfg.pack_stale_after + cfg.pack_dropout_grace:
                self.fail(state, f"pack {status.pack} active on a reading {age:.1f} s old")
            if status.fresh:
                self.fresh_times.setdefault(status.pack, []).append(now)

    def _stops(self, state: BankState) -> None:
        cfg = self.config
        for status in state.snapshot.packs:
            if not status.active or status.reading is None:
                continue
            info, cells = status.reading.info, status.reading.cells
            high = max(cells.voltages) if cells is not None and cells.voltages else 0.0
            if (info.protection & Protection.CELL_OVERVOLTAGE or high >= cfg.cell_overvoltage) and (
                state.limits.charge_current > 0
            ):
                self.fail(state, f"charging while pack {status.pack} has a cell at {high:.3f} V")

    def _rise(self, state: BankState) -> None:
        before = self.previous
        if before is None or before.snapshot.active_packs == 0:
            return  # the first limits after a start or a total outage are taken as computed (README)
        step = self.config.current_limit_rise_rate * self.config.publish_interval + 1e-6
        for name in ("charge_current", "discharge_current"):
            rise = getattr(state.limits, name) - getattr(before.limits, name)
            if rise > step:
                self.fail(state, f"{name} rose {rise:.2f} A in one tick")


def _recovered(
    scenario: Scenario, fresh_times: dict[int, list[float]], bound: float, result: SoakResult
) -> None:
    """Every pack whose data stopped (link loss, silence) is fresh again within ``bound`` of the end."""
    for fault in scenario.faults:
        result.faults[fault.kind] += 1
        if fault.kind not in LINK_FAULTS:
            continue
        packs = range(1, len(scenario.packs) + 1) if fault.kind == "adapter_loss" else [fault.pack]
        for pack in packs:
            clear = fault.at + fault.duration
            while True:  # later overlapping faults on the same pack push the end out
                busy = [f.at + f.duration for f in scenario.faults_for(pack, clear) if f.kind != "delay"]
                if not busy:
                    break
                clear = max(busy) + 1e-6
            if clear > scenario.duration - bound:
                continue
            # A fault starting on this pack before it could poll again leaves nothing to measure.
            starts = (
                f.at
                for f in scenario.faults
                if f.kind != "delay" and (f.pack == pack or f.kind == "adapter_loss")
            )
            if any(clear <= at <= clear + bound for at in starts):
                continue
            times = fresh_times.get(pack, [])
            i = _first_at_or_after(times, clear)
            if i < len(times) and times[i] <= clear + bound:
                result.recovered += 1
            else:
                result.violations.append(
                    f"pack {pack} not fresh again within {bound:.0f} s of {fault.kind} ending at {clear:.0f}"
                )


def _first_at_or_after(times: list[float], t: float) -> int:
    import bisect

    return bisect.bisect_left(times, t)


def run_soak(packs: int, seed: int, duration: float = 86400.0, poll: float = 30.0) -> SoakResult:
    """One soak: ``duration`` seconds of a ``packs``-pack bank, polled every ``poll`` seconds."""
    started = time.perf_counter()
    config = soak_config(poll)
    scenario = soak_scenario(packs, seed, duration)
    result = SoakResult(packs, seed, duration)
    invariants = Invariants(config, result)
    specs = pack_specs(tuple(p.address for p in scenario.packs), config)
    judges = [PackPlausibility(s.number, s.address) for s in specs]
    samples: list[int] = []

    def on_state(state: BankState) -> None:
        invariants(state)
        if result.ticks in (int(duration / poll / 4), int(duration / poll) - 2):
            gc.collect()
            samples.append(len(gc.get_objects()))

    events = _with_edges(
        simulate(scenario, duration, poll, physics_step=poll), scenario, random.Random(seed + 1), every=600.0
    )
    stats = replay_events(specs, events, duration, config, on_state, judges)
    result.frame_drops = stats.drops
    for judge in judges:
        result.implausible.update(judge.dropped)
    _recovered(scenario, invariants.fresh_times, bound=4 * poll + 10, result=result)
    result.objects_growth = samples[-1] - samples[0] if len(samples) == 2 else 0
    result.wall = time.perf_counter() - started
    return result
