"""installservice.sh proves the program starts before it replaces anything, on the Python of the device.

Both installs run in a scratch root with a Venus-like Python first on PATH (support.venus), as on a GX device.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from installroot import APP, snapshot
from support.release import skip_build, unpack
from support.venus import VenusPython

pytestmark = skip_build
FIRMWARE_FILE = "opt/victronenergy/version"


def device_root(tmp_path: Path, firmware: str) -> Path:
    root = tmp_path / "root"
    (root / FIRMWARE_FILE).parent.mkdir(parents=True)
    (root / FIRMWARE_FILE).write_text(f"{firmware}\n20250101000000 {firmware}\n")
    return root


def install(source: Path, root: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = dict(env, BTBATTERY_ROOT=str(root), BTBATTERY_CHECK_PYTHON="1")
    return subprocess.run(
        ["sh", str(source / "installservice.sh"), "AA:BB:CC:DD:EE:FF"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_missing_module_stops_the_install_and_keeps_the_installed_version(
    release_archive: Path, venus_python: VenusPython, tmp_path: Path
) -> None:
    root = device_root(tmp_path, "v3.60")
    good = unpack(release_archive, tmp_path / "good")
    assert install(good, root, venus_python.env()).returncode == 0
    installed = snapshot(root)
    # A new version whose imbalance module imports what the image lacks.
    broken = tmp_path / "broken" / "dbus-btbattery"
    shutil.copytree(good, broken, ignore=shutil.ignore_patterns("__pycache__"))
    module = broken / "btbattery/pipeline/imbalance.py"
    module.write_text(
        module.read_text().replace(
            "from collections import deque", "import statistics\nfrom collections import deque"
        )
    )

    result = install(broken, root, venus_python.env())

    assert result.returncode == 1
    assert "the service cannot start: No module named 'statistics'" in result.stderr
    assert f"Venus OS v3.60, Python {venus_python.version}" in result.stderr
    assert snapshot(root) == installed
    assert (root / APP / "btbattery/pipeline/imbalance.py").read_text() != module.read_text()


def test_a_checkout_without_ext_is_refused_on_the_device(venus_python: VenusPython, tmp_path: Path) -> None:
    # A git checkout carries no ext/: bleak, reactivex and transitions are not in the firmware.
    root = device_root(tmp_path, "v3.60")
    before = snapshot(root)
    result = install(Path(__file__).resolve().parents[2], root, venus_python.env())
    assert result.returncode == 1
    assert "No module named 'bleak'" in result.stderr
    assert snapshot(root) == before


def old_python() -> str | None:
    """A Python 3.8, as on Venus OS v3.30 to v3.55, if this machine has one (checked: a version manager's
    shim of that name may run another)."""
    candidates = [*map(str, sorted(Path.home().glob(".pyenv/versions/3.8*/bin/python3.8"))), "python3.8"]
    for candidate in filter(None, map(shutil.which, candidates)):
        probe = subprocess.run(
            [candidate, "-c", "import sys; sys.exit(sys.version_info[:2] != (3, 8))"], capture_output=True
        )
        if probe.returncode == 0:
            return candidate
    return None


def test_firmware_older_than_v3_60_is_refused_in_one_line(release_archive: Path, tmp_path: Path) -> None:
    python38 = old_python()
    if python38 is None:
        pytest.skip("no Python 3.8 on this machine")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(python38)
    root = device_root(tmp_path, "v3.55")
    before = snapshot(root)
    release = unpack(release_archive, tmp_path / "release")
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}

    result = install(release, root, env)

    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "installservice.sh: Venus OS v3.55 has Python 3.8: dbus-btbattery needs Venus OS v3.60 or later "
        "(Python 3.11+); nothing was changed"
    ]
    assert snapshot(root) == before
