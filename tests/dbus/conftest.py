"""Fixtures for the D-Bus service tests: a client connection and services on the private session bus."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from dbus_bank import ADDRESSES, ServiceFactory
from dbus_fast.aio import MessageBus

from btbattery.dbus.battery import BatteryService
from btbattery.dbus.busitem import connect_bus


@pytest.fixture
async def client(session_bus: str) -> AsyncIterator[MessageBus]:
    """An independent client connection, as a Venus GUI or systemcalc would have."""
    bus = await MessageBus(bus_address=session_bus).connect()
    yield bus
    bus.disconnect()


@pytest.fixture
async def start_service(session_bus: str, tmp_path: Path) -> AsyncIterator[ServiceFactory]:
    """Start BatteryServices on their own connections (the session bus, picked by connect_bus)."""
    started: list[tuple[BatteryService, MessageBus]] = []

    async def start(packs: int = 4, cells_per_pack: int | None = 16, **kwargs: object) -> BatteryService:
        bus = await connect_bus()
        kwargs.setdefault("custom_name_store", tmp_path / "state.json")
        pack_list = [(n, ADDRESSES[n - 1]) for n in range(1, packs + 1)]
        service = BatteryService(bus, pack_list, cells_per_pack=cells_per_pack, **kwargs)  # type: ignore[arg-type]
        await service.start()
        started.append((service, bus))
        return service

    yield start
    for service, bus in started:
        if bus.connected:
            await asyncio.wait_for(service.stop(), 5)
            bus.disconnect()
