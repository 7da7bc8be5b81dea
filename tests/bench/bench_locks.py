"""Time to each lock verdict: how long a locked pack takes to poll, or to be reported and left alone.

Run: .venv/bin/python tests/bench/bench_locks.py

One LinkManager with the default link timeouts (2 s per request, 3 timeouts make a dead link, 1 s polls)
against the in-process fake BlueZ with its realistic radio timing, on a private dbus-daemon. Pack 1 is
plain, pack 2 carries the lock of each case. Prints, per case, seconds from start to each of pack 2's link
states and to its first reading. The budget is what the user waits for the ERROR line that names the
lock: a few polls, never minutes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "integration")]

PASSWORD, PASSKEY = "s3cr3t", 123456


async def timeline(lock: dict[str, object], locks: dict[int, object]) -> dict[str, float]:
    from linkharness import scenario

    from btbattery.link.manager import LinkManager
    from btbattery.sim.bluez import FakeBluez

    bank = scenario(2)
    packs = list(bank.packs)
    packs[1] = dataclasses.replace(packs[1], **lock)  # type: ignore[arg-type]
    times: dict[str, float] = {}
    loop = asyncio.get_running_loop()
    verdict = asyncio.Event()
    async with FakeBluez(dataclasses.replace(bank, packs=packs), scripted_faults=False) as fake:
        manager = LinkManager([(p.number, p.address) for p in fake.packs], 1.0, locks=locks)  # type: ignore[arg-type]
        start = loop.time()

        def on_event(event) -> None:  # type: ignore[no-untyped-def]
            if event.pack == 2:
                times.setdefault(event.state.value, round(loop.time() - start, 2))
                if event.state.value == "refused":
                    verdict.set()

        def on_reading(reading) -> None:  # type: ignore[no-untyped-def]
            if reading.pack == 2:
                times.setdefault("first reading", round(loop.time() - start, 2))
                verdict.set()

        manager.states.subscribe(on_event)
        manager.readings.subscribe(on_reading)
        await manager.start()
        await asyncio.wait_for(verdict.wait(), 120)
        await manager.stop()
    return times


async def main() -> None:
    from btbattery.link.pack_link import PackLocks
    from btbattery.model import Secret

    password, passkey = PackLocks(password=Secret(PASSWORD)), PackLocks(passkey=Secret(str(PASSKEY)))
    cases = {
        "unlocked": ({}, {}),
        "password lock, right PASSWORD": ({"password": PASSWORD}, {2: password}),
        "password lock, wrong PASSWORD": ({"password": PASSWORD}, {2: PackLocks(password=Secret("wr0ng1"))}),
        "password lock, no PASSWORD": ({"password": PASSWORD}, {}),
        "passkey unit, right PASSKEY": ({"pairing": "passkey", "passkey": PASSKEY}, {2: passkey}),
        "passkey unit, no PASSKEY": ({"pairing": "passkey", "passkey": PASSKEY}, {}),
        "echo unit, right PASSKEY": ({"pairing": "echo", "passkey": PASSKEY}, {2: passkey}),
        "echo unit, no PASSKEY": ({"pairing": "echo", "passkey": PASSKEY}, {}),
    }
    for name, (lock, locks) in cases.items():
        times = await timeline(lock, locks)
        print(f"{name:32s} " + "  ".join(f"{state} {t:.2f}" for state, t in times.items() if state != "idle"))


if __name__ == "__main__":
    import logging

    from support.dbusdaemon import PrivateBus

    logging.basicConfig(level=logging.ERROR, format="    %(message)s")
    with PrivateBus() as bus:
        os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = bus.address
        asyncio.run(main())
