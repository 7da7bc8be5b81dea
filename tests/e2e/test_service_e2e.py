"""The real service process end to end: fake BlueZ + real bleak on one private bus, published on another,
read by an independent client the way Venus reads a battery."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from venus_client import VenusClient, fake_bluez_stats, inject_fault

from btbattery.dbus.battery import PACK_PATHS
from btbattery.sim.privatebus import PrivateBus, bus_env
from btbattery.sim.stack import SimulatedStack

DATA = Path(__file__).resolve().parents[1] / "data"
CONFIG = str(DATA / "e2e_config.ini")
SERVICE = "com.victronenergy.battery.virtual_parallel"
START_TIMEOUT = 30.0  # the budget says 10 s to first values; CI machines are slower and shared
PACK_LIMIT = 50.0  # MAX_PACK_CHARGE_CURRENT in the built-in defaults


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["BTBATTERY_CONFIG_DIRS"] = ""  # never pick up a config from this machine's /data or /etc
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    return env


@pytest.fixture(autouse=True)
def _no_machine_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BTBATTERY_CONFIG_DIRS", "")


async def _stack(scenario: str, tmp_path: Path, config: str = CONFIG) -> SimulatedStack:
    log = (tmp_path / "service.log").open("wb")
    return SimulatedStack(
        scenario=str(DATA / "scenarios" / f"{scenario}.json"),
        service_args=["--config", config, "--state-file", str(tmp_path / "state.json")],
        service_log=log,
    )


@pytest.fixture
async def steady(tmp_path: Path) -> AsyncIterator[tuple[SimulatedStack, VenusClient]]:
    async with await _stack("e2e_steady", tmp_path) as stack:
        client = await VenusClient.connect(stack.session_address, SERVICE)
        try:
            await client.wait_for_service(START_TIMEOUT)
            yield stack, client
        finally:
            client.close()


def _active(n: int):
    return lambda c: c.values.get("/Parallel/ActiveBatteries") == n


def _pack(values: dict, n: int, leaf: str):
    return values[f"/Parallel/Battery{n}/{leaf}"]


async def test_published_bank_is_the_aggregate_of_the_packs(steady) -> None:
    _, client = steady
    await client.wait_until(_active(3), START_TIMEOUT)
    v = await client.get_items()  # one consistent read of every path
    volts = [_pack(v, n, "Voltage") for n in (1, 2, 3)]
    amps = [_pack(v, n, "Current") for n in (1, 2, 3)]
    assert v["/Parallel/TotalBatteries"] == 3
    assert v["/Connected"] == 1
    assert v["/Dc/0/Voltage"] == pytest.approx(sum(volts) / 3, abs=0.011)
    assert v["/Dc/0/Current"] == pytest.approx(sum(amps), abs=0.051)
    assert v["/InstalledCapacity"] == pytest.approx(100 + 100 + 86, abs=0.5)  # from the scenario file
    socs = [_pack(v, n, "Soc") for n in (1, 2, 3)]
    assert min(socs) - 0.5 <= v["/Soc"] <= max(socs) + 0.5
    # every cell of every pack, and the extremes agree with them
    cells = {p: val for p, val in v.items() if p.startswith("/Voltages/Cell")}
    assert len(cells) == 3 * 16
    assert all(f"/Balances/Cell{n}_{c}" in v for n in (1, 2, 3) for c in range(1, 17))
    hottest = max(cells, key=cells.__getitem__)
    assert v["/System/MaxCellVoltage"] == pytest.approx(cells[hottest], abs=0.0011)
    assert v["/System/MinCellVoltage"] == pytest.approx(min(cells.values()), abs=0.0011)
    assert v["/Info/MaxChargeVoltage"] == pytest.approx(16 * 3.45, abs=0.01)
    assert 0 < v["/Info/MaxChargeCurrent"] <= 3 * PACK_LIMIT
    assert all(_pack(v, n, "LinkState") == "polling" for n in (1, 2, 3))
    # the emptiest pack is visible; SOC_LOW_WARNING = 70 in the e2e config puts the ~60 % bank in warning
    emptiest = min((1, 2, 3), key=lambda n: _pack(v, n, "Soc"))
    assert (v["/System/MinSoc"], v["/System/MinSocBatteryId"]) == (_pack(v, emptiest, "Soc"), emptiest)
    assert v["/Alarms/LowSoc"] == 1 and v["/Alarms/BmsCable"] == 0 and v["/Info/ChargeRequest"] == 0
    assert v["/Io/AllowToCharge"] == 1 and v["/Info/ChargeLimitation"]
    # the charge policy's own paths: a ~60 % bank charging is in Bulk, its NTCs plausible
    assert v["/Info/ChargeMode"].startswith("Bulk") and v["/Alarms/TemperatureSensor"] == 0


async def test_pack_drop_derates_then_recovers(steady) -> None:
    stack, client = steady
    await client.wait_until(
        lambda c: _active(3)(c) and c.values["/Info/MaxChargeCurrent"] > 2 * PACK_LIMIT, 30
    )
    since = len(client.history)
    await inject_fault(stack.system_address, 2, "drop", 8.0)
    await client.wait_until(_active(2), 15)
    # Limits shrink to what the two remaining packs may take, at once.
    await client.wait_until(lambda c: c.values["/Info/MaxChargeCurrent"] <= 2 * PACK_LIMIT, 5)
    assert client.values["/Parallel/Battery2/Connected"] == 0
    assert client.values["/Connected"] == 1
    # BMS_CABLE_ALARM = 2 s in the e2e config: a warning, not an alarm, while the other packs carry on
    # (read from everything received, not only the latest value: the warning ends when pack 2 is back)
    await client.wait_until(lambda c: c.seen("/Alarms/BmsCable", 1, since), 10)
    assert not client.seen("/Alarms/BmsCable", 2, since)
    await client.wait_until(_active(3), 40)
    await client.wait_until(lambda c: c.values["/Info/MaxChargeCurrent"] > 2 * PACK_LIMIT, 15)
    assert client.values["/Parallel/Battery2/Connected"] == 1
    assert client.values["/Alarms/BmsCable"] == 0


MEASURED = [leaf for leaf, row in PACK_PATHS.items() if row.measured]  # invalid while out of the bank


async def test_per_pack_detail_through_the_fake_bluez(steady) -> None:
    stack, client = steady
    models = {1: "SP04S034-L16S-100A", 2: "SP04S034-L16S-100A", 3: "SP04S020-L16S-86A"}  # the scenario's
    await client.wait_until(
        lambda c: _active(3)(c) and all(c.values.get(f"/Parallel/Battery{n}/Model") for n in models), 30
    )
    v = await client.get_items()
    for n, model in models.items():
        assert _pack(v, n, "Model") == model  # register 0x05, asked once after subscribing
        assert _pack(v, n, "CellCount") == 16 and _pack(v, n, "Protection") == ""
        assert _pack(v, n, "InstalledCapacity") == pytest.approx(86 if n == 3 else 100, abs=0.5)
        assert 15 < _pack(v, n, "Temperature") < 45
        cells = [v[f"/Voltages/Cell{n}_{c}"] for c in range(1, 17)]
        assert (_pack(v, n, "MinCellVoltage"), _pack(v, n, "MaxCellVoltage")) == (min(cells), max(cells))
        assert (_pack(v, n, "ChargeFet"), _pack(v, n, "DischargeFet")) == (1, 1)
        # the fake advertises pack n at -55 - 4 n dBm +-3 before it connects; connected, it is silent
        assert abs(_pack(v, n, "Rssi") - (-55 - 4 * n)) <= 3
        assert 0 <= _pack(v, n, "RssiAge") <= 30
        assert _pack(v, n, "LinkQuality") == 100 and _pack(v, n, "Reconnects") == 0
        assert 0 <= _pack(v, n, "LastUpdate") <= 1

    await inject_fault(stack.system_address, 2, "drop", 8.0)
    await client.wait_until(lambda c: c.values["/Parallel/Battery2/Connected"] == 0, 15)
    await client.wait_until(lambda c: (c.values["/Parallel/Battery2/LastUpdate"] or 0) >= 3, 10)
    v = await client.get_items()
    assert {leaf: _pack(v, 2, leaf) for leaf in MEASURED} == dict.fromkeys(MEASURED)  # invalid, not 0
    assert _pack(v, 2, "Model") == models[2] and _pack(v, 2, "Rssi") is not None  # what the link knew
    assert _pack(v, 2, "LinkQuality") < 100  # the requests the outage kept from being sent are missed
    assert _pack(v, 1, "Temperature") is not None  # the others carry on

    await client.wait_until(lambda c: c.values["/Parallel/Battery2/Connected"] == 1, 40)
    v = await client.get_items()
    assert _pack(v, 2, "Reconnects") == 1 and _pack(v, 1, "Reconnects") == 0
    assert _pack(v, 2, "LinkQuality") < 100  # the outage is still in the last minute
    assert _pack(v, 2, "Temperature") is not None and _pack(v, 2, "Model") == models[2]


async def test_sigterm_exits_zero_releases_the_name_and_every_link(steady) -> None:
    stack, client = steady
    await client.wait_until(_active(3), START_TIMEOUT)
    assert (await fake_bluez_stats(stack.system_address))["connected"]
    code = await stack.stop_service()
    assert code == 0
    assert await client.name_owner() is None
    assert not (await fake_bluez_stats(stack.system_address))["connected"]


async def test_sigterm_leaves_ccl_zero_visible_before_the_name_goes(steady) -> None:
    """The last word DVCC hears is a safe one: CCL 0, the DCL kept (the steady packs' cells, ~3.34 V, lie in
    the default BLOCK_ON_DISCONNECT band, so an island inverter is not cut by a restart), the CVL no higher
    than before. Read from ItemsChanged as received before NameOwnerChanged, the order Venus sees them in."""
    stack, client = steady
    await client.wait_until(lambda c: _active(3)(c) and c.values["/Info/MaxChargeCurrent"] > 0, START_TIMEOUT)
    before = dict(client.values)
    assert before["/Info/MaxDischargeCurrent"] > 0 and before["/Io/AllowToCharge"] == 1
    assert await stack.stop_service() == 0
    seen = client.values_when_name_went
    assert seen is not None, "the client never saw the name go"
    assert seen["/Info/MaxChargeCurrent"] == 0.0
    assert seen["/Io/AllowToCharge"] == 0
    assert seen["/Info/ChargeLimitation"] == "service stopping"
    assert 0 < seen["/Info/MaxChargeVoltage"] <= before["/Info/MaxChargeVoltage"]
    assert seen["/Info/MaxDischargeCurrent"] == pytest.approx(before["/Info/MaxDischargeCurrent"], rel=0.2)
    assert seen["/Io/AllowToDischarge"] == 1


@pytest.mark.parametrize(
    "setting",
    [
        "BLOCK_ON_DISCONNECT = True",
        "BLOCK_ON_DISCONNECT_VOLTAGE_MAX = 3.30",  # the steady packs' cells (~3.34 V) lie above the band
    ],
)
async def test_blocking_or_cells_outside_the_band_stop_with_dcl_zero_too(
    tmp_path: Path, setting: str
) -> None:
    """From the user's config.ini: the stop blocks discharge as well."""
    config = tmp_path / "config.ini"
    config.write_text(Path(CONFIG).read_text() + setting + "\n")
    stack = await _stack("e2e_steady", tmp_path, str(config))
    async with stack:
        client = await VenusClient.connect(stack.session_address, SERVICE)
        try:
            await client.wait_for_service(START_TIMEOUT)
            await client.wait_until(lambda c: (c.values["/Info/MaxDischargeCurrent"] or 0) > 0, START_TIMEOUT)
            assert await stack.stop_service() == 0
        finally:
            client.close()
    seen = client.values_when_name_went
    assert seen is not None
    assert (seen["/Info/MaxChargeCurrent"], seen["/Info/MaxDischargeCurrent"]) == (0.0, 0.0)
    assert seen["/Info/DischargeLimitation"] == "service stopping" and seen["/Io/AllowToDischarge"] == 0


@pytest.mark.parametrize(
    ("setting", "kept"),
    [
        ("", True),  # the defaults: BLOCK_ON_DISCONNECT = False, 30 min, cells ~3.34 V inside the band
        ("BLOCK_ON_DISCONNECT_TIMEOUT_MINUTES = 0.05", False),  # 3 s: the kept DCL ends before the watchdog
    ],
)
async def test_a_blind_bank_keeps_its_dcl_stops_charging_and_exits_with_the_cable_alarm(
    tmp_path: Path, setting: str, kept: bool
) -> None:
    """The adapter goes away: no pack has fresh data. Charging stops at once; the DCL is kept, so an island
    inverter keeps running, for BLOCK_ON_DISCONNECT_TIMEOUT_MINUTES; the no-data watchdog then exits 3,
    and its last word is CCL 0, the DCL the policy allows then and /Alarms/BmsCable = 2."""
    config = tmp_path / "config.ini"
    config.write_text(Path(CONFIG).read_text() + setting + "\n")
    stack = await _stack("e2e_steady", tmp_path, str(config))
    stack.service_args += ["--watchdog", "4" if kept else "10"]
    async with stack:
        client = await VenusClient.connect(stack.session_address, SERVICE)
        try:
            await client.wait_for_service(START_TIMEOUT)
            await client.wait_until(
                lambda c: _active(3)(c) and c.values["/Info/MaxChargeCurrent"] > 0, START_TIMEOUT
            )
            dcl = client.values["/Info/MaxDischargeCurrent"]
            await inject_fault(stack.system_address, 1, "adapter_loss", 60.0)
            await client.wait_until(lambda c: c.values["/Info/MaxChargeCurrent"] == 0, 10)
            assert client.values["/Info/MaxDischargeCurrent"] == pytest.approx(dcl, rel=0.2)
            if not kept:
                await client.wait_until(lambda c: c.values["/Info/MaxDischargeCurrent"] == 0, 10)
            assert stack.service is not None
            assert await asyncio.wait_for(stack.service.wait(), 30) == 3
        finally:
            client.close()
    seen = client.values_when_name_went
    assert seen is not None
    assert seen["/Info/MaxChargeCurrent"] == 0.0 and seen["/Alarms/BmsCable"] == 2
    assert seen["/Info/MaxDischargeCurrent"] == (pytest.approx(dcl, rel=0.2) if kept else 0.0)
    assert seen["/Info/MaxChargeVoltage"] == pytest.approx(16 * 3.45, abs=0.01)


async def test_soc_imbalance_raises_lowers_limits_and_clears(tmp_path: Path) -> None:
    async with await _stack("e2e_imbalance", tmp_path) as stack:
        client = await VenusClient.connect(stack.session_address, SERVICE)
        try:
            await client.wait_for_service(START_TIMEOUT)
            await client.wait_until(lambda c: c.values.get("/Parallel/SocImbalance") == 1, 20)
            assert client.values["/Parallel/SocSpread"] >= 10
            await client.wait_until(lambda c: c.values["/Info/MaxChargeVoltage"] < 16 * 3.45 - 0.5, 5)
            # pack 2 is brought level at 25 s into the scenario
            await client.wait_until(lambda c: c.values.get("/Parallel/SocImbalance") == 0, 40)
            await client.wait_until(lambda c: c.values["/Info/MaxChargeVoltage"] >= 16 * 3.45 - 0.01, 10)
            assert client.values["/Parallel/VoltageImbalance"] == 0
        finally:
            client.close()


def _run_service(*args: str, system: str | None = None) -> subprocess.CompletedProcess[str]:
    env = _env()
    if system is not None:
        env.update(bus_env(system=system))
    return subprocess.run(
        [sys.executable, "-m", "btbattery", *args], capture_output=True, text=True, env=env, timeout=60
    )


async def test_bad_mac_is_refused_before_any_connection(tmp_path: Path) -> None:
    async with SimulatedStack(
        scenario=str(DATA / "scenarios" / "e2e_steady.json"), start_service=False
    ) as stack:
        good = stack.addresses[0]
        result = await asyncio.to_thread(
            _run_service, "-p", good, "AA:BB:CC:DD:EE:GG", system=stack.system_address
        )
        assert result.returncode == 2
        assert "AA:BB:CC:DD:EE:GG" in result.stderr and "AA:BB:CC:DD:EE:FF" in result.stderr
        assert (await fake_bluez_stats(stack.system_address))["connect_calls"] == 0


DONGLE = "5C:F3:70:A1:B2:C3"


async def test_adapter_named_by_its_address_in_the_config(tmp_path: Path) -> None:
    """The USB adapter came up as hci1 this boot; BLUETOOTH_ADAPTER names it by address and every pack
    (in range of that adapter only) is reached."""
    config = tmp_path / "config.ini"
    config.write_text(Path(CONFIG).read_text() + f"BLUETOOTH_ADAPTER = {DONGLE.lower()}\n")
    async with SimulatedStack(
        scenario=str(DATA / "scenarios" / "e2e_steady.json"),
        service_args=["--config", str(config), "--state-file", str(tmp_path / "state.json")],
        bluez_args=[
            "--adapters",
            f"hci0=00:1A:7D:DA:71:13,hci1={DONGLE}",
            "--placement",
            "1=hci1,2=hci1,3=hci1",
        ],
        service_log=(tmp_path / "service.log").open("wb"),
    ) as stack:
        client = await VenusClient.connect(stack.session_address, SERVICE)
        try:
            await client.wait_for_service(START_TIMEOUT)
            await client.wait_until(_active(3), START_TIMEOUT)
        finally:
            client.close()
    assert "adapter 5C:F3:70:A1:B2:C3 is hci1" in (tmp_path / "service.log").read_text()


async def test_an_adapter_bluez_does_not_have_is_refused_naming_those_it_has() -> None:
    async with SimulatedStack(
        scenario=str(DATA / "scenarios" / "e2e_steady.json"), start_service=False
    ) as stack:
        result = await asyncio.to_thread(
            _run_service, "-p", stack.addresses[0], "--adapter", DONGLE, system=stack.system_address
        )
        assert result.returncode == 1
        assert f"wanted adapter {DONGLE}" in result.stderr and "hci0 (00:1A:7D:DA:71:13)" in result.stderr
        assert (await fake_bluez_stats(stack.system_address))["connect_calls"] == 0
    bad = _run_service("-p", stack.addresses[0], "--adapter", "usb0")
    assert bad.returncode == 2 and "'usb0'" in bad.stderr and "hci0" in bad.stderr


def test_bad_config_key_names_file_key_and_nearest(tmp_path: Path) -> None:
    bad = tmp_path / "config.ini"
    bad.write_text("[DEFAULT]\nMAX_BATTERY_CHARGE_CURENT = 100\n")
    result = _run_service("-p", "AA:BB:CC:DD:EE:FF", "--config", str(bad))
    assert result.returncode == 2
    assert str(bad) in result.stderr
    assert "MAX_BATTERY_CHARGE_CURENT" in result.stderr and "MAX_BATTERY_CHARGE_CURRENT" in result.stderr


def test_bad_per_pack_file_is_refused(tmp_path: Path) -> None:
    result = _run_service("-p", f"AA:BB:CC:DD:EE:FF:{tmp_path / 'missing.ini'}")
    assert result.returncode == 2
    assert "missing.ini" in result.stderr


def test_no_packs_anywhere_is_a_clear_error() -> None:
    result = _run_service()
    assert result.returncode == 2
    assert "BATTERY_ADDRESSES" in result.stderr


def test_no_bluetooth_adapter_exits_non_zero_with_one_message() -> None:
    with PrivateBus() as empty_system:
        result = _run_service("-p", "AA:BB:CC:DD:EE:FF", system=empty_system.address)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1 and "Bluetooth" in errors[0]


def test_a_serialbattery_config_gets_past_the_config_with_one_warning() -> None:
    """A dbus-serialbattery user's config.ini, every key at its default: the program starts (and stops only at
    the missing Bluetooth adapter), naming the keys it does not use in one warning."""
    with PrivateBus() as empty_system:
        result = _run_service(
            "-p",
            "AA:BB:CC:DD:EE:FF",
            "--config",
            str(DATA / "serialbattery_config.ini"),
            system=empty_system.address,
        )
    assert result.returncode == 1, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 1 and "MQTT_BROKER_ADDRESS" in warnings[0] and "unused" in warnings[0]
    assert "Bluetooth" in result.stderr


def test_guide_entry_point_runs_the_same_program() -> None:
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, str(root / "dbus-btbattery.py"), "-p", "not-a-mac"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
    )
    assert result.returncode == 2 and "not-a-mac" in result.stderr


async def test_watchdog_exits_for_a_restart_when_no_pack_delivers_data(tmp_path: Path) -> None:
    async with SimulatedStack(
        scenario=str(DATA / "scenarios" / "e2e_steady.json"), start_service=False
    ) as stack:
        # A pack that is not there: the link keeps scanning and no data ever arrives.
        result = await asyncio.to_thread(
            _run_service,
            "-p",
            "A4:C1:37:E2:00:99",
            "--watchdog",
            "3",
            "--config",
            CONFIG,
            "--dbus-address",
            stack.session_address,
            "--state-file",
            str(tmp_path / "state.json"),
            system=stack.system_address,
        )
    assert result.returncode == 3
    assert "watchdog" in result.stderr


async def test_losing_the_publishing_bus_exits_non_zero(steady, tmp_path: Path) -> None:
    stack, client = steady
    client.close()
    stack.session.stop()  # the bus the service publishes on goes away
    assert stack.service is not None
    code = await asyncio.wait_for(stack.service.wait(), 30)
    assert code == 1
    assert "publishing D-Bus connection lost" in (tmp_path / "service.log").read_text()


async def _service_in_start_up(stack: SimulatedStack, tmp_path: Path) -> asyncio.subprocess.Process:
    """The real service with a pack that is not there: it waits for that pack's first reading before it
    publishes, and the fake BlueZ seeing its scan tells that it is inside that wait."""
    env = _env()
    env.update(bus_env(system=stack.system_address))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "btbattery", "-p", "A4:C1:37:E2:00:99",
        "--config", CONFIG, "--dbus-address", stack.session_address,
        "--state-file", str(tmp_path / "state.json"),
        stdout=asyncio.subprocess.DEVNULL, stderr=(tmp_path / "service.log").open("wb"), env=env,
    )  # fmt: skip
    for _ in range(300):
        assert proc.returncode is None, "the service ended during start-up"
        if (await fake_bluez_stats(stack.system_address))["discovery_starts"] >= 1:
            return proc
        await asyncio.sleep(0.1)  # polling the fake's counters, not timing the service
    raise AssertionError("the service never started to look for its pack")


async def test_sigterm_during_start_up_stops_without_ever_claiming_the_name(tmp_path: Path) -> None:
    async with SimulatedStack(
        scenario=str(DATA / "scenarios" / "e2e_steady.json"), start_service=False
    ) as stack:
        proc = await _service_in_start_up(stack, tmp_path)
        proc.terminate()
        code = await asyncio.wait_for(proc.wait(), 30)
    log = (tmp_path / "service.log").read_text()
    assert code == 0
    assert "publishing com.victronenergy" not in log  # the stop was obeyed before the name was claimed


async def test_losing_the_publishing_bus_during_start_up_exits_non_zero(tmp_path: Path) -> None:
    # Seen on this machine: a service whose bus went while it waited for its packs hung in start-up for
    # half an hour, publishing nothing and deaf to SIGTERM.
    async with SimulatedStack(
        scenario=str(DATA / "scenarios" / "e2e_steady.json"), start_service=False
    ) as stack:
        proc = await _service_in_start_up(stack, tmp_path)
        stack.session.stop()
        code = await asyncio.wait_for(proc.wait(), 30)
    assert code == 1
    assert "publishing D-Bus connection lost" in (tmp_path / "service.log").read_text()
