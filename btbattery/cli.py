"""One entry point for every command: run (``-p ...``), demo, monitor, doctor, capture, scan, replay, ...

Each command lives in ``btbattery.commands.<name>`` and is imported only when chosen, so ``decode`` or
``--help`` start fast on a small board and never pull in bleak or dbus-fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from btbattery import __version__

# name -> one-line help. ``run`` is also what a bare ``dbus-btbattery -p MAC ...`` means (the guide's form).
COMMANDS: dict[str, str] = {
    "run": "connect to the packs and publish the bank on D-Bus (the default: dbus-btbattery -p MAC ...)",
    "demo": "simulated packs behind a fake BlueZ, the real service, and a live view of D-Bus",
    "monitor": "show a running service live from D-Bus, the way Venus reads it (--once --json: one snapshot)",
    "doctor": "check Bluetooth, the packs, the config and the service; say what is wrong and what to do",
    "capture": "ask the running service to write its flight recorder to a file; print the file's path",
    "scan": "list nearby BMS units and whether they look like JBD",
    "replay": "run the pipeline over a recording in virtual time",
    "record": "record a simulated bank to a recording file",
    "decode": "decode JBD response bytes to JSON, one object per frame",
    "diagram": "write the link state machine diagram into diagrams/",
    "versions": "print the program, Python, package and firmware versions in use",
}


def _top_help() -> str:
    lines = [
        "usage: dbus-btbattery -p MAC[:/path/config.ini] [MAC ...] [options]",
        "       dbus-btbattery COMMAND [options]   (dbus-btbattery COMMAND --help for its options)",
        "",
        "Publish several JBD Bluetooth BMS packs wired in parallel as one Victron battery on D-Bus.",
        "",
        "commands:",
    ]
    lines += [f"  {name:<9} {text}" for name, text in COMMANDS.items()]
    return "\n".join(lines) + "\n"


def command_parser(name: str) -> tuple[argparse.ArgumentParser, object]:
    """The argument parser and module of one command."""
    module = importlib.import_module(f"btbattery.commands.{name}")
    prog = "dbus-btbattery" if name == "run" else f"dbus-btbattery {name}"
    parser = argparse.ArgumentParser(prog=prog, description=COMMANDS[name])
    module.add_arguments(parser)
    return parser, module


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        sys.stdout.write(_top_help())
        return 0
    if argv and argv[0] == "--version":
        print(f"dbus-btbattery {__version__}")
        return 0
    # No command means the service itself: runit starts it bare and it reads BATTERY_ADDRESSES.
    name = argv.pop(0) if argv and argv[0] in COMMANDS else "run"
    parser, module = command_parser(name)
    args = parser.parse_args(argv)
    return int(module.main(args) or 0)
