"""The live scheduler's clock is the event loop's monotonic clock, never the wall clock.

Packs are judged fresh, and limits may rise, by differences of this clock: a wall-clock step (NTP after boot
on a device without a real-time clock) must not age every pack out or release a limit in one tick.
"""

from __future__ import annotations

import asyncio
import itertools
import time

import reactivex

from btbattery.pipeline.streams import clock, loop_scheduler


async def test_scheduler_time_is_the_loop_clock_not_the_wall_clock() -> None:
    loop = asyncio.get_running_loop()
    now = clock(loop_scheduler(loop))
    before, seen, after = loop.time(), now(), loop.time()
    assert before - 1e-3 <= seen <= after + 1e-3
    assert abs(seen - time.time()) > 3600  # the wall clock counts from 1970, the loop's from boot


async def test_timers_on_it_still_fire_at_their_period() -> None:
    loop = asyncio.get_running_loop()
    scheduler = loop_scheduler(loop)
    now = clock(scheduler)
    ticks: list[float] = []
    three = loop.create_future()

    def tick(_: int) -> None:
        ticks.append(now())
        if len(ticks) == 3 and not three.done():
            three.set_result(None)

    subscription = reactivex.timer(0.0, 0.02, scheduler=scheduler).subscribe(on_next=tick)
    try:
        await asyncio.wait_for(three, 5.0)
    finally:
        subscription.dispose()
    assert all(later - earlier >= 0.015 for earlier, later in itertools.pairwise(ticks))
