"""The bank's poll clock: one timer wakes every waiting pack, on a fixed grid, late callers skip a tick."""

from __future__ import annotations

import asyncio

import pytest

from btbattery.link.clock import PollClock


class ManualLoop(asyncio.SelectorEventLoop):
    """A loop whose clock only moves when the test says (virtual time, no sleeping)."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 100.0

    def time(self) -> float:
        return self.now


def run_until(loop: ManualLoop, at: float) -> None:
    loop.now = at
    loop.run_until_complete(asyncio.sleep(0))
    loop.run_until_complete(asyncio.sleep(0))


def test_one_timer_wakes_every_pack_in_the_same_turn() -> None:
    loop = ManualLoop()
    try:
        clock = PollClock(1.0)

        async def waiters() -> list[asyncio.Future[None]]:
            return [clock.tick() for _ in range(16)]

        futures = loop.run_until_complete(waiters())
        assert len(loop._scheduled) == 1  # one timer for the 16 packs
        run_until(loop, 100.9)
        assert not any(f.done() for f in futures)
        run_until(loop, 101.0)
        assert all(f.done() for f in futures) and clock.ticks == 1
    finally:
        loop.close()


def test_a_late_pack_waits_for_the_next_grid_point_and_a_cancelled_one_leaves_the_rest() -> None:
    loop = ManualLoop()
    try:
        clock = PollClock(1.0)

        async def tick() -> asyncio.Future[None]:
            return clock.tick()

        first = loop.run_until_complete(tick())  # grid starts at 100.0
        run_until(loop, 101.0)
        assert first.done()
        loop.now = 102.7  # a slow poll: ticks 102 was missed
        late, other = loop.run_until_complete(tick()), loop.run_until_complete(tick())
        late.cancel()
        run_until(loop, 102.99)
        assert not other.done()
        run_until(loop, 103.0)
        assert other.done() and clock.ticks == 2
    finally:
        loop.close()


def test_aligned_grid_follows_the_publish_timer_not_the_first_pack() -> None:
    loop = ManualLoop()
    try:
        clock = PollClock(1.0)
        clock.align(99.25)  # the publish timer started then
        loop.now = 100.6  # the first pack is ready to poll later

        async def tick() -> asyncio.Future[None]:
            return clock.tick()

        first = loop.run_until_complete(tick())
        run_until(loop, 101.2)
        assert not first.done()  # not 101.6: the grid is the publish timer's
        run_until(loop, 101.25)
        assert first.done()
        clock.align(50.0)  # too late: the grid stays
        second = loop.run_until_complete(tick())
        run_until(loop, 102.24)
        assert not second.done()
        run_until(loop, 102.25)
        assert second.done()
    finally:
        loop.close()


def test_interval_must_be_positive() -> None:
    with pytest.raises(ValueError):
        PollClock(0)
