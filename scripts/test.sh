#!/usr/bin/env bash
# Set up (see setup.sh), then run the lint and the whole test suite with the pinned versions (pyproject.toml).
# Extra arguments go to pytest; without any, the end-to-end suite then runs once more in .venv-pure, on
# dbus-fast 2.21.1 built as Venus OS v3.60+ ships it (pure Python): the service, the fake BlueZ and the
# reading client all on it.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$#" -gt 0 ]; then
    scripts/setup.sh --test
    .venv/bin/ruff check .
    exec .venv/bin/python -m pytest -q "$@"
fi
scripts/setup.sh --pure
.venv/bin/ruff check .
.venv/bin/python -m pytest -q
echo "end-to-end suite on pure-Python dbus-fast (.venv-pure):"
.venv-pure/bin/python -m pytest -q tests/e2e
