"""btbattery.versions and `dbus-btbattery versions`: what runs, and where it came from."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import dbus_fast
import pytest

from btbattery.versions import describe, firmware_version, import_problems, is_compiled, origin, versions


def test_origin_names_the_release_folders(tmp_path: Path) -> None:
    app = tmp_path / "dbus-btbattery"
    assert origin(app / "ext" / "bleak", app) == "shipped in ext/"
    assert origin(app / "ext-dbus-fast" / "dbus_fast", app) == "shipped in ext-dbus-fast/"
    firmware = Path("/usr/lib/python3.12/site-packages")
    assert origin(firmware / "dbus_fast", app) == str(firmware)


def test_compiled_means_extension_modules_beside_the_sources(tmp_path: Path) -> None:
    package = tmp_path / "dbus_fast"
    (package / "_private").mkdir(parents=True)
    (package / "_private" / "marshaller.py").write_text("")
    assert not is_compiled(package)
    (package / "_private" / f"marshaller{EXTENSION_SUFFIXES[0]}").write_bytes(b"")
    assert is_compiled(package)


@pytest.mark.parametrize(
    ("text", "expected"), [("v3.60\n20250520120000 v3.60\n", "v3.60"), ("", None), ("\n", None)]
)
def test_the_firmware_version_is_the_first_line(tmp_path: Path, text: str, expected: str | None) -> None:
    version_file = tmp_path / "version"
    version_file.write_text(text)
    assert firmware_version(version_file) == expected
    assert firmware_version(tmp_path / "absent") is None


def test_this_environment(tmp_path: Path) -> None:
    found = versions(version_file=tmp_path / "absent")
    assert set(found) == {"program", "python", "bleak", "dbus-fast", "reactivex", "transitions", "firmware"}
    assert found["dbus-fast"]["version"] == metadata.version("dbus-fast")
    assert found["dbus-fast"]["from"] == str(Path(dbus_fast.__file__).parent.parent)
    assert describe("firmware", found["firmware"]) == "firmware: not Venus OS (no /opt/victronenergy/version)"


def test_a_missing_package_is_named() -> None:
    line = describe("bleak", {"version": None, "error": "ModuleNotFoundError: No module named 'bleak'"})
    assert line == "bleak missing (ModuleNotFoundError: No module named 'bleak')"
    assert describe("dbus-fast", {"version": "2.21.1", "from": "/x", "compiled": False}) == (
        "dbus-fast 2.21.1 (pure Python, /x)"
    )


def test_the_command_prints_json_and_exits_zero() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "btbattery", "versions", "--json"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["bleak"]["version"] == "3.0.2"  # pyproject's pin


def test_import_problems_name_each_missing_module_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import btbattery

    package = tmp_path / "btbattery"
    package.mkdir()
    (package / "one.py").write_text("import a_module_venus_lacks\n")
    (package / "two.py").write_text("from btbattery import one\n")
    (package / "three.py").write_text("raise RuntimeError('broken')\n")
    monkeypatch.setattr(btbattery, "__path__", [str(package)])
    monkeypatch.syspath_prepend(str(tmp_path))

    problems = import_problems(skip=())

    assert problems == [
        "No module named 'a_module_venus_lacks' (while importing btbattery.one)",
        "btbattery.three: RuntimeError: broken",
    ]
