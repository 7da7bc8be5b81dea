"""scripts/build-release.sh: one command builds an archive that installs and carries its pure-Python deps.

The build runs pip against the package index (about 2 s here). Set BTBATTERY_SKIP_RELEASE_BUILD=1 to skip
these tests on a machine without one.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
import tomllib
from collections.abc import Sequence
from pathlib import Path

from installroot import APP, CONF, REPO, install, snapshot, uninstall
from support.release import build, skip_build, unpack

from btbattery import __version__

PREFIX = "dbus-btbattery/"
VENDORED = ("bleak", "reactivex", "transitions", "typing_extensions", "six")


def requirement_pins(lines: list[str]) -> dict[str, str]:
    """``name -> pinned version`` ("" when the line is not an exact ``==`` pin)."""
    pins = {}
    for line in lines:
        line = line.split("#", 1)[0].split(";")[0].strip()
        if line:
            name, _, version = line.partition("==")
            for stop in "=<>!~[ ":
                name = name.split(stop)[0]
            pins[name.lower().replace("_", "-")] = version.strip()
    return pins


def test_the_release_ships_the_versions_pinned_in_pyproject() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pinned = requirement_pins(project["dependencies"])
    shipped = requirement_pins((REPO / "scripts/release-requirements.txt").read_text().splitlines())
    fallback = requirement_pins((REPO / "scripts/release-dbus-fast.txt").read_text().splitlines())
    assert all(pinned.values()) and all(shipped.values()), "pin every dependency with =="
    assert "dbus-fast" not in shipped  # compiled: the firmware's, or the pure-Python fallback below
    assert fallback == {"dbus-fast": pinned["dbus-fast"]} == {"dbus-fast": "2.21.1"}  # Venus OS v3.60+
    for name, version in pinned.items():
        if name != "dbus-fast":
            assert shipped.get(name) == version, f"scripts/release-requirements.txt: {name}=={version}"


@skip_build
def test_the_archive_holds_the_program_and_pure_python_dependencies(release_archive: Path) -> None:
    with tarfile.open(release_archive) as tar:
        members = {m.name: m for m in tar.getmembers()}
    names = set(members)

    assert all(name == PREFIX.rstrip("/") or name.startswith(PREFIX) for name in names)
    for needed in (
        "btbattery/__init__.py",
        "dbus-btbattery.py",
        "configs/default_config.ini",
        "parallel_lfp_config.ini",
        "service/run",
        "service/log/run",
        "installservice.sh",
        "uninstallservice.sh",
        "gui-v2/dbus-btbattery.json",
        "VERSION",
    ):
        assert PREFIX + needed in names, needed
    for executable in ("installservice.sh", "uninstallservice.sh", "service/run", "service/log/run"):
        assert members[PREFIX + executable].mode & 0o111, executable
    for package in VENDORED:
        assert any(n.startswith(f"{PREFIX}ext/{package}") for n in names), package
    assert f"{PREFIX}ext-dbus-fast/dbus_fast/message.py" in names
    assert not any(n.startswith(f"{PREFIX}ext/dbus_fast") for n in names)
    assert not any(n.endswith((".so", ".pyc", ".c")) or "__pycache__" in n for n in names)
    assert all(m.uid == 0 and m.gid == 0 for m in members.values())

    digest = (release_archive.parent / f"{release_archive.name}.sha256").read_text().split()[0]
    assert digest == hashlib.sha256(release_archive.read_bytes()).hexdigest()


@skip_build
def test_the_build_is_reproducible(release_checkout: Path, release_archive: Path, tmp_path: Path) -> None:
    assert build(release_checkout, tmp_path).read_bytes() == release_archive.read_bytes()


@skip_build
def test_installed_from_the_unpacked_archive(release_archive: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    unpacked = unpack(release_archive, tmp_path / "download")

    result = install(root, "AA:BB:CC:DD:EE:FF", source=unpacked)

    assert result.returncode == 0, result.stderr
    assert "no ext/ folder" not in result.stderr
    assert (root / APP / "ext/bleak/__init__.py").is_file()
    assert (root / APP / "VERSION").read_text().strip() == __version__
    plugin = root / "data/apps/available/dbus-btbattery/gui-v2/dbus-btbattery.json"
    assert plugin.read_bytes() == (REPO / "gui-v2/dbus-btbattery.json").read_bytes()
    assert "BATTERY_ADDRESSES = AA:BB:CC:DD:EE:FF" in (root / CONF).read_text()
    assert uninstall(root).returncode == 0
    assert not (root / APP).exists()


@skip_build
def test_installed_in_place_under_data(release_archive: Path, tmp_path: Path) -> None:
    # The device way: tar -xzf dbus-btbattery-<v>.tar.gz -C /data && /data/dbus-btbattery/installservice.sh
    root = tmp_path / "root"
    app = unpack(release_archive, root / "data")
    unpacked = snapshot(app)

    result = install(root, source=app)

    assert result.returncode == 0, result.stderr
    assert snapshot(app) == unpacked  # nothing copied over itself
    assert os.readlink(root / "service/dbus-btbattery") == "/data/dbus-btbattery/service"
    assert (root / CONF).is_file()


def python_with_only(
    site: Path, code: str, *args: str, cwd: Path, extra: Sequence[Path] = ()
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a Python whose only packages are ``site`` (standing in for the firmware's) and
    ``extra``: -S drops this machine's site-packages."""
    return subprocess.run(
        [sys.executable, "-S", "-c", code, *args],
        cwd=cwd,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join(map(str, [*extra, site]))),
        capture_output=True,
        text=True,
        timeout=60,
    )


# Load the real entry point without running main (its top level sets up the path), then import what the
# service needs.
ENTRY_CHECK = (
    "import runpy, sys; runpy.run_path(sys.argv[1], run_name='probe');"
    "import bleak, reactivex, transitions, dbus_fast, bleak.backends.bluezdbus.manager;"
    "from btbattery.config import find_defaults; find_defaults();"
    "print(bleak.__file__); print(dbus_fast.__file__)"
)


def firmware_site(tmp_path: Path, dbus_fast_from: Path | None) -> Path:
    """A stand-in for the firmware's site-packages, with the dbus-fast found in ``dbus_fast_from`` if any."""
    site = tmp_path / "site-packages"
    site.mkdir()
    for item in dbus_fast_from.glob("dbus_fast*") if dbus_fast_from else ():
        (site / item.name).symlink_to(item)
    return site


@skip_build
def test_the_program_uses_the_firmwares_dbus_fast(release_archive: Path, tmp_path: Path) -> None:
    app = unpack(release_archive, tmp_path / "unpacked")
    # Venus OS v3.60+ ships python3-dbus-fast 2.21.1 built as pure Python: the very build in ext-dbus-fast/.
    firmware = firmware_site(tmp_path, app / "ext-dbus-fast")

    result = python_with_only(firmware, ENTRY_CHECK, str(app / "dbus-btbattery.py"), cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    bleak_file, dbus_fast_file = result.stdout.split()
    assert bleak_file.startswith(str(app / "ext"))
    assert dbus_fast_file.startswith(str(firmware))


@skip_build
def test_the_program_falls_back_to_the_shipped_dbus_fast_on_a_firmware_without_one(
    release_archive: Path, tmp_path: Path
) -> None:
    app = unpack(release_archive, tmp_path / "unpacked")
    firmware = firmware_site(tmp_path, None)

    result = python_with_only(firmware, ENTRY_CHECK, str(app / "dbus-btbattery.py"), cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[1].startswith(str(app / "ext-dbus-fast"))


@skip_build
def test_the_installer_checks_the_python_it_will_run_on(release_archive: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    app = unpack(release_archive, root / "data")
    env = dict(os.environ, BTBATTERY_ROOT=str(root), BTBATTERY_CHECK_PYTHON="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"

    result = subprocess.run(
        ["sh", str(app / "installservice.sh")], env=env, capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0, result.stderr
    assert "cannot start" not in result.stderr
    assert "  dbus-fast 2.21.1 (compiled, " in result.stdout  # the test venv's
