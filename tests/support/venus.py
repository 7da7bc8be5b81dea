"""A Venus-like Python for tests: the standard library as the Venus OS image carries it, and nothing else.

Venus OS (v3.60+) installs Python's standard library as separate package groups and its image lacks some of
them (shared/reference/venus-runtime.md; the table is :data:`MISSING_ON_VENUS`). This builds a Python
installation in which those modules are really absent, so ``import difflib`` fails with
``ModuleNotFoundError: No module named 'difflib'`` exactly as on the device, in the program and in anything
it loads (bleak, dbus-fast...), however it gets imported (lazily, by importlib, by a child process).

How: a folder laid out like an installed Python,

    <root>/bin/python3                      a copy of the real interpreter's executable
    <root>/lib/pythonX.Y/...                a symlink per file of the real standard library, less the missing
    <root>/lib/pythonX.Y/lib-dynload/...    the same for the compiled modules
    <root>/lib/pythonX.Y/site-packages/     the firmware's packages only (the caller puts dbus-fast there)

The executable is copied, not linked: Python finds its standard library by looking for
``lib/pythonX.Y/os.py`` next to the folder its executable really lives in, so a copy in ``<root>/bin``
makes ``<root>`` its prefix with no environment variable at all (PYTHONHOME would be dropped by ``python3
-I`` and leak into every child). The interpreter links libpython through an absolute run path, so the copy
finds it. Nothing is hooked into the import system: a module that is not on disk cannot be imported.
Python 3.12 is preferred when this machine has it (the Venus OS version); otherwise the running one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

# The modules of shared/reference/venus-runtime.md: not in the Venus OS v3.60+ image.
MISSING_ON_VENUS = frozenset(
    {
        "_curses", "_curses_panel", "_dbm", "_gdbm", "_lsprof", "_sqlite3", "_statistics", "_tkinter",
        "_zoneinfo", "bdb", "cProfile", "cgitb", "compileall", "curses", "dbm", "difflib", "doctest",
        "ensurepip", "filecmp", "idlelib", "lib2to3", "mailbox", "pdb", "plistlib", "profile", "pstats",
        "pty", "py_compile", "resource", "sqlite3", "statistics", "syslog", "test", "tkinter", "tomllib",
        "tty", "turtle", "unittest", "venv", "xmlrpc", "zipapp", "zoneinfo",
    }
)  # fmt: skip
# Every */test and */tests package is left out too (python3-tests); so is site-packages (replaced).
MISSING_PACKAGES = frozenset({"test", "tests", "site-packages"})
PREFERRED_VERSION = "3.12"

_DESCRIBE = (
    "import json, os, sys, sysconfig;"
    "print(json.dumps({'executable': os.path.realpath(sys.executable),"
    "'stdlib': sysconfig.get_path('stdlib'),"
    "'dynload': sysconfig.get_path('platstdlib') + '/lib-dynload',"
    "'version': '%d.%d' % sys.version_info[:2], 'builtin': sorted(sys.builtin_module_names)}))"
)


@dataclass(frozen=True)
class VenusPython:
    root: Path
    version: str  # "3.12"

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python3"

    @property
    def site_packages(self) -> Path:
        return self.root / "lib" / f"python{self.version}" / "site-packages"

    def env(self, **extra: str) -> dict[str, str]:
        """This machine's environment with this Python first on PATH as ``python3``, as runit's would be."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
        env["PATH"] = f"{self.python.parent}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
        env["PYTHONNOUSERSITE"] = "1"  # the device has no per-user packages
        env.update(extra)
        return env


def base_interpreter() -> str:
    """Python 3.12 if this machine has one (as Venus OS does), else the interpreter running the tests."""
    candidates = [os.environ.get("BTBATTERY_VENUS_PYTHON", ""), shutil.which(f"python{PREFERRED_VERSION}")]
    candidates.append(str(Path.home() / f".pyenv/versions/{PREFERRED_VERSION}.1/bin/python3"))
    for candidate in filter(None, candidates):
        probe = subprocess.run([candidate, "-c", "import sys"], capture_output=True, check=False)
        if probe.returncode == 0:
            return candidate
    return sys.executable


def _module_name(file_name: str) -> str:
    """``_statistics.cpython-312-x86_64-linux-gnu.so`` and ``statistics.py`` -> ``statistics``-like names."""
    return file_name.split(".", 1)[0]


def _mirror(source: Path, target: Path, top: bool) -> None:
    """Symlink every file of ``source`` into ``target``, recreating folders, less the missing modules
    (``top``: a folder of top-level modules, the standard library's own or lib-dynload)."""
    target.mkdir(parents=True, exist_ok=True)
    for entry in os.scandir(source):
        name = entry.name
        if (top and _module_name(name) in MISSING_ON_VENUS) or name in MISSING_PACKAGES:
            continue
        if entry.is_dir(follow_symlinks=False) and name != "__pycache__":
            _mirror(Path(entry.path), target / name, top=name == "lib-dynload")
        else:  # files, and __pycache__ whole: compiled caches of missing sources are never used
            (target / name).symlink_to(entry.path)


def build_venus_python(root: Path, base: str | None = None) -> VenusPython:
    """Lay out the Venus-like Python in ``root`` (see the module's text) and check it stands alone."""
    described = subprocess.run(
        [base or base_interpreter(), "-c", _DESCRIBE], capture_output=True, text=True, check=True
    )
    facts = json.loads(described.stdout)
    builtin = MISSING_ON_VENUS & set(facts["builtin"])
    assert not builtin, f"compiled into this interpreter, cannot be removed: {sorted(builtin)}"
    venus = VenusPython(root, facts["version"])
    stdlib = root / "lib" / f"python{venus.version}"
    _mirror(Path(facts["stdlib"]), stdlib, top=True)
    if not (stdlib / "lib-dynload").exists():  # a layout with the compiled modules elsewhere
        _mirror(Path(facts["dynload"]), stdlib / "lib-dynload", top=True)
    venus.site_packages.mkdir()
    venus.python.parent.mkdir(parents=True)
    shutil.copy2(facts["executable"], venus.python)
    (venus.python.parent / "python").symlink_to("python3")
    where = subprocess.run(
        [str(venus.python), "-c", "import sys; print(sys.prefix)"],
        env=venus.env(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(where.stdout.strip()) == root, f"the copied interpreter did not settle in {root}: {where}"
    return venus
