"""DeviceInstance from a (fake) localsettings on the bus, and the logged fallback without one."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
from dbus_fast.aio import MessageBus
from fake_localsettings import FakeLocalSettings

from btbattery.dbus.battery import bank_unique_id
from btbattery.dbus.busitem import connect_bus
from btbattery.dbus.settings import device_instance

UNIQUE = bank_unique_id(["AA:BB:CC:DD:EE:01", "AA:BB:CC:DD:EE:02"])


@pytest.fixture
async def service_bus(session_bus: str) -> AsyncIterator[MessageBus]:
    bus = await connect_bus()
    yield bus
    bus.disconnect()


async def fake_settings(session_bus: str, **kwargs: bool) -> FakeLocalSettings:
    bus = await MessageBus(bus_address=session_bus).connect()
    return await FakeLocalSettings(bus, **kwargs).start()


async def test_instance_comes_from_settings_and_is_stable(session_bus: str, service_bus: MessageBus) -> None:
    settings = await fake_settings(session_bus)
    settings.values["/Settings/Devices/other_battery/ClassAndVrmInstance"] = "battery:1"
    assert await device_instance(service_bus, UNIQUE, fallback=1, timeout=5) == 2
    assert settings.values[f"/Settings/Devices/{UNIQUE}/ClassAndVrmInstance"] == "battery:2"
    assert await device_instance(service_bus, UNIQUE, fallback=1, timeout=5) == 2  # same bank, same instance
    assert await device_instance(service_bus, "another_bank", fallback=1, timeout=5) == 3
    assert settings.calls.count("AddSettings") == 3
    settings.bus.disconnect()


async def test_older_settings_without_add_settings(session_bus: str, service_bus: MessageBus) -> None:
    settings = await fake_settings(session_bus, legacy=True)
    settings.values["/Settings/Devices/other_battery/ClassAndVrmInstance"] = "battery:9"
    assert await device_instance(service_bus, UNIQUE, fallback=9, timeout=5) == 10
    assert settings.calls == ["AddSettings", "AddSetting", "GetValue"]
    settings.bus.disconnect()


async def test_no_settings_service_falls_back_with_a_log(
    service_bus: MessageBus, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="btbattery.dbus.settings"):
        assert await device_instance(service_bus, UNIQUE, fallback=7, timeout=5) == 7
    assert "using configured 7" in caplog.text


async def test_hung_settings_service_times_out_to_the_fallback(
    session_bus: str, service_bus: MessageBus, caplog: pytest.LogCaptureFixture
) -> None:
    settings = await fake_settings(session_bus, hung=True)
    with caplog.at_level(logging.WARNING, logger="btbattery.dbus.settings"):
        assert await device_instance(service_bus, UNIQUE, fallback=4, timeout=0.3) == 4
    assert "no answer within 0.3 s" in caplog.text
    settings.bus.disconnect()


async def test_unexpected_value_falls_back(session_bus: str, service_bus: MessageBus) -> None:
    settings = await fake_settings(session_bus)
    settings.values[f"/Settings/Devices/{UNIQUE}/ClassAndVrmInstance"] = "tank:3"  # someone else's class
    assert await device_instance(service_bus, UNIQUE, fallback=5, timeout=5) == 5
    settings.bus.disconnect()
