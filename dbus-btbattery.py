#!/usr/bin/env python3
"""The guide's entry point: ``python3 dbus-btbattery.py -p MAC [MAC ...]`` runs the same program."""

import os
import sys
from pathlib import Path

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

# A release carries its pure-Python dependencies in ext/ (Venus OS has no pip): find them first.
from btbattery.vendored import use_shipped_packages  # noqa: E402

use_shipped_packages(Path(HERE))

from btbattery.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
