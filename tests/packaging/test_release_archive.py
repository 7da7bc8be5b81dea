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
    assert "dbus-fast" not in shipped  # compiled: the firmware's, or the pure-Python fallback below
    fallback = requirement_names((REPO / "scripts/release-dbus-fast.txt").read_text().splitlines())
    assert fallback == {"dbus-fast"}


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
    assert f"{PREFIX}ext-dbus-fast/dbus_fast/message.py" in names
    assert not any(n.startswith(f"{PREFIX}ext/dbus_fast") for n in names)
    assert not any(n.endswith((".so", ".pyc", ".c")) or "__pycache__" in n for n in names)
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


def bleak_needs_dbus_fast_major(app: Path) -> int:
    """The dbus-fast major version the shipped bleak declares it needs."""
    (metadata,) = (app / "ext").glob("bleak-*.dist-info/METADATA")
    for line in metadata.read_text().splitlines():
        if line.startswith("Requires-Dist: dbus-fast"):
            return int(line.split(">=")[1].split(".")[0])
    raise AssertionError("bleak no longer declares dbus-fast")


def run_on_system(app: Path, system: Path, tmp_path: Path, check: str) -> subprocess.CompletedProcess[str]:
    """Run ``check`` the way service/run starts the program, with ``system`` as the only site-packages."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    python3 = bin_dir / "python3"
    # -S: nothing from this machine's environment; the firmware's packages are given by PYTHONPATH.
    python3.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "$@"\n')
    python3.chmod(0o755)
    env = dict(
        os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", PYTHONPATH=str(system), app=str(app)
    )
    script = '. "$app/service/python-env.sh"; exec python3 -c "$1"'
    return subprocess.run(
        ["sh", "-c", script, "sh", check], cwd=app, env=env, capture_output=True, text=True, timeout=60
    )


IMPORT_CHECK = (
    "import bleak, reactivex, transitions, dbus_fast, bleak.backends.bluezdbus.manager;"
    "from btbattery.config import find_defaults; find_defaults();"
    "print(bleak.__file__); print(dbus_fast.__file__)"
)


@skip_build
def test_the_service_uses_the_firmwares_dbus_fast_when_new_enough(archive: Path, tmp_path: Path) -> None:
    import dbus_fast

    app = unpack(archive, tmp_path / "unpacked")
    system = tmp_path / "site-packages"
    system.mkdir()
    (system / "dbus_fast").symlink_to(Path(dbus_fast.__file__).parent)
    (metadata,) = Path(dbus_fast.__file__).parent.parent.glob("dbus_fast-*.dist-info")
    (system / metadata.name).symlink_to(metadata)
    assert int(metadata.name.split("-")[1].split(".")[0]) >= bleak_needs_dbus_fast_major(app)

    result = run_on_system(app, system, tmp_path, IMPORT_CHECK)

    assert result.returncode == 0, result.stderr
    bleak_file, dbus_fast_file = result.stdout.split()
    assert bleak_file.startswith(str(app / "ext"))
    assert dbus_fast_file.startswith(str(system))


@skip_build
def test_the_service_falls_back_to_the_shipped_dbus_fast_when_the_firmwares_is_old(
    archive: Path, tmp_path: Path
) -> None:
    app = unpack(archive, tmp_path / "unpacked")
    env_file = (app / "service/python-env.sh").read_text()
    assert f"DBUS_FAST_MIN={bleak_needs_dbus_fast_major(app)}\n" in env_file
    # What scarthgap-based firmware ships (python3-dbus-fast 2.21.1): bleak 3 cannot import its backend on it.
    system = tmp_path / "site-packages"
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(system)]
    subprocess.run([*pip, "dbus-fast==2.21.1"], check=True, capture_output=True, timeout=120)
    without_fallback = subprocess.run(
        [sys.executable, "-S", "-c", IMPORT_CHECK],
        cwd=app,
        env=dict(os.environ, PYTHONPATH=f"{app / 'ext'}{os.pathsep}{system}"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert without_fallback.returncode != 0 and "dbus_fast" in without_fallback.stderr

    result = run_on_system(app, system, tmp_path, IMPORT_CHECK)

    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[1].startswith(str(app / "ext-dbus-fast"))
