"""dbus-fast's asyncio writer, made to survive a full socket; and replies sent from bytes marshalled once.

The bug (dbus-fast 2.21.1, the Venus firmware's, and every 5.x up to the one we pin; the same code came from
python-dbus-next, reported there as altdesktop/python-dbus-next#153 "Aio write_callback terminates connection
upon EAGAIN error instead of ignoring this error and retrying", with a fix in its PR #154, still open):
``_MessageWriter.schedule_write`` writes at once when its queue of *waiting* messages is empty, but the
message it is half-way through sending is not in that queue. When a large reply (GetItems of 16 packs)
filled the socket, the next send therefore writes again into the full socket, ``socket.send`` raises
``BlockingIOError(EAGAIN)``, and ``write_callback`` takes every exception for a lost connection: the bus is
finalized, the service loses its name and exits. The same writer carries bleak's connection to BlueZ.

The fix keeps dbus-fast's writer and only changes what a full socket means: stop, keep the unsent rest and
wait for the loop to report the socket writable (``schedule_write`` arranges that whenever a message is left).
``install()`` swaps the writer class in dbus-fast's module before any connection is made; both versions build
their writer from that module-level name (2.21.1 in ``MessageBus.__init__``, 5.x in ``connect()``), and that
module is plain Python in both (it is not among the modules dbus-fast compiles).
"""

from __future__ import annotations

import array
import logging
import socket
from typing import Any

from dbus_fast import Message, MessageFlag, MessageType, Variant
from dbus_fast._private.marshaller import Marshaller
from dbus_fast.aio import message_bus as _aio

log = logging.getLogger(__name__)

_Base: type[Any] = _aio._MessageWriter
_LITTLE_ENDIAN = ord("l")
_PROTOCOL_VERSION = 1
_HEADER_REPLY_SERIAL, _HEADER_DESTINATION, _HEADER_SIGNATURE = 5, 6, 8


class PatientWriter(_Base):  # type: ignore[misc,valid-type]
    """dbus-fast's writer, except that a full socket means "wait until writable", not "disconnected"."""

    full_socket_waits = 0  # how often any connection found its socket full (for tests and the benchmark)

    def write_callback(self, remove_writer: bool = True) -> None:
        # dbus-fast's loop, step for step, with EAGAIN taken as what it is (see the module docstring).
        sock = self.sock
        try:
            while True:
                if self.buf is None:
                    if not self.messages:
                        if remove_writer:
                            self.loop.remove_writer(self.fd)
                        return
                    buf, unix_fds, fut = self.messages.popleft()
                    self.unix_fds = unix_fds
                    self.buf = memoryview(buf)
                    self.offset = 0
                    self.fut = fut
                try:
                    if self.unix_fds and self.negotiate_unix_fd:
                        rights = array.array("i", self.unix_fds)
                        ancdata = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, rights)]
                        self.offset += sock.sendmsg([self.buf[self.offset :]], ancdata)
                        self.unix_fds = None
                    else:
                        self.offset += sock.send(self.buf[self.offset :])
                except BlockingIOError:
                    # Full socket: the rest stays in self.buf; the loop calls us again once it drains.
                    PatientWriter.full_socket_waits += 1
                    self.loop.add_writer(self.fd, self.write_callback)
                    return
                if self.offset < len(self.buf):
                    return  # partly sent: wait for writable (schedule_write or the loop's writer)
                self.buf = None
                _aio._future_set_result(self.fut, None)
        except Exception as error:
            if self.bus._user_disconnect:
                _aio._future_set_result(self.fut, None)
            else:
                _aio._future_set_exception(self.fut, error)
            self.bus._finalize(error)

    def send_marshalled(self, data: bytes | bytearray) -> None:
        """Queue a message marshalled by the caller (a cached reply body), like ``schedule_write`` does."""
        queue_was_empty = not self.messages
        self.messages.append((data, None, None))
        if queue_was_empty:
            self.write_callback(remove_writer=False)
        if self.buf is not None or self.messages:
            self.loop.add_writer(self.fd, self.write_callback)


def install() -> None:
    """Make every dbus-fast asyncio connection created from now on use :class:`PatientWriter`. Idempotent."""
    if _aio._MessageWriter is not PatientWriter:
        _aio._MessageWriter = PatientWriter


class CachedBody:
    """A reply body marshalled once and sent to every caller until it changes (GetItems of the whole tree).

    Marshalling 600 paths costs milliseconds in compiled dbus-fast and far more in the firmware's pure-Python
    2.21.1 on a small ARM board; eight clients asking in a loop must not make us marshal it for each of them.
    Per call only the small header (reply serial, destination) is marshalled.
    """

    __slots__ = ("_body", "_values", "signature")

    def __init__(self, signature: str, body: list[Any]) -> None:
        self.signature = signature
        self._values = body
        self._body = bytes(Marshaller(signature, body).marshall())

    def __len__(self) -> int:
        return len(self._body)

    def reply(self, bus: Any, call: Message) -> Message | None:
        """Send the reply to ``call`` on ``bus``. Returns None when sent, else a Message for dbus-fast to send
        (a writer we did not install, or a connection that is not up)."""
        writer = getattr(bus, "_writer", None)
        if not isinstance(writer, PatientWriter) or not bus.unique_name:
            return self.message(call)
        writer.send_marshalled(self._header(bus.next_serial(), call) + self._body)
        return None

    def message(self, call: Message) -> Message:
        """The same reply as a dbus-fast Message (marshalled again by dbus-fast)."""
        return Message.new_method_return(call, self.signature, self._values)

    def _header(self, serial: int, call: Message) -> bytes:
        fields = [(_HEADER_REPLY_SERIAL, Variant("u", call.serial))]
        if call.sender:
            fields.append((_HEADER_DESTINATION, Variant("s", call.sender)))
        fields.append((_HEADER_SIGNATURE, Variant("g", self.signature)))
        header = [
            _LITTLE_ENDIAN,
            MessageType.METHOD_RETURN.value,
            MessageFlag.NO_REPLY_EXPECTED.value,
            _PROTOCOL_VERSION,
            len(self._body),
            serial,
            fields,
        ]
        buf = Marshaller("yyyyuua(yv)", header).marshall()
        return bytes(buf) + b"\0" * (-len(buf) % 8)  # the body starts on an 8-byte boundary
