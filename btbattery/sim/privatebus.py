"""A private dbus-daemon for the demo, tests and benchmarks: never the machine's own buses."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
    <allow user="*"/>
  </policy>
</busconfig>
"""


class PrivateBus:
    """``with PrivateBus() as bus: bus.address`` -- a dbus-daemon on a socket in a temporary folder."""

    def __init__(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="btbattery-bus-"))
        self.address = ""
        self._proc: subprocess.Popen[str] | None = None

    @property
    def folder(self) -> Path:
        """The bus's temporary folder (removed on stop): a place for files that live as long as the bus."""
        return self._dir

    def start(self) -> PrivateBus:
        daemon = shutil.which("dbus-daemon")
        if daemon is None:
            raise RuntimeError("dbus-daemon is not installed (Debian package dbus-daemon)")
        config = self._dir / "bus.conf"
        config.write_text(CONFIG.format(socket=self._dir / "bus.sock"))
        self._proc = subprocess.Popen(
            [daemon, f"--config-file={config}", "--nofork", "--print-address=1"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None
        self.address = self._proc.stdout.readline().strip()
        if not self.address:
            raise RuntimeError("dbus-daemon did not print its address")
        return self

    @property
    def pid(self) -> int | None:
        """The daemon's process id while it runs (benchmarks count its CPU)."""
        return self._proc.pid if self._proc is not None else None

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=5)
            self._proc = None
        shutil.rmtree(self._dir, ignore_errors=True)

    def pause(self) -> None:
        """Stop the daemon reading its sockets (SIGSTOP), as a busy system bus on a small board does for a
        moment: the senders' socket buffers fill. ``resume()`` lets it drain them."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._proc is not None
        self._proc.send_signal(signal.SIGCONT)

    def __enter__(self) -> PrivateBus:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def bus_env(system: str | None = None, session: str | None = None) -> dict[str, str]:
    """A copy of the environment pointing the system and/or session bus at private daemons."""
    env = dict(os.environ)
    if system is not None:
        env["DBUS_SYSTEM_BUS_ADDRESS"] = system
    if session is not None:
        env["DBUS_SESSION_BUS_ADDRESS"] = session
    return env
