"""Shared fixtures: private dbus-daemons standing in for the system bus (BlueZ) and the session bus."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support.dbusdaemon import PrivateBus


@pytest.fixture
def system_bus(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A private bus standing in for the system bus (where bleak looks for BlueZ)."""
    with PrivateBus() as bus:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", bus.address)
        yield bus.address


@pytest.fixture
def session_bus(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A private bus standing in for the session bus (where the service publishes in tests)."""
    with PrivateBus() as bus:
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", bus.address)
        yield bus.address


@pytest.fixture(scope="session")
def release_checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A still copy of the working tree to build the release from (support.release)."""
    from support.release import copy_checkout

    return copy_checkout(tmp_path_factory.mktemp("checkout"))


@pytest.fixture(scope="session")
def release_archive(release_checkout: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The release archive, built once per test run by scripts/build-release.sh."""
    from support.release import build

    return build(release_checkout, tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="session")
def venus_python(release_archive: Path, tmp_path_factory: pytest.TempPathFactory):
    """A Python like Venus OS v3.60+'s (support.venus), with the firmware's python3-dbus-fast 2.21.1: the
    pure-Python build the release carries in ext-dbus-fast/."""
    from support.release import unpack
    from support.venus import build_venus_python

    base = tmp_path_factory.mktemp("venus")
    venus = build_venus_python(base / "python")
    for item in (unpack(release_archive, base / "release") / "ext-dbus-fast").glob("dbus_fast*"):
        (venus.site_packages / item.name).symlink_to(item)
    return venus
