"""Put the Python packages shipped in a release (``ext/``, ``ext-dbus-fast/``) on ``sys.path``.

Venus OS has no pip, so the release archive (scripts/build-release.sh) carries bleak, reactivex and
transitions in ``ext/``, and dbus-fast built as pure Python in ``ext-dbus-fast/``. The firmware's own
python3-dbus-fast (2.21.1 on Venus OS v3.60+, which the shipped bleak 3.0.2 runs on) is used when it is at
least the version the shipped bleak asks for; the shipped copy only on a firmware without one (or too old).

Standard library only, and nothing here imports dbus_fast: once imported, a module cannot be swapped.
In a git checkout or a pip install neither folder exists and nothing changes.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

EXT = "ext"
DBUS_FAST_FALLBACK = "ext-dbus-fast"
_NEEDS_DBUS_FAST = re.compile(r"^dbus[-_]fast\s*>=\s*([0-9][0-9.]*)", re.IGNORECASE)


def version_tuple(text: str) -> tuple[int, ...]:
    """``"2.21.1"`` -> ``(2, 21, 1)``; suffixes such as ``rc1`` are ignored."""
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def dbus_fast_needed_by_bleak(ext: Path) -> tuple[int, ...] | None:
    """The lowest dbus-fast version the bleak in ``ext`` declares it needs (None: no bleak or no bound)."""
    for info in sorted(ext.glob("bleak-*.dist-info")):
        for requirement in metadata.Distribution.at(info).requires or ():
            match = _NEEDS_DBUS_FAST.match(requirement)
            if match:
                return version_tuple(match.group(1))
    return None


def installed_dbus_fast(path: list[str]) -> tuple[int, ...] | None:
    """The version of the dbus-fast found on ``path`` (the firmware's), None when there is none."""
    for dist in metadata.distributions(name="dbus-fast", path=path):
        return version_tuple(dist.version)
    return None


def use_shipped_packages(app: Path, path: list[str] | None = None) -> list[str]:
    """Add the shipped folders of the program folder ``app`` to ``path`` (default ``sys.path``).

    They go right after ``app`` itself, ahead of the system's site-packages. Returns the folders added.
    """
    path = sys.path if path is None else path
    added: list[str] = []
    ext = app / EXT
    if ext.is_dir():
        added.append(str(ext))
        fallback = app / DBUS_FAST_FALLBACK
        if fallback.is_dir():
            needed = dbus_fast_needed_by_bleak(ext)
            have = installed_dbus_fast(path)
            if have is None or (needed is not None and have < needed):
                added.insert(0, str(fallback))
    at = path.index(str(app)) + 1 if str(app) in path else 0
    path[at:at] = [entry for entry in added if entry not in path]
    return added
