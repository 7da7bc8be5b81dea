"""One pack's BLE link: a state machine from :mod:`btbattery.link.machine` driving real bleak.

Each state has one *activity*, a task started on entering the state and cancelled on leaving it: scanning
waits for the shared scanner to hear the pack, connecting connects (holding the adapter's connect lock),
subscribing finds the JBD characteristics and starts notifications, polling asks for 0x03 then 0x04 every
interval (after reading the model, 0x05, once per connection), and backoff tears the old connection down
while the state's timeout (the backoff delay) runs. The link publishes what happens as two reactivex
subjects and knows nothing about the bank.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from reactivex.subject import Subject

from btbattery.link.answers import AnswerWindow
from btbattery.link.machine import (
    BACKOFF,
    CONNECTING,
    IDLE,
    POLLING,
    SCANNING,
    SUBSCRIBING,
    Backoff,
    LinkTimeouts,
    build_machine,
)
from btbattery.model import LinkEvent, LinkState, LinkStats, PackReading
from btbattery.protocol.jbd import BASIC_INFO_REQUEST, CELL_VOLTAGES_REQUEST, HARDWARE_REQUEST
from btbattery.protocol.poll import PollDecoder

if TYPE_CHECKING:
    from bleak import BleakClient
    from bleak.backends.characteristic import BleakGATTCharacteristic
    from bleak.backends.device import BLEDevice
    from bleak.backends.service import BleakGATTServiceCollection
    from reactivex.abc import SchedulerBase

    from btbattery.link.scanner import SharedScanner

log = logging.getLogger(__name__)

_UUID = "0000{}-0000-1000-8000-00805f9b34fb"
# (notify, write) characteristic pairs, most common first: ff01/ff02, and fff1/fff2 on some units.
GATT_PAIRS = ((_UUID.format("ff01"), _UUID.format("ff02")), (_UUID.format("fff1"), _UUID.format("fff2")))


@dataclass(frozen=True, slots=True)
class LinkConfig:
    poll_interval: float = 1.0  # s between polls (0x03 then 0x04)
    timeouts: LinkTimeouts = field(default_factory=LinkTimeouts)
    backoff: Backoff = field(default_factory=Backoff)
    seed: int = 0  # jitter of the backoff, per pack


class AdapterPort:
    """What the packs on one Bluetooth adapter share: the connect lock and the scan."""

    def __init__(self, adapter: str | None, scanner: SharedScanner | None = None) -> None:
        from btbattery.link.scanner import SharedScanner

        self.adapter = adapter
        # BlueZ takes one connection attempt at a time per adapter; a second fails with InProgress.
        self.connect_lock = asyncio.Lock()
        self.scanner = scanner or SharedScanner(adapter)


class _LinkDown(Exception):
    """An activity gave up; the message is the reason the link backs off."""


class PackLink:
    """``link = PackLink(1, "A4:C1:37:..", port, scheduler)``; ``await link.begin()``; ``await link.close()``.

    ``states`` emits a :class:`LinkEvent` on every state change, ``readings`` every decoded poll. Both are
    stamped with ``scheduler``'s clock (set it before :meth:`begin` when passing None here). ``drops``
    counts frames thrown away (corrupt, truncated, ...); :meth:`stats` tells model, RSSI and link quality.
    """

    # Triggers and state attribute are added by the machine (see machine.TRANSITIONS).
    state: str
    begin: Callable[..., Coroutine[Any, Any, bool]]
    found: Callable[..., Coroutine[Any, Any, bool]]
    connected: Callable[..., Coroutine[Any, Any, bool]]
    subscribed: Callable[..., Coroutine[Any, Any, bool]]
    fail: Callable[..., Coroutine[Any, Any, bool]]
    retry: Callable[..., Coroutine[Any, Any, bool]]
    halt: Callable[..., Coroutine[Any, Any, bool]]

    def __init__(
        self,
        pack: int,
        address: str,
        port: AdapterPort,
        scheduler: SchedulerBase | None,
        config: LinkConfig | None = None,
    ) -> None:
        self.pack = pack
        self.address = address.upper()
        self.port = port
        self.scheduler = scheduler
        self.config = config or LinkConfig()
        self.states: Subject[LinkEvent] = Subject()
        self.readings: Subject[PackReading] = Subject()
        self.decoder = PollDecoder(pack, self.address, on_drop=self._on_drop)
        self.connects = 0  # successful connections, for tests and logs
        self.last_reason = ""
        # 0x03 and 0x04 every poll interval: the rate at which an outage misses requests
        self.answers = AnswerWindow(request_interval=self.config.poll_interval / 2)
        self._rssi: tuple[int, float] | None = None  # (dBm, when), the last value BlueZ reported
        port.scanner.on_rssi[self.address] = self._on_rssi
        self._rng = random.Random(self.config.seed * 1_000_003 + pack)
        self._attempt = 0
        self._activity: asyncio.Task[None] | None = None
        self._teardown_task: asyncio.Task[None] | None = None
        self._device: BLEDevice | None = None
        self._client: BleakClient | None = None
        self._notify_char: BleakGATTCharacteristic | None = None
        self._write_char: BleakGATTCharacteristic | None = None
        self._write_response = False
        self._answer = asyncio.Event()
        self._request_time = 0.0
        self._timeouts_in_row = 0
        self._fresh_connection = False
        self._closing = False
        self._machine = build_machine(self, self.config.timeouts, self.config.backoff, f"pack{pack}")

    # ----- public --------------------------------------------------------------------------------

    @property
    def link_state(self) -> LinkState:
        return LinkState(self.state)

    @property
    def drops(self) -> int:
        """Frames thrown away since the link was made (bad checksum, truncated, rejected, ...)."""
        return sum(self.decoder.drops.values())

    def stats(self) -> LinkStats:
        """Model, RSSI, link quality and reconnects as they stand now."""
        hardware = self.decoder.hardware
        rssi, rssi_time = self._rssi if self._rssi is not None else (None, None)
        return LinkStats(
            model=hardware.model or None if hardware is not None else None,
            rssi=rssi,
            rssi_time=rssi_time,
            link_quality=self.answers.quality(self._now()),
            reconnects=max(0, self.connects - 1),
        )

    async def close(self) -> None:
        """Stop polling, stop notifications, disconnect. The caller bounds the time."""
        self._closing = True
        if self.state != IDLE:
            await self.halt(reason="stopping")
        activity, self._activity = self._activity, None
        if activity is not None and not activity.done():
            activity.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await activity
        await self._teardown()
        self.states.on_completed()
        self.readings.on_completed()

    # ----- machine callbacks ---------------------------------------------------------------------

    def leave_state(self, event: Any) -> None:
        activity, self._activity = self._activity, None
        if activity is not None and activity is not asyncio.current_task():
            activity.cancel()

    def enter_state(self, event: Any) -> None:
        reason = str(event.kwargs.get("reason", ""))
        self.last_reason = reason
        if self.state == POLLING:
            self.answers.up(self._now())
        else:
            self.answers.down(self._now())
        if self.state == BACKOFF:
            delay = self._machine.get_state(BACKOFF).timeout
            self._log(logging.INFO, "backing off %.1f s: %s", delay, reason)
        elif self.state == POLLING:
            self._log(
                logging.INFO, "polling every %g s (connection %d)", self.config.poll_interval, self.connects
            )
        else:
            self._log(logging.INFO if self.state == IDLE else logging.DEBUG, "%s", reason or "entered")
        self.states.on_next(LinkEvent(self.pack, self.address, self._now(), LinkState(self.state), reason))
        activity = self._ACTIVITIES.get(self.state)
        if activity is not None and not self._closing:
            self._activity = asyncio.get_running_loop().create_task(self._run_activity(activity))

    def plan_backoff(self, event: Any) -> None:
        """Before entering backoff: its timeout becomes the next delay of the exponential series."""
        delay = self.config.backoff.delay(self._attempt, self._rng)
        self._attempt += 1
        self._machine.get_state(BACKOFF).timeout = delay

    def in_origin(self, event: Any) -> bool:
        return event.kwargs.get("origin", self.state) == self.state

    async def timed_out(self, event: Any) -> None:
        await self.fail(origin=self.state, reason=f"{self.state} timed out")

    # ----- activities ----------------------------------------------------------------------------

    async def _run_activity(self, activity: Callable[[PackLink], Coroutine[Any, Any, str]]) -> None:
        """Run one state's work, then fire its outcome: the trigger it returns, or ``fail``."""
        origin = self.state
        try:
            trigger, reason = await activity(self), ""
        except _LinkDown as exc:
            trigger, reason = "fail", str(exc)
        except Exception as exc:  # a bug or an unexpected bleak error: never leave the link stuck
            log.exception("pack %d %s [%s] unexpected error", self.pack, self.address, origin)
            trigger, reason = "fail", f"unexpected error: {_describe(exc)}"
        if self._activity is asyncio.current_task():
            self._activity = None  # done: leaving the state must not cancel the task firing the trigger
        await getattr(self, trigger)(origin=origin, reason=reason)

    async def _scan(self) -> str:
        await self._finish_teardown()
        try:
            self._device = await self.port.scanner.find(self.address)
        except Exception as exc:
            raise _LinkDown(f"scan failed: {_describe(exc)}") from exc
        return "found"

    async def _connect(self) -> str:
        from bleak import BleakClient

        assert self._device is not None
        client = BleakClient(
            self._device, disconnected_callback=self._on_disconnected, timeout=self.config.timeouts.connect
        )
        try:
            async with self.port.connect_lock:
                await client.connect()
        except asyncio.CancelledError:
            # Cut short (state timeout, stop) just as bleak finished: do not leave the pack connected.
            if client.is_connected:
                self._teardown_task = asyncio.get_running_loop().create_task(_disconnect(client))
            raise
        except Exception as exc:
            raise _LinkDown(f"connect failed: {_describe(exc)}") from exc
        self._client = client
        self.connects += 1
        return "connected"

    async def _subscribe(self) -> str:
        client = self._client
        assert client is not None
        pair = _jbd_characteristics(client.services)
        if pair is None:
            raise _LinkDown("no JBD characteristics (ff01/ff02 or fff1/fff2)")
        notify, write = pair
        self._write_char = write
        # Prefer write-without-response: the BMS answers on ff01 anyway, so an ATT ack only costs airtime.
        self._write_response = "write-without-response" not in write.properties
        self.decoder.assembler.reset()
        try:
            await client.start_notify(notify, self._on_notify)
        except Exception as exc:
            raise _LinkDown(f"notify failed: {_describe(exc)}") from exc
        self._notify_char = notify
        self._timeouts_in_row = 0
        self._fresh_connection = True
        return "subscribed"

    async def _poll(self) -> str:
        """Poll every interval until the link dies (raises :class:`_LinkDown`)."""
        loop = asyncio.get_running_loop()
        interval = self.config.poll_interval
        await self._read_model()
        tick = loop.time()
        while True:
            await self._poll_once()
            tick += interval
            now = loop.time()
            if tick < now:  # a slow poll: skip the missed ticks rather than bunching requests
                tick = now
            await asyncio.sleep(tick - now)

    async def _poll_once(self) -> None:
        for request in (BASIC_INFO_REQUEST, CELL_VOLTAGES_REQUEST):
            if not await self._request(request):
                return

    async def _read_model(self) -> None:
        """Register 0x05 once per connection (the decoder keeps the answer). A BMS that does not answer it
        still polls fine, so its silence does not count toward ``dead_after``."""
        if not await self._request(HARDWARE_REQUEST):
            self._timeouts_in_row = 0

    async def _request(self, request: bytes) -> bool:
        """Send one request and wait for a complete answer; False when it timed out."""
        client, char = self._client, self._write_char
        assert client is not None and char is not None
        self._request_time = self._now()
        self._answer.clear()
        self.answers.sent(self._request_time)  # unanswered until the answer comes
        try:
            await client.write_gatt_char(char, request, response=self._write_response)
        except Exception as exc:
            raise _LinkDown(f"write failed: {_describe(exc)}") from exc
        try:
            # asyncio.timeout, not wait_for: no extra task per request on a small CPU.
            async with asyncio.timeout(self.config.timeouts.request):
                await self._answer.wait()
        except TimeoutError:
            self._timeouts_in_row += 1
            self._flush()
            if self._timeouts_in_row >= self.config.timeouts.dead_after:
                raise _LinkDown(f"{self._timeouts_in_row} poll timeouts in a row") from None
            self._log(logging.DEBUG, "no answer to 0x%02x (%d in a row)", request[2], self._timeouts_in_row)
            return False
        self._timeouts_in_row = 0
        self.answers.answered()
        return True

    _ACTIVITIES: ClassVar[dict[str, Callable[[PackLink], Coroutine[Any, Any, str]]]] = {
        SCANNING: _scan,
        CONNECTING: _connect,
        SUBSCRIBING: _subscribe,
        POLLING: _poll,
    }

    # ----- bleak callbacks -----------------------------------------------------------------------

    def _on_notify(self, _sender: object, data: bytearray) -> None:
        # Hot path: no logging, no clock read (readings carry the time their request was sent).
        assembler = self.decoder.assembler
        frames = assembler.frames
        for reading in self.decoder.feed(data, self._request_time):
            self._publish(reading)
        if assembler.frames != frames:
            self._answer.set()

    def _on_disconnected(self, client: BleakClient) -> None:
        if client is not self._client or self._closing:
            return
        if self.state in (SUBSCRIBING, POLLING):
            asyncio.get_running_loop().create_task(self.fail(origin=self.state, reason="link lost"))

    def _on_rssi(self, rssi: int) -> None:
        self._rssi = (rssi, self._now())

    def _on_drop(self, reason: str, raw: bytes) -> None:
        self._log(logging.DEBUG, "dropped %d bytes: %s", len(raw), reason)

    # ----- helpers -------------------------------------------------------------------------------

    def _publish(self, reading: PackReading) -> None:
        if self._fresh_connection:
            self._fresh_connection = False
            self._attempt = 0  # a working link resets the backoff series
        self.readings.on_next(reading)

    def _flush(self) -> None:
        reading = self.decoder.flush()
        if reading is not None:
            self._publish(reading)

    async def _teardown(self) -> None:
        """Stop notifications and disconnect, bounded; also waits for a teardown already under way."""
        pending = self._teardown_task
        if pending is not None and not pending.done() and pending is not asyncio.current_task():
            with contextlib.suppress(Exception):
                await asyncio.shield(pending)
        client, self._client = self._client, None
        notify, self._notify_char = self._notify_char, None
        self._flush()
        if client is None:
            return
        try:
            async with asyncio.timeout(self.config.timeouts.disconnect):
                if notify is not None and client.is_connected:
                    with contextlib.suppress(Exception):
                        await client.stop_notify(notify)
                await client.disconnect()
        except Exception as exc:  # the link is going away regardless; say so and move on
            self._log(logging.DEBUG, "disconnect: %s", _describe(exc))

    async def _finish_teardown(self) -> None:
        pending = self._teardown_task
        if pending is not None and not pending.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(pending)

    def on_enter_backoff(self, event: Any) -> None:
        # Not an activity: a teardown cut short by the backoff timeout could leave the pack connected.
        self._teardown_task = asyncio.get_running_loop().create_task(self._teardown())

    def _now(self) -> float:
        assert self.scheduler is not None, "a link needs a scheduler before it starts"
        return self.scheduler.to_seconds(self.scheduler.now)

    def _log(self, level: int, message: str, *args: object) -> None:
        if log.isEnabledFor(level):
            log.log(level, "pack %d %s [%s] " + message, self.pack, self.address, self.state, *args)


def _jbd_characteristics(
    services: BleakGATTServiceCollection,
) -> tuple[BleakGATTCharacteristic, BleakGATTCharacteristic] | None:
    for notify_uuid, write_uuid in GATT_PAIRS:
        notify = services.get_characteristic(notify_uuid)
        write = services.get_characteristic(write_uuid)
        if notify is not None and write is not None:
            return notify, write
    return None


async def _disconnect(client: BleakClient) -> None:
    with contextlib.suppress(Exception):
        await client.disconnect()


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
