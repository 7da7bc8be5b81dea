#!/usr/bin/env bash
# Set up (see setup.sh), then run the demo: simulated packs behind a fake BlueZ, the real driver,
# and a live view of what D-Bus shows. Extra arguments go to `dbus-btbattery demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if .venv/bin/python -c 'import btbattery.commands.demo' 2>/dev/null; then
    exec .venv/bin/dbus-btbattery demo "$@"
fi
# Until the demo lands: decode the sample recording.
exec .venv/bin/dbus-btbattery decode --file tests/data/sample.jsonl
