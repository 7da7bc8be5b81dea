#!/usr/bin/env python3
"""`python3 scan.py [--timeout S] [--json]`: the guide's scan tool, same as `dbus-btbattery scan`."""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

# A release carries its pure-Python dependencies in ext/ (Venus OS has no pip): find them first.
from btbattery.vendored import use_shipped_packages  # noqa: E402

use_shipped_packages(HERE)

from btbattery.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["scan", *sys.argv[1:]]))
