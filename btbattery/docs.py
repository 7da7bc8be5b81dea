"""README tables generated from the code and the built-in config, so the documentation cannot drift.

python -m btbattery.docs --write README.md     # regenerate the marked sections
python -m btbattery.docs --check README.md     # exit 1 when they are out of date (the tests do this)
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from btbattery.config import find_defaults

# What each published path means. A test fails when the service publishes a path that is not described here.
PATH_MEANINGS: dict[str, str] = {
    "/Mgmt/ProcessName": "program name",
    "/Mgmt/ProcessVersion": "program version",
    "/Mgmt/Connection": "how the packs are reached",
    "/DeviceInstance": "VRM device instance (from localsettings, else `--device-instance`)",
    "/ProductId": "0xBA77, the community battery drivers' id",
    "/ProductName": "product name",
    "/FirmwareVersion": "program version",
    "/HardwareVersion": "number of packs",
    "/Connected": "1 while any pack is active; 0 after none was for DISCONNECTED_AFTER",
    "/CustomName": "user's name for the bank (writable, persisted in the state file)",
    "/Serial": "stable id derived from the pack addresses",
    "/Dc/0/Voltage": "mean voltage of the active packs",
    "/Dc/0/Current": "sum of the active packs' currents, + = charging",
    "/Dc/0/Power": "voltage x current",
    "/Dc/0/Temperature": "hottest pack sensor",
    "/Soc": "capacity-weighted state of charge",
    "/Capacity": "remaining capacity, summed",
    "/InstalledCapacity": "nominal capacity, summed",
    "/ConsumedAmphours": "installed minus remaining (<= 0)",
    "/TimeToGo": "time to empty at the present discharge current",
    "/Info/MaxChargeVoltage": "CVL: charge voltage limit for DVCC",
    "/Info/MaxChargeCurrent": "CCL: charge current limit for DVCC",
    "/Info/MaxDischargeCurrent": "DCL: discharge current limit for DVCC",
    "/Info/BatteryLowVoltage": "cells x MIN_CELL_VOLTAGE",
    "/Info/ChargeRequest": "1 from an under-voltage event until recharged (Venus shows Recharging)",
    "/Info/ChargeLimitation": "short text of the rule that binds the CCL",
    "/Info/DischargeLimitation": "short text of the rule that binds the DCL",
    "/Io/AllowToCharge": "1 when the CCL is above 0",
    "/Io/AllowToDischarge": "1 when the DCL is above 0",
    "/Io/AllowToBalance": "1 when the packs may balance",
    "/System/MinCellVoltage": "lowest cell of all packs",
    "/System/MaxCellVoltage": "highest cell of all packs",
    "/System/MinVoltageCellId": "which cell: `2-5` = pack 2, cell 5",
    "/System/MaxVoltageCellId": "which cell: `2-5` = pack 2, cell 5",
    "/System/MinCellTemperature": "coldest pack sensor",
    "/System/MaxCellTemperature": "hottest pack sensor",
    "/System/MinSoc": "SoC of the emptiest active pack",
    "/System/MinSocBatteryId": "which pack: n as in `/Parallel/Battery<n>`",
    "/System/MaxSoc": "SoC of the fullest active pack",
    "/System/MaxSocBatteryId": "which pack: n as in `/Parallel/Battery<n>`",
    "/System/NrOfCellsPerBattery": "cells in series per pack",
    "/System/NrOfModulesOnline": "active packs",
    "/System/NrOfModulesOffline": "packs not active",
    "/System/NrOfModulesBlockingCharge": "active packs refusing charge (FET off or protection)",
    "/System/NrOfModulesBlockingDischarge": "active packs refusing discharge",
    "/Balancing": "1 while any pack balances a cell",
    "/History/ChargeCycles": "highest cycle count of the packs",
    "/Voltages/Sum": "sum of a pack's cells (mean over packs)",
    "/Voltages/Diff": "highest minus lowest cell of the bank",
    "/State": "9 running, 14 standby (no active pack)",
    "/Alarms/LowSoc": "0 ok, 1 warning (SoC below SOC_LOW_WARNING), 2 alarm (below SOC_LOW_ALARM)",
    "/Alarms/CellImbalance": "0 ok, 1 warning (cell spread 0.15 V), 2 alarm (0.30 V)",
    "/Alarms/BmsCable": "1 once a pack sent no data for BMS_CABLE_ALARM s, 2 once no pack did",
    "/Alarms/LowVoltage": "2 while a pack reports pack under-voltage protection",
    "/Alarms/HighVoltage": "2 while a pack reports pack over-voltage protection",
    "/Alarms/LowCellVoltage": "2 while a pack reports cell under-voltage protection",
    "/Alarms/HighCellVoltage": "2 while a pack reports cell over-voltage protection",
    "/Alarms/HighChargeCurrent": "2 while a pack reports charge over-current",
    "/Alarms/HighDischargeCurrent": "2 while a pack reports discharge over-current or short circuit",
    "/Alarms/InternalFailure": "2 while a pack reports a front-end IC error or MOSFET software lock",
    "/Alarms/HighChargeTemperature": "2 while a pack reports charge over-temperature",
    "/Alarms/LowChargeTemperature": "2 while a pack reports charge under-temperature",
    "/Alarms/HighTemperature": "2 while a pack reports discharge over-temperature",
    "/Alarms/LowTemperature": "2 while a pack reports discharge under-temperature",
    "/Parallel/VoltageImbalance": "1 while the packs' voltages are imbalanced",
    "/Parallel/CurrentImbalance": "1 while the current is not shared by capacity",
    "/Parallel/SocImbalance": "1 while the packs' SoCs are imbalanced",
    "/Parallel/TotalBatteries": "packs configured",
    "/Parallel/ActiveBatteries": "packs online with fresh data",
    "/Parallel/VoltageSpread": "highest minus lowest pack voltage over the window",
    "/Parallel/CurrentSpread": "largest deviation of a pack's current share from its capacity share",
    "/Parallel/SocSpread": "highest minus lowest pack SoC",
    "/Parallel/Battery<n>/Address": "pack n's Bluetooth address",
    "/Parallel/Battery<n>/LinkState": "idle, scanning, connecting, subscribing, polling, backoff",
    "/Parallel/Battery<n>/Voltage": "pack n's voltage",
    "/Parallel/Battery<n>/Current": "pack n's current, + = charging",
    "/Parallel/Battery<n>/Soc": "pack n's state of charge",
    "/Parallel/Battery<n>/Connected": "1 while pack n is active",
    "/Voltages/Cell<n>_<c>": "cell c of pack n (the guide's `Cell<n>-<c>`)",
    "/Balances/Cell<n>_<c>": "1 while cell c of pack n is balancing",
}

_IDENTITY_ROOTS = (
    "Mgmt",
    "DeviceInstance",
    "ProductId",
    "ProductName",
    "FirmwareVersion",
    "HardwareVersion",
    "Connected",
    "CustomName",
    "Serial",
)
IDENTITY_PATHS = tuple(p for p in PATH_MEANINGS if p.split("/")[1] in _IDENTITY_ROOTS)


def _unit(fmt: object) -> str:
    """The unit a path's text format appends (``53.10V`` -> ``V``)."""
    if fmt is None:
        return ""
    text = fmt(1.0)  # type: ignore[operator]
    return re.sub(r"^[-+\d.]+", "", text)


def dbus_paths_markdown() -> str:
    from btbattery.dbus.battery import BANK_PATHS, CELL_VOLT, PACK_PATHS

    units: dict[str, str] = dict.fromkeys(IDENTITY_PATHS, "")
    units |= {path: _unit(fmt) for path, fmt in BANK_PATHS.items()}
    units |= {f"/Parallel/Battery<n>/{leaf}": _unit(fmt) for leaf, fmt in PACK_PATHS.items()}
    units |= {"/Voltages/Cell<n>_<c>": _unit(CELL_VOLT), "/Balances/Cell<n>_<c>": ""}
    rows = ["| Path | Unit | Meaning |", "|---|---|---|"]
    rows += [f"| `{path}` | {unit} | {PATH_MEANINGS[path]} |" for path, unit in units.items()]
    return "\n".join(rows)


def config_keys_markdown(path: Path | None = None) -> str:
    """Every key of the built-in defaults with its default and the comment above it (unit first)."""
    rows = ["| Key | Default | Unit and meaning |", "|---|---|---|"]
    comment: list[str] = []
    for line in (path or find_defaults()).read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            text = stripped.lstrip("#").strip()
            if text and not text.startswith("----"):
                comment.append(text)
        elif "=" in stripped and not stripped.startswith("["):
            key, _, value = (part.strip() for part in stripped.partition("="))
            meaning = " ".join(comment).replace("|", "\\|")
            shown = f"`{value}`" if value else "(empty)"
            rows.append(f"| `{key}` | {shown} | {meaning} |")
            comment = []
        else:
            comment = [] if not stripped else comment
    return "\n".join(rows)


def serialbattery_markdown() -> str:
    """How a dbus-serialbattery config.ini is read: the keys whose meaning differs, then the rest by kind."""
    from btbattery.compat import SERIALBATTERY_KEYS, SERIALBATTERY_SOURCE
    from btbattery.config import KEYS

    rows = ["| Key | Here, and in dbus-serialbattery |", "|---|---|"]
    rows += [f"| `{key}` | {note} |" for key, note in SERIALBATTERY_KEYS.items() if note]
    same = [f"`{key}`" for key, note in SERIALBATTERY_KEYS.items() if key in KEYS and not note]
    unused = [f"`{key}`" for key in SERIALBATTERY_KEYS if key not in KEYS]
    return "\n".join(
        [
            f"Keys of {SERIALBATTERY_SOURCE}, {len(SERIALBATTERY_KEYS)} in all.",
            "",
            *rows,
            "",
            f"Same name and meaning ({len(same)}): {', '.join(same)}.",
            "",
            f"Accepted, named in one warning, and unused ({len(unused)}): {', '.join(unused)}.",
        ]
    )


def commands_markdown() -> str:
    """Every command's ``--help``, exactly as the program prints it."""
    import os

    from btbattery.cli import COMMANDS, command_parser

    os.environ["COLUMNS"] = "110"  # argparse wraps to the terminal; the README must not depend on one
    parts = []
    for name in COMMANDS:
        parser, _ = command_parser(name)
        title = "dbus-btbattery -p ... (run)" if name == "run" else f"dbus-btbattery {name}"
        parts.append(f"#### `{title}`\n\n```\n{parser.format_help().rstrip()}\n```")
    return "\n\n".join(parts)


def link_states_markdown() -> str:
    from btbattery.link.machine import mermaid

    return f"```mermaid\n{mermaid().strip()}\n```"


SECTIONS = {
    "commands": commands_markdown,
    "link-states": link_states_markdown,
    "config-keys": config_keys_markdown,
    "dbus-paths": dbus_paths_markdown,
    "serialbattery-keys": serialbattery_markdown,
}


def render_readme(text: str) -> str:
    for name, make in SECTIONS.items():
        begin = f"<!-- BEGIN {name} (generated: python -m btbattery.docs --write README.md) -->"
        end = f"<!-- END {name} -->"
        pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
        if not pattern.search(text):
            raise ValueError(f"README lacks the {name} markers")
        text = pattern.sub(lambda _m: f"{begin}\n{make()}\n{end}", text)  # noqa: B023
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="regenerate the README's generated tables")
    parser.add_argument("readme", type=Path)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true")
    mode.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    current = args.readme.read_text(encoding="utf-8")
    fresh = render_readme(current)
    if args.write:
        args.readme.write_text(fresh, encoding="utf-8")
        return 0
    if fresh != current:
        print(
            f"{args.readme} is out of date: python -m btbattery.docs --write {args.readme}", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
