"""Link cost: 8 simulated packs polled at 1 s through real bleak for 60 s, and recovery after a drop.

Run: .venv/bin/python tests/bench/bench_link.py                 (8 packs, 1 s polling, 60 s)
     .venv/bin/python tests/bench/bench_link.py --packs 4 --duration 30

The fake BlueZ runs as its own process (``python -m btbattery.sim.bluez``) on a private dbus-daemon, so
neither it nor the daemon counts; this process runs only the LinkManager, as the service would. It reports
- CPU seconds of this process per pack-hour over the steady window (all packs polling),
- its peak RSS (ru_maxrss),
- readings per pack per second (should be 1 / poll interval),
- after an injected drop (through the fake's control object): time to notice, to poll again, and to the
  first new reading. The drop lasts 0 s (the pack is back in range at once), so this is the link's own
  recovery time: detection, then straight back to the known device (connect, subscribe; no backoff and no
  scan since issue 11).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from dbus_fast.aio import MessageBus  # noqa: E402

from btbattery.model import LinkEvent, LinkState, PackReading  # noqa: E402
from btbattery.sim.bluez import call_control  # noqa: E402
from btbattery.sim.privatebus import PrivateBus  # noqa: E402
from btbattery.sim.stack import start_fake_bluez  # noqa: E402


async def bench(packs: int, poll: float, duration: float, drop_pack: int) -> dict[str, object]:
    from btbattery.link.manager import LinkManager

    fake, addresses = await start_fake_bluez(
        os.environ["DBUS_SYSTEM_BUS_ADDRESS"], "--scenario", "default", "--packs", str(packs), "--no-faults"
    )
    loop = asyncio.get_running_loop()
    readings: dict[int, list[float]] = {n: [] for n in range(1, packs + 1)}
    events: list[tuple[float, LinkEvent]] = []
    all_polling = asyncio.Event()

    def on_reading(reading: PackReading) -> None:
        readings[reading.pack].append(loop.time())

    def on_event(event: LinkEvent) -> None:
        events.append((loop.time(), event))
        latest = {e.pack: e.state for _, e in events}
        if len(latest) == packs and all(s == LinkState.POLLING for s in latest.values()):
            all_polling.set()

    manager = LinkManager(list(enumerate(addresses, start=1)), poll_interval=poll)
    manager.states.subscribe(on_event)
    manager.readings.subscribe(on_reading)
    started = loop.time()
    await manager.start()
    await asyncio.wait_for(all_polling.wait(), 60)
    first_all_polling = loop.time() - started

    # Steady state: CPU of this process only.
    cpu0, wall0 = time.process_time(), loop.time()
    counts0 = {n: len(r) for n, r in readings.items()}
    await asyncio.sleep(duration)
    cpu, wall = time.process_time() - cpu0, loop.time() - wall0
    rates = [(len(readings[n]) - counts0[n]) / wall for n in readings]

    # Recovery after a drop, injected in the fake's process.
    control = await MessageBus(bus_address=os.environ["DBUS_SYSTEM_BUS_ADDRESS"]).connect()
    mark, seen = len(events), len(readings[drop_pack])
    t_drop = loop.time()
    await call_control(control, "Inject", "isdd", [drop_pack, "drop", 0.0, 0.0])
    noticed = polling = first = None
    deadline = t_drop + 60
    while loop.time() < deadline and first is None:
        await asyncio.sleep(0.05)  # bench only: sampling our own lists, not timing the code under test
        for t, e in events[mark:]:
            if e.pack == drop_pack and e.state != LinkState.POLLING and noticed is None:
                noticed = t - t_drop
            if (
                e.pack == drop_pack
                and e.state == LinkState.POLLING
                and noticed is not None
                and polling is None
            ):
                polling = t - t_drop
        if polling is not None and len(readings[drop_pack]) > seen:
            after = [t for t in readings[drop_pack][seen:] if t - t_drop >= polling]
            first = after[0] - t_drop if after else None
    stats = json.loads((await call_control(control, "Stats")).body[0])
    control.disconnect()

    stop0 = loop.time()
    clean = await manager.stop(timeout=5.0)
    stop_s = loop.time() - stop0
    fake.terminate()
    await fake.wait()
    return {
        "packs": packs,
        "poll_interval_s": poll,
        "steady_window_s": round(wall, 1),
        "first_all_polling_s": round(first_all_polling, 2),
        "cpu_s_per_pack_hour": round(cpu / wall * 3600 / packs, 2),
        "cpu_percent_of_one_core": round(100 * cpu / wall, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "readings_per_pack_s": round(min(rates), 3),
        "drop_noticed_s": None if noticed is None else round(noticed, 3),
        "drop_to_polling_s": None if polling is None else round(polling, 3),
        "drop_to_first_reading_s": None if first is None else round(first, 3),
        "max_connects_in_flight": stats["max_connects_in_flight"],
        "stop_s": round(stop_s, 3),
        "stopped_cleanly": clean,
        "connected_after_stop": stats["connected"] if not clean else "n/a",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--packs", type=int, default=8)
    parser.add_argument("--poll", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--drop-pack", type=int, default=3)
    args = parser.parse_args()
    if not 1 <= args.drop_pack <= args.packs:
        parser.error(f"--drop-pack must name one of the {args.packs} packs")
    logging.basicConfig(level=logging.WARNING)
    with PrivateBus() as bus:
        os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = bus.address
        result = asyncio.run(bench(args.packs, args.poll, args.duration, args.drop_pack))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
