"""The flight recorder's own cost: CPU per recorded chunk, memory of a full ring, time to write a capture.

    .venv/bin/python tests/bench/bench_recorder.py [--packs 4] [--minutes 10]

Feeds RECORDER_MINUTES of a simulated bank's real traffic (``record``'s simulator: 16-cell packs polled every
second, 0x03 + 0x04 requests and their 20-byte notifications) through the recorder with the traffic's own
clock, then writes the ring as a recording. The end-to-end figure (service CPU with the recorder on and off)
comes from ``bench_service.py --recorder-minutes 0`` versus ``--recorder-minutes 10``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from btbattery.commands.record import simulate  # noqa: E402
from btbattery.model import LinkEvent  # noqa: E402
from btbattery.recorder import RX, TX, FlightRecorder, write_recording  # noqa: E402
from btbattery.replay import LinkChange, Traffic  # noqa: E402
from btbattery.sim.bluez import resize_scenario  # noqa: E402
from btbattery.sim.scenario import load_scenario  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packs", type=int, default=4)
    parser.add_argument("--minutes", type=float, default=10.0)
    args = parser.parse_args()
    scenario = dataclasses.replace(resize_scenario(load_scenario("default"), args.packs), faults=[])
    seconds = args.minutes * 60
    events = list(simulate(scenario, seconds * 1.2, scenario.poll_interval))  # a little more than the ring
    numbers = {p.address.upper(): n for n, p in enumerate(scenario.packs, start=1)}
    kinds = {"tx": TX, "rx": RX}
    # what the links hand the recorder, prepared up front so only the recorder's own work is timed
    calls = [
        (e.t, numbers[e.pack.upper()], kinds[e.direction], e.data)
        if isinstance(e, Traffic)
        else (e.t, LinkEvent(numbers[e.pack.upper()], e.pack, e.t, e.state, e.reason))
        for e in events
        if isinstance(e, Traffic | LinkChange)
    ]

    def fill() -> FlightRecorder:
        now = [0.0]
        ring = FlightRecorder(list(numbers), args.minutes, clock=lambda: now[0])
        for call in calls:
            now[0] = call[0]
            if len(call) == 4:
                ring.traffic(call[1], call[2], call[3])
            else:
                ring.link(call[1])
        return ring

    started = time.process_time()
    ring = fill()
    spent = time.process_time() - started
    tracemalloc.start()
    fill()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    per_second = len(events) / (seconds * 1.2)
    print(f"{args.packs} packs, {len(events)} chunks and link events in {seconds * 1.2:.0f} s of traffic")
    cost = spent / (seconds * 1.2)  # CPU s per s of service
    print(f"recording one chunk: {spent / len(events) * 1e6:.2f} us CPU; {per_second:.1f} chunks/s")
    per_pack_hour = cost * 3600 / args.packs
    print(f"  -> {cost * 1e3:.3f} ms CPU per second of service, {per_pack_hour:.3f} CPU-s per pack-hour")
    held, budget = ring.size / 1e3, ring.max_bytes / 1e3
    print(f"ring after {args.minutes:g} min: {held:.1f} kB held (budget {budget:.0f} kB)")
    print(f"  peak Python memory while filling (tracemalloc): {peak / 1e3:.1f} kB")
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        path = write_recording(ring.snapshot(), folder, "benchmark", 5)
        took = time.perf_counter() - started
        print(f"writing the capture: {took:.2f} s, {path.stat().st_size / 1e6:.2f} MB on disk")


if __name__ == "__main__":
    main()
