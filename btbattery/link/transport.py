"""How requests reach a JBD unit and its answers come back, over one connected bleak client.

Kept apart from the link's lifecycle: the link only opens a transport on a fresh connection, writes
requests, and closes it. Where BlueZ grants them, notifications and requests go through sockets instead of
D-Bus messages (a GX's system bus daemon then routes nothing per poll, and we unmarshal nothing):

- notifications: ``AcquireNotify``; StartNotify (bleak's) when BlueZ refuses, or the characteristic has no
  ``NotifyAcquired``;
- requests: ``AcquireWrite``; WriteValue (bleak's) otherwise.

Both acquires are called on our own system-bus connection (it must pass unix fds) on the characteristic's
object path (``BleakGATTCharacteristic.obj[0]`` on BlueZ, public): bleak has no API for AcquireWrite, and its
AcquireNotify reader reads one datagram per loop wake-up, while a JBD answer is 2-4 notifications that
BlueZ often queues together. Ours takes every datagram waiting in one wake-up.

:class:`Methods` is the pack's choice; a way that fails is dropped for the rest of the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bleak import BleakClient
    from bleak.backends.characteristic import BleakGATTCharacteristic
    from bleak.backends.service import BleakGATTServiceCollection

_UUID = "0000{}-0000-1000-8000-00805f9b34fb"
# (notify, write) characteristic pairs, most common first: ff01/ff02, and fff1/fff2 on some units.
GATT_PAIRS = ((_UUID.format("ff01"), _UUID.format("ff02")), (_UUID.format("fff1"), _UUID.format("fff2")))


NOTIFY_METHODS = ("auto", "acquire", "start")  # the NOTIFY_METHOD config key
WRITE_METHODS = ("auto", "acquire", "write")  # the WRITE_METHOD config key
CHAR_IFACE = "org.bluez.GattCharacteristic1"


class TransportError(Exception):
    """The unit cannot be talked to on this connection; the message says why."""


class BluezRefused(TransportError):
    """BlueZ answered an acquire with an error; ``dbus_error`` is its name (as bleak's BleakDBusError has)."""

    def __init__(self, dbus_error: str, text: str) -> None:
        super().__init__(f"{dbus_error}: {text}" if text else dbus_error)
        self.dbus_error = dbus_error


@dataclass(slots=True)
class Methods:
    """One pack's way of talking: ``notify`` auto|acquire|start, ``write`` auto|acquire|write. An "auto" that
    fails becomes "start"/"write" for the rest of the run; ``log`` says so (once, since it then stays)."""

    notify: str = "auto"
    write: str = "auto"
    log: Callable[[int, str], None] = lambda level, text: None

    def notify_fell_back(self, why: str) -> None:
        if self.notify == "auto":
            self.notify = "start"
            self.log(logging.WARNING, f"notifications over D-Bus (StartNotify) from now on: {why}")

    def write_fell_back(self, why: str) -> None:
        if self.write == "auto":
            self.write = "write"
            self.log(logging.WARNING, f"requests over D-Bus (WriteValue) from now on: {why}")


class GattTransport:
    """``transport = await GattTransport.open(client, on_data)``; ``await transport.write(frame)``."""

    def __init__(
        self, client: BleakClient, notify: BleakGATTCharacteristic, write: BleakGATTCharacteristic
    ) -> None:
        self._client = client
        self._notify = notify
        self._write = write
        # Write-without-response when the unit offers it: the BMS answers on the notify characteristic
        # anyway, so an ATT acknowledgement only costs airtime.
        self._with_response = "write-without-response" not in write.properties
        self._notify_socket: NotifySocket | None = None  # the AcquireNotify socket, once acquired
        self._write_sock: socket.socket | None = None  # the AcquireWrite socket, while we hold one
        self._write_mtu = 23

    @property
    def notify_acquired(self) -> bool:
        """Notifications come (or came, on this link) through an AcquireNotify socket."""
        return self._notify_socket is not None

    @property
    def notify_socket(self) -> NotifySocket | None:
        """The AcquireNotify socket while it is open (the bank's answer drain reads it)."""
        sock = self._notify_socket
        return sock if sock is not None and sock.open else None

    @property
    def write_acquired(self) -> bool:
        return self._write_sock is not None

    @property
    def with_response(self) -> bool:
        return self._with_response

    @with_response.setter
    def with_response(self, value: bool) -> None:
        # An acquired write socket sends write commands only, and BlueZ refuses WriteValue while it is held
        # (src/gatt-client.c): a unit that needs write requests gets the socket given back.
        if value:
            self._release_write()
        self._with_response = value

    @property
    def offers_both_write_types(self) -> bool:
        props = self._write.properties
        return "write" in props and "write-without-response" in props

    @classmethod
    async def open(
        cls, client: BleakClient, on_data: Callable[[object, bytearray], None], methods: Methods | None = None
    ) -> GattTransport:
        pair = jbd_characteristics(client.services)
        if pair is None:
            raise TransportError("no JBD characteristics (ff01/ff02 or fff1/fff2)")
        transport = cls(client, *pair)
        await transport._subscribe(on_data, methods or Methods(notify="start", write="write"))
        return transport

    async def _subscribe(self, on_data: Callable[[object, bytearray], None], methods: Methods) -> None:
        if methods.notify != "start" and "NotifyAcquired" in _props(self._notify):
            try:
                await self._acquire_notify(on_data)
            except Exception as exc:
                if methods.notify == "acquire" or _not_connected(exc) or not_paired(exc):
                    raise TransportError(f"AcquireNotify failed: {_describe(exc)}") from exc
                methods.notify_fell_back(f"BlueZ refused AcquireNotify ({_describe(exc)})")
        elif methods.notify == "acquire":
            raise TransportError("NOTIFY_METHOD = acquire, but BlueZ offers no AcquireNotify here")
        if not self.notify_acquired:
            try:
                await self._client.start_notify(self._notify, on_data)
            except Exception as exc:
                raise TransportError(f"notify failed: {_describe(exc)}") from exc
        if methods.write != "write" and not self._with_response and "WriteAcquired" in _props(self._write):
            try:
                await self._acquire_write()
            except Exception as exc:
                if methods.write == "acquire" or _not_connected(exc):
                    raise TransportError(f"AcquireWrite failed: {_describe(exc)}") from exc
                methods.write_fell_back(f"BlueZ refused AcquireWrite ({_describe(exc)})")

    async def _acquire_notify(self, on_data: Callable[[object, bytes], None]) -> None:
        sock, _mtu = await _acquire(self._notify, "AcquireNotify")
        self._notify_socket = NotifySocket(sock, on_data, self._notify)

    async def _acquire_write(self) -> None:
        sock, mtu = await _acquire(self._write, "AcquireWrite")
        self._write_sock, self._write_mtu = sock, mtu
        # BlueZ closes its end when the link goes: readable with nothing to read.
        asyncio.get_running_loop().add_reader(sock.fileno(), self._write_socket_readable)

    def _write_socket_readable(self) -> None:
        sock = self._write_sock
        if sock is None:
            return
        with contextlib.suppress(BlockingIOError):
            if sock.recv(1) == b"":
                self._release_write()

    def _release_write(self) -> None:
        sock, self._write_sock = self._write_sock, None
        _unwatch_and_close(sock)

    async def write(self, frame: bytes) -> None:
        sock = self._write_sock
        if sock is not None:
            # one datagram per ATT write command, each at most MTU - 3 bytes (a JBD request is 7)
            size = max(self._write_mtu - 3, 20)
            try:
                for start in range(0, len(frame), size):
                    sock.send(frame[start : start + size])
            except OSError as exc:
                self._release_write()
                raise TransportError(f"write socket closed: {_describe(exc)}") from exc
            return
        try:
            await self._client.write_gatt_char(self._write, frame, response=self.with_response)
        except Exception as exc:
            raise TransportError(f"write failed: {_describe(exc)}") from exc

    async def close(self) -> None:
        """Give the sockets back and stop notifications (the caller bounds the time and disconnects)."""
        self._release_write()
        if self._notify_socket is not None:
            self._notify_socket.close()
        elif self._client.is_connected:
            await self._client.stop_notify(self._notify)


def jbd_characteristics(
    services: BleakGATTServiceCollection,
) -> tuple[BleakGATTCharacteristic, BleakGATTCharacteristic] | None:
    for notify_uuid, write_uuid in GATT_PAIRS:
        notify = services.get_characteristic(notify_uuid)
        write = services.get_characteristic(write_uuid)
        if notify is not None and write is not None:
            return notify, write
    return None


# One ATT value per datagram; 512 bytes is the longest attribute value (Core spec Vol 3 Part F 3.2.9), so no
# notification is ever cut short, whatever MTU the link negotiated.
NOTIFY_READ_SIZE = 512


class NotifySocket:
    """Our end of an AcquireNotify socket: one datagram per ATT notification, each handed to
    ``deliver(sender, data)`` as bleak hands notifications over (``sender``: the characteristic).

    While it is *watched* (on the loop), every datagram waiting when it wakes the loop is read before the
    loop sleeps again. :meth:`pause` takes it off the loop: datagrams wait in the socket until :meth:`drain`
    reads them, so the answers of a whole bank can be read in one wake-up (:class:`~btbattery.link.clock.
    AnswerDrain`); :meth:`watch` puts it back. BlueZ closing its end (the link went, or it gave up on the
    unit) reads as an empty datagram: the socket is closed, and the link's silence handling takes over as
    with a unit that stops answering. ``wakeups`` and ``datagrams`` count what it did (the benchmark and
    the tests read them)."""

    __slots__ = ("_deliver", "_sender", "_sock", "datagrams", "wakeups", "watched")

    def __init__(
        self, sock: socket.socket, deliver: Callable[[Any, bytes], None], sender: object = None
    ) -> None:
        self._sock: socket.socket | None = sock
        self._deliver = deliver
        self._sender = sender
        self.wakeups = 0
        self.datagrams = 0
        self.watched = False
        self.watch()

    @property
    def open(self) -> bool:
        return self._sock is not None

    def watch(self) -> None:
        """Deliver datagrams as they come (the loop wakes for them)."""
        if not self.watched and self._sock is not None:
            asyncio.get_running_loop().add_reader(self._sock.fileno(), self._readable)
            self.watched = True

    def pause(self) -> None:
        """Let datagrams wait in the socket until :meth:`drain` (or :meth:`watch`)."""
        if self.watched and self._sock is not None:
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
        self.watched = False

    def _readable(self) -> None:
        self.wakeups += 1
        self.drain()

    def drain(self) -> None:
        """Deliver every datagram waiting now."""
        sock = self._sock
        if sock is None:
            return
        recv, deliver, sender = sock.recv, self._deliver, self._sender
        while True:
            try:
                data = recv(NOTIFY_READ_SIZE)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self.close()
                return
            self.datagrams += 1
            deliver(sender, data)

    def close(self) -> None:
        """Stop reading and close our end; BlueZ then releases the acquire (src/gatt-client.c sock_hup)."""
        with contextlib.suppress(Exception):  # the loop may be closing already
            self.pause()
        self.watched = False
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()


def _unwatch_and_close(sock: socket.socket | None) -> None:
    """Take an acquired socket off the loop and close it (BlueZ sees the close and releases the acquire)."""
    if sock is not None:
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(sock.fileno())
        sock.close()


async def _acquire(characteristic: BleakGATTCharacteristic, member: str) -> tuple[socket.socket, int]:
    """AcquireNotify / AcquireWrite on our own connection: (our non-blocking end of BlueZ's socket, MTU)."""
    from dbus_fast import Message

    bus = await _socket_bus()
    reply = await bus.call(
        Message(
            destination="org.bluez",
            path=_props_path(characteristic),
            interface=CHAR_IFACE,
            member=member,
            signature="a{sv}",
            body=[{}],
        )
    )
    assert reply is not None
    if reply.error_name:
        for fd in reply.unix_fds:
            with contextlib.suppress(OSError):
                socket.close(fd)
        raise BluezRefused(reply.error_name, str(reply.body[0]) if reply.body else "")
    index, mtu = reply.body
    sock = socket.socket(fileno=reply.unix_fds[index])
    sock.setblocking(False)
    return sock, int(mtu)


def _props(characteristic: BleakGATTCharacteristic) -> dict[str, Any]:
    """BlueZ's properties of the characteristic as bleak found them (``obj`` is (path, props) on BlueZ)."""
    obj = characteristic.obj
    return obj[1] if isinstance(obj, tuple) and len(obj) == 2 and isinstance(obj[1], dict) else {}


def _props_path(characteristic: BleakGATTCharacteristic) -> str:
    return str(characteristic.obj[0])


def not_paired(exc: BaseException | None) -> bool:
    """BlueZ's answer when the unit refused a GATT operation for want of a bond (src/gatt-client.c)."""
    return getattr(exc, "dbus_error", "") == "org.bluez.Error.NotPermitted" and "paired" in str(exc).lower()


def _not_connected(exc: BaseException) -> bool:
    return "NotConnected" in str(exc) or "Not connected" in str(exc)


# Our own system-bus connection for AcquireWrite (it must negotiate unix fds), one per event loop, shared by
# every pack; made on first use, ended by close_socket_bus().
_buses: dict[asyncio.AbstractEventLoop, asyncio.Future[Any]] = {}


async def _socket_bus() -> Any:
    from dbus_fast import BusType
    from dbus_fast.aio import MessageBus

    loop = asyncio.get_running_loop()
    pending = _buses.get(loop)
    if pending is not None:
        bus = await asyncio.shield(pending)
        if bus.connected:
            return bus
    pending = loop.create_future()
    _buses[loop] = pending
    try:
        bus = await MessageBus(bus_type=BusType.SYSTEM, negotiate_unix_fd=True).connect()
    except BaseException as exc:
        del _buses[loop]
        pending.set_exception(exc)
        pending.exception()  # retrieved: nobody else may be waiting
        raise
    pending.set_result(bus)
    return bus


def close_socket_bus() -> None:
    """End this loop's AcquireWrite connection (the sockets it gave out stay valid until closed)."""
    pending = _buses.pop(asyncio.get_running_loop(), None)
    if pending is not None and pending.done() and not pending.cancelled() and pending.exception() is None:
        pending.result().disconnect()


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
