"""The bank's poll clock: one timer wakes every waiting pack, on a fixed grid, late callers skip a tick."""

from __future__ import annotations

import asyncio
import socket

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


class Answering:
    """A pack's AcquireNotify socket (a real socketpair) whose answer, once whole, resolves ``answer``."""

    CHUNKS = (b"\xdd\x04\x00\x08", b"\x0c\xb2\x0c\xb3\x0c\xb1\x0c\xb2\xfd\x9a\x77")

    def __init__(self, on_answer=None) -> None:
        from btbattery.link.transport import NotifySocket

        ours, self.bluez = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        self.got: list[bytes] = []
        self.on_answer = on_answer
        self.answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.sock = NotifySocket(ours, self._deliver)

    def _deliver(self, _sender: object, data: bytes) -> None:
        self.got.append(data)
        if len(self.got) == len(self.CHUNKS):
            if self.on_answer is not None:
                self.on_answer()
            self.answer.set_result(True)

    def close(self) -> None:
        self.sock.close()
        self.bluez.close()


def test_an_answer_handed_to_the_tick_is_read_before_the_packs_go_and_costs_no_wake_up() -> None:
    loop = ManualLoop()
    try:
        clock = PollClock(1.0)
        seen_by_waiter: list[bool] = []

        async def setup() -> tuple[Answering, float]:
            pack = Answering()
            due = clock.read_at_tick(pack.sock, pack.answer)
            waiter = clock.tick()
            waiter.add_done_callback(lambda _: seen_by_waiter.append(pack.answer.done()))
            for chunk in Answering.CHUNKS:  # the answer arrives well before the tick
                pack.bluez.send(chunk)
            return pack, due

        pack, due = loop.run_until_complete(setup())
        assert due == 101.0
        run_until(loop, 100.9)
        assert pack.got == [] and not pack.sock.watched  # waiting in the socket, off the loop
        run_until(loop, 101.0)
        assert pack.answer.result() is True and seen_by_waiter == [True]  # read first, then the packs go
        assert pack.sock.wakeups == 0 and clock.late == 0
        pack.close()
    finally:
        loop.close()


def test_an_answer_not_whole_at_the_tick_gets_its_socket_back() -> None:
    loop = ManualLoop()
    try:
        clock = PollClock(1.0)

        async def setup() -> Answering:
            pack = Answering()
            clock.read_at_tick(pack.sock, pack.answer)
            pack.bluez.send(Answering.CHUNKS[0])
            return pack

        pack = loop.run_until_complete(setup())
        run_until(loop, 101.0)
        assert not pack.answer.done() and pack.sock.watched and clock.late == 1
        pack.bluez.send(Answering.CHUNKS[1])
        loop.run_until_complete(asyncio.wait_for(pack.answer, 5.0))
        assert pack.sock.wakeups == 1
        pack.close()
    finally:
        loop.close()


def test_a_pack_whose_last_answer_came_with_a_tick_goes_on_at_once() -> None:
    loop = ManualLoop()
    try:
        clock = PollClock(1.0)

        async def tick(after: int | None = None) -> asyncio.Future[None]:
            return clock.tick(after)

        began = clock.ticks
        first = loop.run_until_complete(tick())
        run_until(loop, 101.0)
        assert first.done()
        assert loop.run_until_complete(tick(after=began)).done()  # a tick came since its poll began
        waiting = loop.run_until_complete(tick(after=clock.ticks))
        assert not waiting.done()  # none since: the next one
        run_until(loop, 102.0)
        assert waiting.done()
    finally:
        loop.close()


def test_the_answers_read_at_a_tick_are_in_what_that_tick_publishes() -> None:
    """The service's grid (app.py): the poll clock a hair (TICK_LEAD) before the publish timer, both due in
    one wake-up. The cells read at the tick are in the bank state published by that same wake-up."""
    from reactivex.subject import Subject

    from btbattery.app import TICK_LEAD
    from btbattery.config import default_config
    from btbattery.model import BasicInfo, CellVoltages, PackReading, Protection
    from btbattery.pipeline.streams import build_pipeline, loop_scheduler

    address = "A4:C1:37:00:00:01"
    config = default_config()
    loop = ManualLoop()
    try:
        scheduler = loop_scheduler(loop)
        clock = PollClock(1.0)
        readings: Subject[PackReading] = Subject()
        states: list = []
        grid = loop.time()
        clock.align(grid - TICK_LEAD)
        bank = build_pipeline(
            [config.pack_spec(1, address)], [readings], [Subject()], config, scheduler, first_tick=grid
        )
        bank.subscribe(states.append)
        published_when_read: list[int] = []
        info = BasicInfo(13.0, 0.0, 60.0, 100.0, 5, None, 0, Protection.NONE, 3.8, 60, True, True, 4, (25.0,))

        def answered() -> None:  # what the link's decoder does with a whole answer
            readings.on_next(PackReading(1, address, 100.5, info, CellVoltages((3.250, 3.251, 3.249, 3.250))))
            # runs in the next loop turn: a state published by then came from this same wake-up
            loop.call_soon(lambda: published_when_read.append(len(states)))

        async def ask() -> Answering:
            pack = Answering(answered)
            clock.read_at_tick(pack.sock, pack.answer)
            for chunk in Answering.CHUNKS:
                pack.bluez.send(chunk)
            return pack

        run_until(loop, 100.0005)
        assert len(states) == 1 and states[0].snapshot.active_packs == 0  # the first tick, at once
        loop.now = 100.5
        pack = loop.run_until_complete(ask())
        run_until(loop, 101.0005)  # the loop wakes a little after both are due, as a real one does
        assert len(states) == 2 and published_when_read == [2]
        tick = states[1]
        assert tick.snapshot.active_packs == 1 and tick.snapshot.min_cell_voltage == 3.249
        assert clock.ticks == 1
        pack.close()
    finally:
        loop.close()


def test_the_publish_timer_keeps_its_grid_after_a_stall_as_the_poll_clock_does() -> None:
    """reactivex's periodic timer starts a new grid from a tick that came late; ours (grid_timer) goes on
    with the next grid point, as PollClock does, so publish and poll still share one wake-up after a stall."""
    from btbattery.pipeline.streams import grid_timer, loop_scheduler

    loop = ManualLoop()
    try:
        times: list[float] = []
        grid_timer(100.0, 1.0, loop_scheduler(loop)).subscribe(lambda _: times.append(loop.now))
        for now in (100.001, 101.001, 103.6, 104.001, 105.001):  # 103.6: the loop was blocked for 2.6 s
            run_until(loop, now)
        assert times == [100.001, 101.001, 103.6, 104.001, 105.001]
        clock = PollClock(1.0)
        clock.align(100.0)

        async def tick() -> float:
            return clock.next_tick()

        assert loop.run_until_complete(tick()) == 106.0  # the same grid
    finally:
        loop.close()
