"""The flight recorder end to end: incidents in the fake produce a recording that `replay` turns into the same
bank values the service published; `dbus-btbattery capture` asks the running service for one."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus
from venus_client import VenusClient, inject_fault

from btbattery.config import load_config
from btbattery.dbus.recorder import RECORDER_IFACE, RECORDER_PATH
from btbattery.model import Protection
from btbattery.replay import read_recording
from btbattery.sim.privatebus import PrivateBus, bus_env
from btbattery.sim.stack import SimulatedStack
from btbattery.view import ask_bus

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
SERVICE = "com.victronenergy.battery.virtual_parallel"
START = 30.0


@pytest.fixture(autouse=True)
def _no_machine_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BTBATTERY_CONFIG_DIRS", "")


def _config(tmp_path: Path, **extra: object) -> Path:
    """The e2e config plus the recorder's keys, pointing at a folder of this test."""
    settings = {"RECORDER_MINUTES": 1, "RECORDER_DIR": tmp_path / "captures", **extra}
    lines = [
        line
        for line in (DATA / "e2e_config.ini").read_text().splitlines()
        if line.split("=")[0].strip() not in settings
    ]
    lines += [f"{key} = {value}" for key, value in settings.items()]
    path = tmp_path / "config.ini"
    path.write_text("\n".join(lines) + "\n")
    return path


class Captures:
    """Follows the recorder's ``Captured`` signal: (path, reason) of every file the service writes."""

    def __init__(self, bus: MessageBus) -> None:
        self.bus = bus
        self.files: list[tuple[str, str]] = []
        self._new = asyncio.Event()
        bus.add_message_handler(self._on_message)

    @classmethod
    async def follow(cls, address: str) -> Captures:
        bus = await MessageBus(bus_address=address).connect()
        await ask_bus(bus, "AddMatch", f"type='signal',interface='{RECORDER_IFACE}',member='Captured'")
        return cls(bus)

    def _on_message(self, msg: Message) -> None:
        if msg.message_type == MessageType.SIGNAL and msg.member == "Captured":
            self.files.append((msg.body[0], msg.body[1]))
            self._new.set()

    async def next(self, timeout: float) -> tuple[str, str]:
        seen = len(self.files)

        async def wait() -> None:
            while len(self.files) == seen:
                self._new.clear()
                await self._new.wait()

        await asyncio.wait_for(wait(), timeout)
        return self.files[seen]

    async def status(self) -> dict:
        reply = await self.bus.call(
            Message(destination=SERVICE, path=RECORDER_PATH, interface=RECORDER_IFACE, member="Status")
        )
        assert reply.message_type == MessageType.METHOD_RETURN, reply.body
        return json.loads(reply.body[0])


@pytest.fixture
async def service(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple]:
    scenario, extra = request.param
    config = _config(tmp_path, **extra)
    stack = SimulatedStack(
        scenario=str(DATA / "scenarios" / f"{scenario}.json"),
        service_args=["--config", str(config), "--state-file", str(tmp_path / "state.json")],
        service_log=(tmp_path / "service.log").open("wb"),
    )
    async with stack:
        client = await VenusClient.connect(stack.session_address, SERVICE)
        captures = await Captures.follow(stack.session_address)
        try:
            await client.wait_for_service(START)
            await client.wait_until(lambda c: c.values.get("/Parallel/ActiveBatteries") == 3, START)
            yield stack, client, captures, config
        finally:
            captures.bus.disconnect()
            client.close()


async def _run(env_session: str, *argv: str) -> tuple[int, str, str]:
    env = bus_env(session=env_session)
    env["PYTHONPATH"] = str(ROOT)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "btbattery", *argv,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _published(history: list[tuple[str, object]], path: str) -> set[float]:
    return {round(float(v), 3) for p, v in history if p == path and isinstance(v, int | float)}


@pytest.mark.parametrize("service", [("e2e_steady", {})], indirect=True)
async def test_a_pack_drop_is_recorded_and_replays_to_the_same_bank_values(service, tmp_path: Path) -> None:
    stack, client, captures, config = service
    steady = client.items_changed + 10  # some seconds of published values to compare with
    await client.wait_until(lambda c: c.items_changed >= steady, START)
    await inject_fault(stack.system_address, 2, "drop", 4.0)
    await client.wait_until(lambda c: c.values.get("/Parallel/ActiveBatteries") == 2, START)
    seen = list(client.history)  # what D-Bus showed up to the drop: all of it lies inside the recording
    path, reason = await captures.next(START)
    assert "pack 2" in reason and Path(path).parent == tmp_path / "captures"
    header, _ = read_recording(path)
    assert list(header.packs) == stack.addresses and header.meta["reason"] == reason

    # replay through the user's door, publishing every 10 ms so every state the service published is sampled
    replay_config = tmp_path / "replay.ini"
    replay_config.write_text(config.read_text().replace("PUBLISH_INTERVAL = 0.5", "PUBLISH_INTERVAL = 0.01"))
    code, out, err = await _run(
        stack.session_address, "replay", path, "--json", "--config", str(replay_config)
    )
    assert code == 0, err
    ticks = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    actives = [t["active"] for t in ticks]
    assert 3 in actives and 2 in actives[actives.index(3) :]  # the drop is in the recording
    for n in (1, 2, 3):  # every pack value D-Bus showed comes out of the recording's frames
        for leaf, key in (("Voltage", "voltage"), ("Current", "current")):
            replayed = {t["packs"][n - 1][key] for t in ticks if t["packs"][n - 1][key] is not None}
            assert _published(seen, f"/Parallel/Battery{n}/{leaf}") <= {round(v, 3) for v in replayed}
    # the bank aggregates: the same values, up to states shorter than the replay's 10 ms tick
    for leaf, key in (("/Dc/0/Voltage", "voltage"), ("/Dc/0/Current", "current")):
        published = _published(seen, leaf)
        replayed = {round(t[key], 3) for t in ticks if t[key] is not None}
        assert len(published) >= 2
        assert len(published & replayed) >= 0.8 * len(published), (leaf, published - replayed)
    assert len(_published(seen, "/Dc/0/Current")) >= 5  # noisy: many distinct values, a real comparison


@pytest.mark.parametrize("service", [("e2e_protection", {})], indirect=True)
async def test_a_protection_flag_is_recorded_and_replays_with_it(service, tmp_path: Path) -> None:
    from btbattery.commands.replay import replay

    _, client, captures, config = service
    path, reason = await captures.next(START)
    assert "pack 2 protection: charge_overtemperature" in reason
    await client.wait_until(lambda c: c.values.get("/Alarms/HighChargeTemperature") == 2, START)
    states = []
    replay(path, load_config(config, search_dirs=()), states.append)
    protections = [s.snapshot.packs[1].reading.info.protection for s in states if s.snapshot.packs[1].reading]
    assert Protection.CHARGE_OVERTEMPERATURE in protections[-1]  # the BMS's own flag, from the raw frames
    assert not protections[0] & Protection.CHARGE_OVERTEMPERATURE  # and the time before it rose
    assert states[-1].snapshot.blocking_charge == 1


@pytest.mark.parametrize("service", [("e2e_steady", {"RECORDER_MAX_FILES": 2})], indirect=True)
async def test_capture_command_writes_a_file_and_keeps_the_newest(service, tmp_path: Path) -> None:
    stack, _, captures, _ = service
    paths = []
    for n in range(3):
        code, out, err = await _run(stack.session_address, "capture", "--reason", f"field test {n}")
        assert code == 0, err
        paths.append(out.strip())
        header, events = read_recording(paths[-1])
        assert header.meta["reason"] == f"field test {n}"
        assert any(e.pack == stack.addresses[2] for e in events)  # raw traffic of every pack is in it
    assert [Path(p).exists() for p in paths] == [False, True, True]  # RECORDER_MAX_FILES = 2
    status = await captures.status()
    assert status["enabled"] and status["files"] == sorted(Path(p).name for p in paths[1:])
    assert 0 < status["bytes"] <= status["max_bytes"] == 60 * 3 * 1024  # 1 min x 3 packs x 1 kB/s


async def test_capture_without_a_service_says_so() -> None:
    with PrivateBus() as session:
        code, out, err = await _run(session.address, "capture")
    assert code == 1 and out == "" and "is not running" in err and "Traceback" not in err


@pytest.mark.parametrize("service", [("e2e_steady", {"RECORDER_MINUTES": 0})], indirect=True)
async def test_capture_with_the_recorder_off_explains(service) -> None:
    stack, *_ = service
    code, _, err = await _run(stack.session_address, "capture")
    assert code == 1 and "RECORDER_MINUTES = 0" in err


def test_recorder_dir_is_made_but_not_its_parents(tmp_path: Path) -> None:
    from btbattery.recorder import FlightRecorder, write_recording

    ring = FlightRecorder(["A4:C1:37:00:00:01"], 1).snapshot()
    assert write_recording(ring, tmp_path / "captures", "x", 5).parent == tmp_path / "captures"
    with pytest.raises(FileNotFoundError):
        write_recording(ring, tmp_path / "missing" / "captures", "x", 5)


def test_recorder_keys_are_checked(tmp_path: Path) -> None:
    import subprocess

    bad = tmp_path / "bad.ini"
    bad.write_text("RECORDER_DIR = captures\n")
    result = subprocess.run(
        [sys.executable, "-m", "btbattery", "--config", str(bad), "-p", "AA:BB:CC:DD:EE:01"],
        capture_output=True, text=True, timeout=60, env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )  # fmt: skip
    assert result.returncode == 2 and "RECORDER_DIR" in result.stderr and "absolute" in result.stderr
