"""Load: 8 clients flood GetItems on the service with 16 simulated packs: latency, and every tick published.

    .venv/bin/python tests/bench/bench_load.py [--packs 16] [--clients 8] [--seconds 60]

The service runs as its own process on a private bus with the fake BlueZ (btbattery.sim.stack), exactly as in
the end-to-end tests. Each client is a process of its own (as the GUI, systemcalc, the MQTT bridge ... are on
a GX device) calling GetItems in a loop, one call in flight, for the whole run. A listener counts the
service's ItemsChanged (one per publish tick when something changed, which with live packs is every tick).
Issue 16: before the writer fix the publishing connection died after ~14 s of this (EAGAIN in dbus-fast).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "e2e"), str(ROOT / "tests" / "bench")]

SERVICE = "com.victronenergy.battery.virtual_parallel"
BUSITEM = "com.victronenergy.BusItem"


async def flood(address: str, seconds: float) -> None:
    """Client mode: GetItems in a loop for ``seconds``; print the latencies (ms) as one JSON line."""
    from dbus_fast import Message, MessageType
    from dbus_fast.aio import MessageBus

    bus = await MessageBus(bus_address=address).connect()
    latencies: list[float] = []
    errors: dict[str, int] = {}
    size = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.perf_counter()
        reply = await bus.call(Message(destination=SERVICE, path="/", interface=BUSITEM, member="GetItems"))
        latencies.append((time.perf_counter() - started) * 1000)
        if reply is None or reply.message_type is not MessageType.METHOD_RETURN:
            name = reply.error_name if reply is not None else "no reply"
            errors[str(name)] = errors.get(str(name), 0) + 1
        else:
            size = len(reply.body[0])
    bus.disconnect()
    print(json.dumps({"latencies": latencies, "errors": errors, "paths": size}))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


async def bench(packs: int, clients: int, seconds: float) -> int:
    from bench_service import cpu_seconds
    from venus_client import VenusClient

    from btbattery.sim.stack import SimulatedStack

    os.environ["BTBATTERY_CONFIG_DIRS"] = ""
    log = Path(tempfile.gettempdir()) / "btbattery-bench-load.log"
    with log.open("wb") as log_file:
        stack = SimulatedStack(scenario="default", packs=packs, service_log=log_file, start_service=False)
        async with stack:
            listener = await VenusClient.connect(stack.session_address, SERVICE)
            await stack.start_service_process()
            assert stack.service is not None
            pid = stack.service.pid
            await listener.wait_for_service(60)
            await listener.wait_until(lambda c: c.values.get("/Parallel/ActiveBatteries") == packs, 90)
            owner = listener.owner
            cpu0, ticks0, t0 = cpu_seconds(pid), listener.items_changed, time.monotonic()
            procs = [
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    __file__,
                    "--flood",
                    stack.session_address,
                    "--seconds",
                    str(seconds),
                    stdout=asyncio.subprocess.PIPE,
                )
                for _ in range(clients)
            ]
            outputs = await asyncio.gather(*(proc.communicate() for proc in procs))
            cpu1, ticks1, t1 = cpu_seconds(pid), listener.items_changed, time.monotonic()
            alive = stack.service.returncode is None
            same_owner = await listener.name_owner() == owner
            active = listener.values.get("/Parallel/ActiveBatteries")
            listener.close()
    results = [json.loads(out.decode().strip().splitlines()[-1]) for out, _ in outputs]
    latencies = [ms for r in results for ms in r["latencies"]]
    errors: dict[str, int] = {}
    for r in results:
        for name, count in r["errors"].items():
            errors[name] = errors.get(name, 0) + count
    elapsed = t1 - t0
    ticks = ticks1 - ticks0
    print(f"{packs} packs, {clients} clients flooding GetItems for {seconds:.0f} s (service log: {log})")
    rate = len(latencies) / elapsed
    print(f"GetItems: {len(latencies)} calls, {rate:.0f}/s, {results[0]['paths']} paths each")
    p50, p90, p99 = (percentile(latencies, q) for q in (50, 90, 99))
    mean = statistics.fmean(latencies)
    print(
        f"latency ms: p50 {p50:.1f}  p90 {p90:.1f}  p99 {p99:.1f}  max {max(latencies):.1f}  mean {mean:.1f}"
    )
    print(f"errors: {errors or 'none'}")
    print(f"ItemsChanged during the flood: {ticks} in {elapsed:.1f} s (publish interval 1 s)")
    print(f"service CPU during the flood: {(cpu1 - cpu0) / elapsed * 100:.0f} % of a core")
    print(f"service alive: {alive}; same bus name owner: {same_owner}; active packs at the end: {active}")
    ok = alive and same_owner and not errors and ticks >= int(elapsed) - 1
    print("every tick published, no error" if ok else "FAILED")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packs", type=int, default=16)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--flood", metavar="ADDRESS", help=argparse.SUPPRESS)  # client mode
    args = parser.parse_args()
    if args.flood:
        asyncio.run(flood(args.flood, args.seconds))
        return 0
    return asyncio.run(bench(args.packs, args.clients, args.seconds))


if __name__ == "__main__":
    sys.exit(main())
