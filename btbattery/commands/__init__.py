"""One module per sub-command. Each exports ``add_arguments(parser)`` and ``main(args) -> int``."""

from __future__ import annotations

import argparse

SERVICE = "com.victronenergy.battery.virtual_parallel"


def add_service_arguments(parser: argparse.ArgumentParser) -> None:
    """``--service`` and ``--dbus-address``: how the commands that talk to a running service find it."""
    parser.add_argument(
        "--service", default=SERVICE, metavar="NAME", help="D-Bus service (default: %(default)s)"
    )
    parser.add_argument(
        "--dbus-address",
        metavar="ADDR",
        help="the service's D-Bus (default: the session bus when DBUS_SESSION_BUS_ADDRESS is set, "
        "else the system bus)",
    )
