"""The whole product on simulated hardware: private buses, the fake BlueZ, and the real service process.

Used by the demo, the end-to-end tests and the benchmarks, so all three exercise exactly the same path a Venus
device does: the real ``dbus-btbattery -p ...`` process talks real bleak to a BlueZ on its "system" bus and
publishes on its "session" bus, where an independent client reads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from btbattery.sim.privatebus import PrivateBus, bus_env

READY_TIMEOUT = 30.0


@dataclass
class SimulatedStack:
    """``async with SimulatedStack(scenario="default") as stack: stack.session_address ...``"""

    scenario: str = "default"
    packs: int | None = None  # pack count override for the scenario
    service_args: list[str] = field(default_factory=list)  # extra options for the service
    bluez_args: list[str] = field(default_factory=list)  # extra options for the fake BlueZ (adapters, ...)
    service_log: IO[bytes] | int | None = None  # where the service's output goes (None = inherit)
    start_service: bool = True
    # Where the service's flight recorder writes (a config file with RECORDER_DIR is made for it) when no
    # --config is among service_args; None keeps the built-in /data/log/... (absent off a GX: not written).
    recorder_dir: str | None = None
    system: PrivateBus = field(default_factory=PrivateBus)
    session: PrivateBus = field(default_factory=PrivateBus)
    addresses: list[str] = field(default_factory=list)
    bluez: asyncio.subprocess.Process | None = None
    service: asyncio.subprocess.Process | None = None
    pack_dir: tempfile.TemporaryDirectory[str] | None = None  # the scenario's per-pack files, the state file

    @property
    def session_address(self) -> str:
        return self.session.address

    @property
    def system_address(self) -> str:
        return self.system.address

    async def __aenter__(self) -> SimulatedStack:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        self.system.start()
        self.session.start()
        await self._start_bluez()
        if self.start_service:
            await self.start_service_process()

    async def _start_bluez(self) -> None:
        args = ["--scenario", self.scenario, *self.bluez_args]
        if self.packs is not None:
            args += ["--packs", str(self.packs)]
        self.bluez, self.addresses = await start_fake_bluez(self.system.address, *args)

    def service_command(self) -> list[str]:
        args = list(self.service_args)
        if "--state-file" not in args:  # a simulated bank keeps its name and charge mode out of /data
            if self.pack_dir is None:
                self.pack_dir = tempfile.TemporaryDirectory(prefix="btbattery-packs-")
            args += ["--state-file", str(Path(self.pack_dir.name) / "state.json")]
        if self.recorder_dir is not None and "--config" not in args:
            config = Path(self.session.folder) / "stack-config.ini"
            config.write_text(f"RECORDER_DIR = {Path(self.recorder_dir).resolve()}\n")
            args += ["--config", str(config)]
        return [sys.executable, "-m", "btbattery", "-p", *self._pack_arguments(), *args]

    def _pack_arguments(self) -> list[str]:
        """``MAC`` per pack, or ``MAC:/path/packN.ini`` when the scenario gives that pack a config file
        (its ``pack_files``: how the locked scenario hands the service a password and a passkey)."""
        from btbattery.sim.scenario import load_scenario

        files = load_scenario(self.scenario).pack_files
        if not files:
            return list(self.addresses)
        if self.pack_dir is None:
            self.pack_dir = tempfile.TemporaryDirectory(prefix="btbattery-packs-")
        out = []
        for number, address in enumerate(self.addresses, start=1):
            keys = files.get(number)
            if keys is None:
                out.append(address)
                continue
            path = Path(self.pack_dir.name) / f"pack{number}.ini"
            path.touch(mode=0o600)
            path.write_text("".join(f"{key} = {value}\n" for key, value in keys.items()), encoding="utf-8")
            out.append(f"{address}:{path}")
        return out

    def service_env(self) -> dict[str, str]:
        env = bus_env(system=self.system.address, session=self.session.address)
        env.update(_child_env())
        return env

    async def start_service_process(self) -> None:
        self.service = await asyncio.create_subprocess_exec(
            *self.service_command(),
            env=self.service_env(),
            stdout=self.service_log,  # runit's script sends its stderr there too
            stderr=self.service_log,
            start_new_session=True,
        )

    async def stop_service(self, timeout: float = 15.0) -> int | None:
        """SIGTERM the service and wait; returns its exit code (None if it had to be killed)."""
        proc, self.service = self.service, None
        if proc is None:
            return None
        return await _terminate(proc, timeout)

    async def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            await self.stop_service()
        bluez, self.bluez = self.bluez, None
        if bluez is not None:
            await _terminate(bluez, 5.0)
        self.session.stop()
        self.system.stop()
        if self.pack_dir is not None:
            self.pack_dir.cleanup()
            self.pack_dir = None


async def start_fake_bluez(system_address: str, *args: str) -> tuple[asyncio.subprocess.Process, list[str]]:
    """The fake BlueZ as its own process on ``system_address`` (``args``: its options); returns the process
    and the packs' addresses once it is ready."""
    cmd = [sys.executable, "-m", "btbattery.sim.bluez", "--bus-address", system_address, *args]
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, env=_child_env(), start_new_session=True
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), READY_TIMEOUT)
    if not line:
        raise RuntimeError("the fake BlueZ exited before it was ready")
    return proc, _addresses_from_ready_line(line.decode())


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _addresses_from_ready_line(line: str) -> list[str]:
    """The fake BlueZ prints ``READY {"addresses": [...]}`` once it owns org.bluez."""
    _, _, payload = line.partition(" ")
    try:
        return list(json.loads(payload)["addresses"])
    except (ValueError, KeyError, TypeError):
        raise RuntimeError(f"unexpected ready line from the fake BlueZ: {line!r}") from None


async def _terminate(proc: asyncio.subprocess.Process, timeout: float) -> int | None:
    if proc.returncode is not None:
        return proc.returncode
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        return await asyncio.wait_for(proc.wait(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        return None
