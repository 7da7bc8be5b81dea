#!/usr/bin/env bash
# Set up a fresh Debian machine for btbattery: the system packages it needs, and a virtual environment in
# .venv with the program and its test tools. Safe to run again.
#   scripts/setup.sh          what the demo needs (private dbus-daemons)
#   scripts/setup.sh --test   also what the tests use: busctl (an independent D-Bus client), busybox and
#                             the shellcheck linter (the Venus install scripts), graphviz (the SVG state diagram)
#                             and the libraries Qt (PySide6, the GUI plugin's tests) loads offscreen
#   scripts/setup.sh --pure   also a second environment, .venv-pure, the same but with dbus-fast built
#                             without Cython (pure Python), as Venus OS v3.60+ ships it
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-}

need=()
want() { command -v "$1" >/dev/null 2>&1 || need+=("$2"); }
want_lib() { ldconfig -p | grep -q "[[:space:]]$1 " || need+=("$2"); }
want dbus-daemon dbus-daemon
want dbus-send dbus-bin
if [ "$mode" = --test ] || [ "$mode" = --pure ]; then
    want busctl systemd
    want busybox busybox
    want shellcheck shellcheck
    want dot graphviz
    for lib in libEGL.so.1:libegl1 libGL.so.1:libgl1 libX11.so.6:libx11-6 libxkbcommon.so.0:libxkbcommon0 \
        libfontconfig.so.1:libfontconfig1 libfreetype.so.6:libfreetype6 libglib-2.0.so.0:libglib2.0-0; do
        want_lib "${lib%%:*}" "${lib#*:}"
    done
fi
if ((${#need[@]})); then
    if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'

if [ "$mode" = --pure ]; then
    [ -x .venv-pure/bin/python ] || python3 -m venv .venv-pure
    .venv-pure/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
    # Rebuilt from source without its Cython extensions. The wheel cache is the release build's, which only
    # ever holds such builds (scripts/build-release.sh), so a compiled wheel cached elsewhere is never taken.
    version=$(sed -n 's/^dbus-fast==//p' scripts/release-dbus-fast.txt)
    SKIP_CYTHON=1 .venv-pure/bin/python -m pip install -q --disable-pip-version-check --force-reinstall \
        --no-deps --no-binary dbus-fast --cache-dir build/release-pip-cache "dbus-fast==$version" \
        2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
    .venv-pure/bin/python - <<'EOF'
from pathlib import Path
import dbus_fast
from btbattery.versions import is_compiled
if is_compiled(Path(dbus_fast.__file__).parent):
    raise SystemExit("setup.sh: .venv-pure has a compiled dbus-fast")
EOF
fi
