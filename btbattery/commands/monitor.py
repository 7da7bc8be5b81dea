"""`dbus-btbattery monitor`: the live view of a running service, read from D-Bus the way Venus reads it.

The same screen as the demo (one view, :mod:`btbattery.view`): bank, limits and their reasons, imbalance flags
and spreads, the pack table with link states and per-pack detail where the service publishes it. Over SSH on a
GX it reads the system bus; with ``DBUS_SESSION_BUS_ADDRESS`` set (the demo, tests) the session bus.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

from btbattery.commands import add_service_arguments

EXIT_OK, EXIT_NO_SERVICE, EXIT_USAGE = 0, 1, 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_service_arguments(parser)
    parser.add_argument("--once", action="store_true", help="print one snapshot and exit")
    parser.add_argument("--json", action="store_true", help="print JSON (with --once: one object)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="with --once: wait up to S seconds for the service to appear (default: 10)",
    )
    parser.add_argument(
        "--refresh", type=float, default=1.0, metavar="S", help="redraw at most every S s (1)"
    )


def main(args: argparse.Namespace) -> int:
    if args.timeout < 0 or args.refresh <= 0:
        print("monitor: --timeout must be >= 0 and --refresh > 0", file=sys.stderr)
        return EXIT_USAGE
    try:
        return asyncio.run(_once(args) if args.once else _live(args))
    except (OSError, EOFError) as exc:  # no bus at all: say so in one line
        print(f"monitor: cannot reach D-Bus: {exc}", file=sys.stderr)
        return EXIT_NO_SERVICE


def _print(items: dict, args: argparse.Namespace, status: str) -> None:
    from btbattery.view import render, snapshot

    if args.json:
        print(json.dumps(snapshot(items, args.service), sort_keys=False), flush=True)
    else:
        sys.stdout.write(render(items, args.service, status))
        sys.stdout.flush()


async def _once(args: argparse.Namespace) -> int:
    from btbattery.view import ServiceReader

    reader = await ServiceReader.open(args.dbus_address, args.service)
    try:
        if not await reader.wait_found(args.timeout):
            print(
                f"monitor: {args.service} is not on the bus (waited {args.timeout:g} s); is the service "
                "running? (svstat /service/dbus-btbattery; log: /var/log/dbus-btbattery/current)",
                file=sys.stderr,
            )
            return EXIT_NO_SERVICE
        _print(reader.items, args, "snapshot")
    finally:
        reader.close()
    return EXIT_OK


async def _live(args: argparse.Namespace) -> int:
    from btbattery.view import CLEAR, watch

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tty = sys.stdout.isatty() and not args.json

    def draw(items: dict, status: str) -> None:
        if tty:
            sys.stdout.write(CLEAR)
        _print(items, args, f"[{status}]  (Ctrl-C to stop)" if not args.json else status)

    await watch(args.dbus_address, args.service, draw, stop, args.refresh)
    return EXIT_OK
