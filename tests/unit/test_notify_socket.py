"""Our end of an AcquireNotify socket (BlueZ hands out one end of a SEQPACKET socketpair, one datagram per
ATT notification): every datagram waiting is read in one wake-up, in order and whole, and BlueZ closing
its end closes ours. A real socketpair and a real event loop; nothing sleeps."""

from __future__ import annotations

import asyncio
import contextlib
import socket

from btbattery.link.transport import NOTIFY_READ_SIZE, NotifySocket

CHARACTERISTIC = object()  # what bleak would pass as the sender


async def _collect(count: int, *datagrams: bytes, close_after: bool = False):
    ours, bluez = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.setblocking(False)
    got: list[tuple[object, bytes]] = []
    done = asyncio.get_running_loop().create_future()

    def deliver(sender: object, data: bytes) -> None:
        got.append((sender, data))
        if len(got) == count and not done.done():
            done.set_result(None)

    reader = NotifySocket(ours, deliver, CHARACTERISTIC)
    for datagram in datagrams:  # all queued before the loop looks: BlueZ wrote them in one burst
        bluez.send(datagram)
    if close_after:
        bluez.close()
    if count:
        await done
    counted = (reader.wakeups, reader.datagrams)  # before the close below wakes it once more
    for _ in range(10):  # loop turns, not time: the close arrives in the same or the next wake-up
        if not (reader.open and close_after):
            break
        await asyncio.sleep(0)
    if not close_after:
        bluez.close()
    return reader, got, ours, counted


def test_every_waiting_datagram_is_read_in_one_wake_up_in_order() -> None:
    chunks = [bytes([0xDD, 0x03, 0x00, 0x1B]) + bytes(16), bytes(range(20)), bytes([1, 2, 0x77])]
    _, got, _, counted = asyncio.run(_collect(3, *chunks))
    assert got == [(CHARACTERISTIC, chunk) for chunk in chunks]
    assert counted == (1, 3)  # (wake-ups, datagrams): bleak's own reader takes one datagram per wake-up


def test_the_longest_attribute_value_arrives_whole() -> None:
    value = bytes(range(256)) * 2
    assert len(value) == NOTIFY_READ_SIZE
    _, got, _, _ = asyncio.run(_collect(1, value))
    assert got == [(CHARACTERISTIC, value)]


def test_bluez_closing_its_end_closes_ours_after_the_waiting_datagrams() -> None:
    reader, got, ours, _ = asyncio.run(_collect(2, b"\xdd\x04", b"\x00\x77", close_after=True))
    assert [data for _, data in got] == [b"\xdd\x04", b"\x00\x77"]
    assert not reader.open
    assert ours.fileno() == -1  # closed, so BlueZ releases the acquire
    assert reader.datagrams == 2


def test_closing_our_end_stops_delivery() -> None:
    async def scenario() -> tuple[list[bytes], int]:
        ours, bluez = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        got: list[bytes] = []
        reader = NotifySocket(ours, lambda _sender, data: got.append(data))
        reader.close()
        # our end is gone: BlueZ's send fails, as it does once the client released the acquire
        with contextlib.suppress(OSError):
            bluez.send(b"late")
        for _ in range(3):
            await asyncio.sleep(0)
        bluez.close()
        return got, reader.wakeups

    got, wakeups = asyncio.run(scenario())
    assert got == [] and wakeups == 0
