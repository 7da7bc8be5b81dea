"""The stall watchdog asks the event loop to release the packs before os._exit, bounded in time."""

from __future__ import annotations

import asyncio
import threading

from btbattery.app import RunOptions, Watchdog


def _loop_in_thread() -> asyncio.AbstractEventLoop:
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, name="loop", daemon=True).start()
    return loop


def _stop(loop: asyncio.AbstractEventLoop) -> None:
    loop.call_soon_threadsafe(loop.stop)


def test_a_slow_but_running_loop_releases_the_packs() -> None:
    loop = _loop_in_thread()
    released = threading.Event()

    async def release() -> None:
        released.set()

    try:
        watchdog = Watchdog(loop, RunOptions(), loop.create_future(), on_stall=release)
        watchdog._release_packs()
        assert released.is_set()
    finally:
        _stop(loop)


def test_a_dead_loop_does_not_hold_up_the_exit() -> None:
    loop = _loop_in_thread()
    unblock, released = threading.Event(), threading.Event()

    async def release() -> None:
        released.set()

    loop.call_soon_threadsafe(unblock.wait)  # the loop is stuck in this call
    try:
        watchdog = Watchdog(loop, RunOptions(), loop.create_future(), on_stall=release)
        watchdog.RELEASE_WAIT = 0.2
        watchdog._release_packs()  # returns after its bound although the loop never ran the release
        assert not released.is_set()
    finally:
        unblock.set()
        _stop(loop)
