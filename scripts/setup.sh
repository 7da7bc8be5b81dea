#!/usr/bin/env bash
# Set up a fresh Debian machine for btbattery: the system packages it needs, and a virtual environment in
# .venv with the program and its test tools. Safe to run again.
#   scripts/setup.sh          what the demo needs (private dbus-daemons)
#   scripts/setup.sh --test   also what the tests use: busctl (an independent D-Bus client), busybox and
#                             the shellcheck linter (the Venus install scripts), graphviz (the SVG state diagram)
#                             and the libraries Qt (PySide6, the GUI plugin's tests) loads offscreen
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
want() { command -v "$1" >/dev/null 2>&1 || need+=("$2"); }
want_lib() { ldconfig -p | grep -q "[[:space:]]$1 " || need+=("$2"); }
want dbus-daemon dbus-daemon
want dbus-send dbus-bin
if [ "${1:-}" = "--test" ]; then
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
