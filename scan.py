#!/usr/bin/env python3
"""`python3 scan.py [--timeout S] [--json]`: the guide's scan tool, same as `dbus-btbattery scan`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from btbattery.cli import main

if __name__ == "__main__":
    sys.exit(main(["scan", *sys.argv[1:]]))
