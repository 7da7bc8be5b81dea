"""Fake BlueZ + real LinkManager on a private system bus, with condition waits for the link tests."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from btbattery.link.machine import Backoff, LinkTimeouts
from btbattery.link.manager import LinkManager
from btbattery.link.pack_link import PackLocks
from btbattery.model import LinkEvent, LinkState, PackReading
from btbattery.sim.bluez import FakeBluez, Timing
from btbattery.sim.scenario import Fault, Scenario, load_scenario

POLL = 0.4  # s; short so tests are quick, long enough that 2 cores keep up with 6 packs
FAST_RADIO = Timing(
    advertise_interval=0.1,
    connect_delay=0.05,
    resolve_delay=0.02,
    connect_fail_delay=0.3,
    response_delay=0.01,
    chunk_interval=0.002,
    physics_interval=0.2,
    device_expiry=30.0,
)
FAST_LINK = LinkTimeouts(
    scan=3.0, connect=3.0, connect_wait=8.0, subscribe=3.0, request=0.3, dead_after=3, disconnect=2.0
)
FAST_BACKOFF = Backoff(initial=0.2, factor=2.0, cap=1.0, jitter=0.2)


def scenario(packs: int = 3) -> Scenario:
    """The default bank without its scripted faults: each test injects its own."""
    from btbattery.sim.bluez import resize_scenario

    return dataclasses.replace(resize_scenario(load_scenario("default"), packs), faults=[])


@dataclass
class Recorder:
    """Everything the links emitted, plus waits on conditions over it."""

    events: list[LinkEvent] = field(default_factory=list)
    readings: dict[int, list[PackReading]] = field(default_factory=lambda: defaultdict(list))
    arrivals: dict[int, list[float]] = field(default_factory=lambda: defaultdict(list))  # loop time
    _waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = field(default_factory=list)

    def on_event(self, event: LinkEvent) -> None:
        self.events.append(event)
        self._check()

    def on_reading(self, reading: PackReading) -> None:
        self.readings[reading.pack].append(reading)
        self.arrivals[reading.pack].append(asyncio.get_running_loop().time())
        self._check()

    def state(self, pack: int) -> LinkState | None:
        for event in reversed(self.events):
            if event.pack == pack:
                return event.state
        return None

    def states_of(self, pack: int) -> list[LinkState]:
        return [e.state for e in self.events if e.pack == pack]

    async def wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        if predicate():
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((predicate, fut))
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise AssertionError(
                f"timed out after {timeout} s waiting for {what}; events: "
                f"{[(e.pack, e.state.value, e.reason) for e in self.events[-12:]]}"
            ) from None
        finally:
            self._waiters = [w for w in self._waiters if w[1] is not fut]

    def _check(self) -> None:
        for predicate, fut in list(self._waiters):
            if not fut.done() and predicate():
                fut.set_result(None)

    async def all_polling(self, packs: list[int], timeout: float = 15.0) -> None:
        await self.wait(
            lambda: all(self.state(p) == LinkState.POLLING for p in packs), timeout, f"packs {packs} polling"
        )

    async def readings_after(self, pack: int, count: int, since: int, timeout: float) -> None:
        """``count`` more readings with cells from ``pack`` beyond the first ``since``."""
        await self.wait(
            lambda: sum(r.cells is not None for r in self.readings[pack][since:]) >= count,
            timeout,
            f"{count} readings from pack {pack}",
        )

    def max_gap(self, pack: int, start: float, end: float) -> float:
        """Longest time between readings of ``pack`` within [start, end] (loop time)."""
        times = [start, *(t for t in self.arrivals[pack] if start <= t <= end), end]
        return max(b - a for a, b in itertools.pairwise(times))


class LinkRig:
    """``async with LinkRig(packs=3) as rig:`` -- fake BlueZ and a started LinkManager on the system bus.

    ``fake`` passes extra arguments to :class:`FakeBluez` (adapters, placement, slots, connected_at_start);
    ``link`` to :class:`LinkManager` (adapter, pack_adapters); ``before_links(fake)`` runs after the fake
    started and before the links do (faults present from the start).
    """

    def __init__(
        self,
        packs: int = 3,
        poll: float = POLL,
        timing: Timing = FAST_RADIO,
        variants: dict[int, str] | None = None,
        timeouts: LinkTimeouts = FAST_LINK,
        faults: list[Fault] | None = None,
        bank: Scenario | None = None,
        locks: dict[int, PackLocks] | None = None,
        backoff: Backoff = FAST_BACKOFF,
        fake: dict[str, Any] | None = None,
        link: dict[str, Any] | None = None,
        before_links: Callable[[FakeBluez], None] | None = None,
    ) -> None:
        bank = dataclasses.replace(bank or scenario(packs), faults=faults or [])
        self.fake = FakeBluez(
            bank, timing=timing, variants=variants, scripted_faults=bool(faults), **(fake or {})
        )
        self.poll = poll
        self.timeouts = timeouts
        self.locks = locks
        self.backoff = backoff
        self.link_args = link or {}
        self.before_links = before_links
        self.rec = Recorder()
        self.manager: LinkManager | None = None

    @property
    def packs(self) -> list[int]:
        return [p.number for p in self.fake.packs]

    async def __aenter__(self) -> LinkRig:
        await self.fake.start()
        if self.before_links is not None:
            self.before_links(self.fake)
        self.manager = LinkManager(
            [(p.number, p.address) for p in self.fake.packs],
            poll_interval=self.poll,
            timeouts=self.timeouts,
            backoff=self.backoff,
            seed=7,
            locks=self.locks,
            **self.link_args,
        )
        self.manager.states.subscribe(self.rec.on_event)
        self.manager.readings.subscribe(self.rec.on_reading)
        await self.manager.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            if self.manager is not None:
                await self.manager.stop(timeout=5.0)
        finally:
            await self.fake.stop()
