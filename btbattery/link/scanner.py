"""One discovery per adapter, shared by every pack that is looking for its device.

BlueZ allows one discovery session per D-Bus client, so two ``BleakScanner``s in one process fail. Packs call
:meth:`SharedScanner.find`; a single owner task starts discovery while anyone waits and stops it when nobody
does. Only advertisements heard during the current wait count: a device object seen before an outage may
have been removed from BlueZ since, so nothing is cached across waits.

The scan also reports each pack's RSSI to whoever registered for its address in ``on_rssi``. BlueZ only
reports RSSI from advertisements heard while discovering, and drops it when discovery stops
(``invalidate_rssi_and_tx_power`` in src/adapter.c), so a connected pack keeps its last value; its age
tells how old it is.

Discovery that BlueZ refuses (``org.bluez.Error.InProgress`` while another scanner holds the controller, as
dbus-ble-sensors does on Venus; ``NotReady`` on an unpowered adapter) is retried later with a growing delay;
it fails no waiter, whose own scanning timeout bounds the wait. Only the scan waits: packs whose device
BlueZ still knows connect without one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bleak.backends.device import BLEDevice
    from bleak.backends.scanner import AdvertisementData

log = logging.getLogger(__name__)


class SharedScanner:
    """``device = await scanner.find("AA:BB:..")`` -- waits until that address advertises."""

    REFUSED = ("org.bluez.Error.InProgress", "org.bluez.Error.NotReady", "No powered Bluetooth adapters")

    def __init__(
        self, adapter: str | None = None, restart_after: float = 10.0, retry_initial: float = 1.0
    ) -> None:
        self.adapter = adapter
        self.restart_after = restart_after
        self.retry_initial = retry_initial  # s before retrying refused discovery; doubles up to 30 s
        self._retry = retry_initial
        self.refusals = 0  # discovery starts refused, for tests and logs
        self._waiters: dict[str, list[asyncio.Future[BLEDevice]]] = {}
        self._wake = asyncio.Event()
        self._owner: asyncio.Task[None] | None = None
        self.scans = 0  # discovery sessions started, for tests and logs
        self.on_rssi: dict[str, Callable[[int], None]] = {}  # upper-case address -> callback(dBm)

    @property
    def scanning(self) -> bool:
        return self._owner is not None and not self._owner.done()

    async def find(self, address: str) -> BLEDevice:
        """The device as BlueZ knows it now. Bounded by the caller (the scanning state's timeout)."""
        fut: asyncio.Future[BLEDevice] = asyncio.get_running_loop().create_future()
        key = address.upper()
        self._waiters.setdefault(key, []).append(fut)
        self._wake.set()
        if not self.scanning:
            self._owner = asyncio.get_running_loop().create_task(self._run())
        try:
            return await fut
        finally:
            self._forget(key, fut)

    def _forget(self, key: str, fut: asyncio.Future[BLEDevice]) -> None:
        waiting = self._waiters.get(key)
        if waiting is not None and fut in waiting:
            waiting.remove(fut)
            if not waiting:
                del self._waiters[key]
        self._wake.set()

    def _on_advertisement(self, device: BLEDevice, adv: AdvertisementData) -> None:
        key = device.address.upper()
        report = self.on_rssi.get(key)
        if report is not None and adv.rssi is not None:
            report(adv.rssi)
        waiting = self._waiters.get(key)
        if waiting:
            for fut in waiting:
                if not fut.done():
                    fut.set_result(device)

    async def _run(self) -> None:
        """Own the discovery: sessions back to back while anyone waits, then stop."""
        while self._pending():
            if not await self._session():
                return

    async def _session(self) -> bool:
        """One discovery session, restarted after ``restart_after`` s: a session that outlived its adapter
        (bluetoothd restarted) would otherwise never report anything again."""
        from bleak import BleakScanner

        kwargs: dict[str, Any] = {"bluez": {"adapter": self.adapter}} if self.adapter else {}
        scanner = BleakScanner(self._on_advertisement, **kwargs)
        try:
            await scanner.start()
        except Exception as exc:
            if any(marker in str(exc) for marker in self.REFUSED):
                return await self._refused(exc)
            # No adapter, BlueZ gone: every waiter fails alike and goes back to asking BlueZ.
            log.warning("scan on %s failed to start: %s", self.adapter or "default adapter", exc)
            self._fail_all(exc)
            return False
        self._retry = self.retry_initial
        self.scans += 1
        log.debug("scan started on %s", self.adapter or "default adapter")
        loop = asyncio.get_running_loop()
        ends = loop.time() + self.restart_after
        try:
            while self._pending() and loop.time() < ends:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), max(0.0, ends - loop.time()))
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(scanner.stop())
            log.debug("scan stopped on %s", self.adapter or "default adapter")
        return True

    async def _refused(self, exc: BaseException) -> bool:
        """Discovery refused: wait (growing delay) while anyone still waits, then try again."""
        self.refusals += 1
        delay, self._retry = self._retry, min(30.0, self._retry * 2)
        level = logging.INFO if self.refusals == 1 or delay >= 30.0 else logging.DEBUG
        where = self.adapter or "default adapter"
        log.log(level, "discovery on %s refused (%s); retrying in %.0f s", where, exc, delay)
        ends = asyncio.get_running_loop().time() + delay
        while self._pending():
            self._wake.clear()
            left = ends - asyncio.get_running_loop().time()
            if left <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), left)
        return True

    def _pending(self) -> bool:
        return any(not f.done() for waiting in self._waiters.values() for f in waiting)

    def _fail_all(self, exc: BaseException) -> None:
        for waiting in self._waiters.values():
            for fut in waiting:
                if not fut.done():
                    fut.set_exception(exc)

    async def close(self) -> None:
        owner, self._owner = self._owner, None
        if owner is not None and not owner.done():
            owner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await owner
