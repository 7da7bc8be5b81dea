"""One pack's locks, checked the way the service meets them: for ``doctor`` (issue 13) and scripts.

``await check_locks("AA:..", PackLocks(...))`` runs the real link for that pack alone until it delivers a
reading, is refused or runs out of time, then lets go of it. The answer names the lock and what to set
("needs a password (PASSWORD = ...)", "needs pairing (PASSKEY = ...)", "password refused", "pairing
refused"), never a secret. Do not call it for a pack a running service holds: the link closes any
connection it did not make (issue 11), so it would take the pack from the service. Ask the service instead
(its ``/Parallel/Battery<n>/LinkState`` reads ``refused`` and ``/Parallel/Battery<n>/Lock`` gives this same
reason).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from btbattery.link.machine import LinkTimeouts
from btbattery.link.manager import LinkManager
from btbattery.link.pack_link import PackLocks
from btbattery.model import LinkEvent, LinkState, PackReading


@dataclass(frozen=True, slots=True)
class LockCheck:
    address: str
    state: LinkState  # polling (it answered: no lock in the way), refused (a lock), or where time ran out
    problem: str  # what to fix; "" when the pack answered


async def check_locks(
    address: str,
    locks: PackLocks | None = None,
    adapter: str | None = "hci0",
    timeout: float = 45.0,
    timeouts: LinkTimeouts | None = None,
) -> LockCheck:
    manager = LinkManager(
        [(1, address)], 1.0, adapter=adapter, timeouts=timeouts, locks={1: locks or PackLocks()}
    )
    verdict: asyncio.Future[LinkEvent] = asyncio.get_running_loop().create_future()
    last: list[LinkEvent] = []

    def on_event(event: LinkEvent) -> None:
        last[:] = [event]
        if event.state == LinkState.REFUSED and not verdict.done():
            verdict.set_result(event)

    def on_reading(reading: PackReading) -> None:  # an answer to a read: whatever locks it has, we pass
        if not verdict.done():
            verdict.set_result(LinkEvent(1, reading.address, reading.time, LinkState.POLLING))

    manager.states.subscribe(on_event)
    manager.readings.subscribe(on_reading)
    try:
        await manager.start()
        event = await asyncio.wait_for(verdict, timeout)
    except TimeoutError:
        where = last[0] if last else None
        state = where.state if where else LinkState.IDLE
        reason = where.reason if where and where.reason else f"no answer within {timeout:g} s"
        return LockCheck(address.upper(), state, reason)
    finally:
        await manager.stop(timeout=5.0)
    problem = event.reason if event.state == LinkState.REFUSED else ""
    return LockCheck(address.upper(), event.state, problem)
