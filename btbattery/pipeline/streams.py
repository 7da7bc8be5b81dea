"""Rx wiring: per-pack readings and link events -> one :class:`~btbattery.model.BankState` per publish tick.

    readings_i, link_states_i --(stamp, contain errors)--> PackFeed_i (starts offline)
    combine_latest(PackFeed_1..N) --sampled by a timer every PUBLISH_INTERVAL--> freshness gate
    -> BankSnapshot -> ImbalanceDetector -> target limits -> rate limit -> BankState

The timer (not the data) drives the output, so staleness is noticed when nothing arrives and the D-Bus sink
gets exactly one batch per cycle. Every time-based operator is given the pipeline's scheduler; all times come
from that scheduler's clock. A pack whose stream fails is treated as a lost link: it ages out of the bank and
the other packs carry on.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import reactivex
from reactivex import Observable
from reactivex import operators as ops
from reactivex.abc import SchedulerBase
from reactivex.disposable import MultipleAssignmentDisposable

from btbattery.config import Config, PackSpec
from btbattery.link.clock import scheduler_clock
from btbattery.model import (
    BankSnapshot,
    BankState,
    ChargeLimits,
    ImbalanceStatus,
    LinkEvent,
    PackReading,
    PackStatus,
)
from btbattery.pipeline import chargemode
from btbattery.pipeline.aggregate import PackFeed, aggregate, feed_error, feed_link, feed_reading, judge_pack
from btbattery.pipeline.alerts import AlertTracker
from btbattery.pipeline.chargemode import ChargeState
from btbattery.pipeline.disconnect import DisconnectPolicy
from btbattery.pipeline.imbalance import ImbalanceDetector
from btbattery.pipeline.limits import LimitMemory, next_limits, target_limits
from btbattery.pipeline.plausibility import PackPlausibility
from btbattery.pipeline.sensors import PackTemperatures, SensorMemory, judge_temperatures, sensor_roles

log = logging.getLogger(__name__)

_READING, _LINK, _ERROR = 0, 1, 2
FIRST_SAVE_AFTER = 3600.0  # s of running before a state file that holds nothing yet is written


def loop_scheduler(loop: asyncio.AbstractEventLoop) -> SchedulerBase:
    """The live scheduler: reactivex's asyncio scheduler with the loop's monotonic clock as ``now``.

    The stock one reports the wall clock, so a clock step (NTP after boot on a device without a real-time
    clock) would age every pack out at once (CCL = DCL = 0 for a tick, then a slow ramp) or hand the rate
    limiter a whole step's worth of rise in one tick. Links and pipeline must share this one scheduler."""
    from reactivex.scheduler.eventloop import AsyncIOScheduler

    class LoopClockScheduler(AsyncIOScheduler):
        @property
        def now(self) -> datetime.datetime:
            return self.to_datetime(loop.time())

        seconds = staticmethod(loop.time)  # now, in seconds: see link.clock.scheduler_clock

    return LoopClockScheduler(loop)


def grid_timer(first: float | None, period: float, scheduler: SchedulerBase) -> Observable[int]:
    """Ticks 0, 1, 2, ... at ``first`` (seconds on the scheduler's clock; None: at once) and every ``period``
    after it, on that grid for good: a tick that comes late (a blocked loop) is followed by the next grid
    point. reactivex's own periodic timer starts a new grid from the late tick instead, which would part the
    publish from the poll clock (link.clock.PollClock keeps its grid) and cost a wake-up of its own each
    interval from then on."""

    def subscribe(observer: Any, _scheduler: Any = None) -> Any:
        step = datetime.timedelta(seconds=period)
        due = scheduler.now if first is None else scheduler.to_datetime(first)
        count = 0
        handle = MultipleAssignmentDisposable()

        def action(sched: SchedulerBase, _state: Any = None) -> None:
            nonlocal due, count
            due += step
            now = sched.now
            if due <= now:  # late by a whole period or more: skip to the grid point after now
                due += step * (int((now - due) / step) + 1)
            observer.on_next(count)
            count += 1
            handle.disposable = sched.schedule_absolute(due, action)

        handle.disposable = scheduler.schedule_absolute(due, action)
        return handle

    return Observable(subscribe)


def clock(scheduler: SchedulerBase) -> Callable[[], float]:
    """Seconds on the scheduler's clock (virtual under Historical/TestScheduler, real under asyncio): the
    same reckoning the link stamps readings with."""
    return scheduler_clock(scheduler)


def pack_feed(
    spec: PackSpec,
    readings: Observable[PackReading],
    link_states: Observable[LinkEvent],
    scheduler: SchedulerBase,
    cells_max_age: float = math.inf,
    plausibility: PackPlausibility | None = None,
) -> Observable[PackFeed]:
    """One pack's latest state, starting offline. Errors in either source become a lost link, not an end.
    Cells older than ``cells_max_age`` are not carried over polls that lack them (:func:`feed_reading`).
    Readings pass ``plausibility`` first: an implausible one leaves the feed as it was."""
    now = clock(scheduler)
    judge = plausibility or PackPlausibility(spec.number, spec.address)

    def contained(source: Observable[Any], kind: int) -> Observable[tuple[int, Any]]:
        def on_error(error: Exception, _: Observable[Any]) -> Observable[tuple[int, Any]]:
            log.error(
                "pack %d (%s): %s stream failed: %r", spec.number, spec.address, _KIND_NAMES[kind], error
            )
            return reactivex.just((_ERROR, error))

        return source.pipe(ops.map(lambda item: (kind, item)), ops.catch(on_error))

    def apply(feed: PackFeed, update: tuple[int, Any]) -> PackFeed:
        kind, item = update
        if kind == _READING:
            reading = judge.check(item)
            return feed if reading is None else feed_reading(feed, reading, now(), cells_max_age)
        if kind == _LINK:
            return feed_link(feed, item, now())
        return feed_error(feed, item, now())

    initial = PackFeed(spec.number, spec.address)
    updates = reactivex.merge(contained(readings, _READING), contained(link_states, _LINK))
    return updates.pipe(ops.scan(apply, initial), ops.start_with(initial))


_KIND_NAMES = {_READING: "readings", _LINK: "link-state"}


class BankCycle:
    """What one publish tick does with the packs' latest feeds. Keeps the imbalance windows, the limits'
    memory (rise rates, recovery holds), the charge mode, the temperature sensors' last accepted values and
    when a pack was last active (for /Connected).

    ``charge_state``: the charge mode restored from the state file; ``save_charge_state`` is called with the
    state (and the time) whenever its mode or last SoC reset changes: the caller owns file and wall clock."""

    def __init__(
        self,
        packs: Sequence[PackSpec],
        config: Config,
        start: float,
        charge_state: ChargeState | None = None,
        save_charge_state: Callable[[ChargeState, float], None] | None = None,
    ) -> None:
        self.packs = tuple(packs)
        self._specs = {spec.number: spec for spec in self.packs}
        self.config = config
        self.detector = ImbalanceDetector(config)
        self.alerts = AlertTracker(config, start)
        self.disconnect = DisconnectPolicy(config)
        self.memory = LimitMemory()
        self.charge_state = charge_state or ChargeState()
        self._save_charge_state = save_charge_state
        self._sensors: dict[int, tuple[float, PackTemperatures, SensorMemory]] = {}
        self._roles: dict[tuple[int, int], tuple[tuple[int, ...], int]] = {}
        self.last_time: float | None = None
        self.last_active = start
        self._start = start
        self._saved = charge_state is not None and charge_state.last_soc_reset is not None
        self._previous: tuple[PackStatus, ...] = ()
        self.failing = False
        self._ever_active = False

    @property
    def limits(self) -> ChargeLimits | None:
        return self.memory.limits

    def tick(self, feeds: Sequence[PackFeed], now: float) -> BankState:
        cfg = self.config
        statuses = [judge_pack(feed, now, cfg.pack_stale_after, cfg.pack_dropout_grace) for feed in feeds]
        self._log_changes(statuses, feeds)
        temperatures = self._judge_sensors(statuses)
        snapshot = aggregate(now, statuses, {pack: t.cells for pack, t in temperatures.items()})
        imbalance = self.detector.update(snapshot)
        self._step_charge_mode(snapshot, now)
        voltage = chargemode.voltage_target(self.charge_state, cfg, snapshot.cells_per_pack, now)
        target = target_limits(snapshot, imbalance, self.packs, cfg, voltage, temperatures)
        # At most one interval's rise per tick: a tick that comes late (a blocked loop) must not release
        # a limit in one step, which is what the rise rate prevents.
        since = cfg.publish_interval if self.last_time is None else now - self.last_time
        dt = min(since, cfg.publish_interval)
        # Only the first limits since the service started are taken as computed; after any outage, total or
        # not, they rise at the rise rate like after any other derate (one recovery rule for every outage).
        if snapshot.active_packs > 0 and not self._ever_active:
            self.memory = LimitMemory()
            self._ever_active = True
        outage = not any(s.fresh for s in snapshot.packs)
        computed, self.memory = next_limits(self.memory, target, now, dt, cfg, outage)
        # The whole-bank disconnect policy (BLOCK_ON_DISCONNECT) has the last word while no pack is fresh;
        # what it publishes is where the next tick's rise starts from.
        limits = self.disconnect.apply(snapshot, computed, now)
        if limits is not computed:  # dataclasses.replace is not free on a small CPU: only when it changed
            self.memory = dataclasses.replace(self.memory, limits=limits)
        self.last_time = now
        if snapshot.active_packs:
            self.last_active = now
        if self.failing:
            log.info("bank update works again at t=%.1f", now)
            self.failing = False
        mode = chargemode.describe(self.charge_state, cfg, snapshot.cells_per_pack, now)
        if target.cvl_by_cells:  # serialbattery says "(Cell OVP)": the cells, not the mode, set the CVL now
            mode += " (CVL held by the cells)"
        faults = tuple(
            f"pack {pack} sensor {n}" for pack, t in sorted(temperatures.items()) for n in t.faults
        )
        connected = now - self.last_active < cfg.disconnected_after
        alerts = self.alerts.update(snapshot, now)
        stop = self.disconnect.stop_limits(limits, now)
        return BankState(snapshot, imbalance, limits, connected, alerts, stop, mode, faults)

    def _judge_sensors(self, statuses: Sequence[PackStatus]) -> dict[int, PackTemperatures]:
        """Each active pack's sensors, judged once per new reading (a jump is judged against the last
        accepted value of the same sensor); one warning when a sensor turns faulty, one line when it heals."""
        out: dict[int, PackTemperatures] = {}
        for status in statuses:
            if not status.active or status.reading is None:
                continue
            reading = status.reading
            known = self._sensors.get(status.pack)
            if known is not None and known[0] == reading.time:
                out[status.pack] = known[1]
                continue
            temps = reading.info.temperatures
            roles = self._roles.get((status.pack, len(temps)))
            if roles is None:  # which sensor is what depends only on the pack and how many it reports
                roles = sensor_roles(self._specs.get(status.pack), self.config, len(temps))
                self._roles[(status.pack, len(temps))] = roles
            before = known[1].faults if known is not None else ()
            judged, memory = judge_temperatures(temps, reading.time, roles, known[2] if known else None)
            for number in set(judged.faults) - set(before):
                value = temps[number - 1]
                log.warning("pack %d temperature sensor %d reads %.1f degC: implausible, dropped "
                            "(/Alarms/TemperatureSensor)", status.pack, number, value)  # fmt: skip
            for number in set(before) - set(judged.faults):
                log.info("pack %d temperature sensor %d plausible again", status.pack, number)
            self._sensors[status.pack] = (reading.time, judged, memory)
            out[status.pack] = judged
        return out

    def _step_charge_mode(self, snapshot: BankSnapshot, now: float) -> None:
        before = self.charge_state
        self.charge_state = chargemode.step(before, snapshot, self.config, now)
        after = self.charge_state
        if after.mode != before.mode:
            log.info("charge mode %s -> %s (%s)", before.mode, after.mode, after.reason)
        # Saved when the mode changes or a SoC reset completes. The first start's reference for the SoC reset
        # count (None -> now) is saved only once the service has run FIRST_SAVE_AFTER, so a short run (a
        # test, a demo) never writes a state file it was not given.
        changed = after.mode != before.mode or (
            before.last_soc_reset is not None and after.last_soc_reset != before.last_soc_reset
        )
        first = not self._saved and now - self._start >= FIRST_SAVE_AFTER
        if (changed or first) and self._save_charge_state is not None:
            self._saved = True
            try:
                self._save_charge_state(after, now)
            except OSError as error:  # the limits go on; a lost save only restarts the mode in Bulk
                log.error("charge mode not saved: %s", error)

    def fail_safe(self, feeds: Sequence[PackFeed], now: float, error: Exception) -> BankState:
        """A bug in the bank math must not end the stream or leave old limits up: publish zero currents."""
        if not self.failing:  # once per run of failures, not every second
            log.error("bank update failed at t=%.1f; zero current limits until it works", now, exc_info=error)
        self.failing = True
        cvl = self.limits.charge_voltage if self.limits else 0.0
        limits = ChargeLimits(cvl, 0.0, 0.0, ("internal error",), "internal error", "internal error")
        self.memory = LimitMemory(limits)
        statuses = tuple(PackStatus(f.pack, f.address, f.link_state, f.reading, False, False) for f in feeds)
        snapshot = aggregate(now, statuses)
        return BankState(
            snapshot, ImbalanceStatus(), limits, now - self.last_active < self.config.disconnected_after
        )

    def _log_changes(self, statuses: Sequence[PackStatus], feeds: Sequence[PackFeed]) -> None:
        for before, after, feed in zip(self._previous, statuses, feeds, strict=False):
            if (before.fresh, before.active) == (after.fresh, after.active):
                continue
            what = "fresh" if after.fresh else "stale" if after.active else "out of the bank"
            why = (
                f" ({feed.link_state}{': ' + feed.reason if feed.reason else ''})" if not after.fresh else ""
            )
            log.info("pack %d (%s) %s%s", after.pack, after.address, what, why)
        self._previous = tuple(statuses)


def build_pipeline(
    packs: Sequence[PackSpec],
    readings: Sequence[Observable[PackReading]],
    link_states: Sequence[Observable[LinkEvent]],
    config: Config,
    scheduler: SchedulerBase,
    restore_charge_state: Callable[[float], ChargeState] | None = None,
    save_charge_state: Callable[[ChargeState, float], None] | None = None,
    plausibility: Sequence[PackPlausibility] | None = None,
    first_tick: float | None = None,
) -> Observable[BankState]:
    """The bank, one :class:`BankState` every ``config.publish_interval`` s on ``scheduler`` (first at once).

    ``packs``, ``readings`` and ``link_states`` are aligned: entry i is pack ``packs[i].number``.
    ``restore_charge_state(now)`` gives the charge mode to start in; ``save_charge_state`` see
    :class:`BankCycle`. Each pack's readings are judged by its :class:`PackPlausibility` (given, to read
    its counters, or one per subscription). ``first_tick``: when the first tick is due, in seconds on the
    scheduler's clock (the grid the service's poll clock shares); None: at once, on subscribing.
    """
    if not (len(packs) == len(readings) == len(link_states)):
        raise ValueError("packs, readings and link_states must have one entry per pack")
    if not packs:
        raise ValueError("a bank needs at least one pack")
    now = clock(scheduler)

    def subscribe_bank() -> Observable[BankState]:
        start = now()
        restored = restore_charge_state(start) if restore_charge_state is not None else None
        cycle = BankCycle(packs, config, start, restored, save_charge_state)
        judges = plausibility or [PackPlausibility(spec.number, spec.address) for spec in packs]
        feeds = [
            # Cells as old as a stale pack's data are stale too: the limits must not taper on them.
            pack_feed(spec, r, s, scheduler, config.pack_stale_after, judge)
            for spec, r, s, judge in zip(packs, readings, link_states, judges, strict=True)
        ]
        latest = reactivex.combine_latest(*feeds)
        ticks = grid_timer(first_tick, config.publish_interval, scheduler)

        def tick(pair: tuple[int, tuple[PackFeed, ...]]) -> BankState:
            _, feeds_now = pair
            t = now()
            try:
                return cycle.tick(feeds_now, t)
            except Exception as error:  # the limits must keep coming, and fail toward zero
                return cycle.fail_safe(feeds_now, t, error)

        return ticks.pipe(ops.with_latest_from(latest), ops.map(tick))

    return reactivex.defer(lambda _scheduler: subscribe_bank())
