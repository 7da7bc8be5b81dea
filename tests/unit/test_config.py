"""Config: defaults, search order, per-pack files, and a clear error for every kind of bad input."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from btbattery.compat import SERIALBATTERY_KEYS
from btbattery.config import (
    KEYS,
    ConfigError,
    default_config,
    find_defaults,
    load_config,
    parse_pack_argument,
)

REPO = Path(__file__).resolve().parents[2]
MAC1, MAC2 = "A4:C1:37:00:00:01", "A4:C1:37:00:00:02"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def load_text(tmp_path: Path, text: str, **kwargs) -> object:
    return load_config(write(tmp_path / "config.ini", text), search_dirs=(), **kwargs)


# ---- defaults and shipped files ----


def test_every_key_has_a_default_with_a_comment_above_it() -> None:
    lines = find_defaults().read_text().splitlines()
    seen = {}
    for number, line in enumerate(lines):
        match = re.match(r"^([A-Z_]+)\s*=", line)
        if match:
            seen[match.group(1)] = number
    assert set(seen) == set(KEYS)
    for key, number in seen.items():
        above = lines[number - 1]
        assert above.startswith("#") or re.match(r"^[A-Z_]+\s*=", above), f"{key} has no comment"


def test_defaults_follow_the_guide() -> None:
    config = default_config()
    assert config.soc_imbalance_detection_enable is True
    assert config.soc_imbalance_threshold == 10
    assert config.sources == (str(find_defaults()),)
    assert config.packs == ()


def test_parallel_lfp_config_has_the_guide_keys_and_loads() -> None:
    path = REPO / "configs" / "parallel_lfp_config.ini"
    text = path.read_text()
    for key in (
        "MAX_BATTERY_CHARGE_CURRENT",
        "MAX_BATTERY_DISCHARGE_CURRENT",
        "CELL_VOLTAGES_WHILE_CHARGING",
        "MAX_CHARGE_CURRENT_CV_FRACTION",
        "SOC_IMBALANCE_DETECTION_ENABLE",
        "SOC_IMBALANCE_THRESHOLD",
    ):
        assert re.search(rf"^{key}\s*=", text, re.M), key
    config = load_config(path, search_dirs=())
    assert config.max_battery_charge_current == 150.0
    assert config.sources[-1] == str(path)


# ---- search order ----


def test_search_order_config_then_data_then_etc(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data, etc = tmp_path / "data", tmp_path / "etc"
    write(etc / "config.ini", "MAX_CELL_VOLTAGE = 3.40\n")
    assert load_config(search_dirs=(data, etc)).max_cell_voltage == 3.40
    write(data / "config.ini", "MAX_CELL_VOLTAGE = 3.42\n")
    with caplog.at_level(logging.INFO, logger="btbattery.config"):
        config = load_config(search_dirs=(data, etc))
    assert config.max_cell_voltage == 3.42
    assert str(data / "config.ini") in caplog.text  # the log names the file used
    given = write(tmp_path / "mine.ini", "MAX_CELL_VOLTAGE = 3.38\n")
    assert load_config(given, search_dirs=(data, etc)).max_cell_voltage == 3.38


def test_environment_replaces_the_system_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "x" / "config.ini", "SOC_IMBALANCE_THRESHOLD = 15\n")
    monkeypatch.setenv("BTBATTERY_CONFIG_DIRS", str(tmp_path / "x"))
    assert load_config().soc_imbalance_threshold == 15


def test_no_user_file_means_defaults(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="btbattery.config"):
        config = load_config(search_dirs=(tmp_path,))
    assert config == default_config()
    assert "built-in defaults only" in caplog.text


def test_default_section_and_bare_keys_both_work(tmp_path: Path) -> None:
    assert (
        load_text(
            tmp_path, "[DEFAULT]\nSOC_IMBALANCE_DETECTION_ENABLE = False\n"
        ).soc_imbalance_detection_enable
        is False
    )
    assert (
        load_text(tmp_path, "# hi\nsoc_imbalance_detection_enable = no\n").soc_imbalance_detection_enable
        is False
    )


# ---- packs ----


def test_parse_pack_argument() -> None:
    assert parse_pack_argument("aa:bb:cc:dd:ee:ff") == ("AA:BB:CC:DD:EE:FF", None)
    assert parse_pack_argument("AA:BB:CC:DD:EE:FF:/p/c.ini") == ("AA:BB:CC:DD:EE:FF", "/p/c.ini")


@pytest.mark.parametrize(
    "bad",
    ["AA:BB:CC:DD:EE", "AA:BB:CC:DD:EE:GG", "AABBCCDDEEFF", "AA:BB:CC:DD:EE:FF:", "AA:BB:CC:DD:EE:FF/x"],
)
def test_bad_pack_argument_is_refused_clearly(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"command line: .* is not a pack: expected .*AA:BB:CC:DD:EE:FF"):
        parse_pack_argument(bad)


def test_packs_from_command_line_with_pack_file(tmp_path: Path) -> None:
    pack_file = write(tmp_path / "p2.ini", "MAX_BATTERY_CHARGE_CURRENT = 20\n")  # one-battery style key
    config = load_config(pack_args=[MAC1, f"{MAC2}:{pack_file}"], search_dirs=())
    assert [(p.number, p.address, p.charge_limit, p.discharge_limit) for p in config.packs] == [
        (1, MAC1, config.max_pack_charge_current, config.max_pack_discharge_current),
        (2, MAC2, 20.0, config.max_pack_discharge_current),
    ]
    assert config.sources[-1] == str(pack_file)
    assert config.max_battery_charge_current == default_config().max_battery_charge_current  # bank untouched


def test_packs_from_battery_addresses(tmp_path: Path) -> None:
    config = load_text(tmp_path, f"BATTERY_ADDRESSES = {MAC1}, {MAC2.lower()}\n")
    assert [p.address for p in config.packs] == [MAC1, MAC2]
    assert load_text(tmp_path, f"BATTERY_ADDRESSES = {MAC1}\n", pack_args=[MAC2]).packs[0].address == MAC2


def bad(tmp_path: Path, text: str, pattern: str, **kwargs) -> None:
    with pytest.raises(ConfigError, match=pattern):
        load_text(tmp_path, text, **kwargs)


def test_bad_address_in_config_names_file_and_key(tmp_path: Path) -> None:
    bad(tmp_path, "BATTERY_ADDRESSES = 12:34\n", r"config\.ini: BATTERY_ADDRESSES: .*'12:34' is not a pack")


def test_duplicate_pack_is_refused(tmp_path: Path) -> None:
    bad(tmp_path, "", r"command line: pack A4:C1:37:00:00:01 is listed twice", pack_args=[MAC1, MAC1.lower()])


def test_bluetooth_adapter_by_name_or_address_and_per_pack(tmp_path: Path) -> None:
    assert default_config().bluetooth_adapter == "hci0"
    assert load_text(tmp_path, "BLUETOOTH_ADAPTER = hci1\n").bluetooth_adapter == "hci1"
    config = load_text(tmp_path, "BLUETOOTH_ADAPTER = 00:1a:7d:da:71:13\n")
    assert config.bluetooth_adapter == "00:1A:7D:DA:71:13"
    pack_file = write(tmp_path / "p2.ini", "BLUETOOTH_ADAPTER = 5c:f3:70:a1:b2:c3\n")
    config = load_config(pack_args=[MAC1, f"{MAC2}:{pack_file}"], search_dirs=())
    assert [p.adapter for p in config.packs] == [None, "5C:F3:70:A1:B2:C3"]
    assert config.packs[1].charge_limit == config.max_pack_charge_current
    accepted = r"accepted: an adapter name like hci0 or its Bluetooth address"
    for text in ("hci", "usb0", "00:1A:7D:DA:71", "hci0 hci1", ""):
        bad(tmp_path, f"BLUETOOTH_ADAPTER = {text}\n", rf"config\.ini: BLUETOOTH_ADAPTER = .* {accepted}")
    write(pack_file, "BLUETOOTH_ADAPTER = wlan0\n")
    bad(
        tmp_path,
        "",
        rf"p2\.ini: BLUETOOTH_ADAPTER = 'wlan0' is not valid; {accepted}",
        pack_args=[f"{MAC2}:{pack_file}"],
    )


def test_pack_file_may_only_set_pack_limits(tmp_path: Path) -> None:
    pack_file = write(tmp_path / "p.ini", "MAX_CELL_VOLTAGE = 3.5\n")
    bad(
        tmp_path,
        "",
        r"p\.ini: MAX_CELL_VOLTAGE applies to the whole bank.*accepted here",
        pack_args=[f"{MAC1}:{pack_file}"],
    )
    write(pack_file, "MAX_PACK_CHARGE_CURENT = 3\n")
    bad(
        tmp_path,
        "",
        r"p\.ini: unknown key MAX_PACK_CHARGE_CURENT; did you mean MAX_PACK_CHARGE_CURRENT",
        pack_args=[f"{MAC1}:{pack_file}"],
    )
    write(pack_file, "MAX_PACK_CHARGE_CURRENT = -3\n")
    bad(
        tmp_path,
        "",
        r"p\.ini: MAX_PACK_CHARGE_CURRENT = '-3' is out of range; accepted: a current from 0 to 1000 A",
        pack_args=[f"{MAC1}:{pack_file}"],
    )
    write(pack_file, "MAX_PACK_CHARGE_CURRENT = 3\nMAX_BATTERY_CHARGE_CURRENT = 4\n")
    bad(
        tmp_path,
        "",
        r"p\.ini: MAX_BATTERY_CHARGE_CURRENT sets the same limit",
        pack_args=[f"{MAC1}:{pack_file}"],
    )
    bad(
        tmp_path,
        "",
        r"missing\.ini: cannot read config file",
        pack_args=[f"{MAC1}:{tmp_path / 'missing.ini'}"],
    )


# ---- every kind of bad value ----


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        (
            "MAX_CEL_VOLTAGE = 3.4\n",
            r"config\.ini: unknown key MAX_CEL_VOLTAGE; did you mean MAX_CELL_VOLTAGE\?",
        ),
        (
            "COMPLETELY_ELSE = 1\n",
            r"config\.ini: unknown key COMPLETELY_ELSE \(not a dbus-btbattery setting\)",
        ),
        (
            "MAX_CELL_VOLTAGE = high\n",
            r"MAX_CELL_VOLTAGE = 'high' is not valid; accepted: a cell voltage from 1 to 5 V",
        ),
        (
            "MAX_CELL_VOLTAGE = 34.5\n",
            r"MAX_CELL_VOLTAGE = '34\.5' is out of range; accepted: a cell voltage",
        ),
        ("MAX_CELL_VOLTAGE = nan\n", r"MAX_CELL_VOLTAGE = 'nan' is not valid"),
        ("MAX_CELL_VOLTAGE =\n", r"MAX_CELL_VOLTAGE = '' is not valid"),
        (
            "PUBLISH_INTERVAL = 0\n",
            r"PUBLISH_INTERVAL = '0' is out of range; accepted: a time from 0\.01 to 60 s",
        ),
        (
            "MAX_BATTERY_CHARGE_CURRENT = -1\n",
            r"MAX_BATTERY_CHARGE_CURRENT = '-1' is out of range; accepted: a current from 0 to 5000 A",
        ),
        (
            "SOC_IMBALANCE_DETECTION_ENABLE = maybe\n",
            r"SOC_IMBALANCE_DETECTION_ENABLE = 'maybe' is not valid; accepted: True or False",
        ),
        (
            "SOC_IMBALANCE_THRESHOLD = 120\n",
            r"SOC_IMBALANCE_THRESHOLD = '120' is out of range; accepted: a SoC difference above 0",
        ),
        (
            "SOC_IMBALANCE_THRESHOLD = 5\n",
            r"SOC_IMBALANCE_CLEAR_THRESHOLD = 7\.0 must be below SOC_IMBALANCE_THRESHOLD = 5\.0",
        ),
        (
            "IMBALANCE_CHARGE_FRACTION = 1.5\n",
            r"IMBALANCE_CHARGE_FRACTION = '1\.5' is out of range; accepted: a fraction from 0 to 1",
        ),
        (
            "MAX_CHARGE_CURRENT_CV_FRACTION = 0, 0.5, 1\n",
            r"MAX_CHARGE_CURRENT_CV_FRACTION has 3 values but CELL_VOLTAGES_WHILE_CHARGING has 4",
        ),
        (
            "MAX_CHARGE_CURRENT_CV_FRACTION = 0, 0.5, 1, 2\n",
            r"MAX_CHARGE_CURRENT_CV_FRACTION = '0, 0\.5, 1, 2' is out of range; accepted: fractions",
        ),
        (
            "MAX_CHARGE_CURRENT_CV_FRACTION = 0, , 1, 1\n",
            r"MAX_CHARGE_CURRENT_CV_FRACTION = '0, , 1, 1' is not valid",
        ),
        (
            "CELL_VOLTAGES_WHILE_CHARGING = 3.3, 3.45, 3.5, 3.55\n",
            r"CELL_VOLTAGES_WHILE_CHARGING = 3\.3, 3\.45, 3\.5, 3\.55 is not strictly descending",
        ),
        (
            "TEMPERATURES_WHILE_DISCHARGING = -20, 0, 5, 5, 15, 45, 55\n",
            r"TEMPERATURES_WHILE_DISCHARGING .* is not strictly ascending",
        ),
        ("MAX_CELL_VOLTAGE = 3.7\n", r"MAX_CELL_VOLTAGE = 3\.7 must be below CELL_OVERVOLTAGE = 3\.6 "),
        ("MIN_CHARGE_CELL_VOLTAGE = 3.5\n", r"MIN_CHARGE_CELL_VOLTAGE must not exceed MAX_CELL_VOLTAGE"),
        (
            "MAX_CELL_VOLTAGE = 3.4\nMAX_CELL_VOLTAGE = 3.5\n",
            r"config\.ini: key MAX_CELL_VOLTAGE is set twice",
        ),
        ("[battery]\nMAX_CELL_VOLTAGE = 3.4\n", r"config\.ini: unknown section \[battery\]"),
        ("just some words\n", r"config\.ini: not an ini file .*expected KEY = value lines"),
    ],
)
def test_bad_value_names_file_key_and_what_is_accepted(tmp_path: Path, text: str, pattern: str) -> None:
    bad(tmp_path, text, pattern)


def test_missing_or_unreadable_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.ini: config file given with --config does not exist"):
        load_config(tmp_path / "nope.ini", search_dirs=())
    binary = tmp_path / "bin.ini"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match=r"bin\.ini: not a text file"):
        load_config(binary, search_dirs=())


# ---- dbus-serialbattery compatibility ----

SERIALBATTERY_CONFIG = REPO / "tests" / "data" / "serialbattery_config.ini"


def test_the_serialbattery_table_is_every_key_of_its_default_config() -> None:
    keys = re.findall(r"^([A-Z_0-9]+) =", SERIALBATTERY_CONFIG.read_text(), re.M)
    assert list(SERIALBATTERY_KEYS) == keys  # one table, in the source's order, nothing missing or extra
    assert len(keys) == 121


def test_a_serialbattery_config_starts_with_one_warning_naming_what_is_unused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO):
        config = load_config(SERIALBATTERY_CONFIG, search_dirs=())
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    unused = [key for key in SERIALBATTERY_KEYS if key not in KEYS]
    assert unused and all(key in warnings[0] for key in unused)
    assert not any(f" {key}," in warnings[0] or warnings[0].endswith(key) for key in KEYS)
    # the keys implemented here keep their name and meaning
    assert config.max_battery_charge_current == 50.0 and config.max_cell_voltage == 3.45
    assert config.cell_voltages_while_charging == (3.5, 3.45, 3.425, 3.4, 3.375)
    assert (config.soc_low_warning, config.soc_low_alarm) == (20, 10)
    assert (config.block_on_disconnect, config.block_on_disconnect_timeout_minutes) == (False, 30)
    assert config.bms_cable_alarm == 60  # True: serialbattery's 60 s
    assert config.poll_interval == default_config().poll_interval  # empty: the built-in default
    # charge modes: serialbattery's names and meanings; "empty" disables as there
    assert (config.float_cell_voltage, config.switch_to_float_wait_for_sec) == (3.375, 900)
    assert (config.switch_to_bulk_soc_threshold, config.switch_to_bulk_cell_voltage_diff) == (80, 0.08)
    assert config.soc_reset_after_days == 0  # SOC_RESET_AFTER_DAYS = (empty): never


def test_a_soc_reset_voltage_at_the_bms_trip_aims_below_the_stop_rule(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """serialbattery's SOC_RESET_CELL_VOLTAGE is a JBD's trip, 3.65 V, above our CELL_OVERVOLTAGE: the config
    starts, and once a reset is in use one warning says where it aims (the charge mode keeps to that)."""
    from btbattery.pipeline.chargemode import ChargeState, voltage_target

    path = tmp_path / "config.ini"
    path.write_text("SOC_RESET_CELL_VOLTAGE = 3.65\nSOC_RESET_AFTER_DAYS = 7\n")
    with caplog.at_level(logging.WARNING):
        config = load_config(path, search_dirs=())
    assert any("aims at 3.590 V" in r.getMessage() for r in caplog.records)
    due = ChargeState(last_soc_reset=0.0)
    assert voltage_target(due, config, 16, 7 * 86400.0).cell_voltage == pytest.approx(3.59)


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        # unknown keys stay errors, with the nearest key of ours or serialbattery's
        (
            "MAX_BATTERY_CHARGE_CURENT = 1\n",
            r"unknown key MAX_BATTERY_CHARGE_CURENT; did you mean MAX_BATTERY_CHARGE_CURRENT\?",
        ),
        ("FLOAT_CELL_VOLTGE = 3.4\n", r"did you mean FLOAT_CELL_VOLTAGE\?"),
        (
            "MAX_CELL_VOLTAGE =\n",
            r"MAX_CELL_VOLTAGE = '' is not valid",
        ),  # empty is a default for POLL_INTERVAL only
        # a name that means something else here says so
        ("BATTERY_ADDRESSES = 0x01, 0x02\n", r"BATTERY_ADDRESSES: .*Modbus addresses .* in serialbattery"),
        ("BLOCK_ON_DISCONNECT_VOLTAGE_MIN = 3.4\n", r"BLOCK_ON_DISCONNECT_VOLTAGE_MIN = 3\.4 must be below"),
        ("SOC_LOW_ALARM = 30\n", r"SOC_LOW_ALARM = 30\.0 must be below SOC_LOW_WARNING"),
        ("BMS_CABLE_ALARM = -1\n", r"BMS_CABLE_ALARM = '-1' is out of range"),
    ],
)
def test_serialbattery_and_disconnect_keys_refuse_bad_input(tmp_path: Path, text: str, pattern: str) -> None:
    bad(tmp_path, text, pattern)


def test_the_defaults_say_where_a_serialbattery_name_means_something_else() -> None:
    assert "in\n# dbus-serialbattery the same name is one battery's limit" in find_defaults().read_text()


@pytest.mark.parametrize(("text", "seconds"), [("True", 60.0), ("no", 0.0), ("15", 15.0), ("0", 0.0)])
def test_bms_cable_alarm_is_serialbatterys_switch_or_seconds(
    tmp_path: Path, text: str, seconds: float
) -> None:
    assert load_text(tmp_path, f"BMS_CABLE_ALARM = {text}\n").bms_cable_alarm == seconds


def test_a_disconnect_band_outside_the_cell_limits_is_narrowed_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = load_text(
        tmp_path, "BLOCK_ON_DISCONNECT_VOLTAGE_MIN = 2.5\nBLOCK_ON_DISCONNECT_VOLTAGE_MAX = 3.6\n"
    )
    assert (config.block_on_disconnect_voltage_min, config.block_on_disconnect_voltage_max) == (
        config.min_cell_voltage,
        config.max_cell_voltage,
    )
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert (
        len(warnings) == 2
        and "BLOCK_ON_DISCONNECT_VOLTAGE_MIN = 2.5 lies outside MIN_CELL_VOLTAGE" in warnings[0]
    )


# ---- locks: PASSWORD and PASSKEY, per pack or for all, never echoed ----


def test_password_and_passkey_per_pack_override_the_global_ones(tmp_path: Path) -> None:
    own = write(tmp_path / "p1.ini", "PASSWORD = abc123\nPASSKEY = 012345\n")
    config = load_text(tmp_path, "PASSWORD = 123456\n", pack_args=[f"{MAC1}:{own}", MAC2])
    first, second = config.packs  # type: ignore[attr-defined]
    assert first.password.reveal() == "abc123" and first.passkey.reveal() == "12345"
    assert second.password.reveal() == "123456" and second.passkey is None
    # Nothing a log line or a traceback prints shows them.
    for text in (repr(config), str(config), repr(first), f"{first.password}"):
        assert "abc123" not in text and "123456" not in text and "12345" not in text


def test_no_lock_by_default() -> None:
    config = default_config()
    assert config.password is None and config.passkey is None
    assert config.pack_spec(1, MAC1).password is None


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("PASSWORD", "12345"),
        ("PASSWORD", "1234567"),
        ("PASSWORD", "abc12!"),
        ("PASSWORD", "pässw0"),
        ("PASSKEY", "1000000"),
        ("PASSKEY", "-12345"),
        ("PASSKEY", "12a456"),
        ("PASSKEY", "１２３４５６"),  # full-width digits: str.isdigit() alone would accept them
    ],
)
@pytest.mark.parametrize("where", ["config", "pack file"])
def test_bad_secret_is_named_by_file_and_key_never_by_value(
    tmp_path: Path, key: str, value: str, where: str
) -> None:
    if where == "config":
        with pytest.raises(ConfigError) as err:
            load_text(tmp_path, f"{key} = {value}\n")
        assert "config.ini: " + key in str(err.value)
    else:
        pack_file = write(tmp_path / "pack7.ini", f"{key} = {value}\n")
        with pytest.raises(ConfigError) as err:
            load_text(tmp_path, "", pack_args=[f"{MAC1}:{pack_file}"])
        assert "pack7.ini: " + key in str(err.value)
    message = str(err.value)
    assert value not in message and value.strip("-") not in message
    assert "accepted:" in message


def test_a_pack_file_names_its_own_temperature_sensors(tmp_path: Path) -> None:
    """A JBD board whose first NTC is the MOSFET's: its pack file says so; the others keep the bank-wide
    setting (every sensor a cell sensor by default)."""
    from btbattery.pipeline.sensors import sensor_roles

    pack_file = tmp_path / "p1.ini"
    pack_file.write_text("MOSFET_TEMPERATURE_SENSOR = 1\nCELL_TEMPERATURE_SENSORS = 2, 3\n")
    config_file = tmp_path / "config.ini"
    config_file.write_text(f"BATTERY_ADDRESSES = A4:C1:37:00:00:01:{pack_file} A4:C1:37:00:00:02\n")
    config = load_config(config_file, search_dirs=())
    first, second = config.packs
    assert (first.mosfet_sensor, first.cell_sensors) == (1, (2, 3))
    assert sensor_roles(first, config, 3) == ((2, 3), 1)
    assert sensor_roles(second, config, 3) == ((1, 2, 3), 0)
    bad = tmp_path / "bad.ini"
    bad.write_text("MOSFET_TEMPERATURE_SENSOR = 9\n")
    config_file.write_text(f"BATTERY_ADDRESSES = A4:C1:37:00:00:01:{bad}\n")
    with pytest.raises(ConfigError, match=r"MOSFET_TEMPERATURE_SENSOR = '9' is out of range"):
        load_config(config_file, search_dirs=())


def test_a_key_an_earlier_release_read_is_accepted_with_one_warning_naming_its_successor(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ini = tmp_path / "old.ini"
    ini.write_text("CHARGE_VOLTAGE_RISE_RATE = 0.05\nPOLL_INTERVAL = 2\n")
    with caplog.at_level(logging.WARNING):
        config = load_config(ini, search_dirs=())
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "old.ini: CHARGE_VOLTAGE_RISE_RATE is no longer used" in warnings[0]
    assert "CVL_RECOVERY_RATE_V_PER_SEC" in warnings[0]
    assert config.poll_interval == 2.0  # the rest of the file still applies
