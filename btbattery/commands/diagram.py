"""`dbus-btbattery diagram`: the link state machine and the charge modes, drawn from their own tables."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

MERMAID_NAME = "link-states.mmd"
SVG_NAME = "link-states.svg"
CHARGE_MODES_NAME = "charge-modes.mmd"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", default="diagrams", metavar="DIR", help="folder to write into (default: diagrams)"
    )


def write_diagrams(out: Path) -> list[Path]:
    """Mermaid source always; SVG too when Graphviz's ``dot`` is installed. Returns the files written."""
    from btbattery.link import machine
    from btbattery.pipeline import chargemode

    out.mkdir(parents=True, exist_ok=True)
    mermaid = out / MERMAID_NAME
    mermaid.write_text(machine.mermaid(), encoding="utf-8")
    modes = out / CHARGE_MODES_NAME
    modes.write_text(chargemode.mermaid(), encoding="utf-8")
    written = [mermaid, modes]
    dot = shutil.which("dot")
    if dot is not None:
        svg = out / SVG_NAME
        subprocess.run([dot, "-Tsvg", "-o", str(svg)], input=machine.dot(), text=True, check=True)
        written.append(svg)
    return written


def main(args: argparse.Namespace) -> int:
    try:
        written = write_diagrams(Path(args.out))
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"diagram: cannot write into {args.out}: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(f"wrote {path}")
    if not any(path.suffix == ".svg" for path in written):
        print("(Graphviz 'dot' not found: SVG skipped; the Mermaid file renders on most forges)")
    return 0
