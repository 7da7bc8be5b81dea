"""The fake BlueZ as the demo and end-to-end tests run it: a separate process with a control object."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from dbus_fast import MessageType
from dbus_fast.aio import MessageBus
from linkharness import FAST_BACKOFF, FAST_LINK, Recorder

from btbattery.link.manager import LinkManager
from btbattery.model import LinkState
from btbattery.sim.bluez import CONTROL_NAME, call_control

ROOT = Path(__file__).resolve().parents[2]


async def _start(bus: str, *extra: str) -> asyncio.subprocess.Process:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "btbattery.sim.bluez",
        "--bus-address",
        bus,
        *extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )


async def test_program_serves_packs_and_takes_faults_over_dbus(system_bus: str) -> None:
    proc = await _start(system_bus, "--scenario", "default", "--packs", "2", "--no-faults")
    control = None
    manager = None
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert line.startswith("READY ")
        ready = json.loads(line.partition(" ")[2])
        assert len(ready["addresses"]) == 2 and ready["control"] == CONTROL_NAME
        rec = Recorder()
        manager = LinkManager(
            list(enumerate(ready["addresses"], start=1)),
            poll_interval=0.4,
            timeouts=FAST_LINK,
            backoff=FAST_BACKOFF,
        )
        manager.states.subscribe(rec.on_event)
        manager.readings.subscribe(rec.on_reading)
        await manager.start()
        await rec.all_polling([1, 2], timeout=20.0)
        control = await MessageBus(bus_address=system_bus).connect()
        mark = len(rec.events)
        reply = await call_control(control, "Inject", "isdd", [1, "silent", 1.5, 0.0])
        assert reply.message_type == MessageType.METHOD_RETURN
        await rec.wait(
            lambda: any(e.pack == 1 and e.state == LinkState.BACKOFF for e in rec.events[mark:]),
            10.0,
            "pack 1 to give up on a silent BMS",
        )
        await rec.wait(lambda: rec.state(1) == LinkState.POLLING, 15.0, "pack 1 polling again")
        bad = await call_control(control, "Inject", "isdd", [9, "drop", 1.0, 0.0])
        assert bad.message_type == MessageType.ERROR and "no pack 9" in str(bad.body)
        stats = json.loads((await call_control(control, "Stats")).body[0])
        assert stats["max_connects_in_flight"] == 1 and sorted(stats["connected"]) == [1, 2]
    finally:
        if manager is not None:
            await manager.stop(timeout=5.0)
        if control is not None:
            control.disconnect()
        if proc.returncode is None:
            proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 10) == 0


async def test_program_rejects_an_unknown_scenario(system_bus: str) -> None:
    proc = await _start(system_bus, "--scenario", "no-such-scenario")
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1
    assert "no-such-scenario" in err.decode() and "Traceback" not in err.decode()
