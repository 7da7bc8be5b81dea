"""Which program, Python, packages and firmware are in use: for ``dbus-btbattery versions``, the start-up log
and ``doctor``.

Each package is imported the way the service imports it (after ``btbattery.vendored`` has put the release's
``ext/`` folders on the path), so what is reported is what runs: its version from the metadata that sits
beside it, and where it came from (the release's ``ext/``, its pure-Python ``ext-dbus-fast/``, or the
firmware/environment's site-packages). Standard library only.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import os
import pkgutil
import platform
import sys
from importlib import metadata
from pathlib import Path

from btbattery import __version__
from btbattery.vendored import DBUS_FAST_FALLBACK, EXT

# The program's folder: the checkout or /data/dbus-btbattery (ext/ and ext-dbus-fast/ live beside btbattery/).
APP_DIR = Path(__file__).resolve().parent.parent
# Venus OS writes its version ("v3.60") on the first line of this file.
FIRMWARE_VERSION_FILE = Path("/opt/victronenergy/version")
# Modules of the program that never run on the device (they may use what Venus OS lacks), and ``__main__``,
# which runs the program when imported.
OFF_DEVICE = ("btbattery.__main__", "btbattery.docs")
# What the service loads from bleak besides its top level: the BlueZ back end, which imports dbus-fast.
SERVICE_EXTRAS = ("bleak.backends.bluezdbus.manager",)
# distribution name -> module the service imports
PACKAGES = {
    "bleak": "bleak",
    "dbus-fast": "dbus_fast",
    "reactivex": "reactivex",
    "transitions": "transitions",
}


def origin(package_dir: Path, app: Path = APP_DIR) -> str:
    """Where a package was found, in words a user can act on."""
    for folder, words in ((EXT, "shipped in ext/"), (DBUS_FAST_FALLBACK, "shipped in ext-dbus-fast/")):
        if package_dir.parent == app / folder:
            return words
    return str(package_dir.parent)


def is_compiled(package_dir: Path) -> bool:
    """True when the package carries extension modules (dbus-fast built with Cython), which Python prefers
    over the .py files beside them."""
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    return any(path.name.endswith(suffixes) for path in package_dir.rglob("*"))


def package_info(name: str, module_name: str, app: Path = APP_DIR) -> dict[str, object]:
    """``{"version", "from"}`` of the package the program imports; ``{"version": None, "error"}`` if none."""
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # a broken install is what this is for: say why, do not crash
        return {"version": None, "error": f"{type(exc).__name__}: {exc}"}
    package_dir = Path(os.path.abspath(module.__file__ or "")).parent  # as found: links not followed
    found = next(iter(metadata.distributions(name=name, path=[str(package_dir.parent)])), None)
    info: dict[str, object] = {"version": found.version if found else None, "from": origin(package_dir, app)}
    if name == "dbus-fast":
        info["compiled"] = is_compiled(package_dir)
    return info


def import_problems(skip: tuple[str, ...] = OFF_DEVICE) -> list[str]:
    """Import every module of the program and the packages it runs on, as the service would; one line per
    missing module (naming the first import that needed it) or broken module. The installer runs this before
    it replaces anything."""
    import btbattery

    problems: dict[str, str] = {}  # one line per missing module, however many modules need it
    names = [info.name for info in pkgutil.walk_packages(btbattery.__path__, "btbattery.")]
    for name in [*PACKAGES.values(), *SERVICE_EXTRAS, *names]:
        if name in skip:
            continue
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            problems.setdefault(str(exc.name), f"No module named '{exc.name}' (while importing {name})")
        except Exception as exc:  # a broken module says why, the check goes on
            problems.setdefault(name, f"{name}: {type(exc).__name__}: {exc}")
    return list(problems.values())


def firmware_version(version_file: Path = FIRMWARE_VERSION_FILE) -> str | None:
    """``"v3.60"`` on Venus OS, None elsewhere."""
    try:
        lines = version_file.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    return lines[0].strip() if lines and lines[0].strip() else None


def versions(app: Path = APP_DIR, version_file: Path = FIRMWARE_VERSION_FILE) -> dict[str, dict[str, object]]:
    """Program, Python, each package and firmware: ``{"bleak": {"version": "3.0.2", "from": ...}, ...}``."""
    found: dict[str, dict[str, object]] = {
        "program": {"version": __version__, "from": str(app)},
        "python": {"version": platform.python_version(), "from": sys.executable},
    }
    for name, module_name in PACKAGES.items():
        found[name] = package_info(name, module_name, app)
    found["firmware"] = {"version": firmware_version(version_file), "from": str(version_file)}
    return found


def describe(name: str, info: dict[str, object]) -> str:
    """One line: ``dbus-fast 2.21.1 (pure Python, from /usr/lib/python3.12/site-packages)``."""
    if info.get("error"):
        return f"{name} missing ({info['error']})"
    if name == "firmware" and info["version"] is None:
        return "firmware: not Venus OS (no /opt/victronenergy/version)"
    details = [str(info["from"])]
    if "compiled" in info:
        details.insert(0, "compiled" if info["compiled"] else "pure Python")
    return f"{name} {info['version'] or 'unknown version'} ({', '.join(details)})"


def missing(found: dict[str, dict[str, object]]) -> list[str]:
    """The packages the program cannot import."""
    return [name for name, info in found.items() if info.get("error")]
