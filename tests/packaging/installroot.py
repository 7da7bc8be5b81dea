"""Run the real install scripts against a scratch root directory and describe what they left there."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NAME = "dbus-btbattery"
APP = f"data/{NAME}"
CONF = f"data/etc/{NAME}/config.ini"
RC_LOCAL = "data/rc.local"
BLOCK_BEGIN = f"# >>> {NAME} >>> written by installservice.sh, removed by uninstallservice.sh"
BLOCK_END = f"# <<< {NAME} <<<"

# The tools a Venus OS device has as busybox applets: with only these on PATH, the scripts must still work.
BUSYBOX_TOOLS = ("sh", "awk", "cat", "chmod", "cp", "cut", "dirname", "find", "grep", "ln", "mkdir", "mv")
BUSYBOX_TOOLS += ("printf", "readlink", "rm", "rmdir", "sed", "tr")


def busybox_path(where: Path) -> str | None:
    """A PATH holding nothing but busybox applets (None when busybox is not installed)."""
    busybox = shutil.which("busybox")
    if busybox is None:
        return None
    where.mkdir(parents=True, exist_ok=True)
    for tool in BUSYBOX_TOOLS:
        link = where / tool
        if not link.exists():
            link.symlink_to(busybox)
    return str(where)


def run_script(
    script: Path,
    root: Path,
    *args: str,
    shell: Sequence[str] = ("sh",),
    path: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run one of the shell scripts with ``BTBATTERY_ROOT=root``; never raises on a non-zero exit."""
    env = dict(os.environ, BTBATTERY_ROOT=str(root))
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        [*shell, str(script), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def install(
    root: Path, *args: str, source: Path = REPO, shell: Sequence[str] = ("sh",), path: str | None = None
) -> subprocess.CompletedProcess[str]:
    return run_script(source / "installservice.sh", root, *args, shell=shell, path=path)


def uninstall(
    root: Path, *args: str, shell: Sequence[str] = ("sh",), path: str | None = None
) -> subprocess.CompletedProcess[str]:
    """The uninstaller the install put on the device (it deletes the folder it runs from)."""
    return run_script(root / APP / "uninstallservice.sh", root, *args, shell=shell, path=path)


def snapshot(root: Path) -> dict[str, str]:
    """Every path under root -> its kind, mode and content hash or link target."""
    tree: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            info = path.lstat()
            relative = str(path.relative_to(root))
            if stat.S_ISLNK(info.st_mode):
                tree[relative] = f"link -> {os.readlink(path)}"
            elif stat.S_ISDIR(info.st_mode):
                tree[relative] = f"dir {stat.S_IMODE(info.st_mode):o}"
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
                tree[relative] = f"file {stat.S_IMODE(info.st_mode):o} {digest}"
    return tree


def block_count(root: Path) -> int:
    return (root / RC_LOCAL).read_text().splitlines().count(BLOCK_BEGIN)


def config_values(root: Path, key: str) -> list[str]:
    """The values of every active ``key = value`` line in the installed config."""
    values = []
    for line in (root / CONF).read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and name.strip() == key:
            values.append(value.strip())
    return values
