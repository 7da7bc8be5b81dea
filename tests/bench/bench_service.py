"""The whole service on simulated packs: CPU per pack-hour, peak RSS, D-Bus signals, time to first values.

    .venv/bin/python tests/bench/bench_service.py [--packs 4] [--seconds 60]

The fake BlueZ runs in its own process and is not counted. Budget (design.md): <= 3 CPU-s per pack-hour,
<= 50 MB, <= 1 ItemsChanged per publish cycle, first valid values within 10 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
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


async def bench(packs: int, seconds: float) -> None:
    os.environ["BTBATTERY_CONFIG_DIRS"] = ""
    log = Path(tempfile.gettempdir()) / "btbattery-bench-service.log"
    with log.open("wb") as log_file:
        stack = SimulatedStack(scenario="default", packs=packs, service_log=log_file, start_service=False)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packs", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    asyncio.run(bench(args.packs, args.seconds))


if __name__ == "__main__":
    main()
