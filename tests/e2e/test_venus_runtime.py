"""The release as a Venus OS v3.60+ device runs it: its Python 3.12 standard library less the groups the image
lacks, its pure-Python dbus-fast 2.21.1, nothing else (support.venus builds that Python).

The release archive is installed by its own installer into a scratch root, then the installed program is
run the way a user and runit run it: ``--help`` of every command, ``versions``, ``scan`` against the fake
BlueZ, and the service (started by the runit script) until the bank is published. An import of a module the
device lacks, anywhere on these paths, fails here with ``No module named '<module>'`` in the message.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.release import skip_build, unpack
from support.venus import MISSING_ON_VENUS, VenusPython
from venus_client import VenusClient

from btbattery.cli import COMMANDS
from btbattery.sim.stack import SimulatedStack

pytestmark = skip_build

DATA = Path(__file__).resolve().parents[1] / "data"
SERVICE = "com.victronenergy.battery.virtual_parallel"
START_TIMEOUT = 60.0  # a first start on Python without caches compiles every module; CI is shared
APP = "data/dbus-btbattery"


@dataclass(frozen=True)
class Device:
    """A scratch root with the release installed, and the Venus-like Python that runs it."""

    root: Path
    venus: VenusPython

    @property
    def app(self) -> Path:
        return self.root / APP

    def env(self, **extra: str) -> dict[str, str]:
        # BTBATTERY_CONFIG_DIRS="": never read this machine's /data or /etc config.
        return self.venus.env(BTBATTERY_CONFIG_DIRS="", **extra)

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        """The installed program as a user runs it: ``python3 /data/dbus-btbattery/dbus-btbattery.py ...``."""
        return subprocess.run(
            ["python3", str(self.app / "dbus-btbattery.py"), *args],
            env=self.env(**env),
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=120,
        )


@pytest.fixture(scope="module")
def device(
    release_archive: Path, venus_python: VenusPython, tmp_path_factory: pytest.TempPathFactory
) -> Device:
    base = tmp_path_factory.mktemp("device")
    download = unpack(release_archive, base / "download")
    root = base / "root"
    root.mkdir()
    installed = subprocess.run(
        ["sh", str(download / "installservice.sh")],
        env=venus_python.env(BTBATTERY_ROOT=str(root), BTBATTERY_CHECK_PYTHON="1"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return Device(root, venus_python)


def test_the_venus_python_lacks_exactly_the_listed_modules(device: Device) -> None:
    probe = (
        "import importlib, json, sys\n"
        "missing = {}\n"
        "for name in sys.argv[1:]:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ModuleNotFoundError as exc:\n"
        "        missing[name] = exc.name\n"
        "print(json.dumps(missing))\n"
    )
    present = ["json", "asyncio", "configparser", "logging.handlers", "ctypes", "ssl"]
    result = subprocess.run(
        ["python3", "-c", probe, *sorted(MISSING_ON_VENUS), *present],
        env=device.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {name: name for name in MISSING_ON_VENUS}


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_of_every_command(device: Device, command: str | None) -> None:
    result = device.run(*([command] if command else []), "--help")
    assert result.returncode == 0, result.stderr
    assert "usage: dbus-btbattery" in result.stdout


def test_versions_says_the_firmwares_pure_dbus_fast_is_used(device: Device) -> None:
    result = device.run("versions", "--json")
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["dbus-fast"] == {
        "version": "2.21.1",
        "from": str(device.venus.site_packages),
        "compiled": False,
    }
    assert found["bleak"] == {"version": "3.0.2", "from": "shipped in ext/"}
    assert found["python"]["version"].startswith(device.venus.version)


async def test_scan_finds_the_packs(device: Device) -> None:
    async with SimulatedStack(scenario="default", start_service=False) as stack:
        result = await asyncio.to_thread(
            device.run, "scan", "--timeout", "3", "--json", DBUS_SYSTEM_BUS_ADDRESS=stack.system_address
        )
        assert result.returncode == 0, result.stderr
        found = {item["address"]: item for item in json.loads(result.stdout)}
        assert set(stack.addresses) <= set(found)
        assert all(found[address]["jbd"] for address in stack.addresses)


@dataclass
class InstalledService(SimulatedStack):
    """The stack with the installed service, started by its runit script under the Venus-like Python."""

    device: Device | None = None

    def service_command(self) -> list[str]:
        assert self.device is not None
        return ["sh", str(self.device.app / "service/run"), "run", "-p", *self.addresses, *self.service_args]

    def service_env(self) -> dict[str, str]:
        assert self.device is not None
        return self.device.env(
            DBUS_SYSTEM_BUS_ADDRESS=self.system_address, DBUS_SESSION_BUS_ADDRESS=self.session_address
        )


async def test_the_service_publishes_the_bank(device: Device, tmp_path: Path) -> None:
    log_path = tmp_path / "service.log"
    with log_path.open("wb") as log:
        stack = InstalledService(
            scenario=str(DATA / "scenarios/e2e_steady.json"),
            service_args=["--config", str(DATA / "e2e_config.ini"), "--state-file", str(tmp_path / "s.json")],
            service_log=log,
            device=device,
        )
        async with stack:
            client = await VenusClient.connect(stack.session_address, SERVICE)
            try:
                published = asyncio.ensure_future(
                    client.wait_until(
                        lambda c: (
                            c.values.get("/Parallel/ActiveBatteries") == 3
                            and (c.values.get("/Info/MaxChargeCurrent") or 0) > 0
                        ),
                        START_TIMEOUT,
                        poll_owner=True,
                    )
                )
                assert stack.service is not None
                exited = asyncio.ensure_future(stack.service.wait())
                await asyncio.wait({published, exited}, return_when=asyncio.FIRST_COMPLETED)
                assert not exited.done(), f"the service exited:\n{log_path.read_text()}"
                exited.cancel()
                await published
                values = await client.get_items()
                assert values["/Connected"] == 1
                assert values["/Info/MaxChargeVoltage"] > 0
            finally:
                client.close()
            assert await stack.stop_service() == 0
    text = log_path.read_text()
    assert f"dbus-fast 2.21.1 (pure Python, {device.venus.site_packages})" in text, text
    assert "Traceback" not in text, text


def test_the_offline_commands_run(device: Device, tmp_path: Path) -> None:
    # record -> replay (no --plot: matplotlib is never on the device) -> decode -> diagram
    recording = tmp_path / "bank.jsonl"
    steps = [
        ("record", "--duration", "20", "--out", str(recording)),
        ("replay", "--json", "--config", str(DATA / "replay_config.ini"), str(recording)),
        ("decode", "--file", str(recording)),
        ("diagram", "--out", str(tmp_path / "diagrams")),
    ]
    for step in steps:
        result = device.run(*step)
        assert result.returncode == 0, f"{step}: {result.stderr}"
    assert recording.stat().st_size > 0
    assert any((tmp_path / "diagrams").iterdir())
