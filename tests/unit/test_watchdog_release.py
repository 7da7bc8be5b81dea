"""The stall watchdog asks the event loop to release the packs before os._exit, bounded in time."""

from __future__ import annotations

import asyncio
import threading

from btbattery.app import RunOptions, Watchdog

_THREADS: dict[asyncio.AbstractEventLoop, threading.Thread] = {}


def _loop_in_thread() -> asyncio.AbstractEventLoop:
    loop = asyncio.new_event_loop()
    _THREADS[loop] = thread = threading.Thread(target=loop.run_forever, name="loop", daemon=True)
    thread.start()
    return loop


def _stop(loop: asyncio.AbstractEventLoop) -> None:
    """Stop the loop's thread, then end what it left (the release a stuck loop never ran) and close it."""
    loop.call_soon_threadsafe(loop.stop)
    _THREADS.pop(loop).join(timeout=10)
    leftovers = asyncio.all_tasks(loop)
    for task in leftovers:
        task.cancel()

    async def settle() -> None:
        await asyncio.gather(*leftovers, return_exceptions=True)

    loop.run_until_complete(settle())
    loop.close()


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
