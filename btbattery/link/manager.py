"""All pack links of one service: one port per adapter (connect lock, shared scan, power cycles), one link
per pack, and one BlueZ housekeeping connection for them all."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import reactivex

from btbattery.link.bluez import BluezHousekeeper
from btbattery.link.clock import AnswerDrain, PollClock
from btbattery.link.machine import Backoff, LinkTimeouts
from btbattery.link.pack_link import AdapterPort, LinkConfig, PackLink, PackLocks, answer_drain_ceiling
from btbattery.link.transport import close_socket_bus
from btbattery.model import LinkEvent, LinkStats, PackReading

if TYPE_CHECKING:
    from reactivex.abc import SchedulerBase

    from btbattery.link.agent import PairingAgent

log = logging.getLogger(__name__)


class LinkManager:
    """``LinkManager(packs=[(1, "A4:C1:37:.."), ...], poll_interval=1.0, scheduler=loop_scheduler(loop))``.

    ``adapter`` (``hci0`` or an adapter's Bluetooth address) serves every pack not named in
    ``pack_adapters`` (pack number -> adapter), for banks spread over two adapters.
    ``await start()`` sets every link going; ``await stop(timeout)`` stops polling, notifications and
    connections of all packs within ``timeout`` seconds. ``states`` and ``readings`` merge every link's
    streams; ``links`` gives each pack's own. ``locks`` gives a pack's password and passkey by number; when
    any pack has a passkey, our BlueZ agent is set up for them.
    """

    def __init__(
        self,
        packs: Sequence[tuple[int, str]],
        poll_interval: float = 1.0,
        scheduler: SchedulerBase | None = None,
        adapter: str | None = "hci0",
        timeouts: LinkTimeouts | None = None,
        backoff: Backoff | None = None,
        seed: int = 0,
        locks: Mapping[int, PackLocks] | None = None,
        pack_adapters: Mapping[int, str] | None = None,
        notify_method: str = "auto",
        write_method: str = "auto",
    ) -> None:
        if poll_interval <= 0:
            raise ValueError("poll interval must be positive")
        self.packs = list(packs)
        self.config = LinkConfig(
            poll_interval, timeouts or LinkTimeouts(), backoff or Backoff(), seed, notify_method, write_method
        )
        self.adapter = adapter
        self._scheduler = scheduler
        self.bluez = BluezHousekeeper()
        # Everything is built now, without a running loop, so callers can subscribe before start().
        locks = locks or {}
        passkeys = {address: locks[n].passkey for n, address in self.packs if n in locks and locks[n].passkey}
        self.agent: PairingAgent | None = None
        if passkeys:
            from btbattery.link.agent import PairingAgent

            # One agent for the process: BlueZ asks the default agent, whichever adapter the pack is on.
            self.agent = PairingAgent(passkeys)  # type: ignore[arg-type]
        self.ports: dict[str | None, AdapterPort] = {}
        self.port = self._port(adapter)  # the default adapter's
        chosen = pack_adapters or {}
        self.clock = PollClock(poll_interval)  # one timer polls every pack in the same loop turn
        self.drain = AnswerDrain(answer_drain_ceiling(self.config))  # and one reads their answers
        self.links: list[PackLink] = [
            PackLink(
                n,
                address,
                self._port(chosen.get(n, adapter)),
                scheduler,
                self.config,
                locks.get(n),
                self.clock,
                self.drain,
            )
            for n, address in self.packs
        ]
        self.states: reactivex.Observable[LinkEvent] = reactivex.merge(*(link.states for link in self.links))
        self.readings: reactivex.Observable[PackReading] = reactivex.merge(
            *(link.readings for link in self.links)
        )

    def _port(self, adapter: str | None) -> AdapterPort:
        key = adapter.upper() if adapter and ":" in adapter else adapter
        if key not in self.ports:
            self.ports[key] = AdapterPort(adapter, bluez=self.bluez)
            self.ports[key].agent = self.agent
        return self.ports[key]

    async def start(self) -> None:
        if self._scheduler is None:
            from btbattery.pipeline.streams import loop_scheduler

            self._scheduler = loop_scheduler(asyncio.get_running_loop())
            for link in self.links:
                link.scheduler = self._scheduler
        for link in self.links:
            await link.begin(reason="starting")
        names = ", ".join(str(spec or "default adapter") for spec in self.ports)
        log.info("links started for %d packs on %s", len(self.links), names)

    async def stop(self, timeout: float = 5.0) -> bool:
        """True when every pack was released in time."""
        closing = [asyncio.ensure_future(link.close()) for link in self.links]
        done, pending = await asyncio.wait(closing, timeout=timeout) if closing else (set(), set())
        for task in pending:
            task.cancel()
        for task in done:
            if task.exception() is not None:
                log.warning("closing a link failed: %s", task.exception())
        for port in self.ports.values():
            await port.scanner.close()
        if self.agent is not None:
            self.agent.close()
        await self.bluez.close()
        close_socket_bus()
        self.clock.close()
        self.drain.close()
        if pending:
            log.warning("%d of %d links did not close within %.1f s", len(pending), len(closing), timeout)
        return not pending

    def stats(self) -> dict[int, LinkStats]:
        """Model, RSSI, link quality and reconnects per pack, as they stand now."""
        return {link.pack: link.stats() for link in self.links}

    @property
    def drops(self) -> dict[int, int]:
        """Frames thrown away per pack."""
        return {link.pack: link.drops for link in self.links}
