"""The flight recorder inside the service, and its D-Bus door.

On the service's own connection (same bus name as the battery service), a second object:

    object    /io/btbattery/Recorder
    interface io.btbattery.Recorder1
      Capture(s reason) -> s path    write the ring to a recording now; the reply is the file's path
                                     (org.freedesktop.DBus.Error.Failed with the reason when it cannot)
      Status() -> s json             enabled, minutes, bytes held, byte budget, directory, files, ...
      signal Captured(s path, s reason)   after every file written (incident or Capture)

It lives apart from the ``com.victronenergy.BusItem`` tree so Venus clients (GetItems on ``/``) never see
it. ``dbus-btbattery capture`` calls ``Capture``; the tests wait for ``Captured`` instead of polling a folder.
Files are written in a worker thread: turning minutes of traffic into JSON must not stall the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dbus_fast import ErrorType, Message, MessageFlag, MessageType

from btbattery.model import BankState, LinkEvent, LinkState
from btbattery.recorder import FlightRecorder, Incidents, incidents, link_incident, write_recording

log = logging.getLogger(__name__)

RECORDER_PATH = "/io/btbattery/Recorder"
RECORDER_IFACE = "io.btbattery.Recorder1"

_INTROSPECT = f"""<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">
<node>
  <interface name="{RECORDER_IFACE}">
    <method name="Capture"><arg direction="in" type="s"/><arg direction="out" type="s"/></method>
    <method name="Status"><arg direction="out" type="s"/></method>
    <signal name="Captured"><arg type="s"/><arg type="s"/></signal>
  </interface>
</node>"""


class RecorderHost:
    """Feeds the recorder from the links and the bank, spots incidents, writes files, serves D-Bus."""

    def __init__(
        self,
        bus: Any,
        recorder: FlightRecorder,
        directory: str,
        max_files: int,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.bus = bus
        self.recorder = recorder
        self.directory = directory
        self.max_files = max_files
        self._loop = loop
        self._link_states: dict[int, LinkState] = {}
        self._previous: BankState | None = None
        self._writing: asyncio.Lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._timers: list[asyncio.TimerHandle] = []
        self.incident = Incidents(self._later, self._capture_in_background)
        self.files_written = 0
        self.last_file: str | None = None

    # ----- feeding ----------------------------------------------------------------------------------

    def attach(self) -> None:
        self.bus.add_message_handler(self._on_message)

    def on_link(self, event: LinkEvent) -> None:
        self.recorder.link(event)
        what = link_incident(event, self._link_states.get(event.pack))
        self._link_states[event.pack] = event.state
        if what is not None:
            self.incident(what)

    def on_state(self, state: BankState) -> None:
        for what in incidents(self._previous, state):
            self.incident(what)
        self._previous = state

    # ----- writing ----------------------------------------------------------------------------------

    def _later(self, delay: float, action: Callable[[], None]) -> None:
        self._timers.append(self._loop.call_later(delay, action))

    def _capture_in_background(self, reason: str) -> None:
        task = self._loop.create_task(self.capture(reason))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def capture(self, reason: str) -> str:
        """Write the ring now; returns the path. Raises RuntimeError with a user-facing reason."""
        if not self.recorder.enabled:
            raise RuntimeError("the flight recorder is off (RECORDER_MINUTES = 0)")
        ring = self.recorder.snapshot()
        async with self._writing:
            try:
                path = await self._loop.run_in_executor(
                    None, write_recording, ring, self.directory, reason, self.max_files
                )
            except OSError as exc:
                # WARNING, not ERROR: an ERROR would itself be an incident and ask for another file.
                log.warning("recording not written to %s: %s", self.directory, exc)
                raise RuntimeError(f"cannot write a recording in {self.directory}: {exc}") from None
        self.files_written += 1
        self.last_file = str(path)
        log.info("recording written: %s (%s)", path, reason)
        self._signal_captured(str(path), reason)
        return str(path)

    async def close(self, timeout: float = 5.0) -> None:
        """Stop listening; an incident still waiting for its aftermath is written now (bounded)."""
        with contextlib.suppress(Exception):
            self.bus.remove_message_handler(self._on_message)
        for timer in self._timers:
            if not timer.cancelled():
                timer.cancel()
        self.incident._fire()  # the reason the service is stopping may be the incident itself
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)

    def status(self) -> dict[str, object]:
        folder = Path(self.directory)
        try:
            files = sorted(p.name for p in folder.glob("capture-*.jsonl"))
        except OSError:
            files = []
        return {
            "enabled": self.recorder.enabled,
            "minutes": self.recorder.minutes,
            "bytes": self.recorder.size,
            "max_bytes": self.recorder.max_bytes,
            "records": self.recorder.records,
            "directory": self.directory,
            "max_files": self.max_files,
            "files": files,
            "last_file": self.last_file,
            "incidents": self.incident.triggers,
        }

    # ----- D-Bus ------------------------------------------------------------------------------------

    def _signal_captured(self, path: str, reason: str) -> None:
        if self.bus.connected:
            self.bus.send(
                Message(
                    message_type=MessageType.SIGNAL,
                    flags=MessageFlag.NO_REPLY_EXPECTED,
                    path=RECORDER_PATH,
                    interface=RECORDER_IFACE,
                    member="Captured",
                    signature="ss",
                    body=[path, reason],
                )
            )

    def _on_message(self, msg: Message) -> Message | bool | None:
        if msg.message_type is not MessageType.METHOD_CALL or msg.path != RECORDER_PATH:
            return None
        if msg.interface == "org.freedesktop.DBus.Introspectable" and msg.member == "Introspect":
            return Message.new_method_return(msg, "s", [_INTROSPECT])
        if msg.interface not in (None, RECORDER_IFACE):
            return None
        if msg.member == "Status":
            return Message.new_method_return(msg, "s", [json.dumps(self.status())])
        if msg.member == "Capture":
            reason = str(msg.body[0]) if msg.signature == "s" else ""
            task = self._loop.create_task(
                self._answer_capture(msg, reason or "asked by dbus-btbattery capture")
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return True  # the reply follows when the file is written
        return None

    async def _answer_capture(self, msg: Message, reason: str) -> None:
        try:
            reply = Message.new_method_return(msg, "s", [await self.capture(reason)])
        except RuntimeError as exc:
            reply = Message.new_error(msg, ErrorType.FAILED, str(exc))
        if self.bus.connected:
            self.bus.send(reply)
