#!/usr/bin/env bash
# Set up (see setup.sh), then run the demo: simulated packs behind a fake BlueZ, the real driver,
# and a live view of what D-Bus shows. Extra arguments go to `dbus-btbattery demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/dbus-btbattery demo "$@"
