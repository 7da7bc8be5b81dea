"""`dbus-btbattery capture`: ask the running service to write its flight recorder to a file, print its path.

The service keeps the last RECORDER_MINUTES of every pack's BLE traffic and link events in memory; this calls
``Capture`` on its ``/io/btbattery/Recorder`` object (see :mod:`btbattery.dbus.recorder`) and prints where the
recording was written. ``dbus-btbattery replay FILE`` replays it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from btbattery.commands import add_service_arguments

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
_ABSENT = ("org.freedesktop.DBus.Error.ServiceUnknown", "org.freedesktop.DBus.Error.NameHasNoOwner")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_service_arguments(parser)
    parser.add_argument(
        "--reason",
        default="",
        metavar="TEXT",
        help="why, written into the recording (default: asked by capture)",
    )
    parser.add_argument(
        "--timeout", type=float, default=60.0, metavar="S", help="wait up to S s for the file (default: 60)"
    )


def main(args: argparse.Namespace) -> int:
    if args.timeout <= 0:
        print("capture: --timeout must be positive", file=sys.stderr)
        return EXIT_USAGE
    try:
        return asyncio.run(_capture(args))
    except (OSError, EOFError) as exc:
        print(f"capture: cannot reach D-Bus: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except TimeoutError:
        print(f"capture: no answer from {args.service} within {args.timeout:g} s", file=sys.stderr)
        return EXIT_FAILED


async def _capture(args: argparse.Namespace) -> int:
    from dbus_fast import Message, MessageType

    from btbattery.dbus.busitem import connect_bus
    from btbattery.dbus.recorder import RECORDER_IFACE, RECORDER_PATH

    bus = await connect_bus(args.dbus_address)
    try:
        reply = await asyncio.wait_for(
            bus.call(
                Message(
                    destination=args.service,
                    path=RECORDER_PATH,
                    interface=RECORDER_IFACE,
                    member="Capture",
                    signature="s",
                    body=[args.reason],
                )
            ),
            args.timeout,
        )
    finally:
        bus.disconnect()
    if reply.message_type == MessageType.METHOD_RETURN:
        print(reply.body[0])
        return EXIT_OK
    if reply.error_name in _ABSENT:
        print(
            f"capture: {args.service} is not running (svstat /service/dbus-btbattery; "
            "dbus-btbattery doctor says why)",
            file=sys.stderr,
        )
    else:
        detail = reply.body[0] if reply.body else reply.error_name
        print(f"capture: the service could not write a recording: {detail}", file=sys.stderr)
    return EXIT_FAILED
