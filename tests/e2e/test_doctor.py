"""`dbus-btbattery doctor` through the user's door: each injected problem gets its verdict and exit code."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest
from venus_client import VenusClient, fake_bluez_stats, inject_fault

from btbattery.sim.privatebus import bus_env
from btbattery.sim.stack import SimulatedStack

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
CONFIG = str(DATA / "e2e_config.ini")
SERVICE = "com.victronenergy.battery.virtual_parallel"


@pytest.fixture(autouse=True)
def _no_machine_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BTBATTERY_CONFIG_DIRS", "")


def _stack(tmp_path: Path, start_service: bool, bluez_args: list[str] | None = None) -> SimulatedStack:
    return SimulatedStack(
        scenario=str(DATA / "scenarios" / "e2e_steady.json"),
        service_args=["--config", CONFIG, "--state-file", str(tmp_path / "state.json")],
        service_log=(tmp_path / "service.log").open("wb"),
        start_service=start_service,
        bluez_args=bluez_args or [],
    )


async def _doctor(system: str, session: str, *args: str) -> tuple[int, dict]:
    env = bus_env(system=system, session=session)
    env.update(PYTHONPATH=str(ROOT), BTBATTERY_CONFIG_DIRS="")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "btbattery", "doctor", "--json", "--scan", "5", *args,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None and not err.strip(), err.decode()
    report = json.loads(out)
    assert report["exit"] == proc.returncode
    return proc.returncode, {f["check"]: f for f in report["findings"]} | {"verdict": report["verdict"]}


def _problems(found: dict) -> set[str]:
    return {name for name, f in found.items() if name != "verdict" and f["status"] == "problem"}


async def test_a_healthy_system_is_healthy_and_doctor_leaves_the_service_alone(tmp_path: Path) -> None:
    async with _stack(tmp_path, start_service=True) as stack:
        client = await VenusClient.connect(stack.session_address, SERVICE)
        try:
            await client.wait_for_service(30)
            await client.wait_until(lambda c: c.values.get("/Parallel/ActiveBatteries") == 3, 30)
            before = await fake_bluez_stats(stack.system_address)
            code, found = await _doctor(
                stack.system_address, stack.session_address, "--config", CONFIG, "-p", *stack.addresses
            )
            after = await fake_bluez_stats(stack.system_address)
        finally:
            client.close()
    assert code == 0 and found["verdict"] == "healthy", found
    service = found["service"]["details"]
    assert (service["active"], service["total"]) == (3, 3) and service["ccl"] > 0 and service["dcl"] > 0
    for n in (1, 2, 3):
        pack = found[f"pack {n}"]
        assert pack["status"] == "ok" and pack["details"]["link_state"] == "polling"
        assert "answering" in pack["summary"] and -100 < pack["details"]["rssi"] < 0  # BlueZ's last RSSI
    assert found["adapter"]["details"]["hci0"] == {"address": "00:1A:7D:DA:71:13", "powered": True}
    assert found["venus settings"]["status"] == "skipped"  # no localsettings on this bus
    versions = found["versions"]["details"]
    assert {"program", "python", "bleak", "dbus-fast", "firmware"} <= set(versions)
    assert versions["bleak"]["version"] and versions["dbus-fast"]["version"]
    # it read the service instead of touching the packs: no scan, no connection of its own
    assert (after["connect_calls"], after["discovery_starts"]) == (
        before["connect_calls"],
        before["discovery_starts"],
    )


async def test_no_adapter(tmp_path: Path) -> None:
    async with _stack(tmp_path, start_service=False, bluez_args=["--no-adapter"]) as stack:
        code, found = await _doctor(
            stack.system_address, stack.session_address, "--config", CONFIG, "-p", *stack.addresses
        )
    assert code == 1 and found["verdict"] == "problems found"
    assert found["bluez"]["status"] == "ok"
    assert found["adapter"]["status"] == "problem" and "no Bluetooth adapter" in found["adapter"]["summary"]
    assert "dongle" in found["adapter"]["next_step"]


async def test_service_absent_then_a_pack_held_then_a_pack_out_of_range(tmp_path: Path) -> None:
    async with _stack(tmp_path, start_service=False) as stack:
        args = (stack.system_address, stack.session_address, "--config", CONFIG, "-p", *stack.addresses)
        code, found = await _doctor(*args)
        assert code == 1 and _problems(found) == {"service"}
        assert "is not running" in found["service"]["summary"] and "svc -u" in found["service"]["next_step"]
        for n in (1, 2, 3):  # with no service to ask, each pack is heard and polled by the real link
            pack = found[f"pack {n}"]
            assert pack["status"] == "ok" and pack["details"]["heard"] and -100 < pack["details"]["rssi"] < 0
            assert pack["details"]["link_state"] == "polling" and "answers a poll" in pack["summary"]
        assert (await fake_bluez_stats(stack.system_address))["connected"] == []  # it let go of every pack

        await inject_fault(stack.system_address, 3, "held", 120.0)
        code, found = await _doctor(*args)
        assert code == 1 and _problems(found) == {"service", "pack 3"}
        assert found["pack 3"]["details"]["held_by_other"] is True
        assert "held by another client" in found["pack 3"]["summary"]

        await inject_fault(stack.system_address, 2, "drop", 120.0)
        code, found = await _doctor(*args)
        assert _problems(found) == {"service", "pack 2", "pack 3"}
        assert (
            "not heard in 5 s" in found["pack 2"]["summary"] and "phone app" in found["pack 2"]["next_step"]
        )


async def test_bad_config(tmp_path: Path) -> None:
    bad = tmp_path / "config.ini"
    bad.write_text("MAX_BATTERY_CHARGE_CURENT = 100\n")
    async with _stack(tmp_path, start_service=False) as stack:
        code, found = await _doctor(
            stack.system_address, stack.session_address, "--config", str(bad), "-p", *stack.addresses
        )
    assert code == 1 and found["config"]["status"] == "problem"
    assert (
        "MAX_BATTERY_CHARGE_CURRENT" in found["config"]["summary"] and str(bad) in found["config"]["summary"]
    )


async def test_nothing_reachable_means_could_not_check(tmp_path: Path) -> None:
    nowhere = f"unix:path={tmp_path / 'no-bus'}"
    code, found = await _doctor(nowhere, nowhere, "--config", CONFIG, "-p", "A4:C1:37:00:00:01")
    assert code == 2 and found["verdict"] == "could not check everything"
    assert found["config"]["status"] == "ok"
    assert found["bluez"]["status"] == "unknown" and found["service"]["status"] == "unknown"


def test_text_report_ends_with_the_verdict_and_next_steps(tmp_path: Path) -> None:
    import subprocess

    nowhere = f"unix:path={tmp_path / 'no-bus'}"
    env = dict(os.environ, PYTHONPATH=str(ROOT), BTBATTERY_CONFIG_DIRS="")
    env.update(DBUS_SYSTEM_BUS_ADDRESS=nowhere, DBUS_SESSION_BUS_ADDRESS=nowhere)
    bad = tmp_path / "config.ini"
    bad.write_text("POLL_INTERVAL = -1\n")
    result = subprocess.run(
        [sys.executable, "-m", "btbattery", "doctor", "--config", str(bad)],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert result.returncode == 1
    assert "[FAIL] config" in result.stdout and "verdict: problems found" in result.stdout
    assert "next steps:\n  - config:" in result.stdout


async def test_locked_packs_are_named_with_what_to_set(tmp_path: Path) -> None:
    """Issue 14's locks: with no service, doctor runs the real link with each pack's own PASSWORD/PASSKEY;
    with the service running, it reads the pack's refused state from it."""
    stack = SimulatedStack(
        scenario="locked",
        service_args=["--config", CONFIG, "--state-file", str(tmp_path / "state.json")],
        service_log=(tmp_path / "service.log").open("wb"),
        start_service=False,
    )
    async with stack:
        packs = stack._pack_arguments()  # MAC:/path/packN.ini for the packs whose file holds a secret
        code, found = await _doctor(
            stack.system_address, stack.session_address, "--config", CONFIG, "-p", *packs
        )
        assert code == 1 and _problems(found) == {"service", "pack 4"}
        assert "needs a password (PASSWORD = ...)" in found["pack 4"]["details"]["lock"]
        assert "Zq7Wk2" not in json.dumps(found) and "917364" not in json.dumps(found)  # never a secret
        assert all(found[f"pack {n}"]["details"]["link_state"] == "polling" for n in (1, 2, 3))

        await stack.start_service_process()
        client = await VenusClient.connect(stack.session_address, SERVICE)
        try:
            await client.wait_for_service(30)
            await client.wait_until(lambda c: c.values.get("/Parallel/Battery4/LinkState") == "refused", 60)
            code, found = await _doctor(
                stack.system_address, stack.session_address, "--config", CONFIG, "-p", *packs
            )
        finally:
            client.close()
    assert code == 1 and "pack 4" in _problems(found)
    assert (
        "link refused" in found["pack 4"]["summary"] and "PASSWORD or PASSKEY" in found["pack 4"]["next_step"]
    )
    assert found["pack 4"]["details"]["lock"].startswith("needs a password (PASSWORD = ...)")  # from /Lock
