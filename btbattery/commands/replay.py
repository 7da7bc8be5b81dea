"""`dbus-btbattery replay FILE`: run the real pipeline over a recording in virtual time.

Each pack's ``rx`` chunks go through the same :class:`~btbattery.protocol.poll.PollDecoder` as the live link,
its ``link`` lines become :class:`~btbattery.model.LinkEvent` s, and both are delivered on a
``HistoricalScheduler`` at their recorded times; the publish timer ticks on the same virtual clock. Events
are read lazily, so hours of recording take seconds and constant memory.

Without ``--config`` the built-in defaults are used (not /data/etc or /etc), so a replay gives the same
answer on every machine.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from btbattery.config import Config, PackSpec
    from btbattery.model import BankState
    from btbattery.pipeline.plausibility import PackPlausibility
    from btbattery.replay import Event


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="recording (JSON Lines, as written by 'dbus-btbattery record')")
    parser.add_argument(
        "--json", action="store_true", help="one JSON object per publish tick instead of a table"
    )
    parser.add_argument(
        "--plot", metavar="OUT.png", help="also draw packs, imbalance and limits (needs matplotlib)"
    )
    parser.add_argument("--config", metavar="PATH", help="config.ini to lay over the built-in defaults")
    parser.add_argument(
        "--every",
        type=float,
        default=10.0,
        metavar="S",
        help="table: a row at least every S seconds of recording, and at every change (default 10)",
    )


@dataclass
class ReplayStats:
    events: int = 0
    readings: int = 0
    ticks: int = 0
    duration: float = 0.0
    drops: dict[str, int] = field(default_factory=dict)  # dropped frames by reason, all packs
    unknown_packs: set[str] = field(default_factory=set)


def pack_specs(addresses: tuple[str, ...], config: Config) -> list[PackSpec]:
    """Packs in recording order; a pack listed in the config keeps its own limits."""
    listed = {spec.address: spec for spec in config.packs}
    specs = []
    for number, address in enumerate(addresses, start=1):
        spec = listed.get(address.upper())
        specs.append(
            config.pack_spec(number, address)
            if spec is None
            else type(spec)(number, address, spec.charge_limit, spec.discharge_limit, spec.config_path)
        )
    return specs


def replay(path: str | Path, config: Config, on_state: Callable[[BankState], None]) -> ReplayStats:
    """Run the pipeline over a recording; ``on_state`` gets every :class:`BankState`, in time order."""
    from btbattery.replay import read_recording

    header, events = read_recording(path)
    duration = header.meta.get("duration")
    end = float(duration) if isinstance(duration, int | float) else None
    return replay_events(pack_specs(header.packs, config), events, end, config, on_state)


def replay_events(
    specs: list[PackSpec],
    events: Iterable[Event],
    end: float | None,
    config: Config,
    on_state: Callable[[BankState], None],
    plausibility: Sequence[PackPlausibility] | None = None,
) -> ReplayStats:
    """Run the pipeline over recorded ``events`` (in time order) until ``end`` (default: the last event)."""
    from collections import Counter

    from reactivex.scheduler import HistoricalScheduler
    from reactivex.subject import Subject

    from btbattery.model import LinkEvent, LinkState, PackReading
    from btbattery.pipeline.aggregate import LINK_UP
    from btbattery.pipeline.streams import build_pipeline
    from btbattery.protocol.poll import PollDecoder
    from btbattery.replay import LinkChange, Traffic

    drops: Counter[str] = Counter()
    decoders = {
        s.address: PollDecoder(s.number, s.address, lambda reason, _raw: drops.update([reason]))
        for s in specs
    }
    readings: dict[str, Subject[PackReading]] = {s.address: Subject() for s in specs}
    links: dict[str, Subject[LinkEvent]] = {s.address: Subject() for s in specs}
    scheduler = HistoricalScheduler()
    stats = ReplayStats()

    def count(state: BankState) -> None:
        stats.ticks += 1
        on_state(state)

    failures: list[Exception] = []
    subscription = build_pipeline(
        specs, list(readings.values()), list(links.values()), config, scheduler, plausibility=plausibility
    ).subscribe(count, failures.append)
    last = 0.0
    for event in events:
        stats.events += 1
        if event.pack not in decoders:
            stats.unknown_packs.add(event.pack)
            continue
        last = max(last, event.t)
        scheduler.advance_to(scheduler.to_datetime(last))  # publish ticks up to this moment run first
        if isinstance(event, Traffic):
            if event.direction == "rx":
                for reading in decoders[event.pack].feed(event.data, event.t):
                    stats.readings += 1
                    readings[event.pack].on_next(reading)
        elif isinstance(event, LinkChange):
            if event.state not in LINK_UP:
                held = decoders[event.pack].flush()  # a poll cut short by the outage, as the link does
                if held is not None:
                    stats.readings += 1
                    readings[event.pack].on_next(held)
            spec_number = next(s.number for s in specs if s.address == event.pack)
            links[event.pack].on_next(
                LinkEvent(spec_number, event.pack, event.t, LinkState(event.state), event.reason)
            )
    end = last if end is None else end
    scheduler.advance_to(scheduler.to_datetime(max(end, last)))
    subscription.dispose()
    if failures:
        raise failures[0]
    stats.duration = max(end, last)
    stats.drops = dict(drops)
    return stats


# ---- output ----


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def pack_state(status: Any) -> str:
    if status.reading is None:
        return "offline"
    return "fresh" if status.fresh else "stale" if status.active else "out"


def state_to_json(state: BankState) -> dict[str, object]:
    snap, imb, lim = state.snapshot, state.imbalance, state.limits
    return {
        "t": _round(snap.time),
        "active": snap.active_packs,
        "total": snap.total_packs,
        "connected": state.connected,
        "voltage": _round(snap.voltage),
        "current": _round(snap.current),
        "soc": _round(snap.soc, 2),
        "min_cell": [_round(snap.min_cell_voltage), snap.min_cell_id],
        "max_cell": [_round(snap.max_cell_voltage), snap.max_cell_id],
        "imbalance": {
            "voltage": imb.voltage,
            "current": imb.current,
            "soc": imb.soc,
            "voltage_spread": _round(imb.voltage_spread),
            "current_spread": _round(imb.current_spread),
            "soc_spread": _round(imb.soc_spread),
        },
        "limits": {
            "cvl": _round(lim.charge_voltage),
            "ccl": _round(lim.charge_current, 2),
            "dcl": _round(lim.discharge_current, 2),
            "reasons": list(lim.reasons),
        },
        "packs": [
            {
                "pack": s.pack,
                "state": pack_state(s),
                "voltage": _round(s.reading.info.voltage) if s.reading else None,
                "current": _round(s.reading.info.current) if s.reading else None,
                "soc": s.reading.info.soc if s.reading else None,
            }
            for s in snap.packs
        ],
    }


def timeline(states: Iterator[BankState] | list[BankState]) -> list[dict[str, object]]:
    """What changed, when: pack states, imbalance flags, and the limits at every change of either."""
    out: list[dict[str, object]] = []
    previous: dict[str, object] | None = None
    for state in states:
        now = {f"pack {s.pack}": pack_state(s) for s in state.snapshot.packs}
        now |= {f"{name} imbalance": getattr(state.imbalance, name) for name in ("voltage", "current", "soc")}
        now["connected"] = state.connected
        now |= _policy_state(state)
        if previous is not None:
            changes = {key: value for key, value in now.items() if previous[key] != value}
            if changes:
                lim = state.limits
                out.append(
                    {
                        "t": _round(state.snapshot.time),
                        "changes": changes,
                        "ccl": _round(lim.charge_current, 1),
                        "dcl": _round(lim.discharge_current, 1),
                        "cvl": _round(lim.charge_voltage, 2),
                    }
                )
        previous = now
    return out


def _policy_state(state: BankState) -> dict[str, object]:
    """The charge policy's discrete states: mode, whether charge and discharge are allowed, whether the CVL is
    held down by the cells (penalty method, unknown cells), and how many temperature sensors are dropped."""
    lim = state.limits
    mode = state.charge_mode.split(":")[0].split(" (")[0].split(" & ")[0]
    return {
        "charge mode": mode,
        "charging": lim.charge_current > 0,
        "discharging": lim.discharge_current > 0,
        "cvl by cells": any(" above " in r or "cells unknown" in r for r in lim.reasons),
        "sensor faults": len(state.sensor_faults),
    }


def _fmt(value: float | None, width: int, digits: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"


class Table:
    """A readable table: a row on every change of packs or flags, on a large limit change, and every S s."""

    HEAD = (
        f"{'t/s':>8} {'packs':>5} {'V':>6} {'I/A':>7} {'SoC%':>5} {'dV':>5} {'dI%':>4} {'dSoC':>4} flags "
        f"{'CVL':>5} {'CCL':>6} {'DCL':>6}  why"
    )

    def __init__(self, out: IO[str], every: float) -> None:
        self.out = out
        self.every = every
        self.last_time: float | None = None
        self.last_key: tuple[object, ...] = ()
        self.last_limits = (0.0, 0.0, 0.0)
        out.write(self.HEAD + "\n")

    def add(self, state: BankState) -> None:
        snap, imb, lim = state.snapshot, state.imbalance, state.limits
        fresh = sum(1 for s in snap.packs if s.fresh)
        key = (snap.active_packs, fresh, imb.voltage, imb.current, imb.soc, state.connected)
        limits = (lim.charge_voltage, lim.charge_current, lim.discharge_current)
        moved = any(
            abs(a - b) > max(1.0, 0.1 * abs(b)) for a, b in zip(limits, self.last_limits, strict=True)
        )
        due = self.last_time is None or snap.time - self.last_time >= self.every
        if not (due or moved or key != self.last_key):
            return
        self.last_time, self.last_key, self.last_limits = snap.time, key, limits
        flags = "".join(
            c if on else "." for c, on in zip("VIS", (imb.voltage, imb.current, imb.soc), strict=True)
        )
        spread = imb.current_spread * 100 if imb.current_spread is not None else None
        packs = (
            f"{fresh}/{snap.active_packs}/{snap.total_packs}"
            if fresh != snap.active_packs
            else (f"{snap.active_packs}/{snap.total_packs}")
        )
        self.out.write(
            f"{snap.time:>8.1f} {packs:>5} {_fmt(snap.voltage, 6, 2)} {_fmt(snap.current, 7, 1)} "
            f"{_fmt(snap.soc, 5, 1)} {_fmt(imb.voltage_spread, 5, 2)} {_fmt(spread, 4, 0)} "
            f"{_fmt(imb.soc_spread, 4, 0)} {flags:>5} {lim.charge_voltage:>5.1f} {lim.charge_current:>6.1f} "
            f"{lim.discharge_current:>6.1f}  {'; '.join(lim.reasons)}\n"
        )


class PlotData:
    """Columns for --plot, one entry per tick."""

    def __init__(self) -> None:
        self.t: list[float] = []
        self.packs: dict[int, dict[str, list[float]]] = {}
        self.flags: dict[str, list[int]] = {"voltage": [], "current": [], "soc": []}
        self.limits: dict[str, list[float]] = {"CCL": [], "DCL": [], "CVL": []}

    def add(self, state: BankState) -> None:
        nan = float("nan")
        self.t.append(state.snapshot.time)
        for s in state.snapshot.packs:
            columns = self.packs.setdefault(s.pack, {"voltage": [], "current": [], "soc": []})
            info = s.reading.info if s.reading is not None and s.active else None
            columns["voltage"].append(info.voltage if info else nan)
            columns["current"].append(info.current if info else nan)
            columns["soc"].append(info.soc if info else nan)
        for name in self.flags:
            self.flags[name].append(int(getattr(state.imbalance, name)))
        self.limits["CCL"].append(state.limits.charge_current)
        self.limits["DCL"].append(state.limits.discharge_current)
        self.limits["CVL"].append(state.limits.charge_voltage or nan)  # 0 = unknown, not a voltage


class PlotUnavailable(RuntimeError):
    pass


def draw(data: PlotData, out: str, title: str) -> None:
    try:
        import matplotlib
    except ImportError:
        raise PlotUnavailable(
            "--plot needs matplotlib: install the optional extra, e.g. pip install 'btbattery[plot]'"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(5, 1, sharex=True, figsize=(11, 12))
    for ax, key, label in zip(axes[:3], ("voltage", "current", "soc"), ("V", "A", "SoC %"), strict=True):
        for pack, columns in sorted(data.packs.items()):
            ax.plot(data.t, columns[key], label=f"pack {pack}", linewidth=1)
        ax.set_ylabel(label)
        ax.legend(loc="upper right", fontsize="small")
    for offset, (name, values) in enumerate(data.flags.items()):
        axes[3].step(data.t, [v * 0.8 + offset for v in values], where="post", label=name)
    axes[3].set_yticks([0, 1, 2], ["voltage", "current", "soc"])
    axes[3].set_ylabel("imbalance")
    axes[4].plot(data.t, data.limits["CCL"], label="CCL")
    axes[4].plot(data.t, data.limits["DCL"], label="DCL")
    axes[4].set_ylabel("A")
    cvl = axes[4].twinx()
    cvl.plot(data.t, data.limits["CVL"], color="black", linestyle=":", label="CVL")
    cvl.set_ylabel("CVL V")
    axes[4].legend(loc="upper left", fontsize="small")
    axes[4].set_xlabel("time / s")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def main(args: argparse.Namespace) -> int:
    from btbattery.config import ConfigError, load_config
    from btbattery.replay import RecordingError

    if args.plot:  # fail before the run, not after it
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("replay: --plot needs matplotlib: pip install 'btbattery[plot]'", file=sys.stderr)
            return 2
    try:
        config = load_config(args.config, search_dirs=())
    except ConfigError as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 2
    table = None if args.json else Table(sys.stdout, args.every)
    plot = PlotData() if args.plot else None

    def on_state(state: BankState) -> None:
        if table is not None:
            table.add(state)
        else:
            sys.stdout.write(json.dumps(state_to_json(state), separators=(",", ":")) + "\n")
        if plot is not None:
            plot.add(state)

    try:
        stats = replay(args.file, config, on_state)
    except (OSError, RecordingError) as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 2
    summary = f"replay: {stats.duration:.0f} s, {stats.readings} readings, {stats.ticks} ticks"
    if stats.drops:
        summary += ", dropped frames: " + ", ".join(f"{k} {v}" for k, v in sorted(stats.drops.items()))
    if stats.unknown_packs:
        summary += f", ignored events of packs not in the header: {', '.join(sorted(stats.unknown_packs))}"
    print(summary, file=sys.stderr)
    if plot is not None:
        draw(plot, args.plot, Path(args.file).name)
        print(f"replay: plot written to {args.plot}", file=sys.stderr)
    return 0
