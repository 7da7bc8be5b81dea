"""`dbus-btbattery scan` and the guide's `python3 scan.py`, as subprocesses against the fake BlueZ."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sys
from pathlib import Path

import pytest
from linkharness import FAST_RADIO, scenario

from btbattery.commands.scan import config_line, identify, looks_like_jbd
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
            assert list(item) == [
                "address", "name", "rssi", "jbd", "evidence", "maker", "connected", "connectable", "paired"
            ]  # fmt: skip
            assert item["name"] == pack.name and item["jbd"] is True
            assert -100 < item["rssi"] < 0
            assert item["evidence"] == ["service ff00", "name JBD-*", "address block A4:C1:37"]
            assert item["connectable"] is True and item["connected"] is False and item["paired"] is False
        assert fake.stats.discovery_starts == 1


# (address, advertised name, GATT layout, service UUID advertised) -> what scan must conclude
VARIANTS = [
    ("A4:C1:37:10:00:01", "JBD-SP04S034-01", "ff00", True, True),
    ("11:22:33:44:55:02", "SP04S020-L4S", "ff00", False, True),  # the model name alone
    ("11:22:33:44:55:03", "xiaoxiang BMS", "ff00", False, True),  # the old modules' default name
    ("A4:C1:38:BE:6D:04", "RV BMS", "ff00", True, True),  # renamed by its owner: the service tells
    ("22:33:44:55:66:05", "My Pack", "fff0", True, True),  # the fff0 ("DH04") layout
    ("70:3E:97:AA:BB:06", "DP04S007L4S100A", "ff00", False, True),
    ("D1:1A:04:01:59:07", "DL-D11A04015907", "ff00", False, False),  # a Daly BMS
    ("A4:C1:38:00:00:08", "LYWSD03MMC", "ff00", False, False),  # a thermometer in a Telink block
]


def _variant_fake() -> FakeBluez:
    base = scenario(len(VARIANTS))
    packs = [
        dataclasses.replace(params, address=address, name=name)
        for params, (address, name, *_rest) in zip(base.packs, VARIANTS, strict=True)
    ]
    return FakeBluez(
        dataclasses.replace(base, packs=packs),
        timing=FAST_RADIO,
        scripted_faults=False,
        variants={n: v[2] for n, v in enumerate(VARIANTS, start=1)},
        hidden_services={n for n, v in enumerate(VARIANTS, start=1) if not v[3]},
    )


async def test_scan_tells_every_naming_variant_apart(system_bus: str) -> None:
    async with _variant_fake():
        code, out, err = await _run(sys.executable, "-m", "btbattery", "scan", "--timeout", "1.5", "--json")
        assert code == 0, err
        found = {item["address"]: item for item in json.loads(out)}
        for address, name, layout, advertised, jbd in VARIANTS:
            item = found[address]
            assert item["name"] == name
            assert item["jbd"] is jbd, item
            assert (f"service {layout}" in item["evidence"]) is advertised
        assert found["D1:1A:04:01:59:07"]["maker"] == "Daly BMS (not JBD)"
        assert found["A4:C1:38:00:00:08"]["evidence"] == ["address block A4:C1:38"]  # a hint, not a yes
        # the table ends with the line to copy into the config: exactly the JBD units
        code, out, err = await _run(sys.executable, "-m", "btbattery", "scan", "--timeout", "1.5")
        assert code == 0, err
        wanted = [v[0] for v in VARIANTS if v[4]]
        line = out.strip().splitlines()[-1]
        assert line.startswith("put these in the config: BATTERY_ADDRESSES = ")
        assert sorted(line.split("=", 1)[1].split("(")[0].split()) == sorted(wanted)


async def test_scan_lists_a_pack_held_by_another_program_as_connected(system_bus: str) -> None:
    async with FakeBluez(scenario(2), timing=FAST_RADIO, scripted_faults=False) as fake:
        fake.inject(2, "held", 60)
        await fake.wait_until(lambda f: f.connected() == [2], 5)
        code, out, err = await _run(sys.executable, "-m", "btbattery", "scan", "--timeout", "1", "--json")
        assert code == 0, err
        found = {item["address"]: item for item in json.loads(out)}
        held, free = found[fake.packs[1].address], found[fake.packs[0].address]
        assert held["connected"] is True and held["connectable"] is False and held["rssi"] is None
        assert held["jbd"] is True  # known from BlueZ's device list although it does not advertise
        assert free["connected"] is False and free["connectable"] is True


async def test_scan_shows_which_units_are_paired(system_bus: str) -> None:
    async with FakeBluez(scenario(3), timing=FAST_RADIO, scripted_faults=False) as fake:
        fake.packs[1].paired = True  # as after a pairing: BlueZ keeps the bond in its storage
        code, out, err = await _run(sys.executable, "-m", "btbattery", "scan", "--timeout", "1", "--json")
        assert code == 0, err
        paired = {item["address"]: item["paired"] for item in json.loads(out)}
        assert paired == {p.address: p.number == 2 for p in fake.packs}
        code, out, err = await _run(sys.executable, "-m", "btbattery", "scan", "--timeout", "1")
        assert code == 0, err
        rows = {line.split()[0]: line.split()[3] for line in out.splitlines() if line[:2] == "A4"}
        assert rows == {p.address: "free,paired" if p.number == 2 else "free" for p in fake.packs}


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
        ("a4:c1:38:00:00:01", None, [], True),  # nameless advertisement from a JBD module block
        ("a4:c1:38:00:00:01", "ATC_123456", [], False),  # a named device in the same Telink block
        ("11:22:33:44:55:66", "SX100P-12V", [], True),  # Supervolt v3
        ("11:22:33:44:55:66", "DL-11223344", [], False),  # Daly
        ("11:22:33:44:55:66", "Victron SmartShunt", ["0000180f-0000-1000-8000-00805f9b34fb"], False),
    ],
)
def test_looks_like_jbd(address: str, name: str | None, uuids: list[str], expected: bool) -> None:
    assert looks_like_jbd(address, name, uuids) is expected


def test_identify_names_the_evidence_and_the_maker() -> None:
    jbd, evidence, maker = identify("10:A5:62:32:75:36", "GJ-24V100", [])
    assert jbd and evidence == ["name GJ-*", "address block 10:A5:62"] and maker == "Accurat"


def test_config_line_without_any_pack_says_what_to_check() -> None:
    assert "no JBD unit found" in config_line([]) and "phone app" in config_line([])
