#!/usr/bin/env python3
"""Build the Venus OS gui-v2 plugin: gui-v2/qml/* -> gui-v2/dbus-btbattery.json.

    scripts/build-gui-plugin.py            rebuild the JSON (needs Qt's rcc: the test extra's PySide6 has it)
    scripts/build-gui-plugin.py --check    exit 1 when the checked-in JSON is not what the sources build

gui-v2 (v1.2.14 and later, src/guiplugins.cpp) reads every *.json under /data/apps/enabled/<app>/gui-v2/:
{name, version, minRequiredVersion, maxRequiredVersion, translations, integrations, resource}, where resource
is a base64 Qt resource file (rcc, zlib) that it registers before loading the QML the integrations name.
Our own small build of that format: the QML files under one prefix, named after the plugin, and the
integrations from the table below. The output is reproducible: files in name order, each file's timestamp
made from its content, the same rcc (PySide6 6.8.3, the Qt of gui-v2 on the device) giving the same bytes.
The timestamps must change with the content: Qt's QML disk cache takes a qrc file whose timestamp it has
seen as unchanged and would run the old compiled page after an upgrade.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ROOT / "gui-v2" / "qml"
OUTPUT = ROOT / "gui-v2" / "dbus-btbattery.json"
NAME = "dbus-btbattery"
PRODUCT_ID = "0xBA77"  # the community battery drivers' id, as the service publishes it
MIN_GUI_VERSION = "v1.2.14"  # the first gui-v2 with plugins; the QML uses nothing newer
MAX_GUI_VERSION = ""  # no known upper bound
DEVICE_LIST_PAGE = 2  # gui-v2's GuiPluginLoader::DeviceListSettingsPage
# (page, title): each becomes an entry on the battery's device page, in this order.
PAGES = (("BankSummary.qml", "Parallel bank"), ("PackTable.qml", "Packs"), ("CellsPage.qml", "Cells"))
EPOCH = 1_600_000_000  # s since 1970: the files' timestamps in the rcc lie within ~3 years after this


def integrations() -> list[dict[str, object]]:
    return [
        {"type": DEVICE_LIST_PAGE, "productId": PRODUCT_ID, "url": f"qrc:/{NAME}/{page}", "title": title}
        for page, title in PAGES
    ]


def version() -> str:
    text = (ROOT / "btbattery" / "__init__.py").read_text(encoding="utf-8")
    found = re.search(r'^__version__ = "(.+)"$', text, re.M)
    if found is None:
        raise SystemExit("build-gui-plugin.py: no __version__ in btbattery/__init__.py")
    return found.group(1)


def find_rcc(given: str | None) -> str:
    """--rcc, else $RCC, else the rcc inside PySide6 (the test extra), else rcc on PATH."""
    candidates = [given, os.environ.get("RCC")]
    try:
        import PySide6

        candidates.append(str(Path(PySide6.__file__).parent / "Qt" / "libexec" / "rcc"))
    except ImportError:
        pass
    candidates.append(shutil.which("rcc"))
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise SystemExit("build-gui-plugin.py: no rcc found; install the test extra (PySide6) or pass --rcc")


def build_resource(rcc: str) -> bytes:
    files = sorted(p.name for p in SOURCES.iterdir() if p.suffix in (".qml", ".js"))
    missing = [page for page, _ in PAGES if page not in files]
    if missing:
        raise SystemExit(f"build-gui-plugin.py: pages missing from {SOURCES}: {', '.join(missing)}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in files:
            content = (SOURCES / name).read_bytes()
            (work / name).write_bytes(content)
            stamp = content_time(content)
            os.utime(work / name, (stamp, stamp))
        entries = "".join(f"<file>{name}</file>\n" for name in files)
        (work / f"{NAME}.qrc").write_text(
            f'<RCC>\n<qresource prefix="/{NAME}">\n{entries}</qresource>\n</RCC>\n', encoding="utf-8"
        )
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("SOURCE_DATE_EPOCH", "QT_RCC_SOURCE_DATE_OVERRIDE")
        }
        subprocess.run(  # rcc would stamp every file with either variable instead of its own time
            [rcc, "--binary", "--compress-algo", "zlib", "-o", f"{NAME}.rcc", f"{NAME}.qrc"],
            cwd=work,
            env=env,
            check=True,
        )
        return (work / f"{NAME}.rcc").read_bytes()


def content_time(content: bytes) -> int:
    """A timestamp that is the same for the same content and (almost surely) differs when it changes."""
    return EPOCH + int(hashlib.sha256(content).hexdigest()[:8], 16) % 100_000_000


def plugin_json(resource: bytes) -> str:
    plugin = {
        "name": NAME,
        "version": version(),
        "minRequiredVersion": MIN_GUI_VERSION,
        "maxRequiredVersion": MAX_GUI_VERSION,
        "translations": [],
        "integrations": integrations(),
        "resource": base64.b64encode(resource).decode("ascii"),
    }
    return json.dumps(plugin, indent=4) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rcc", help="Qt's rcc (default: $RCC, PySide6's, or rcc on PATH)")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--check", action="store_true", help="only compare with the existing output")
    args = parser.parse_args(argv)
    fresh = plugin_json(build_resource(find_rcc(args.rcc)))
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != fresh:
            print(f"{args.output} is out of date: run scripts/build-gui-plugin.py", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(fresh, encoding="utf-8")
    print(f"{args.output} ({len(fresh) // 1024} kB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
