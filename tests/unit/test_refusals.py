"""Bad command lines and configs are refused through the same door a user uses (``dbus-btbattery ...``):
one line on stderr, exit code 2, nothing started (issue 16, finding 5)."""

from __future__ import annotations

from pathlib import Path

import pytest

from btbattery.cli import command_parser, main
from btbattery.config import _NOT_NUMBERS, KEYS, MAX_PACKS, load_config

MAC = "AA:BB:CC:DD:EE:01"


@pytest.fixture(autouse=True)
def no_system_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BTBATTERY_CONFIG_DIRS", str(tmp_path / "none"))


def refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code = main(list(argv))
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dbus-btbattery: "), err
    assert "Traceback" not in err
    return lines[0]


def ini(tmp_path: Path, text: str, name: str = "config.ini", encoding: str = "utf-8") -> str:
    path = tmp_path / name
    path.write_text(text, encoding=encoding)
    return str(path)


@pytest.mark.parametrize(
    ("option", "value", "said"),
    [
        ("--watchdog", "nan", "--watchdog nan is out of range"),
        ("--watchdog", "0", "--watchdog 0 is out of range"),
        ("--error-delay", "inf", "--error-delay inf is out of range"),
        ("--error-delay", "-1", "--error-delay -1 is out of range"),
        ("--device-instance", "-1", "--device-instance -1 is out of range"),
        ("--dbus-address", "garbage", "is not a D-Bus address"),
        ("--dbus-address", "unix:", "cannot be connected to"),
        ("--dbus-address", "tcp:host=localhost,port=x", "cannot be connected to"),
    ],
)
def test_options_out_of_bounds_are_refused(
    capsys: pytest.CaptureFixture[str], option: str, value: str, said: str
) -> None:
    assert said in refused(capsys, "-p", MAC, option, value)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("PUBLISH_INTERVAL = 1e-9\n", "PUBLISH_INTERVAL = '1e-9' is out of range"),
        ("POLL_INTERVAL = 1e300\n", "POLL_INTERVAL = '1e300' is out of range"),
        ("MAX_BATTERY_CHARGE_CURRENT = 1e308\n", "MAX_BATTERY_CHARGE_CURRENT = '1e308' is out of range"),
        ("MAX_PACK_DISCHARGE_CURRENT = inf\n", "MAX_PACK_DISCHARGE_CURRENT = 'inf' is not valid"),
        (
            "POLL_INTERVAL = 2\npoll_interval = 3\n",
            "POLL_INTERVAL is set twice (as POLL_INTERVAL and poll_interval)",
        ),
    ],
)
def test_config_values_out_of_bounds_are_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str, said: str
) -> None:
    assert said in refused(capsys, "-p", MAC, "--config", ini(tmp_path, text))


def test_a_directory_given_as_config_is_named_as_one(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert "is a directory, not a file" in refused(capsys, "-p", MAC, "--config", str(tmp_path))


def test_more_packs_than_tested_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    macs = [f"AA:BB:CC:DD:EE:{n:02X}" for n in range(MAX_PACKS + 1)]
    assert f"at most {MAX_PACKS}" in refused(capsys, "-p", *macs)


def test_p_given_twice_adds_the_packs_up(tmp_path: Path) -> None:
    parser, _ = command_parser("run")
    args = parser.parse_args(["-p", MAC, "-p", "AA:BB:CC:DD:EE:02", "AA:BB:CC:DD:EE:03"])
    config = load_config(None, args.packs, search_dirs=())
    assert [spec.address for spec in config.packs] == [MAC, "AA:BB:CC:DD:EE:02", "AA:BB:CC:DD:EE:03"]


def test_p_twice_with_the_same_pack_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert "listed twice" in refused(capsys, "-p", MAC, "-p", MAC)


def test_a_config_written_with_a_bom_loads(tmp_path: Path) -> None:
    """Windows editors start UTF-8 files with a BOM; it used to read as part of the first key's name."""
    config = load_config(ini(tmp_path, "POLL_INTERVAL = 2.5\n", encoding="utf-8-sig"), [MAC], search_dirs=())
    assert config.poll_interval == 2.5


def test_every_numeric_key_has_finite_bounds_in_the_one_table() -> None:
    for name, key in KEYS.items():
        if key.parse in _NOT_NUMBERS:
            continue
        assert key.bounds is not None, name
        assert abs(key.bounds.low) < 1e6 and abs(key.bounds.high) < 1e6, name
