"""`dbus-btbattery versions`: the program, Python, bleak, dbus-fast, reactivex, transitions and firmware
in use.

On the device: ``/data/dbus-btbattery/dbus-btbattery.py versions``. Exit 0 when every package the service
needs imports, 1 (after printing the same lines) when one does not.
"""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="one JSON object instead of one line per part")


def main(args: argparse.Namespace) -> int:
    from btbattery.versions import describe, missing, versions

    found = versions()
    if args.json:
        print(json.dumps(found, indent=2))
    else:
        for name, info in found.items():
            print(describe(name, info))
    return 1 if missing(found) else 0
