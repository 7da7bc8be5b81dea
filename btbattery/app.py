"""The service: links -> pipeline -> D-Bus, with a watchdog, clean shutdown and clear fatal errors.

This is the thin I/O shell around the pure stages. Exit codes are for runit: 0 after SIGTERM/SIGINT, non-zero
for anything that should make the supervisor restart us (no adapter, bus lost, stalled loop, no data).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar

from btbattery.config import Config
from btbattery.model import BankState, ChargeLimits, LinkState
from btbattery.pipeline.alerts import ALARM
from btbattery.pipeline.disconnect import STOPPING
from btbattery.pipeline.plausibility import reading_cell_count
from btbattery.recorder import ErrorTrigger

if TYPE_CHECKING:
    from btbattery.dbus.recorder import RecorderHost

T = TypeVar("T")
log = logging.getLogger("btbattery")

EXIT_OK = 0
EXIT_FATAL = 1  # no adapter, bus lost, ...
EXIT_WATCHDOG = 3  # stalled loop or no data: runit restarts us

# How long to wait for every pack's first reading before publishing, so the cell paths exist when the
# name appears (Venus clients read GetItems once). Packs still silent then get paths when they report.
FIRST_READINGS_WAIT = 6.0
SUMMARY_EVERY = 300.0  # s between INFO summary lines
# s the stop state stays published before the name is released: DVCC reads the battery on a 1 s timer
# (dbus-systemcalc-py delegates/dvcc.py, GLib.timeout_add(1000, ..., self._on_timer)), so two of its ticks.
STOP_STATE_HOLD = 2.0
# s between the loop's heartbeats (the watchdog thread reads it; fewer when a timeout is short)
HEARTBEAT_INTERVAL = 5.0
# s the poll clock's tick comes before the publish tick on the same grid. reactivex keeps its due times in
# whole microseconds, so its tick is within 1 us of the grid; a poll tick 10 us earlier runs first when the
# loop wakes for both (asyncio runs every timer due by the time it woke, in order).
TICK_LEAD = 10e-6


@dataclass(frozen=True, slots=True)
class RunOptions:
    dbus_address: str | None = None
    service_name: str = "com.victronenergy.battery.virtual_parallel"
    adapter: str | None = "hci0"
    device_instance: int = 1
    state_file: str | None = None
    no_data_timeout: float = 600.0  # s without any pack's reading before the watchdog exits
    stall_timeout: float = 60.0  # s the event loop may be blocked before the watchdog exits


class Fatal(Exception):
    """An unrecoverable fault: one clear message, non-zero exit."""

    def __init__(self, message: str, code: int = EXIT_FATAL) -> None:
        super().__init__(message)
        self.code = code


async def check_adapter(adapter: str | None, *more: str | None) -> None:
    """Refuse to start without BlueZ and the adapters asked for (by name or by Bluetooth address): retrying
    forever would only hide the fault."""
    from btbattery.bluez import BluezMissing, managed_objects
    from btbattery.link.bluez import adapters_of, describe_adapters, resolve_adapter

    try:
        found = adapters_of(await managed_objects())
    except (OSError, EOFError) as exc:
        raise Fatal(f"no system D-Bus to reach BlueZ: {exc}") from None
    except BluezMissing:
        raise Fatal(
            "no Bluetooth: BlueZ (org.bluez) is not running; is Bluetooth enabled on this device?"
        ) from None
    for spec in dict.fromkeys((adapter, *more)):
        name = resolve_adapter(spec, found)
        if name is None:
            wanted = f"adapter {spec}" if spec else "a Bluetooth adapter"
            raise Fatal(f"no Bluetooth adapter: BlueZ has {describe_adapters(found)}, wanted {wanted}")
        if spec and spec != name:
            log.info("adapter %s is %s", spec, name)


class Watchdog:
    """Exits for runit when the loop stalls (a thread notices) or no pack has delivered data for too long."""

    # s the stall watchdog gives the loop to release the packs before os._exit (if it runs at all).
    RELEASE_WAIT = 3.0

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        options: RunOptions,
        fatal: asyncio.Future[int],
        on_stall: Callable[[], Coroutine[Any, Any, Any]] | None = None,
    ) -> None:
        self._loop = loop
        self._options = options
        self._fatal = fatal
        self._on_stall = on_stall
        self._beat = time.monotonic()
        self._last_data = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch_stall, name="watchdog", daemon=True)

    def start(self) -> None:
        self._loop.call_soon(self._heartbeat)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def saw_data(self) -> None:
        self._last_data = time.monotonic()

    def _heartbeat(self) -> None:
        now = time.monotonic()
        self._beat = now
        silent = now - self._last_data
        if silent > self._options.no_data_timeout and not self._fatal.done():
            log.error("watchdog: no pack has delivered data for %.0f s; exiting for a restart", silent)
            self._fatal.set_result(EXIT_WATCHDOG)
        if not self._stop.is_set():
            self._loop.call_later(self._heartbeat_interval(), self._heartbeat)

    def _heartbeat_interval(self) -> float:
        """Seldom enough not to be a wake-up of its own every second (on a GX each one costs more than the
        work in it), often enough for both timeouts: a fraction of each."""
        options = self._options
        return min(HEARTBEAT_INTERVAL, options.no_data_timeout / 4, options.stall_timeout / 8)

    def _watch_stall(self) -> None:
        import os

        limit = self._options.stall_timeout
        while not self._stop.wait(limit / 4):
            stalled = time.monotonic() - self._beat
            if stalled > limit:
                log.critical("watchdog: event loop stalled for %.0f s; exiting for a restart", stalled)
                self._release_packs()
                logging.shutdown()
                os._exit(EXIT_WATCHDOG)

    def _release_packs(self) -> None:
        """Ask the loop to disconnect the packs, for a few seconds: a loop that is only slow still does it,
        and BlueZ would otherwise keep the links after we are gone. A dead loop does not; the next start
        then closes the connections it finds (see link.pack_link, locating)."""
        if self._on_stall is None or self._loop.is_closed():
            return
        import concurrent.futures

        future = asyncio.run_coroutine_threadsafe(self._on_stall(), self._loop)
        try:
            future.result(timeout=self.RELEASE_WAIT)
        except (concurrent.futures.TimeoutError, Exception) as exc:
            future.cancel()
            log.critical("watchdog: could not release the packs before exiting (%s)", type(exc).__name__)


class StateLog:
    """Logs what a person reading /var/log/dbus-btbattery/current wants: changes, and a periodic summary."""

    def __init__(self) -> None:
        self._active: int | None = None
        self._flags: tuple[bool, bool, bool] | None = None
        self._reasons: tuple[str, ...] = ()
        self._next_summary = 0.0

    def __call__(self, state: BankState) -> None:
        snap, imb, limits = state.snapshot, state.imbalance, state.limits
        if snap.active_packs != self._active:
            log.info("bank: %d of %d packs active", snap.active_packs, snap.total_packs)
            self._active = snap.active_packs
        flags = (imb.voltage, imb.current, imb.soc)
        if flags != self._flags:
            if self._flags is not None or any(flags):
                log.warning(
                    "imbalance: voltage=%d current=%d soc=%d (spreads %s V, %s, %s %%)",
                    *flags,
                    _fmt(imb.voltage_spread),
                    _fmt(imb.current_spread),
                    _fmt(imb.soc_spread),
                )
            self._flags = flags
        # Reasons carry live figures; log when the kind of reason changes, not every figure.
        kinds = tuple(_NUMBER.sub("#", reason) for reason in limits.reasons)
        if kinds != self._reasons:
            log.info("limits: %s", ", ".join(limits.reasons) or "at configured maximum")
            self._reasons = kinds
        if snap.time >= self._next_summary:
            self._next_summary = snap.time + SUMMARY_EVERY
            log.info(
                "bank: %s V %s A SoC %s %%; CVL %.2f V CCL %.1f A DCL %.1f A",
                _fmt(snap.voltage),
                _fmt(snap.current),
                _fmt(snap.soc),
                limits.charge_voltage,
                limits.charge_current,
                limits.discharge_current,
            )


_NUMBER = re.compile(r"-?\d+(\.\d+)?")


def _fmt(value: float | None) -> str:
    return "---" if value is None else f"{value:.2f}"


class Service:
    """One run of the service; ``await run()`` returns the exit code."""

    def __init__(self, config: Config, options: RunOptions) -> None:
        self.config = config
        self.options = options

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        fatal: asyncio.Future[int] = loop.create_future()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, _resolve, fatal, EXIT_OK, sig)
        try:
            return await self._run(loop, fatal)
        except Fatal as exc:
            log.error("%s", exc)
            return exc.code
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    async def _run(self, loop: asyncio.AbstractEventLoop, fatal: asyncio.Future[int]) -> int:
        from btbattery.dbus import writer
        from btbattery.dbus.busitem import connect_bus
        from btbattery.link.manager import LinkManager
        from btbattery.link.pack_link import PackLocks
        from btbattery.pipeline.streams import build_pipeline, loop_scheduler
        from btbattery.statefile import DEFAULT_STATE_FILE, charge_mode_io

        writer.install()  # before any connection, bleak's to BlueZ included: a full socket is not a lost bus
        packs = self.config.packs
        own_adapters = {p.number: p.adapter for p in packs if p.adapter}
        await check_adapter(self.options.adapter, *own_adapters.values())
        try:
            bus = await connect_bus(self.options.dbus_address)
        except (OSError, EOFError) as exc:
            raise Fatal(f"cannot connect to the D-Bus to publish on: {exc}") from None
        recorder = self._recorder(bus, loop)
        scheduler = loop_scheduler(loop)
        links = LinkManager(
            [(p.number, p.address) for p in packs],
            self.config.poll_interval,
            scheduler,
            self.options.adapter,
            locks={p.number: PackLocks(p.password, p.passkey) for p in packs},
            pack_adapters=own_adapters,
            notify_method=self.config.notify_method,
            write_method=self.config.write_method,
        )
        watchdog = Watchdog(loop, self.options, fatal, on_stall=lambda: last_word_after_stall(sink, links))
        cells = FirstReadings(len(packs))
        disposables = [
            links.readings.subscribe(on_next=lambda r: watchdog.saw_data()),
            links.states.subscribe(on_next=_log_link_event),
        ]
        error_trigger = None
        if recorder.recorder.enabled:
            for link in links.links:
                link.on_traffic = recorder.recorder.traffic
            disposables.append(links.states.subscribe(on_next=recorder.on_link))
            error_trigger = ErrorTrigger(recorder.incident)
            log.addHandler(error_trigger)
        sink = BankSink(
            on_failure=lambda error: _resolve(fatal, EXIT_FATAL, _lost_what(error)),
            on_state=recorder.on_state if recorder.recorder.enabled else None,
        )
        restore, save = charge_mode_io(self.options.state_file or DEFAULT_STATE_FILE)
        # One grid for asking the packs and publishing (reactivex's periodic timer keeps absolute due times),
        # so one wake-up a second serves both. The poll clock's tick comes a hair before the publish tick,
        # both due in the same wake-up: the answers read at the tick are in what that tick publishes.
        grid = loop.time()
        links.clock.align(grid - TICK_LEAD)
        bank = build_pipeline(
            packs,
            [link.readings for link in links.links],
            [link.states for link in links.links],
            self.config,
            scheduler,
            restore,  # type: ignore[arg-type]
            save,
            first_tick=grid,
        )
        disposables.append(
            bank.subscribe(
                on_next=lambda state: (cells.saw(state), sink(state)),
                on_error=lambda e: _resolve(fatal, EXIT_FATAL, e),
            )
        )
        watchdog.start()
        # The publishing bus can go before the service exists (its own watch starts with it): a start-up
        # wait on a dead bus never ends, so losing it then must end the run too.
        bus_gone = asyncio.ensure_future(bus.wait_for_disconnect())
        bus_gone.add_done_callback(lambda f: _on_bus_gone(f, fatal))
        await links.start()
        service = None
        lost: asyncio.Future[BaseException] | None = None
        try:
            service = await _unless_stopped(self._start_publishing(bus, cells, links), fatal)
            if service is not None:
                sink.attach(service)
                lost = asyncio.ensure_future(service.wait_lost())
                lost.add_done_callback(
                    lambda f: _resolve(fatal, EXIT_FATAL, "the publishing D-Bus connection")
                )
            code = await fatal
        finally:
            watchdog.stop()
            bus_gone.cancel()
            if lost is not None:
                lost.cancel()
            for disposable in disposables:
                disposable.dispose()
            # Before anything slow: the last word DVCC hears from us must be a safe one (stop_state).
            said = loop.time()
            sink.stop(no_data=fatal.done() and fatal.result() == EXIT_WATCHDOG)
            if error_trigger is not None:
                log.removeHandler(error_trigger)
            await recorder.close()
            await links.stop(timeout=5.0)
            if service is not None:
                if bus.connected:  # long enough for DVCC to act on it before the name goes
                    await asyncio.sleep(max(0.0, STOP_STATE_HOLD - (loop.time() - said)))
                with contextlib.suppress(Exception):
                    await service.stop()
            bus.disconnect()
        log.info("stopped (exit %d)", code)
        return code

    async def _start_publishing(self, bus: Any, cells: FirstReadings, links: Any) -> Any:
        """Wait (a bounded time) for every pack's first reading so the cell paths exist, then publish."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(cells.all_seen), FIRST_READINGS_WAIT)
        return await self._publish_service(bus, cells.cells_per_pack, links.stats)

    def _recorder(self, bus: Any, loop: asyncio.AbstractEventLoop) -> RecorderHost:
        """The flight recorder and its D-Bus object, before the battery tree claims the bus name."""
        from btbattery.dbus.recorder import RecorderHost
        from btbattery.recorder import FlightRecorder

        cfg = self.config
        ring = FlightRecorder([p.address for p in cfg.packs], cfg.recorder_minutes, cfg.poll_interval)
        host = RecorderHost(bus, ring, cfg.recorder_dir, cfg.recorder_max_files, loop)
        host.attach()
        if ring.enabled:
            log.info(
                "flight recorder: last %g min, at most %.1f MB in memory, files in %s",
                ring.minutes,
                ring.max_bytes / 1e6,
                cfg.recorder_dir,
            )
        return host

    async def _publish_service(
        self, bus: Any, cells_per_pack: int | None, link_stats: Callable[[], Any] | None = None
    ) -> Any:
        from btbattery.dbus.battery import BatteryService, bank_unique_id
        from btbattery.dbus.settings import device_instance

        addresses = [p.address for p in self.config.packs]
        instance = await device_instance(
            bus, bank_unique_id(addresses), fallback=self.options.device_instance
        )
        kwargs: dict[str, Any] = {}
        if self.options.state_file:
            kwargs["custom_name_store"] = self.options.state_file
        service = BatteryService(
            bus,
            [(p.number, p.address) for p in self.config.packs],
            cells_per_pack=cells_per_pack,
            service_name=self.options.service_name,
            device_instance=instance,
            low_cell_voltage=self.config.min_cell_voltage,
            link_stats=link_stats,
            **kwargs,
        )
        try:
            await service.start()
        except Exception as exc:
            raise Fatal(f"cannot publish {self.options.service_name} on D-Bus: {exc}") from None
        log.info("publishing %s (device instance %d)", self.options.service_name, instance)
        return service


class BankSink:
    """The one subscriber of the bank stream: logs, and publishes once the D-Bus service exists.

    A single subscription matters: each subscription to the pipeline is a bank of its own, and one made late
    would miss the link states already emitted.
    """

    def __init__(
        self,
        on_failure: Callable[[Exception], None] | None = None,
        on_state: Callable[[BankState], None] | None = None,
    ) -> None:
        self._service: Any = None
        self._latest: BankState | None = None  # waiting for the service
        self._newest: BankState | None = None
        self._log = StateLog()
        self._on_failure = on_failure
        self._on_state = on_state  # the flight recorder's incident watch
        self._failed = False

    def attach(self, service: Any) -> None:
        self._service = service
        if self._latest is not None:
            latest, self._latest = self._latest, None
            self._publish(latest)

    def __call__(self, state: BankState) -> None:
        # An exception here would unwind into the pipeline's timer and end it for good: D-Bus would keep
        # showing the last limits while the process looks healthy. Contain it and report it instead.
        try:
            self._log(state)
            if self._on_state is not None:
                self._on_state(state)
        except Exception:
            log.exception("logging the bank state failed")
        self._newest = state
        if self._service is None:
            self._latest = state
        else:
            self._publish(state)

    def stop(self, no_data: bool = False) -> None:
        """Publish the stop state of the newest tick and nothing after it (the pipeline is disposed first)."""
        state, self._latest = self._newest, None
        if self._service is not None and state is not None:
            try:
                self._service.publish(stop_state(state, no_data))
            except Exception as error:  # the bus may be what failed: say so in one line and go on stopping
                log.warning("could not publish the stop state: %r", error)
        self._service = None

    def _publish(self, state: BankState) -> None:
        try:
            self._service.publish(state)
        except Exception as error:
            if not self._failed:  # once: the caller decides (the service exits so runit restarts it)
                self._failed = True
                log.error("publishing the bank on D-Bus failed: %r", error, exc_info=error)
                if self._on_failure is not None:
                    self._on_failure(error)


async def last_word_after_stall(sink: BankSink, links: Any) -> None:
    """What the stall watchdog asks of a loop that may only be slow: the stop state first, then the packs."""
    sink.stop()
    await links.stop(timeout=2.0)


def stop_state(state: BankState, no_data: bool = False) -> BankState:
    """What the service publishes before it releases its name: CCL 0, DCL per the disconnect policy, CVL no
    higher than the last published (state.stop_limits); the cable alarm when it stops for want of data."""
    limits = state.stop_limits
    if limits is None:
        last = state.limits
        limits = ChargeLimits(last.charge_voltage, 0.0, 0.0, last.reasons, STOPPING, STOPPING)
    alerts = replace(state.alerts, bms_cable=ALARM) if no_data else state.alerts
    return replace(state, limits=limits, alerts=alerts, stop_limits=limits)


class FirstReadings:
    """Learns how many cells each pack has from its first reading that passed plausibility (a raw first
    frame claiming 255 cells would otherwise size 510 paths that never go away)."""

    def __init__(self, packs: int) -> None:
        self._counts: dict[int, int] = {}
        self._packs = packs
        self.all_seen: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @property
    def cells_per_pack(self) -> int | None:
        return max(self._counts.values(), default=None)

    def saw(self, state: BankState) -> None:
        if self.all_seen.done():
            return
        for pack in state.snapshot.packs:
            if pack.pack not in self._counts and pack.reading is not None:
                self._counts[pack.pack] = reading_cell_count(pack.reading) or 0
        if len(self._counts) >= self._packs:
            self.all_seen.set_result(None)


def _log_link_event(event: Any) -> None:
    level = logging.WARNING if event.state == LinkState.BACKOFF else logging.INFO
    log.log(
        level,
        "pack %d %s: link %s%s",
        event.pack,
        event.address,
        event.state.value,
        f" ({event.reason})" if event.reason else "",
    )


def _lost_what(error: Exception) -> str:
    """A publish that fails on a broken socket is the publishing connection lost, whichever noticed first."""
    broken = isinstance(error, OSError | EOFError)
    return "the publishing D-Bus connection" if broken else "the D-Bus publisher"


async def _unless_stopped(work: Awaitable[T], fatal: asyncio.Future[int]) -> T | None:
    """``work``'s result, or None when a stop came first (a signal, the bus lost): a stop during start-up
    is obeyed at once, the bus name is never claimed, and a start-up call on a dead bus cannot hold the
    process forever."""
    task = asyncio.ensure_future(work)
    await asyncio.wait({task, fatal}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        return task.result()
    task.cancel()
    await asyncio.wait({task}, timeout=1.0)  # let it unwind; a call stuck on a dead socket is left behind
    return None


def _on_bus_gone(done: asyncio.Future[None], fatal: asyncio.Future[int]) -> None:
    if done.cancelled():
        return
    done.exception()  # retrieved: the reason is logged by whoever notices first
    _resolve(fatal, EXIT_FATAL, "the publishing D-Bus connection")


def _resolve(fatal: asyncio.Future[int], code: int, why: object) -> None:
    if fatal.done():
        return
    if code == EXIT_OK:
        log.info("signal %s: shutting down", getattr(why, "name", why))
    else:
        log.error("fatal: %s lost; exiting for a restart", why)
    fatal.set_result(code)
