"""`dbus-btbattery demo`: simulated packs, the real service, and a live view of what D-Bus shows."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import tempfile
from pathlib import Path

from btbattery.commands import SERVICE


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--packs", type=int, default=None, help="number of simulated packs (default: 3)")
    from btbattery.sim.scenario import builtin_names

    parser.add_argument(
        "--scenario",
        default="default",
        help=f"built-in scenario ({', '.join(builtin_names())}) or a JSON file; 'locked' shows newer units' "
        "password and pairing locks",
    )
    parser.add_argument("--duration", type=float, default=None, help="stop after S seconds (default: Ctrl-C)")
    parser.add_argument("--refresh", type=float, default=1.0, help="redraw at most every S seconds")


def main(args: argparse.Namespace) -> int:
    if args.packs is not None and not 1 <= args.packs <= 16:
        raise SystemExit("demo: --packs must be between 1 and 16")
    return asyncio.run(_demo(args))


async def _demo(args: argparse.Namespace) -> int:
    from btbattery.sim.stack import SimulatedStack
    from btbattery.view import CLEAR, render, watch

    log_path = Path(tempfile.gettempdir()) / "btbattery-demo.log"
    captures = Path(tempfile.gettempdir()) / "btbattery-demo-captures"
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if args.duration is not None:
        loop.call_later(args.duration, stop.set)
    tty = sys.stdout.isatty()

    def draw(items: dict, status: str) -> None:
        screen = render(items, SERVICE, f"[{status}]  service log: {log_path}  (Ctrl-C to stop)")
        screen += f"\nrecordings (incidents, dbus-btbattery capture): {captures}\n"
        sys.stdout.write((CLEAR if tty else "\n") + screen)
        sys.stdout.flush()

    with log_path.open("wb") as log:
        stack = SimulatedStack(
            scenario=args.scenario, packs=args.packs, service_log=log, recorder_dir=str(captures)
        )
        print(f"starting {args.scenario} scenario: private buses, fake BlueZ, the service...", flush=True)
        async with stack:
            watcher = asyncio.create_task(watch(stack.session_address, SERVICE, draw, stop, args.refresh))
            service_done = asyncio.create_task(stack.service.wait())  # type: ignore[union-attr]
            await asyncio.wait(
                {watcher, service_done, asyncio.create_task(stop.wait())}, return_when=asyncio.FIRST_COMPLETED
            )
            stop.set()
            with contextlib.suppress(Exception):
                await watcher
            if service_done.done():
                code = service_done.result()
                print(f"\nthe service exited with code {code}; see {log_path}", file=sys.stderr)
                return 1
            code = await stack.stop_service()
    print(f"\ndemo stopped; service exit code {code}; log in {log_path}")
    return 0 if code == 0 else 1
