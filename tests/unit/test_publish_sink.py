"""The service's bank sink: a failed publish must neither end the pipeline's ticks nor go unreported."""

from __future__ import annotations

import asyncio

from reactivex.testing import TestScheduler

from btbattery.app import BankSink, last_word_after_stall
from btbattery.config import default_config
from btbattery.model import BankState, ChargeLimits
from btbattery.pipeline.disconnect import STOPPING
from btbattery.pipeline.streams import build_pipeline

CONFIG = default_config()


class BrokenBus:
    """Stands in for the D-Bus service when its connection breaks: every publish raises, as dbus-fast does."""

    def __init__(self) -> None:
        self.published: list[float] = []

    def publish(self, state: BankState) -> None:
        self.published.append(state.snapshot.time)
        raise OSError(9, "Bad file descriptor")


def test_failed_publish_is_reported_once_and_the_pipeline_keeps_ticking() -> None:
    scheduler = TestScheduler()
    failures: list[Exception] = []
    sink = BankSink(on_failure=failures.append)
    bus = BrokenBus()
    sink.attach(bus)
    pack = CONFIG.pack_spec(1, "A4:C1:37:00:00:01")
    readings, links = scheduler.create_hot_observable(), scheduler.create_hot_observable()
    build_pipeline([pack], [readings], [links], CONFIG, scheduler).subscribe(on_next=sink)
    scheduler.advance_to(5.5)
    # Before: the first exception unwound into the timer and no tick ever came again (frozen limits on D-Bus).
    assert bus.published == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert len(failures) == 1 and isinstance(failures[0], OSError)


class RecordingService:
    """Stands in for the D-Bus service: keeps what was published, in order, with the links' stop."""

    def __init__(self, log: list[object]) -> None:
        self.log = log

    def publish(self, state: BankState) -> None:
        self.log.append(state.limits)


class RecordingLinks:
    def __init__(self, log: list[object]) -> None:
        self.log = log

    async def stop(self, timeout: float) -> None:
        self.log.append("links stopped")


def test_after_a_stall_the_stop_state_goes_out_before_the_packs_are_released() -> None:
    """A loop that is only slow still runs what the stall watchdog asks: CCL 0 first, then the links."""
    scheduler = TestScheduler()
    log: list[object] = []
    sink = BankSink()
    sink.attach(RecordingService(log))
    pack = CONFIG.pack_spec(1, "A4:C1:37:00:00:01")
    readings, links = scheduler.create_hot_observable(), scheduler.create_hot_observable()
    build_pipeline([pack], [readings], [links], CONFIG, scheduler).subscribe(on_next=sink)
    scheduler.advance_to(2.5)
    ticks = len(log)
    asyncio.run(last_word_after_stall(sink, RecordingLinks(log)))
    last = log[ticks]
    assert isinstance(last, ChargeLimits) and last.charge_current == 0 and last.charge_reason == STOPPING
    assert log[ticks + 1 :] == ["links stopped"]
    scheduler.advance_to(5.5)
    assert len(log) == ticks + 2  # nothing published after the last word
