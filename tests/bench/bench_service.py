"""The whole service on simulated packs: CPU per pack-hour, peak RSS, D-Bus signals, time to first values.

    .venv/bin/python tests/bench/bench_service.py [--packs 4] [--seconds 60]
    .venv/bin/python tests/bench/bench_service.py --python .venv/bin/python .venv-pure/bin/python --rounds 2
    .venv/bin/python tests/bench/bench_service.py --recorder-minutes 0 10 --rounds 3

The fake BlueZ runs in its own process and is not counted. Budget (design.md): <= 3 CPU-s per pack-hour,
<= 50 MB, <= 1 ItemsChanged per publish cycle, first valid values within 10 s. ``--python`` runs the service
under each interpreter given, in turn for ``--rounds`` rounds (so the machine's load falls on all alike): with
``.venv-pure`` (scripts/setup.sh --pure) that compares the compiled dbus-fast with the pure-Python build Venus
OS ships. ``--recorder-minutes`` does the same over RECORDER_MINUTES values (0 = the flight recorder off):
its CPU cost, and how much the ring holds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "e2e")]

from venus_client import VenusClient  # noqa: E402

from btbattery.sim.stack import SimulatedStack  # noqa: E402

SERVICE = "com.victronenergy.battery.virtual_parallel"
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_times(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICKS, int(fields[12]) / TICKS


def cpu_seconds(pid: int) -> float:
    return sum(cpu_times(pid))


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class ServiceUnder(SimulatedStack):
    """The stack with the service run by another interpreter (the fake BlueZ and the client stay ours)."""

    python = sys.executable

    def service_command(self) -> list[str]:
        return [self.python, *super().service_command()[1:]]


def dbus_fast_of(python: str) -> str:
    """``2.21.1 pure Python`` or ``2.21.1 compiled``: the dbus-fast that interpreter runs."""
    out = subprocess.run(
        [python, "-m", "btbattery", "versions", "--json"], capture_output=True, text=True, cwd=ROOT
    ).stdout
    info = json.loads(out)["dbus-fast"]
    return f"{info['version']} {'compiled' if info['compiled'] else 'pure Python'}"


async def bench(
    packs: int, seconds: float, python: str = sys.executable, recorder_minutes: float | None = None
) -> float:
    """Print one run's figures; returns its CPU-s per pack-hour."""
    os.environ["BTBATTERY_CONFIG_DIRS"] = ""
    log = Path(tempfile.gettempdir()) / "btbattery-bench-service.log"
    config = Path(tempfile.mkdtemp(prefix="btbattery-bench-")) / "config.ini"
    minutes = "" if recorder_minutes is None else f"RECORDER_MINUTES = {recorder_minutes}\n"
    config.write_text(f"RECORDER_DIR = {config.parent}\n{minutes}")
    with log.open("wb") as log_file:
        stack = ServiceUnder(
            scenario="default",
            packs=packs,
            service_log=log_file,
            start_service=False,
            service_args=["--config", str(config)],
        )
        stack.python = python
        async with stack:
            client = await VenusClient.connect(stack.session_address, SERVICE)
            started = time.monotonic()
            await stack.start_service_process()
            assert stack.service is not None
            pid = stack.service.pid
            await client.wait_for_service(30)
            await client.wait_until(
                lambda c: (
                    c.values.get("/Parallel/ActiveBatteries") == packs
                    and c.values.get("/Dc/0/Voltage") is not None
                ),
                30,
            )
            first_values = time.monotonic() - started
            user0, sys0 = cpu_times(pid)
            cpu0, signals0, t0 = cpu_seconds(pid), client.items_changed, time.monotonic()
            await asyncio.sleep(seconds)  # a benchmark measures over real time; tests never do this
            cpu1, signals1, t1 = cpu_seconds(pid), client.items_changed, time.monotonic()
            user1, sys1 = cpu_times(pid)
            rss = peak_rss_mb(pid)
            startup_cpu = cpu0
            recorder = await recorder_status(stack.session_address)
            client.close()
    elapsed = t1 - t0
    pack_hours = packs * elapsed / 3600
    print(f"packs: {packs}, measured over {elapsed:.1f} s (service log: {log})")
    print(f"time from start to first valid values: {first_values:.2f} s (budget 10 s)")
    per_pack_hour = (cpu1 - cpu0) / pack_hours
    print(f"CPU steady state: {cpu1 - cpu0:.2f} s -> {per_pack_hour:.2f} CPU-s per pack-hour (budget 3)")
    print(f"  of which user {user1 - user0:.2f} s, kernel {sys1 - sys0:.2f} s")
    print(f"CPU at start-up (imports, connects): {startup_cpu:.2f} s")
    print(f"peak RSS: {rss:.1f} MB (budget 50)")
    print(f"ItemsChanged: {(signals1 - signals0) / elapsed:.2f} per second (publish interval 1 s, budget 1)")
    if recorder.get("enabled"):
        print(
            f"flight recorder: {recorder['minutes']:g} min, holds {recorder['bytes'] / 1e3:.1f} kB "
            f"({recorder['records']} records) of at most {recorder['max_bytes'] / 1e6:.2f} MB"
        )
    else:
        print("flight recorder: off")
    return per_pack_hour


async def recorder_status(address: str) -> dict:
    """The service's own account of its flight recorder (io.btbattery.Recorder1.Status)."""
    from dbus_fast import Message
    from dbus_fast.aio import MessageBus

    from btbattery.dbus.recorder import RECORDER_IFACE, RECORDER_PATH

    bus = await MessageBus(bus_address=address).connect()
    try:
        reply = await bus.call(
            Message(destination=SERVICE, path=RECORDER_PATH, interface=RECORDER_IFACE, member="Status")
        )
    finally:
        bus.disconnect()
    return json.loads(reply.body[0]) if reply.body else {}


async def compare_recorder(packs: int, seconds: float, minutes: list[float], rounds: int) -> None:
    results: dict[float, list[float]] = {m: [] for m in minutes}
    for round_number in range(1, rounds + 1):
        for m in minutes:
            print(f"\n--- round {round_number}: RECORDER_MINUTES = {m:g}")
            results[m].append(await bench(packs, seconds, recorder_minutes=m))
    print("\nCPU-s per pack-hour, each round, then the mean:")
    for m, figures in results.items():
        mean = sum(figures) / len(figures)
        print(f"  RECORDER_MINUTES = {m:<5g} {', '.join(f'{f:.2f}' for f in figures)} -> {mean:.2f}")


async def compare(packs: int, seconds: float, pythons: list[str], rounds: int) -> None:
    results: dict[str, list[float]] = {python: [] for python in pythons}
    for round_number in range(1, rounds + 1):
        for python in pythons:
            print(f"\n--- round {round_number}: {python} (dbus-fast {dbus_fast_of(python)})")
            results[python].append(await bench(packs, seconds, python))
    print("\nCPU-s per pack-hour, each round, then the mean:")
    for python, figures in results.items():
        mean = sum(figures) / len(figures)
        rows = ", ".join(f"{figure:.2f}" for figure in figures)
        print(f"  dbus-fast {dbus_fast_of(python):<22} {rows} -> {mean:.2f}  ({python})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packs", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--python", nargs="+", metavar="PYTHON", help="run the service under each of these")
    parser.add_argument("--rounds", type=int, default=1, help="with --python: rounds over the interpreters")
    parser.add_argument(
        "--recorder-minutes",
        nargs="+",
        type=float,
        metavar="M",
        help="compare these RECORDER_MINUTES (0 = off)",
    )
    args = parser.parse_args()
    if args.python:
        asyncio.run(compare(args.packs, args.seconds, args.python, args.rounds))
    elif args.recorder_minutes:
        asyncio.run(compare_recorder(args.packs, args.seconds, args.recorder_minutes, args.rounds))
    else:
        asyncio.run(bench(args.packs, args.seconds))


if __name__ == "__main__":
    main()
