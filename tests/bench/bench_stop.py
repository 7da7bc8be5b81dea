"""How long the safe stop state is visible before the name goes, and how long a SIGTERM stop takes.

    .venv/bin/python tests/bench/bench_stop.py [--runs 5]

For each run: the whole service on the e2e packs, read by the Venus-like client; once the CCL is above 0,
SIGTERM. Measured on the client's clock: SIGTERM -> CCL 0 seen, CCL 0 seen -> NameOwnerChanged (the window in
which DVCC holds the safe limits while the service is still there), SIGTERM -> process exit.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "e2e")]

from venus_client import VenusClient  # noqa: E402

from btbattery.sim.stack import SimulatedStack  # noqa: E402

SERVICE = "com.victronenergy.battery.virtual_parallel"
DATA = ROOT / "tests" / "data"


async def one_run(workdir: Path) -> tuple[float, float, float]:
    stack = SimulatedStack(
        scenario=str(DATA / "scenarios" / "e2e_steady.json"),
        service_args=["--config", str(DATA / "e2e_config.ini"), "--state-file", str(workdir / "state.json")],
        service_log=(workdir / "service.log").open("wb"),
    )
    async with stack:
        client = await VenusClient.connect(stack.session_address, SERVICE)
        try:
            await client.wait_for_service(30)
            await client.wait_until(lambda c: (c.values.get("/Info/MaxChargeCurrent") or 0) > 0, 30)
            seen: dict[str, float] = {}
            watch = asyncio.ensure_future(_watch(client, seen))
            start = time.monotonic()
            await stack.stop_service()
            stopped = time.monotonic() - start
            await asyncio.wait_for(watch, 5)
        finally:
            client.close()
    return seen["ccl0"] - start, seen["gone"] - seen["ccl0"], stopped


async def _watch(client: VenusClient, seen: dict[str, float]) -> None:
    await client.wait_until(lambda c: c.values["/Info/MaxChargeCurrent"] == 0, 15)
    seen["ccl0"] = time.monotonic()
    await client.wait_until(lambda c: c.owner is None, 15)
    seen["gone"] = time.monotonic()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    rows = []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            rows.append(await one_run(Path(tmp)))
        to_zero, visible, stopped = (value * 1000 for value in rows[-1])
        print(f"run {run + 1}: SIGTERM->CCL 0 {to_zero:.0f} ms, visible before name goes {visible:.0f} ms, "
              f"SIGTERM->exit {stopped:.0f} ms")  # fmt: skip
    for name, index in (("SIGTERM->CCL 0", 0), ("CCL 0 visible", 1), ("SIGTERM->exit", 2)):
        values = sorted(row[index] * 1000 for row in rows)
        print(f"{name}: median {values[len(values) // 2]:.0f} ms, range {values[0]:.0f}-{values[-1]:.0f} ms")


if __name__ == "__main__":
    asyncio.run(main())
