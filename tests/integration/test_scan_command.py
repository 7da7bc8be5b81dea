"""`dbus-btbattery scan` and the guide's `python3 scan.py`, as subprocesses against the fake BlueZ."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest
from linkharness import FAST_RADIO, scenario

from btbattery.commands.scan import looks_like_jbd
from btbattery.sim.bluez import FakeBluez

ROOT = Path(__file__).resolve().parents[2]


async def _run(*argv: str) -> tuple[int, str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_scan_json_lists_the_packs(system_bus: str) -> None:
    async with FakeBluez(scenario(3), timing=FAST_RADIO, scripted_faults=False) as fake:
        code, out, err = await _run(sys.executable, "-m", "btbattery", "scan", "--timeout", "1", "--json")
        assert code == 0, err
        found = {item["address"]: item for item in json.loads(out)}
        for pack in fake.packs:
            item = found[pack.address]
            assert set(item) == {"address", "name", "rssi", "jbd"}
            assert item["name"] == pack.name and item["jbd"] is True
            assert -100 < item["rssi"] < 0
        assert fake.stats.discovery_starts == 1


async def test_top_level_scan_py_prints_a_table(system_bus: str) -> None:
    async with FakeBluez(scenario(2), timing=FAST_RADIO, scripted_faults=False) as fake:
        code, out, err = await _run(sys.executable, "scan.py", "--timeout", "1")
        assert code == 0, err
        for address in fake.addresses:
            assert address in out
        assert "2 of 2 look like JBD" in out


async def test_scan_without_bluez_fails_clearly(system_bus: str) -> None:
    code, _, err = await _run(sys.executable, "-m", "btbattery", "scan", "--timeout", "0.5")
    assert code == 1
    assert "no usable Bluetooth adapter" in err
    assert "Traceback" not in err


async def test_scan_without_any_bus_fails_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path / 'nothing'}")
    code, _, err = await _run(sys.executable, "-m", "btbattery", "scan", "--timeout", "0.5")
    assert code == 1 and "no usable Bluetooth adapter" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("address", "name", "uuids", "expected"),
    [
        ("11:22:33:44:55:66", None, ["0000ff00-0000-1000-8000-00805f9b34fb"], True),
        ("11:22:33:44:55:66", None, ["0000FFF0-0000-1000-8000-00805F9B34FB"], True),
        ("11:22:33:44:55:66", "SP04S020-L4S", [], True),
        ("11:22:33:44:55:66", "xiaoxiang BMS", [], True),
        ("a4:c1:38:00:00:01", None, [], True),
        ("11:22:33:44:55:66", "Victron SmartShunt", ["0000180f-0000-1000-8000-00805f9b34fb"], False),
    ],
)
def test_looks_like_jbd(address: str, name: str | None, uuids: list[str], expected: bool) -> None:
    assert looks_like_jbd(address, name, uuids) is expected
