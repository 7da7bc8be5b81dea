"""Pipeline cost: CPU per update and per pack-hour at 1 Hz for 1, 4 and 16 packs, in virtual time.

Run: .venv/bin/python tests/bench/bench_pipeline.py            (1 simulated hour per bank size, ~10 s)
     .venv/bin/python tests/bench/bench_pipeline.py --hours 0.25 --replay

The real pipeline (build_pipeline: per-pack feeds, combine_latest, the 1 Hz publish timer, freshness gate,
aggregation, imbalance windows, limits, rate limiting) runs on a HistoricalScheduler. Each pack delivers one
16-cell reading per second (values drifting like a charging pack, ~30 % of cells moving by 1 mV); the
readings are built before the clock starts, so only the pipeline is timed (process CPU time).

Reported: CPU per reading, CPU per publish tick, CPU per pack-hour, and the fit cost = a + b x packs per
simulated hour. "No worse than linear" means the per-pack-hour cost does not grow with the pack count.
``--replay`` also times ``dbus-btbattery replay`` on a recorded hour of the default 3-pack scenario.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from reactivex.scheduler import HistoricalScheduler
from reactivex.subject import Subject

from btbattery.config import default_config
from btbattery.model import BankState, BasicInfo, CellVoltages, LinkEvent, LinkState, PackReading, Protection
from btbattery.pipeline.streams import build_pipeline

CELLS = 16


def make_readings(packs: int, seconds: int, seed: int = 1) -> list[list[PackReading]]:
    rng = random.Random(seed)
    out = []
    for pack in range(1, packs + 1):
        address = f"A4:C1:37:00:{pack >> 8:02X}:{pack & 0xFF:02X}"
        cells = [3.30 + rng.random() * 0.02 for _ in range(CELLS)]
        current, soc, series = 20.0 + rng.random() * 5, 50.0, []
        for second in range(seconds):
            for i in rng.sample(range(CELLS), CELLS * 3 // 10):
                cells[i] = round(cells[i] + rng.choice((-0.001, 0.001)), 3)
            current = round(current + rng.uniform(-0.2, 0.2), 2)
            soc = min(100.0, soc + current / 360000)
            info = BasicInfo(
                round(sum(cells), 2), current, soc, 100.0, 20, None, 0, Protection.NONE, 3.8,
                int(soc), True, True, CELLS, (25.0 + rng.random(), 24.5),
            )  # fmt: skip
            series.append(PackReading(pack, address, second + 0.3, info, CellVoltages(tuple(cells))))
        out.append(series)
    return out


def run_bank(packs: int, seconds: int) -> tuple[float, int, int]:
    """(CPU seconds, readings, ticks) for ``packs`` packs over ``seconds`` of virtual time."""
    config = default_config()
    specs = [config.pack_spec(n, f"A4:C1:37:00:00:{n:02X}") for n in range(1, packs + 1)]
    series = make_readings(packs, seconds)
    readings = [Subject() for _ in specs]
    links = [Subject() for _ in specs]
    scheduler = HistoricalScheduler()
    states: list[BankState] = []
    ticks = 0

    def count(state: BankState) -> None:
        nonlocal ticks
        ticks += 1

    build_pipeline(specs, readings, links, config, scheduler).subscribe(count)
    for spec, link in zip(specs, links, strict=True):
        link.on_next(LinkEvent(spec.number, spec.address, 0.0, LinkState.POLLING))
    start = time.process_time()
    for second in range(seconds):
        scheduler.advance_to(scheduler.to_datetime(second + 0.3))
        for subject, pack_series in zip(readings, series, strict=True):
            subject.on_next(pack_series[second])
    scheduler.advance_to(scheduler.to_datetime(float(seconds)))
    cpu = time.process_time() - start
    assert not states
    return cpu, packs * seconds, ticks


def fit(points: list[tuple[int, float]]) -> tuple[float, float]:
    """Least squares cost = a + b x packs."""
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    b = sum((x - mean_x) * (y - mean_y) for x, y in points) / sum((x - mean_x) ** 2 for x, _ in points)
    return mean_y - b * mean_x, b


def bench_replay(hours: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        recording = Path(tmp) / "hour.jsonl"
        cmd = [sys.executable, "-m", "btbattery"]
        subprocess.run(
            [
                *cmd,
                "record",
                "--scenario",
                "default",
                "--duration",
                str(hours * 3600),
                "--out",
                str(recording),
            ],
            check=True,
        )
        start = time.perf_counter()
        subprocess.run([*cmd, "replay", str(recording), "--json"], check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        size = recording.stat().st_size / 1e6
        print(
            f"replay: {hours:g} h of a 3-pack recording ({size:.0f} MB) in {wall:.1f} s wall, whole process"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=1.0, help="simulated hours per bank size")
    parser.add_argument("--packs", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs per size; the fastest counts (shared CPU)"
    )
    parser.add_argument(
        "--replay", action="store_true", help="also time the replay command on a recorded hour"
    )
    args = parser.parse_args()
    seconds = int(args.hours * 3600)
    print(f"pipeline at 1 Hz, {CELLS} cells per pack, {seconds} s of virtual time per bank (CPU time)")
    head = f"{'packs':>5} {'CPU s':>7} {'per reading':>12} {'per tick':>10} {'CPU s/pack-h':>13}"
    print(f"{head} {'x realtime':>11}")
    per_hour: list[tuple[int, float]] = []
    for packs in args.packs:
        runs = [run_bank(packs, seconds) for _ in range(args.repeat)]
        cpu, readings, ticks = min(runs)
        hours = seconds / 3600
        per_hour.append((packs, cpu / hours))
        print(
            f"{packs:>5} {cpu:>7.2f} {cpu / readings * 1e6:>9.1f} us {cpu / ticks * 1e6:>7.0f} us "
            f"{cpu / hours / packs:>13.3f} {seconds / cpu:>10.0f}x"
        )
    a, b = fit(per_hour)
    print(f"fit: CPU per simulated hour = {a:.3f} s + {b:.3f} s x packs")
    first, last = per_hour[0], per_hour[-1]
    growth = (last[1] / last[0]) / (first[1] / first[0])
    print(
        f"CPU per pack-hour, {last[0]} packs / {first[0]} pack(s): {growth:.2f} (<= 1: no worse than linear)"
    )
    if args.replay:
        bench_replay(args.hours)
    return 0


if __name__ == "__main__":
    sys.exit(main())
