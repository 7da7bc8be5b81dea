"""btbattery.vendored: which shipped folders go on sys.path, and where."""

from __future__ import annotations

from pathlib import Path

import pytest

from btbattery.vendored import (
    dbus_fast_needed_by_bleak,
    installed_dbus_fast,
    use_shipped_packages,
    version_tuple,
)


def dist_info(folder: Path, name: str, version: str, *requires: str) -> None:
    """A minimal installed-distribution record, as pip writes it."""
    info = folder / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    lines += [f"Requires-Dist: {requirement}" for requirement in requires]
    (info / "METADATA").write_text("\n".join(lines) + "\n")


@pytest.fixture
def release(tmp_path: Path) -> Path:
    """A program folder laid out like the release archive: ext/ with bleak, ext-dbus-fast/."""
    app = tmp_path / "dbus-btbattery"
    dist_info(
        app / "ext",
        "bleak",
        "3.0.2",
        "async-timeout>=3.0.0; python_full_version < '3.11'",
        "dbus-fast>=1.83.0; sys_platform == 'linux'",
    )
    dist_info(app / "ext-dbus-fast", "dbus-fast", "2.21.1")
    return app


def firmware(tmp_path: Path, version: str | None) -> str:
    site = tmp_path / "firmware-site-packages"
    site.mkdir()
    if version is not None:
        dist_info(site, "dbus-fast", version)
    return str(site)


@pytest.mark.parametrize(
    ("text", "expected"), [("2.21.1", (2, 21, 1)), ("4.0", (4, 0)), ("5.0.0rc1", (5, 0, 0))]
)
def test_version_tuple(text: str, expected: tuple[int, ...]) -> None:
    assert version_tuple(text) == expected


def test_bleaks_own_bound_is_read_from_its_metadata(release: Path) -> None:
    assert dbus_fast_needed_by_bleak(release / "ext") == (1, 83, 0)
    assert dbus_fast_needed_by_bleak(release / "nothing-here") is None


@pytest.mark.parametrize(
    ("firmware_version", "uses_fallback"),
    # 2.21.1: Venus OS v3.60+; 1.0.0: a firmware older than the shipped bleak asks for.
    [("2.21.1", False), (None, True), ("1.0.0", True), ("5.2.0", False)],
)
def test_the_fallback_dbus_fast_only_when_the_firmwares_is_missing_or_old(
    release: Path, tmp_path: Path, firmware_version: str | None, uses_fallback: bool
) -> None:
    site = firmware(tmp_path, firmware_version)
    path = [str(release), "/usr/lib/python3.12", site]
    assert installed_dbus_fast(path) == (
        None if firmware_version is None else version_tuple(firmware_version)
    )

    added = use_shipped_packages(release, path)

    ext, fallback = str(release / "ext"), str(release / "ext-dbus-fast")
    expected = [fallback, ext] if uses_fallback else [ext]
    assert added == expected
    # Right after the program folder, ahead of the firmware's packages.
    assert path == [str(release), *expected, "/usr/lib/python3.12", site]


def test_a_checkout_is_left_alone(tmp_path: Path) -> None:
    path = [str(tmp_path), "/usr/lib/python3.12"]
    assert use_shipped_packages(tmp_path, path) == []
    assert path == [str(tmp_path), "/usr/lib/python3.12"]


def test_calling_twice_adds_nothing_more(release: Path, tmp_path: Path) -> None:
    path = [str(release), firmware(tmp_path, "2.21.1")]
    use_shipped_packages(release, path)
    once = list(path)
    use_shipped_packages(release, path)
    assert path == once
