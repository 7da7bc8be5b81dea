"""One pack's BLE link: a state machine from :mod:`btbattery.link.machine` driving real bleak.

Each state has one *activity*, a task started on entering the state and cancelled on leaving it: locating
asks BlueZ what it knows of the pack (closing a connection a previous client left, removing the device after
the same failure again and again, noticing a wedged adapter), scanning waits for the shared scanner to hear
a pack BlueZ does not know, connecting connects (holding the adapter's connect lock), subscribing opens the
transport (JBD characteristics, notifications), polling asks for 0x03 then 0x04 every interval (after reading
the model, 0x05, once per connection), resetting
power-cycles the adapter, and backoff tears the old connection down while the state's timeout (the backoff
delay) runs. A working link that is lost goes straight back to locating: the device is known, so the
reconnect needs no scan and no wait. The link publishes what happens as two reactivex subjects and knows
nothing about the bank.

Newer units carry locks (../shared/reference/jbd-auth.md). A pack with a PASSKEY passes through pairing
(our own BlueZ agent answers the passkey; a kept bond makes it a quick check), a pack with a PASSWORD through
authenticating (the FF AA handshake). A pack that turns out to be locked against us -- wrong password,
refused passkey, or a lock nobody configured ("Not paired", requests echoed, silence to reads but an answer
to FF AA) -- goes to refused: one ERROR line saying what to set, and a new try only after minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from reactivex.subject import Subject

from btbattery.link.answers import AnswerWindow
from btbattery.link.bluez import Adapter, BluezError, BluezHousekeeper, describe_adapters, resolve_adapter
from btbattery.link.clock import AnswerDrain, PollClock, scheduler_seconds
from btbattery.link.machine import (
    AUTHENTICATING,
    BACKOFF,
    CONNECTING,
    IDLE,
    LOCATING,
    PAIRING,
    POLLING,
    REFUSED,
    RESETTING,
    SCANNING,
    SUBSCRIBING,
    Backoff,
    LinkTimeouts,
    build_machine,
)
from btbattery.link.transport import GattTransport, Methods, NotifySocket, TransportError
from btbattery.link.transport import not_paired as _not_paired
from btbattery.model import LinkEvent, LinkState, LinkStats, PackReading, Secret
from btbattery.protocol import jbd
from btbattery.protocol.jbd import BASIC_INFO_REQUEST, CELL_VOLTAGES_REQUEST, HARDWARE_REQUEST
from btbattery.protocol.poll import PollDecoder
from btbattery.recorder import RX, TX

if TYPE_CHECKING:
    from bleak import BleakClient
    from bleak.backends.device import BLEDevice
    from reactivex.abc import SchedulerBase

    from btbattery.link.agent import PairingAgent
    from btbattery.link.scanner import SharedScanner

log = logging.getLogger(__name__)

# What the user reads (log, D-Bus LinkState reason, doctor) when a lock stops a pack. The exact phrases
# "needs a password (PASSWORD = ...)" and "needs pairing (PASSKEY = ...)" are the contract.
WHERE = "in the pack's own file (-p MAC:/path/pack.ini) or config.ini"
NEEDS_PASSWORD = "needs a password (PASSWORD = ...)"
NEEDS_PAIRING = "needs pairing (PASSKEY = ...)"
LOCK_MESSAGES = {
    "needs_password": f"{NEEDS_PASSWORD}: it answers the FF AA handshake but no reads; set PASSWORD to "
    f"the JBD app's 6-character password {WHERE}",
    "wrong_password": "password refused: the pack answered that PASSWORD is wrong; set the JBD app's "
    f"password {WHERE}",
    "app_key_refused": "the pack refused the FF AA app key; this module needs a handshake we do not know",
    "not_paired": f"{NEEDS_PAIRING}: BlueZ says 'Not paired'; set PASSKEY (often the app's 6 digits) {WHERE}",
    "echo": f"{NEEDS_PAIRING}: it echoes every request instead of answering; set PASSKEY (often the app's "
    f"6 digits) {WHERE}",
    "echo_bonded": "it still echoes every request after pairing again with PASSKEY: check PASSKEY, or "
    "remove the bond (bluetoothctl remove MAC) and restart the service",
    "pairing_refused": f"pairing refused ({{error}}): check PASSKEY {WHERE}",
    "bond_refused": "it still says 'Not paired' after pairing again with PASSKEY: check PASSKEY, or remove "
    "the bond (bluetoothctl remove MAC) and restart the service",
}
# Pair errors that mean "the passkey (or its absence) is wrong", not "the radio hiccuped" (src/device.c).
PAIRING_REFUSALS = (
    "org.bluez.Error.AuthenticationFailed",
    "org.bluez.Error.AuthenticationRejected",
    "org.bluez.Error.AuthenticationCanceled",
)

# An adapter out of connection slots (le-connection-concurrent-connection-limit): what the user can do.
SLOTS_HINT = "; the adapter holds no more connections: put some packs on another one (BLUETOOTH_ADAPTER)"

# Failures that say "not there" (out of range, switched off, no free slot on the adapter) rather than "BlueZ
# holds something stale": they never count towards removing the device from BlueZ.
_ABSENCE = re.compile(
    r"timed out|timeout|link lost|not found|not powered|unreachable|connection-limit", re.IGNORECASE
)


# A poll's last answer waits in its socket for the next tick when that is at most this far off: at 1 s
# polls it costs no wake-up of its own and is published at that tick, as fresh as if read at once; at longer
# intervals it is read by the drain instead (a cell voltage must not wait several seconds for the tick).
READ_AT_TICK_WITHIN = 1.0  # s


@dataclass(frozen=True, slots=True)
class LinkConfig:
    poll_interval: float = 1.0  # s between polls (0x03 then 0x04)
    timeouts: LinkTimeouts = field(default_factory=LinkTimeouts)
    backoff: Backoff = field(default_factory=Backoff)
    seed: int = 0  # jitter of the backoff, per pack
    notify_method: str = "auto"  # NOTIFY_METHOD: auto | acquire | start
    write_method: str = "auto"  # WRITE_METHOD: auto | acquire | write


@dataclass(frozen=True, slots=True)
class PackLocks:
    """What a locked pack needs from us: the FF AA ``password`` and the LE pairing ``passkey``."""

    password: Secret | None = None
    passkey: Secret | None = None


class AdapterPort:
    """What the packs on one Bluetooth adapter share: the connect lock, the scan, the power cycles.

    ``adapter`` is what the user configured, ``hci0`` or the adapter's Bluetooth address; :meth:`resolve`
    turns an address into the adapter's current name (hciN numbers can swap between boots).
    """

    POWER_CYCLES_PER_HOUR = 3  # a controller that needs more is broken; do not toggle it forever

    def __init__(
        self,
        adapter: str | None,
        scanner: SharedScanner | None = None,
        bluez: BluezHousekeeper | None = None,
    ) -> None:
        from btbattery.link.bluez import is_adapter_spec
        from btbattery.link.scanner import SharedScanner

        self.spec = adapter
        self.name: str | None = adapter if adapter and not _is_address(adapter) else None
        if adapter is not None and not is_adapter_spec(adapter):
            raise ValueError(f"adapter {adapter!r} is neither a name like hci0 nor an address")
        # BlueZ takes one connection attempt at a time per adapter; a second fails with InProgress.
        self.connect_lock = asyncio.Lock()
        self.scanner = scanner or SharedScanner(self.name)
        self.bluez = bluez or BluezHousekeeper()
        self.agent: PairingAgent | None = None  # set when any pack has a PASSKEY
        self._cycle: asyncio.Task[bool] | None = None
        self._cycles: list[float] = []
        self.power_cycles = 0
        self.cycles_finished = 0  # power cycles ended, well or not: a view older than the last one is stale

    @property
    def adapter(self) -> str | None:
        """The adapter's current name (None: BlueZ's first adapter, or an address not yet resolved)."""
        return self.name

    async def resolve(self) -> str:
        """The adapter's name now; raises :class:`BluezError` when BlueZ has no such adapter."""
        view = await self.bluez.view()
        name = resolve_adapter(self.spec, view.adapters)
        if name is None:
            wanted = f"adapter {self.spec}" if self.spec else "an adapter"
            raise BluezError(f"no Bluetooth {wanted}: BlueZ has {describe_adapters(view.adapters)}")
        if name != self.name:
            log.info("adapter %s is %s", self.spec or "(first)", name)
        self.name = self.scanner.adapter = name
        return name

    def renamed(self, adapters: dict[str, Adapter]) -> Adapter | None:
        """The adapter named by address, back under another hciN (a USB adapter plugged in again)."""
        name = resolve_adapter(self.spec, adapters) if self.spec and _is_address(self.spec) else None
        if name is None:
            return None
        log.info("adapter %s is now %s (was %s)", self.spec, name, self.name)
        self.name = self.scanner.adapter = name
        return adapters[name]

    def may_power_cycle(self) -> bool:
        if self._cycle is not None and not self._cycle.done():
            return True
        hour_ago = time.monotonic() - 3600.0
        self._cycles = [t for t in self._cycles if t > hour_ago]
        return len(self._cycles) < self.POWER_CYCLES_PER_HOUR

    async def power_cycle(self, seen: int | None = None) -> bool:
        """Power the adapter off and on, once for all packs asking together; True when it came back.

        ``seen``: :attr:`cycles_finished` when the caller asked BlueZ and found the adapter unpowered. A cycle
        that ended since then answered what it saw (a pack whose view came back just before another pack's
        cycle powered the adapter on would otherwise cycle it again, and the second cycle's off makes the
        first pack's next view unpowered: a cascade). True then, without a cycle: look again."""
        if seen is not None and self.cycles_finished > seen:
            return True
        if self._cycle is None or self._cycle.done():
            self._cycles.append(time.monotonic())
            self._cycle = asyncio.get_running_loop().create_task(self._power_cycle())
        return await asyncio.shield(self._cycle)

    async def _power_cycle(self) -> bool:
        name = self.name or await self.resolve()
        log.warning(
            "%s reports itself unpowered: power-cycling it (%d of at most %d per hour)",
            name,
            len(self._cycles),
            self.POWER_CYCLES_PER_HOUR,
        )
        try:
            await self.bluez.set_powered(name, False)
            await self.bluez.set_powered(name, True)
            adapter = (await self.bluez.view()).adapters.get(name)
        except BluezError as exc:
            log.warning("power cycle of %s failed: %s", name, exc)
            return False
        finally:
            self.cycles_finished += 1
        self.power_cycles += 1
        powered = adapter is not None and adapter.powered
        level = logging.INFO if powered else logging.WARNING
        log.log(level, "%s powered %s after the cycle", name, "on" if powered else "off")
        return powered


def _is_address(text: str) -> bool:
    return len(text) == 17 and text.count(":") == 5


class _LinkDown(Exception):
    """An activity gave up; the message is the reason the link backs off."""


class _Refused(Exception):
    """The pack is locked against us; the message says what the user must set."""


class PackLink:
    """``link = PackLink(1, "A4:C1:37:..", port, scheduler)``; ``await link.begin()``; ``await link.close()``.

    ``states`` emits a :class:`LinkEvent` on every state change, ``readings`` every decoded poll. Both are
    stamped with ``scheduler``'s clock (set it before :meth:`begin` when passing None here). ``drops``
    counts frames thrown away (corrupt, truncated, ...); :meth:`stats` tells model, RSSI and link quality.
    ``locks`` are the pack's password and passkey, if it has any.
    """

    # Triggers and state attribute are added by the machine (see machine.TRANSITIONS).
    state: str
    begin: Callable[..., Coroutine[Any, Any, bool]]
    known: Callable[..., Coroutine[Any, Any, bool]]
    unknown: Callable[..., Coroutine[Any, Any, bool]]
    forgotten: Callable[..., Coroutine[Any, Any, bool]]
    wedged: Callable[..., Coroutine[Any, Any, bool]]
    reset: Callable[..., Coroutine[Any, Any, bool]]
    found: Callable[..., Coroutine[Any, Any, bool]]
    connected: Callable[..., Coroutine[Any, Any, bool]]
    subscribed: Callable[..., Coroutine[Any, Any, bool]]
    lost: Callable[..., Coroutine[Any, Any, bool]]
    refuse: Callable[..., Coroutine[Any, Any, bool]]
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
        locks: PackLocks | None = None,
        clock: PollClock | None = None,
        drain: AnswerDrain | None = None,
    ) -> None:
        self.pack = pack
        self.address = address.upper()
        self.port = port
        self.scheduler = scheduler
        self.config = config or LinkConfig()
        self.clock = clock or PollClock(self.config.poll_interval)  # the bank's, shared by its packs
        self.drain = drain or AnswerDrain(answer_drain_ceiling(self.config))  # likewise
        self.states: Subject[LinkEvent] = Subject()
        self.readings: Subject[PackReading] = Subject()
        self.decoder = PollDecoder(pack, self.address, on_drop=self._on_drop, on_handshake=self._on_handshake)
        # The flight recorder's tap: (pack, TX or RX, bytes) for every request written and notification
        # received. None costs one attribute test per notification.
        self.on_traffic: Callable[[int, int, bytes], None] | None = None
        self.connects = 0  # successful connections, for tests and logs
        self.locks = locks or PackLocks()
        self.pairings = 0  # bonds made by this link (not counting ones BlueZ already held)
        self.lock_problem = ""  # what the last refusal said ("" while none): for doctor and tests
        self._auth_answers: asyncio.Queue[jbd.AuthFrame | None] = asyncio.Queue(maxsize=4)
        self._last_request = b""
        self._echoes = 0
        self._warned_no_lock = False
        self._rebonded = False  # a bond made without the passkey was removed once already
        self.last_reason = ""
        # 0x03 and 0x04 every poll interval: the rate at which an outage misses requests
        self.answers = AnswerWindow(request_interval=self.config.poll_interval / 2)
        self._rssi: tuple[int, float] | None = None  # (dBm, when), the last value BlueZ reported
        port.scanner.on_rssi[self.address] = self._on_rssi
        self._rng = random.Random(self.config.seed * 1_000_003 + pack)
        self._attempt = 0
        self._activity: asyncio.Task[None] | None = None
        self._teardown_task: asyncio.Task[None] | None = None
        self._trigger: asyncio.Task[bool] | None = None  # a trigger fired from a bleak callback
        self._device: BLEDevice | None = None
        self._client: BleakClient | None = None
        self._transport: GattTransport | None = None
        self.methods = Methods(self.config.notify_method, self.config.write_method, self._log_text)
        self._learned_with_response: bool | None = None  # the write type this unit answered last
        self._answered = False  # this connection has had an answer
        self._switched_write_type = False
        # The request in flight's answer: True when a frame completes, False when the timer ran out first.
        self._answer: asyncio.Future[bool] | None = None
        self._request_time = 0.0
        self._answered_at_tick = False  # the poll's last answer was read whole at a tick
        self._timeouts_in_row = 0
        self._fresh_connection = False
        self._failure_kind = ""
        self._same_failures = 0
        self._forget_due = False
        self._unpowered_seen = 0  # the port's cycles_finished when this link last found it unpowered
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
            lock=self.lock_problem,
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
        elif self.state == REFUSED:
            # One ERROR per kind of refusal: the retries every few minutes repeat it only at INFO.
            level = logging.ERROR if reason != self.lock_problem else logging.INFO
            self.lock_problem = reason
            retry = self.config.timeouts.refused
            self._log(level, "%s (next try in %.0f min)", reason, retry / 60)
        elif self.state == POLLING:
            self._log(
                logging.INFO, "polling every %g s (connection %d)", self.config.poll_interval, self.connects
            )
        else:
            self._log(logging.INFO if self.state == IDLE else logging.DEBUG, "%s", reason or "entered")
        if self.state in (BACKOFF, LOCATING, REFUSED):
            # Not an activity: a teardown cut short by the next state change could leave the pack connected.
            self._start_teardown()
        self.states.on_next(LinkEvent(self.pack, self.address, self._now(), LinkState(self.state), reason))
        activity = self._ACTIVITIES.get(self.state)
        if activity is not None and not self._closing:
            self._activity = asyncio.get_running_loop().create_task(self._run_activity(activity))

    def plan_backoff(self, event: Any) -> None:
        """Before entering backoff: its timeout becomes the next delay of the exponential series; the same
        failure again and again (not an absence) marks the device for removal from BlueZ."""
        delay = self.config.backoff.delay(self._attempt, self._rng)
        self._attempt += 1
        self._machine.get_state(BACKOFF).timeout = delay
        self._count_failure(str(event.kwargs.get("reason", "")))

    def in_origin(self, event: Any) -> bool:
        return event.kwargs.get("origin", self.state) == self.state

    async def timed_out(self, event: Any) -> None:
        await self.fail(origin=self.state, reason=f"{self.state} timed out")

    def _count_failure(self, reason: str) -> None:
        if _ABSENCE.search(reason):
            self._failure_kind, self._same_failures = "", 0
            return
        kind = re.sub(r"\d+", "#", reason)
        self._same_failures = self._same_failures + 1 if kind == self._failure_kind else 1
        self._failure_kind = kind
        if self._same_failures >= self.config.timeouts.forget_after:
            self._forget_due = True
            self._failure_kind, self._same_failures = "", 0

    # ----- activities ----------------------------------------------------------------------------

    async def _run_activity(self, activity: Callable[[PackLink], Coroutine[Any, Any, str]]) -> None:
        """Run one state's work, then fire its outcome: the trigger it returns, or ``fail``."""
        origin = self.state
        try:
            trigger, reason = await activity(self), ""
        except _LinkDown as exc:
            trigger, reason = "fail", str(exc)
        except _Refused as exc:
            trigger, reason = "refuse", str(exc)
        except Exception as exc:  # a bug or an unexpected bleak error: never leave the link stuck
            log.exception("pack %d %s [%s] unexpected error", self.pack, self.address, origin)
            trigger, reason = "fail", f"unexpected error: {_describe(exc)}"
        if self._activity is asyncio.current_task():
            self._activity = None  # done: leaving the state must not cancel the task firing the trigger
        await getattr(self, trigger)(origin=origin, reason=reason)

    async def _locate(self) -> str:
        """Ask BlueZ about the pack. Known device: connect to it at once (a connected pack sends no adverts,
        so waiting for one after our own restart would wait forever)."""
        await self._finish_teardown()
        port, bluez = self.port, self.port.bluez
        cycles_before = port.cycles_finished  # taken before asking: BlueZ's answer is at least this new
        try:
            name = port.adapter or await port.resolve()
            view = await bluez.view()
        except BluezError as exc:
            raise _LinkDown(f"BlueZ unreachable: {exc}") from exc
        adapter = view.adapters.get(name) or port.renamed(view.adapters)
        if adapter is None:
            raise _LinkDown(f"no adapter {name} in BlueZ (has {describe_adapters(view.adapters)})")
        name = adapter.name
        if not adapter.powered:
            if port.may_power_cycle():
                self._unpowered_seen = cycles_before
                return "wedged"
            raise _LinkDown(f"{name} not powered and power-cycled too often already")
        device = view.device(name, self.address)
        if device is None:
            return "unknown"
        if self._forget_due:
            self._forget_due = False
            self._log(logging.WARNING, "the same failure again and again: removing the device from BlueZ")
            await self._bluez(bluez.remove_device(name, device.path))
            return "forgotten"
        if device.connected:
            # Left by a previous client (our own process before a crash or os._exit, or another program):
            # BlueZ keeps such links. Close it and start a session of our own, as bleak-retry-connector's
            # close_stale_connections does.
            self._log(logging.INFO, "BlueZ holds a connection we did not make: closing it first")
            await self._bluez(bluez.disconnect(device.path))
        rssi = device.props.get("RSSI")
        if isinstance(rssi, int):  # BlueZ's last advert (kept while discovery runs for anyone)
            self._on_rssi(rssi)
        from bleak.backends.device import BLEDevice

        self._device = BLEDevice(device.address, device.name, {"path": device.path, "props": device.props})
        return "known"

    async def _bluez(self, call: Coroutine[Any, Any, None]) -> None:
        try:
            async with asyncio.timeout(self.config.timeouts.disconnect):
                await call
        except (BluezError, TimeoutError) as exc:
            raise _LinkDown(f"BlueZ: {_describe(exc)}") from exc

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
            hint = SLOTS_HINT if "connection-limit" in str(exc) else ""
            raise _LinkDown(f"connect failed: {_describe(exc)}{hint}") from exc
        self._client = client
        self.connects += 1
        return "pair" if self.locks.passkey is not None else "connected"

    async def _pair(self) -> str:
        """Make sure BlueZ holds a bond made with our passkey; pairs only when it does not."""
        client, device, agent = self._client, self._device, self.port.agent
        assert client is not None and device is not None and agent is not None
        try:
            await agent.register()  # again each time: bluetoothd forgets agents when it restarts
            if await agent.is_paired(device.details["path"]):
                return "paired"
            self._log(logging.INFO, "pairing with the configured passkey")
            await client.pair()
        except Exception as exc:
            error = getattr(exc, "dbus_error", "")
            if error in PAIRING_REFUSALS:
                short = error.rsplit(".", 1)[-1]
                raise _Refused(LOCK_MESSAGES["pairing_refused"].format(error=short)) from exc
            raise _LinkDown(f"pairing failed: {_describe(exc)}") from exc
        self.pairings += 1
        self._log(logging.INFO, "paired; BlueZ keeps the bond for the next connections")
        return "paired"

    async def _subscribe(self) -> str:
        client = self._client
        assert client is not None
        self.decoder.assembler.reset()
        try:
            transport = await GattTransport.open(client, self._on_notify, self.methods)
        except TransportError as exc:
            if _not_paired(exc.__cause__):
                raise await self._bond_refused("not_paired") from exc
            raise _LinkDown(str(exc)) from exc
        if self._learned_with_response is not None and transport.offers_both_write_types:
            transport.with_response = self._learned_with_response
        self._transport = transport
        self._answered = self._switched_write_type = False
        self._timeouts_in_row = 0
        self._echoes = 0
        self._fresh_connection = True
        return "authenticate" if self.locks.password is not None else "subscribed"

    async def _authenticate(self) -> str:
        """The FF AA handshake the app does: app key, random byte, password mixed with our MAC and it.
        Bounded by the state's timeout; the password leaves only inside the 0x18 frame."""
        password = self.locks.password
        assert password is not None
        try:
            async with asyncio.timeout(self.config.timeouts.request):
                key = await self._handshake(jbd.app_key_request())
        except TimeoutError:
            # An older module ignores FF AA altogether: it has no password lock, so a PASSWORD set for it
            # must not keep it from polling. (Locked modules answered in 18-60 ms in the captures.)
            level = logging.INFO if self._warned_no_lock else logging.WARNING
            self._warned_no_lock = True
            self._log(level, "PASSWORD is set but the pack ignores the FF AA handshake: polling without it")
            return "authenticated"
        if key.answer == 0x02:  # the module says it has no password: nothing more to do
            self._log(logging.INFO, "the pack has no password set; PASSWORD is not needed")
            return "authenticated"
        if key.answer != jbd.ANSWER_ACCEPTED:
            raise _Refused(LOCK_MESSAGES["app_key_refused"] + f" ({key.meaning()})")
        random_byte = (await self._handshake(jbd.random_request())).answer
        verdict = await self._handshake(jbd.password_request(self.address, password.reveal(), random_byte))
        if verdict.answer != jbd.ANSWER_ACCEPTED:
            raise _Refused(LOCK_MESSAGES["wrong_password"])
        return "authenticated"

    async def _handshake(self, request: bytes) -> jbd.AuthFrame:
        """Write one FF AA frame and wait (unbounded here) for the module's answer to that command."""
        self._drain_auth_answers()
        self._watch_answers()
        await self._write(request)
        while True:
            answer = await self._auth_answers.get()
            if answer is None:  # our own bytes came back
                raise await self._echoing()
            if answer.command == request[2] and len(answer.data) == 1:
                return answer

    async def _reset(self) -> str:
        await self._finish_teardown()
        if not await self.port.power_cycle(self._unpowered_seen):
            raise _LinkDown("adapter power cycle did not bring it back")
        return "reset"

    async def _poll(self) -> str:
        """Poll on every tick of the bank's clock until the link dies (raises :class:`_LinkDown`)."""
        await self._read_model()
        while True:
            began = self.clock.ticks
            await self._poll_once()
            # At once when 0x04's answer was read whole at a tick: that tick was this pack's.
            await self.clock.tick(after=began if self._answered_at_tick else None)

    async def _poll_once(self) -> None:
        self._answered_at_tick = False
        if await self._request(BASIC_INFO_REQUEST):
            await self._request(CELL_VOLTAGES_REQUEST, last=True)

    async def _read_model(self) -> None:
        """Register 0x05 once per connection (the decoder keeps the answer). A BMS that does not answer it
        still polls fine, so its silence does not count toward ``dead_after``."""
        if not await self._request(HARDWARE_REQUEST):
            self._timeouts_in_row = 0

    async def _write(self, request: bytes) -> None:
        transport = self._transport
        assert transport is not None
        self._last_request = request
        if self.on_traffic is not None:
            self.on_traffic(self.pack, TX, request)
        try:
            await transport.write(request)
        except TransportError as exc:
            if _not_paired(exc.__cause__):
                raise await self._bond_refused("not_paired") from exc
            raise _LinkDown(str(exc)) from exc

    async def _request(self, request: bytes, last: bool = False) -> bool:
        """Send one request and wait for a complete answer; False when it timed out. The ``last`` request of
        a poll may have its answer read at the next tick (see :meth:`_read_answer`)."""
        transport = self._transport
        assert transport is not None
        self._request_time = self._now()
        self.answers.sent(self._request_time)  # unanswered until the answer comes
        loop = asyncio.get_running_loop()
        # A future the notification callback resolves and one timer: no task, Event or timeout context per
        # request (on a small CPU each costs more than decoding the answer).
        answer = self._answer = loop.create_future()
        try:
            await self._write(request)  # the answer may come before a WriteValue's reply does
            sent = loop.time()
            sock = transport.notify_socket
            deadline = sent + self.config.timeouts.request
            tick = 0.0  # loop time of the tick that reads the answer (0: read by the drain, or as it comes)
            if sock is not None and not answer.done():
                tick = self._read_answer(sock, answer, last)
            if tick:  # a late answer still has half a timeout after that tick to finish
                deadline = max(deadline, tick + self.config.timeouts.request / 2)
            timer = loop.call_at(deadline, _no_answer, answer)
            try:
                answered = await answer
            finally:
                timer.cancel()
        finally:
            self._answer = None
        if answered and sock is not None:
            if not sock.watched:  # read whole by the drain or the tick
                self._answered_at_tick = tick > 0
            elif not tick:  # it came on its own wake-ups: time it
                self.drain.timed(loop.time() - sent)
        if not answered:
            self._timeouts_in_row += 1
            self._flush()
            if self._echoes and self._fresh_connection:  # our own bytes came back: no need to wait more
                await self._diagnose_silence()
            if self._try_other_write_type(transport):
                return False
            if self._timeouts_in_row >= self.config.timeouts.dead_after:
                self._silent_under_acquire(transport)
                if self._fresh_connection:  # not one reading on this connection: is the pack locked?
                    await self._diagnose_silence()
                raise _LinkDown(f"{self._timeouts_in_row} poll timeouts in a row") from None
            self._log(logging.DEBUG, "no answer to 0x%02x (%d in a row)", request[2], self._timeouts_in_row)
            return False
        self._timeouts_in_row = 0
        self.answers.answered()
        if not self._answered:
            self._answered = True
            self._learned_with_response = transport.with_response
        return True

    def _read_answer(self, sock: NotifySocket, answer: asyncio.Future[bool], last: bool) -> float:
        """Hand the socket over to be read together with the other packs' answers: at the next tick (the
        last request of a poll, when the tick is near: no wake-up of its own), else by the bank's drain.
        Returns the tick's loop time when it is read then, else 0."""
        delay = self.drain.delay
        if last and delay is not None:  # answers are no longer being timed
            due = self.clock.next_tick()
            # not when the tick is too near for the answer to be there (it would be late for certain)
            if delay <= due - asyncio.get_running_loop().time() <= READ_AT_TICK_WITHIN:
                return self.clock.read_at_tick(sock, answer)
        self.drain.take(sock, answer)
        return 0.0

    def _silent_under_acquire(self, transport: GattTransport) -> None:
        """Some units stop notifying under AcquireNotify (or BlueZ closes the socket) while the link stays
        up: the next connections use StartNotify. A pack out of reach loses its link instead and keeps the
        socket way."""
        client = self._client
        if transport.notify_acquired and client is not None and client.is_connected:
            silent = self._timeouts_in_row
            self.methods.notify_fell_back(f"no answer through the AcquireNotify socket ({silent} polls)")

    def _try_other_write_type(self, transport: GattTransport) -> bool:
        """Some units list write-without-response but only answer write requests (or the other way round):
        a connection that never got an answer tries the other write type once before calling the link dead."""
        if self._answered or self._switched_write_type or not transport.offers_both_write_types:
            return False
        if self._echoes:  # our requests come back: a lock, not the write type (see _diagnose_silence)
            return False
        if self._timeouts_in_row < min(2, self.config.timeouts.dead_after):
            return False
        transport.with_response = not transport.with_response
        self._switched_write_type = True
        self._timeouts_in_row = 0
        self._log(
            logging.WARNING,
            "no answer to any request: trying write %s response",
            "with" if transport.with_response else "without",
        )
        return True

    async def _diagnose_silence(self) -> None:
        """A pack that never answered a read on this connection: say which lock it is, if any (raises
        :class:`_Refused`); return when none shows."""
        if self._echoes:
            raise await self._echoing()
        if self.locks.password is not None:
            return  # the handshake was accepted; the silence is something else
        # A locked module relays no DD A5 but answers the app key the official app always sends.
        self._drain_auth_answers()
        self._watch_answers()
        await self._write(jbd.app_key_request())
        try:
            async with asyncio.timeout(self.config.timeouts.request):
                while (answer := await self._auth_answers.get()) is not None:
                    if answer.command == jbd.AUTH_APP_KEY:
                        raise _Refused(LOCK_MESSAGES["needs_password"])
        except TimeoutError:
            return
        raise await self._echoing()  # the probe itself came back as an echo

    async def _echoing(self) -> Exception:
        return await self._bond_refused("echo")

    async def _bond_refused(self, sign: str) -> Exception:
        """What to do about a unit that wants a passkey bond it does not have (``sign``: it says "Not
        paired", or it echoes our requests). Without a PASSKEY, say so. With one, the bond BlueZ holds is
        not one the unit accepts (made Just Works, or the unit forgot it: BlueZ would skip pairing for
        ever), so remove it once and let the next connection pair with the passkey; if that does not
        help either, say so."""
        if self.locks.passkey is None:
            return _Refused(LOCK_MESSAGES[sign])
        if self._rebonded:
            return _Refused(LOCK_MESSAGES["echo_bonded" if sign == "echo" else "bond_refused"])
        self._rebonded = True
        self._log(logging.WARNING, "the unit does not accept the bond BlueZ holds (%s); re-pairing", sign)
        client = self._client
        if client is not None:
            with contextlib.suppress(Exception):
                await client.unpair()  # RemoveDevice: the bond and the device object go
        return _LinkDown("a bond the unit does not accept was removed; pairing again with PASSKEY")

    def _watch_answers(self) -> None:
        """Notifications delivered as they come (the handshake and the lock probe wait for them without
        the bank's drain)."""
        sock = self._transport.notify_socket if self._transport is not None else None
        if sock is not None:
            sock.watch()

    def _drain_auth_answers(self) -> None:
        while not self._auth_answers.empty():
            self._auth_answers.get_nowait()

    _ACTIVITIES: ClassVar[dict[str, Callable[[PackLink], Coroutine[Any, Any, str]]]] = {
        LOCATING: _locate,
        SCANNING: _scan,
        CONNECTING: _connect,
        PAIRING: _pair,
        SUBSCRIBING: _subscribe,
        AUTHENTICATING: _authenticate,
        POLLING: _poll,
        RESETTING: _reset,
    }

    # ----- bleak callbacks -----------------------------------------------------------------------

    def _on_notify(self, _sender: object, data: bytearray) -> None:
        # Hot path: no logging, no clock read (readings carry the time their request was sent).
        if self.on_traffic is not None:
            self.on_traffic(self.pack, RX, data)
        if data == self._last_request:  # our own bytes back: a unit that wants a passkey bond
            self._echoes += 1
            self._on_handshake(None)
            return
        assembler = self.decoder.assembler
        frames = assembler.frames
        for reading in self.decoder.feed(data, self._request_time):
            self._publish(reading)
        if assembler.frames != frames:
            answer = self._answer
            if answer is not None and not answer.done():
                answer.set_result(True)

    def _on_handshake(self, answer: jbd.AuthFrame | None) -> None:
        """An FF AA answer (None: an echo) for whoever waits in the handshake or the lock probe."""
        with contextlib.suppress(asyncio.QueueFull):  # nobody waiting: an old answer is worth nothing
            self._auth_answers.put_nowait(answer)

    def _on_disconnected(self, client: BleakClient) -> None:
        if client is not self._client or self._closing:
            return
        loop = asyncio.get_running_loop()
        if self.state == POLLING and self._attempt == 0 and not self._fresh_connection:
            # It was delivering: reconnect to the known device at once (packs dropped together by another
            # client come back one after the other, each within a connect's time).
            self._trigger = loop.create_task(self.lost(origin=POLLING, reason="link lost"))
        elif self.state in (PAIRING, SUBSCRIBING, AUTHENTICATING, POLLING):
            self._trigger = loop.create_task(self.fail(origin=self.state, reason="link lost"))

    def _on_rssi(self, rssi: int) -> None:
        self._rssi = (rssi, self._now())

    def _on_drop(self, reason: str, raw: bytes) -> None:
        self._log(logging.DEBUG, "dropped %d bytes: %s", len(raw), reason)

    # ----- helpers -------------------------------------------------------------------------------

    def _publish(self, reading: PackReading) -> None:
        if self._fresh_connection:
            self._fresh_connection = False
            self._attempt = 0  # a working link resets the backoff series
            self.lock_problem = ""  # it answers now (a lock fixed in the app, a retry that passed)
            self._rebonded = False
            self._failure_kind, self._same_failures, self._forget_due = "", 0, False
        self.readings.on_next(reading)

    def _flush(self) -> None:
        reading = self.decoder.flush()
        if reading is not None:
            self._publish(reading)

    def _start_teardown(self) -> None:
        if self._client is not None:
            self._teardown_task = asyncio.get_running_loop().create_task(self._teardown())

    async def _teardown(self) -> None:
        """Stop notifications and disconnect, bounded; also waits for a teardown already under way."""
        pending = self._teardown_task
        if pending is not None and not pending.done() and pending is not asyncio.current_task():
            with contextlib.suppress(Exception):
                await asyncio.shield(pending)
        client, self._client = self._client, None
        transport, self._transport = self._transport, None
        self._flush()
        if client is None:
            return
        try:
            async with asyncio.timeout(self.config.timeouts.disconnect):
                if transport is not None:
                    with contextlib.suppress(Exception):
                        await transport.close()
                await client.disconnect()
        except Exception as exc:  # the link is going away regardless; say so and move on
            self._log(logging.DEBUG, "disconnect: %s", _describe(exc))

    async def _finish_teardown(self) -> None:
        pending = self._teardown_task
        if pending is not None and not pending.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(pending)

    def _now(self) -> float:
        assert self.scheduler is not None, "a link needs a scheduler before it starts"
        return scheduler_seconds(self.scheduler)

    def _log_text(self, level: int, text: str) -> None:
        self._log(level, "%s", text)

    def _log(self, level: int, message: str, *args: object) -> None:
        if log.isEnabledFor(level):
            log.log(level, "pack %d %s [%s] " + message, self.pack, self.address, self.state, *args)


def answer_drain_ceiling(config: LinkConfig) -> float:
    """The longest the bank's answer drain may wait: a poll round's two requests fit in a quarter of the
    interval each, and a drain never outlasts half a request's timeout."""
    return min(config.poll_interval / 4, config.timeouts.request / 2)


def _no_answer(answer: asyncio.Future[bool]) -> None:
    if not answer.done():
        answer.set_result(False)


async def _disconnect(client: BleakClient) -> None:
    with contextlib.suppress(Exception):
        await client.disconnect()


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
