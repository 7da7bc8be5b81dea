"""When the bank wakes up: one poll clock for every pack, and one read of every pack's answers.

Each pack sleeping on its own timer costs one event-loop wake-up per pack per interval, and each answer
read as it comes costs two or three more (on a GX, a wake-up costs more than the poll it serves). Here the
packs that are polling all wait for one shared tick on a fixed grid, so the loop wakes once per interval and
asks every pack in the same turn; connects stay one at a time (the adapter's lock), so a pack joins the grid
whenever its link comes up. The answers wait in their AcquireNotify sockets: the first request's are read
together by the :class:`AnswerDrain`, the last request's by the next tick just before it lets the packs go
(and, in the service, just before that tick publishes). A bank of any size wakes about twice per interval.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


def scheduler_clock(scheduler: Any) -> Callable[[], float]:
    """Seconds on an Rx scheduler's clock, as a function. The live scheduler (``streams.loop_scheduler``)
    offers ``seconds``, the loop's own clock, without a round trip through ``datetime`` (its ``now``), which
    a small CPU would otherwise pay a few dozen times a second; virtual-time schedulers have only ``now``."""
    seconds = getattr(scheduler, "seconds", None)
    if seconds is not None:
        return seconds
    return lambda: scheduler.to_seconds(scheduler.now)


def scheduler_seconds(scheduler: Any) -> float:
    """Now in seconds on ``scheduler``'s clock (see :func:`scheduler_clock`)."""
    return scheduler_clock(scheduler)()


class PollClock:
    """``await clock.tick()`` returns at the next multiple of ``interval`` (from the first call).

    A tick first reads the answers handed over with :meth:`read_at_tick` (a poll's last request, whose
    answer then costs no wake-up of its own: it waits in its socket until the loop wakes for the tick
    anyway), then lets the waiting packs go."""

    def __init__(self, interval: float) -> None:
        if interval <= 0:
            raise ValueError("poll interval must be positive")
        self.interval = interval
        self._origin: float | None = None
        self._waiters: list[asyncio.Future[None]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._due = 0.0  # loop time of the armed tick
        self._at_tick: list[tuple[Any, asyncio.Future[bool]]] = []
        self.ticks = 0  # timer firings, for tests and benchmarks
        self.late = 0  # answers read at a tick that were not complete yet

    def tick(self, after: int | None = None) -> asyncio.Future[None]:
        """A future of this caller's own (cancelling it leaves the other packs waiting) for the next tick.
        A pack late for a tick waits for the next one rather than bunching requests; one that passes
        ``after`` (:attr:`ticks` when its poll began) goes on at once if a tick came since (its last
        answer was read at that tick)."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        if after is not None and self.ticks > after:
            waiter.set_result(None)
            return waiter
        self._waiters.append(waiter)
        self._arm(loop)
        return waiter

    def next_tick(self) -> float:
        """Loop time of the next tick (arming the timer if needed)."""
        return self._arm(asyncio.get_running_loop())

    def read_at_tick(self, sock: Any, answer: asyncio.Future[bool]) -> float:
        """``sock`` (a :class:`~btbattery.link.transport.NotifySocket`) waits off the loop until the next
        tick, which reads it before anything else; returns when that is (loop time). An answer not complete
        by then gets its socket back on the loop and finishes on its own."""
        due = self._arm(asyncio.get_running_loop())
        sock.pause()
        self._at_tick.append((sock, answer))
        return due

    def _arm(self, loop: asyncio.AbstractEventLoop) -> float:
        if self._timer is None:
            now = loop.time()
            if self._origin is None:
                self._origin = now
            ticks = math.floor((now - self._origin) / self.interval) + 1
            self._due = self._origin + ticks * self.interval
            self._timer = loop.call_at(self._due, self._fire)
        return self._due

    def align(self, origin: float) -> None:
        """Put the grid on ``origin`` (loop time), e.g. the publish timer's: ticks due in the same
        millisecond are served by one wake-up of the loop, so asking the packs costs no wake-up of its own.
        Only before the first tick; afterwards the grid stays where it is."""
        if self._origin is None:
            self._origin = origin

    def _fire(self) -> None:
        self._timer = None
        self.ticks += 1
        entries, self._at_tick = self._at_tick, []
        self.late += read_answers(entries)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for waiter in self._waiters:
            waiter.cancel()
        self._waiters = []
        self._at_tick = []


def read_answers(entries: list[tuple[Any, asyncio.Future[bool]]]) -> int:
    """Read every paused socket of ``entries`` (socket, answer); an answer still not complete gets its
    socket back on the loop, to finish on its own wake-ups. Returns how many were not complete. One pack's
    failure (a bug downstream of its decoder) is logged and never keeps the others' answers unread."""
    late = 0
    for sock, answer in entries:
        if answer.done():  # timed out, or its request was cancelled with the link
            continue
        try:
            sock.drain()
        except Exception:
            log.exception("reading a pack's answer failed")
        if not answer.done():
            sock.watch()
            late += 1
    return late


class _Batch:
    __slots__ = ("due", "entries", "timer")

    def __init__(self, due: float) -> None:
        self.due = due
        self.entries: list[tuple[Any, asyncio.Future[bool]]] = []
        self.timer: asyncio.TimerHandle | None = None


class AnswerDrain:
    """Reads the answers of every pack asked in one loop turn in one wake-up, at the bank's answer latency.

    A JBD answer is 2-4 notifications spread over BLE connection events, and packs answer out of step: read
    as they come, every pack's answer wakes the loop two or three times per request, and on a GX each
    wake-up costs more than the answer's decoding. Instead a pack that has written its request hands its
    AcquireNotify socket here (:meth:`take`): the socket leaves the loop, and one timer, ``delay`` after
    the requests, reads every socket and resolves the answers that are complete. A pack whose answer is not
    complete yet gets its socket back on the loop and finishes on its own wake-ups. (A poll's last request
    is read by the next tick instead: :meth:`PollClock.read_at_tick`.)

    ``delay`` is learned, not configured: the first answers are read as they come and timed (:meth:`timed`);
    the delay is then the slowest of them with a margin, at most ``ceiling`` (a poll round must fit in the
    interval). A late answer (timed again) lengthens it, up to the ceiling; every ``SHRINK_AFTER`` drains
    without one, it tries 15 % shorter. A bank whose answers mostly take longer than the ceiling (most of
    those timed, or ``LATE_IN_ROW`` drains in a row at the ceiling) is read as it comes, and timed again
    after ``RELEARN_FROM`` answers. Packs whose notifications come over D-Bus (StartNotify) never pass
    through here.
    """

    LEARN_FROM = 4  # answers timed on their own wake-ups before the first drain
    RELEARN_FROM = 60  # answers timed again after they proved too slow for a drain
    MARGIN = 1.25  # the delay is the slowest answer seen x MARGIN + PAD
    PAD = 0.005  # s
    FLOOR = 0.005  # s: never shorter
    JOIN = 0.005  # s: requests written this close together share one drain
    SHRINK_AFTER = 120  # drains without a late answer before trying a shorter one (2 minutes at 1 s polls)
    SHRINK = 0.85
    LATE_IN_ROW = 10  # drains in a row with a late answer, at the ceiling, before reading as they come

    def __init__(self, ceiling: float) -> None:
        if ceiling <= 0:
            raise ValueError("the drain's ceiling must be positive")
        self.ceiling = ceiling
        self.delay: float | None = None  # s from a request to its drain; None while learning
        self._learning: list[float] = []  # while learning: the delay each answer timed wants
        self._learn_from = self.LEARN_FROM
        self._late_in_row = 0  # drains in a row with a late answer, at the ceiling
        self._clean = 0  # drains in a row without a late answer
        self._batch: _Batch | None = None
        self._pending: set[_Batch] = set()
        self.drains = 0  # timer firings, for tests and benchmarks
        self.late = 0  # answers not complete at their drain

    def take(self, sock: Any, answer: asyncio.Future[bool]) -> bool:
        """``sock`` (a :class:`~btbattery.link.transport.NotifySocket`) waits off the loop for the next drain,
        which reads it and so resolves ``answer`` when its frame is complete. False while the delay is still
        being learned: the socket is watched, and the answer comes on its own wake-ups."""
        if self.delay is None:
            sock.watch()
            return False
        loop = asyncio.get_running_loop()
        due = loop.time() + self.delay
        batch = self._batch
        if batch is None or abs(batch.due - due) > self.JOIN:
            batch = self._batch = _Batch(due)
            batch.timer = loop.call_at(due, self._drain, batch)
            self._pending.add(batch)
        sock.pause()
        batch.entries.append((sock, answer))
        return True

    def timed(self, latency: float) -> None:
        """An answer came on its socket's own wake-ups ``latency`` s after its request."""
        wanted = latency * self.MARGIN + self.PAD
        if self.delay is not None:  # a late one: wait that long from now on, never past the ceiling
            self.delay = min(max(self.delay, wanted), self.ceiling)
            return
        self._learning.append(wanted)
        if len(self._learning) < self._learn_from:
            return
        ordered = sorted(self._learning)
        if ordered[len(ordered) // 2] <= self.ceiling:  # an odd slow answer is late now and then; fine
            self.delay = max(self.FLOOR, min(ordered[-1], self.ceiling))
        else:  # most answers take longer than a drain may wait: a drain would only add wake-ups
            self._learn(self.RELEARN_FROM)

    def _learn(self, answers: int) -> None:
        self.delay, self._learning, self._learn_from, self._late_in_row = None, [], answers, 0

    def _drain(self, batch: _Batch) -> None:
        self._pending.discard(batch)
        if self._batch is batch:
            self._batch = None
        self.drains += 1
        late = read_answers(batch.entries)
        self.late += late
        self._clean = 0 if late else self._clean + 1
        if self.delay is None:
            return
        if self._clean >= self.SHRINK_AFTER:
            self._clean = 0
            self.delay = max(self.FLOOR, self.delay * self.SHRINK)
        # Late drain after late drain at the ceiling: the bank answers slower than a drain may wait.
        self._late_in_row = self._late_in_row + 1 if late and self.delay >= self.ceiling else 0
        if self._late_in_row >= self.LATE_IN_ROW:
            self._learn(self.RELEARN_FROM)

    def close(self) -> None:
        for batch in self._pending:
            if batch.timer is not None:
                batch.timer.cancel()
        self._pending.clear()
        self._batch = None
