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


def _unit(fmt: object) -> str:
    """The unit a path's text format appends (``53.10V`` -> ``V``)."""
    if fmt is None:
        return ""
    text = fmt(1.0)  # type: ignore[operator]
    return re.sub(r"^[-+\d.]+", "", text)


def dbus_paths_markdown() -> str:
    from btbattery.dbus.battery import all_paths

    rows = ["| Path | Unit | Meaning |", "|---|---|---|"]
    rows += [f"| `{path}` | {_unit(spec.text)} | {spec.meaning} |" for path, spec in all_paths().items()]
    return "\n".join(rows)


def config_keys_markdown(path: Path | None = None) -> str:
    """Every key of the built-in defaults with its default, what it accepts (config.KEYS: the bounds the
    loader enforces) and the comment above it (unit first)."""
    from btbattery.config import KEYS

    rows = ["| Key | Default | Accepted | Unit and meaning |", "|---|---|---|---|"]
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
            accepted = KEYS[key].accepted if key in KEYS else ""
            rows.append(f"| `{key}` | {shown} | {accepted} | {meaning} |")
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


def option_bounds_markdown() -> str:
    """The service's bounded options (config.OPTIONS), as the run command enforces them."""
    from btbattery.config import OPTIONS

    rows = ["| Option | Accepted |", "|---|---|"]
    rows += [f"| `{option}` | {bound.describe()} |" for option, bound in OPTIONS.items()]
    return "\n".join(rows)


def link_states_markdown() -> str:
    from btbattery.link.machine import mermaid

    return f"```mermaid\n{mermaid().strip()}\n```"


def charge_rules_markdown() -> str:
    """The limits' rules, from the table the code keeps beside them."""
    from btbattery.pipeline.limits import RULES

    return "\n".join(f"{i}. **{name}.** {text}" for i, (name, text) in enumerate(RULES, start=1))


def charge_modes_markdown() -> str:
    from btbattery.pipeline.chargemode import mermaid

    return f"```mermaid\n{mermaid().strip()}\n```"


SECTIONS = {
    "commands": commands_markdown,
    "option-bounds": option_bounds_markdown,
    "link-states": link_states_markdown,
    "charge-rules": charge_rules_markdown,
    "charge-modes": charge_modes_markdown,
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
