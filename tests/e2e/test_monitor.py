"""`dbus-btbattery monitor` through the user's door: a subprocess reading the running service from D-Bus."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from venus_client import VenusClient

from btbattery.sim.privatebus import PrivateBus, bus_env
from btbattery.sim.stack import SimulatedStack

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
SERVICE = "com.victronenergy.battery.virtual_parallel"


@pytest.fixture(autouse=True)
def _no_machine_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BTBATTERY_CONFIG_DIRS", "")


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[tuple[SimulatedStack, VenusClient]]:
    stack = SimulatedStack(
        scenario=str(DATA / "scenarios" / "e2e_steady.json"),
        service_args=["--config", str(DATA / "e2e_config.ini"), "--state-file", str(tmp_path / "state.json")],
        service_log=(tmp_path / "service.log").open("wb"),
    )
    async with stack:
        client = await VenusClient.connect(stack.session_address, SERVICE)
        try:
            await client.wait_for_service(30)
            await client.wait_until(lambda c: c.values.get("/Parallel/ActiveBatteries") == 3, 30)
            yield stack, client
        finally:
            client.close()


async def _monitor(session: str, *args: str) -> tuple[int, str, str]:
    env = bus_env(session=session)
    env["PYTHONPATH"] = str(ROOT)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "btbattery", "monitor", *args,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_once_json_shows_what_the_fake_serves(running) -> None:
    stack, client = running
    code, out, err = await _monitor(stack.session_address, "--once", "--json")
    assert code == 0, err
    snap = json.loads(out)
    assert snap["service"] == SERVICE
    assert [p["address"] for p in snap["packs"]] == stack.addresses  # the fake's packs, in config order
    assert [p["number"] for p in snap["packs"]] == [1, 2, 3]
    assert all(len(p["cells"]) == 16 and p["link_state"] == "polling" for p in snap["packs"])
    bank = snap["bank"]
    assert bank["total_packs"] == 3 and bank["active_packs"] == 3
    assert bank["installed_capacity"] == pytest.approx(100 + 100 + 86, abs=0.5)  # the scenario's packs
    # the bank and the packs come from one GetItems: they agree with each other
    assert bank["voltage"] == pytest.approx(sum(p["voltage"] for p in snap["packs"]) / 3, abs=0.011)
    assert bank["current"] == pytest.approx(sum(p["current"] for p in snap["packs"]), abs=0.051)
    assert bank["current"] > 0  # the scenario charges at 90 A
    assert snap["limits"]["charge_current"] > 0 and snap["limits"]["charge_voltage"] > 50
    assert set(snap["imbalance"]) == {"voltage", "current", "soc"}
    # every path the service serves is there, with the values an independent Venus-style client reads
    independent = await client.get_items()
    assert set(snap["paths"]) == set(independent)
    for path in ("/Serial", "/ProductId", "/Parallel/Battery2/Address", "/System/NrOfCellsPerBattery"):
        assert snap["paths"][path] == independent[path]


async def test_once_text_is_the_demo_screen(running) -> None:
    stack, _ = running
    code, out, err = await _monitor(stack.session_address, "--once")
    assert code == 0, err
    assert "Active       3 of 3 packs" in out
    assert out.count(" polling ") == 3
    for address in stack.addresses:
        assert address in out


async def test_once_without_the_service_says_so_and_exits_1() -> None:
    with PrivateBus() as session:
        code, out, err = await _monitor(session.address, "--once", "--json", "--timeout", "0.5")
    assert code == 1 and out == ""
    assert f"{SERVICE} is not on the bus" in err and "Traceback" not in err


async def test_once_waits_for_a_service_that_is_starting(tmp_path: Path) -> None:
    stack = SimulatedStack(
        scenario=str(DATA / "scenarios" / "e2e_steady.json"),
        service_args=["--config", str(DATA / "e2e_config.ini"), "--state-file", str(tmp_path / "state.json")],
        service_log=(tmp_path / "service.log").open("wb"),
        start_service=False,
    )
    async with stack:
        monitor = asyncio.ensure_future(
            _monitor(stack.session_address, "--once", "--json", "--timeout", "45")
        )
        await stack.start_service_process()
        code, out, err = await monitor
    assert code == 0, err
    assert json.loads(out)["bank"]["total_packs"] == 3


def test_monitor_rejects_bad_options() -> None:
    import subprocess

    result = subprocess.run(
        [sys.executable, "-m", "btbattery", "monitor", "--refresh", "0"],
        capture_output=True, text=True, timeout=60, env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )  # fmt: skip
    assert result.returncode == 2 and "--refresh" in result.stderr
