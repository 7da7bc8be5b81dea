"""The bank's answer drain (link.clock.AnswerDrain) with real AcquireNotify-like sockets (SEQPACKET
socketpairs) on a real event loop: the answers of every pack asked in one loop turn are read by one timer,
a pack whose answer is not complete gets its socket back on the loop, and the delay is learned from the
answers themselves. Nothing sleeps: the drain's own timer and loop timers ordered after it sequence the
scenarios (asyncio runs timers in order of their due time)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import pytest

from btbattery.link.clock import AnswerDrain
from btbattery.link.transport import NotifySocket

ANSWER = (b"\xdd\x03\x00\x1b" + bytes(16), bytes(14))  # a JBD answer's two notifications


class Pack:
    """One pack's end: BlueZ's side of the socket, our NotifySocket, and the request's answer future,
    resolved when both notifications have been delivered (as the link's decoder does on a whole frame)."""

    def __init__(self, broken: bool = False) -> None:
        self.broken = broken  # its callback raises, as a bug downstream of the decoder would
        ours, self.bluez = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        self.got: list[bytes] = []
        self.answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.sock = NotifySocket(ours, self._deliver)

    def _deliver(self, _sender: object, data: bytes) -> None:
        if self.broken:
            raise RuntimeError("a bug downstream of the decoder")
        self.got.append(data)
        if len(self.got) % len(ANSWER) == 0 and not self.answer.done():
            self.answer.set_result(True)

    def ask(self) -> asyncio.Future[bool]:
        self.answer = asyncio.get_running_loop().create_future()
        return self.answer

    def answers(self, *chunks: bytes) -> None:
        for chunk in chunks:
            self.bluez.send(chunk)

    def close(self) -> None:
        self.sock.close()
        self.bluez.close()


def learned(delay: float = 0.005, ceiling: float = 0.25) -> AnswerDrain:
    drain = AnswerDrain(ceiling)
    for _ in range(AnswerDrain.LEARN_FROM):
        drain.timed((delay - AnswerDrain.PAD) / AnswerDrain.MARGIN)
    assert drain.delay == pytest.approx(delay)
    return drain


def run(scenario: Callable[[], object]) -> object:
    """Run a scenario; one that waits for an answer that never comes fails instead of hanging."""
    return asyncio.run(asyncio.wait_for(scenario(), 10.0))  # type: ignore[arg-type]


async def after_the_drain(delay: float = 0.005) -> None:
    """Return once a timer due well after a drain armed now (``delay`` s) has run: the loop runs timers in
    the order they are due, so what follows sees the drain done, however slow the machine."""
    loop = asyncio.get_running_loop()
    later = loop.create_future()
    loop.call_later(delay * 4, later.set_result, None)
    await later


def test_the_answers_of_every_pack_asked_together_are_read_in_one_wake_up() -> None:
    async def scenario() -> tuple[list[bool], AnswerDrain, list[int], list[bool]]:
        drain = learned()
        packs = [Pack() for _ in range(4)]
        for pack in packs:
            pack.answers(*ANSWER)  # the answers wait in the sockets: BlueZ wrote them before the drain
            assert drain.take(pack.sock, pack.ask())
        answered = [await pack.answer for pack in packs]
        wakeups = [pack.sock.wakeups for pack in packs]
        watched = [pack.sock.watched for pack in packs]
        for pack in packs:
            assert pack.got == list(ANSWER)
            pack.close()
        return answered, drain, wakeups, watched

    answered, drain, wakeups, watched = run(scenario)
    assert answered == [True] * 4
    assert drain.drains == 1 and drain.late == 0
    assert wakeups == [0] * 4  # no socket woke the loop on its own
    assert watched == [False] * 4  # they stay off the loop until the next request


def test_an_answer_not_complete_at_the_drain_finishes_on_its_own_and_lengthens_the_delay() -> None:
    async def scenario() -> tuple[AnswerDrain, Pack, float, float]:
        drain = learned(0.005)
        slow, quick = Pack(), Pack()
        quick.answers(*ANSWER)
        slow.answers(ANSWER[0])  # its second notification comes after the drain
        loop = asyncio.get_running_loop()
        sent = loop.time()
        drain.take(quick.sock, quick.ask())
        drain.take(slow.sock, slow.ask())
        loop.call_later(0.02, slow.answers, ANSWER[1])  # due after the drain's timer (5 ms)
        assert await quick.answer
        assert not slow.answer.done() and slow.sock.watched  # back on the loop after the drain
        assert await slow.answer
        latency = loop.time() - sent
        drain.timed(latency)  # what the link reports for an answer that came on its own wake-ups
        for pack in (slow, quick):
            pack.close()
        return drain, slow, latency, drain.delay or 0.0

    drain, slow, latency, delay = run(scenario)
    assert drain.drains == 1 and drain.late == 1
    assert slow.sock.wakeups == 1 and slow.got == list(ANSWER)
    assert delay == pytest.approx(latency * AnswerDrain.MARGIN + AnswerDrain.PAD)


def test_the_delay_is_learned_from_the_slowest_of_the_first_answers() -> None:
    drain = AnswerDrain(ceiling=0.1)
    for latency in (0.030, 0.050, 0.020):
        drain.timed(latency)
        assert drain.delay is None  # still learning: answers are read as they come
    drain.timed(0.040)
    assert drain.delay == pytest.approx(0.050 * AnswerDrain.MARGIN + AnswerDrain.PAD)
    drain.timed(0.001)  # a quick answer never shortens it by itself
    assert drain.delay == pytest.approx(0.050 * AnswerDrain.MARGIN + AnswerDrain.PAD)
    drain.timed(0.070)  # a late one lengthens it
    assert drain.delay == pytest.approx(0.070 * AnswerDrain.MARGIN + AnswerDrain.PAD)
    drain.timed(0.5)  # never past the ceiling: an answer that slow is late, and reads itself
    assert drain.delay == pytest.approx(0.1)


def test_an_odd_slow_answer_while_learning_caps_the_delay_at_the_ceiling() -> None:
    drain = AnswerDrain(ceiling=0.1)
    for latency in (0.030, 0.5, 0.020, 0.040):
        drain.timed(latency)
    assert drain.delay == pytest.approx(0.1)


def test_a_bank_mostly_slower_than_the_ceiling_is_read_as_it_comes_and_timed_again_later() -> None:
    drain = AnswerDrain(ceiling=0.1)
    for latency in (0.2, 0.3, 0.02, 0.25):  # most answers take longer than a drain may wait
        drain.timed(latency)
    assert drain.delay is None
    for _ in range(AnswerDrain.RELEARN_FROM - 1):
        drain.timed(0.2)
    assert drain.delay is None
    drain.timed(0.2)
    assert drain.delay is None  # still too slow: another round of answers read as they come
    for _ in range(AnswerDrain.RELEARN_FROM):
        drain.timed(0.03)  # the slow unit came back to speed (or was replaced)
    assert drain.delay == pytest.approx(0.03 * AnswerDrain.MARGIN + AnswerDrain.PAD)


def test_late_drain_after_late_drain_at_the_ceiling_turns_the_drain_off() -> None:
    async def scenario() -> list[float | None]:
        drain = learned(0.005, ceiling=0.005)  # at its ceiling already
        pack = Pack()
        delays = []
        for _ in range(AnswerDrain.LATE_IN_ROW):
            pack.answers(ANSWER[0])  # only half the answer is there when the drain reads
            answer = pack.ask()
            drain.take(pack.sock, answer)
            await after_the_drain()
            assert not answer.done() and pack.sock.watched
            pack.answers(ANSWER[1])
            assert await answer  # finished on its own wake-up
            delays.append(drain.delay)
        pack.close()
        return delays

    delays = run(scenario)
    assert delays[:-1] == [pytest.approx(0.005)] * (AnswerDrain.LATE_IN_ROW - 1)
    assert delays[-1] is None  # read as they come, timed again


def test_one_packs_failure_while_read_leaves_the_others_read() -> None:
    async def scenario() -> tuple[bool, bool, bool]:
        drain = learned()
        broken, fine = Pack(broken=True), Pack()
        for pack in (broken, fine):
            pack.answers(*ANSWER)
            drain.take(pack.sock, pack.ask())
        answered = await fine.answer
        result = (answered, broken.answer.done(), broken.sock.watched)
        for pack in (broken, fine):
            pack.close()
        return result

    answered, broken_done, broken_watched = run(scenario)
    assert answered and not broken_done and broken_watched


def test_while_learning_the_socket_stays_on_the_loop_and_delivers_by_itself() -> None:
    async def scenario() -> tuple[bool, bool, int, int]:
        drain = AnswerDrain(ceiling=0.25)
        pack = Pack()
        pack.sock.pause()
        taken = drain.take(pack.sock, pack.ask())
        pack.answers(*ANSWER)
        answered = await pack.answer
        pack.close()
        return taken, answered, pack.sock.wakeups, drain.drains

    taken, answered, wakeups, drains = run(scenario)
    assert not taken and answered
    assert wakeups >= 1 and drains == 0


def test_after_a_run_of_drains_without_a_late_answer_it_tries_a_shorter_delay() -> None:
    async def scenario() -> list[float]:
        drain = learned(0.006, ceiling=0.25)  # short timers: the test runs over a hundred drains
        pack = Pack()
        delays = []
        for _ in range(AnswerDrain.SHRINK_AFTER + 1):
            pack.answers(*ANSWER)
            drain.take(pack.sock, pack.ask())
            assert await pack.answer
            delays.append(drain.delay)
        pack.close()
        return delays

    delays = run(scenario)
    assert delays[: AnswerDrain.SHRINK_AFTER - 1] == [pytest.approx(0.006)] * (AnswerDrain.SHRINK_AFTER - 1)
    assert delays[AnswerDrain.SHRINK_AFTER - 1] == pytest.approx(0.006 * AnswerDrain.SHRINK)
    assert delays[-1] == delays[AnswerDrain.SHRINK_AFTER - 1]  # a new run of clean drains starts


def test_the_delay_never_shrinks_below_its_floor() -> None:
    async def scenario() -> float | None:
        drain = learned(AnswerDrain.FLOOR)
        pack = Pack()
        for _ in range(AnswerDrain.SHRINK_AFTER):
            pack.answers(*ANSWER)
            drain.take(pack.sock, pack.ask())
            assert await pack.answer
        pack.close()
        return drain.delay

    assert run(scenario) == pytest.approx(AnswerDrain.FLOOR)


def test_requests_written_apart_get_their_own_drain_and_a_settled_answer_is_skipped() -> None:
    async def scenario() -> tuple[AnswerDrain, list[bytes]]:
        drain = learned(0.005)
        first, second = Pack(), Pack()
        first.answers(*ANSWER)
        drain.take(first.sock, first.ask())
        first.answer.set_result(False)  # its timer ran out first (or the link went): nothing to read for it
        await after_the_drain()
        second.answers(*ANSWER)
        drain.take(second.sock, second.ask())
        assert await second.answer
        got = first.got
        for pack in (first, second):
            pack.close()
        return drain, got

    drain, got = run(scenario)
    assert drain.drains == 2
    assert got == []  # the settled request's socket was not read for it


def test_close_cancels_a_pending_drain() -> None:
    async def scenario() -> tuple[bool, int]:
        drain = learned(0.005)
        pack = Pack()
        pack.answers(*ANSWER)
        answer = pack.ask()
        drain.take(pack.sock, answer)
        drain.close()
        await after_the_drain()  # when the cancelled drain would have run
        pack.close()
        return answer.done(), drain.drains

    done, drains = run(scenario)
    assert not done and drains == 0


def test_a_paused_socket_closed_by_bluez_is_closed_at_the_drain() -> None:
    async def scenario() -> tuple[bool, bool]:
        drain = learned(0.005)
        pack = Pack()
        answer = pack.ask()
        drain.take(pack.sock, answer)
        pack.bluez.close()  # the link went: BlueZ closed its end
        await after_the_drain()
        return pack.sock.open, answer.done()

    still_open, done = run(scenario)
    assert not still_open  # read as an empty datagram at the drain, closed, left to the link's timer
    assert not done


def test_pause_and_watch_take_the_socket_off_the_loop_and_back() -> None:
    async def scenario() -> tuple[int, list[bytes], int]:
        pack = Pack()
        answer = pack.ask()
        pack.sock.pause()
        pack.answers(*ANSWER)
        for _ in range(5):  # loop turns: a paused socket does not deliver
            await asyncio.sleep(0)
        before = len(pack.got)
        pack.sock.watch()
        assert await answer
        pack.close()
        return before, pack.got, pack.sock.wakeups

    before, got, wakeups = run(scenario)
    assert before == 0 and got == list(ANSWER) and wakeups == 1
