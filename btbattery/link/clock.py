"""One poll clock for the whole bank: every pack's next poll waits for the same timer.

Each pack sleeping on its own timer costs one event-loop wake-up per pack per interval (on a GX, a
wake-up costs more than the poll it starts). Here the packs that are polling all wait for one shared tick
on a fixed grid, so the loop wakes once per interval and asks every pack in the same turn; connects stay
one at a time (the adapter's lock), so a pack joins the grid whenever its link comes up.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any


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
    """``await clock.tick()`` returns at the next multiple of ``interval`` (from the first call)."""

    def __init__(self, interval: float) -> None:
        if interval <= 0:
            raise ValueError("poll interval must be positive")
        self.interval = interval
        self._origin: float | None = None
        self._waiters: list[asyncio.Future[None]] = []
        self._timer: asyncio.TimerHandle | None = None
        self.ticks = 0  # timer firings, for tests and benchmarks

    def tick(self) -> asyncio.Future[None]:
        """A future of this caller's own (cancelling it leaves the other packs waiting) for the next tick.
        A pack late for a tick waits for the next one rather than bunching requests."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        if self._timer is None:
            now = loop.time()
            if self._origin is None:
                self._origin = now
            ticks = math.floor((now - self._origin) / self.interval) + 1
            self._timer = loop.call_at(self._origin + ticks * self.interval, self._fire)
        return waiter

    def align(self, origin: float) -> None:
        """Put the grid on ``origin`` (loop time), e.g. the publish timer's: ticks due in the same
        millisecond are served by one wake-up of the loop, so asking the packs costs no wake-up of its own.
        Only before the first tick; afterwards the grid stays where it is."""
        if self._origin is None:
            self._origin = origin

    def _fire(self) -> None:
        self._timer = None
        self.ticks += 1
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
