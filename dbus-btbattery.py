#!/usr/bin/env python3
"""The guide's entry point: ``python3 dbus-btbattery.py -p MAC [MAC ...]`` runs the same program."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from btbattery.cli import main

if __name__ == "__main__":
    sys.exit(main())
