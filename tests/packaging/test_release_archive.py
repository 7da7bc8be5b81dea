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
from collections.abc import Iterator
from pathlib import Path

import pytest
from installroot import APP, CONF, REPO, install, snapshot, uninstall

from btbattery import __version__

PREFIX = "dbus-btbattery/"
VENDORED = ("bleak", "reactivex", "transitions", "typing_extensions", "six")


def requirement_names(lines: list[str]) -> set[str]:
    names = set()
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            name = line.split(";")[0]
            for stop in "=<>!~[ ":
                name = name.split(stop)[0]
            names.add(name.lower().replace("_", "-"))
    return names


def test_every_runtime_dependency_but_dbus_fast_is_shipped() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    needed = requirement_names(project["dependencies"]) - {"dbus-fast"}
    shipped = requirement_names((REPO / "scripts/release-requirements.txt").read_text().splitlines())
    assert needed <= shipped, f"add {sorted(needed - shipped)} to scripts/release-requirements.txt"
    assert "dbus-fast" not in shipped


skip_build = pytest.mark.skipif(
    os.environ.get("BTBATTERY_SKIP_RELEASE_BUILD") == "1", reason="BTBATTERY_SKIP_RELEASE_BUILD=1"
)


def build(dist: Path) -> Path:
    env = dict(os.environ, DIST_DIR=str(dist), PYTHON=sys.executable)
    result = subprocess.run(
        [str(REPO / "scripts/build-release.sh")], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return dist / f"dbus-btbattery-{__version__}.tar.gz"


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield build(tmp_path_factory.mktemp("dist"))


@skip_build
def test_the_archive_holds_the_program_and_pure_python_dependencies(archive: Path) -> None:
    with tarfile.open(archive) as tar:
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
        "VERSION",
    ):
        assert PREFIX + needed in names, needed
    for executable in ("installservice.sh", "uninstallservice.sh", "service/run", "service/log/run"):
        assert members[PREFIX + executable].mode & 0o111, executable
    for package in VENDORED:
        assert any(n.startswith(f"{PREFIX}ext/{package}") for n in names), package
    assert not any("dbus_fast" in n or n.endswith((".so", ".pyc")) or "__pycache__" in n for n in names)
    assert all(m.uid == 0 and m.gid == 0 for m in members.values())

    digest = (archive.parent / f"{archive.name}.sha256").read_text().split()[0]
    assert digest == hashlib.sha256(archive.read_bytes()).hexdigest()


@skip_build
def test_the_build_is_reproducible(archive: Path, tmp_path: Path) -> None:
    assert build(tmp_path).read_bytes() == archive.read_bytes()


def unpack(archive: Path, into: Path) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="tar")
    return into / "dbus-btbattery"


@skip_build
def test_installed_from_the_unpacked_archive(archive: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    unpacked = unpack(archive, tmp_path / "download")

    result = install(root, "AA:BB:CC:DD:EE:FF", source=unpacked)

    assert result.returncode == 0, result.stderr
    assert "no ext/ folder" not in result.stderr
    assert (root / APP / "ext/bleak/__init__.py").is_file()
    assert (root / APP / "VERSION").read_text().strip() == __version__
    assert "BATTERY_ADDRESSES = AA:BB:CC:DD:EE:FF" in (root / CONF).read_text()
    assert uninstall(root).returncode == 0
    assert not (root / APP).exists()


@skip_build
def test_installed_in_place_under_data(archive: Path, tmp_path: Path) -> None:
    # The device way: tar -xzf dbus-btbattery-<v>.tar.gz -C /data && /data/dbus-btbattery/installservice.sh
    root = tmp_path / "root"
    app = unpack(archive, root / "data")
    unpacked = snapshot(app)

    result = install(root, source=app)

    assert result.returncode == 0, result.stderr
    assert snapshot(app) == unpacked  # nothing copied over itself
    assert os.readlink(root / "service/dbus-btbattery") == "/data/dbus-btbattery/service"
    assert (root / CONF).is_file()


@skip_build
def test_the_shipped_dependencies_import_with_only_dbus_fast_from_the_system(
    archive: Path, tmp_path: Path
) -> None:
    app = unpack(archive, tmp_path)
    # Stand-in for the firmware's python3-dbus-fast: a folder holding that package and nothing else.
    import dbus_fast

    system = tmp_path / "system-site-packages"
    system.mkdir()
    (system / "dbus_fast").symlink_to(Path(dbus_fast.__file__).parent)
    check = (
        "import sys, bleak, reactivex, transitions;"
        "import bleak.backends.bluezdbus.manager;"
        "from btbattery.config import find_defaults; find_defaults();"
        "assert all(m.__file__.startswith(sys.argv[1]) for m in (bleak, reactivex, transitions))"
    )
    env = dict(os.environ, PYTHONPATH=f"{app / 'ext'}{os.pathsep}{system}")

    # -S: no site-packages at all, so nothing can come from this machine's environment.
    result = subprocess.run(
        [sys.executable, "-S", "-c", check, str(app / "ext")],
        cwd=app,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
