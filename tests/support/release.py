"""The release archive as the tests build and unpack it (scripts/build-release.sh)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from btbattery import __version__

REPO = Path(__file__).resolve().parents[2]
UNSHIPPED = (".git", ".venv", "build", "dist", "__pycache__", "*.egg-info", ".*_cache", ".hypothesis")

# The build runs pip against the package index; BTBATTERY_SKIP_RELEASE_BUILD=1 skips what needs it.
skip_build = pytest.mark.skipif(
    os.environ.get("BTBATTERY_SKIP_RELEASE_BUILD") == "1", reason="BTBATTERY_SKIP_RELEASE_BUILD=1"
)


def copy_checkout(into: Path) -> Path:
    """A still copy of the working tree, so that edits made while the tests run cannot change the build."""
    copy = into / "btbattery"
    shutil.copytree(REPO, copy, symlinks=True, ignore=shutil.ignore_patterns(*UNSHIPPED))
    return copy


def build(checkout: Path, dist: Path) -> Path:
    env = dict(
        os.environ,
        DIST_DIR=str(dist),
        PYTHON=sys.executable,
        SOURCE_DATE_EPOCH="1700000000",
        RELEASE_PIP_CACHE=str(REPO / "build/release-pip-cache"),
    )
    result = subprocess.run(
        [str(checkout / "scripts/build-release.sh")], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    return dist / f"dbus-btbattery-{__version__}.tar.gz"


def unpack(archive: Path, into: Path) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="tar")
    return into / "dbus-btbattery"
