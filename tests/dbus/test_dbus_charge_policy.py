"""The charge policy's own paths read the way Venus reads them, and its state file shared with /CustomName."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from dbus_bank import ServiceFactory, bank_state, get_items
from dbus_fast.aio import MessageBus
from test_dbus_battery import run

from btbattery.dbus.battery import SERVICE_NAME
from btbattery.pipeline.chargemode import ChargeState, Mode
from btbattery.statefile import charge_mode_io


async def test_charge_mode_and_sensor_alarm_on_the_bus(
    start_service: ServiceFactory, client: MessageBus
) -> None:
    service = await start_service(packs=2, cells_per_pack=4)
    state = dataclasses.replace(bank_state(2, 4), charge_mode="Absorption (120 of 900 s balanced)")
    service.publish(state)
    items = await get_items(client, SERVICE_NAME)
    assert items["/Info/ChargeMode"]["Value"].value == "Absorption (120 of 900 s balanced)"
    assert items["/Alarms/TemperatureSensor"]["Value"].value == 0
    service.publish(dataclasses.replace(state, sensor_faults=("pack 2 sensor 1",)))
    items = await get_items(client, SERVICE_NAME)
    assert items["/Alarms/TemperatureSensor"]["Value"].value == 1
    service.publish(bank_state(2, 4, active=False))
    items = await get_items(client, SERVICE_NAME)
    assert items["/Alarms/TemperatureSensor"]["Value"].signature == "ai"  # unknown without a pack
    assert items["/Info/ChargeMode"]["Value"].signature == "ai"


async def set_name(session_bus: str, name: str) -> None:
    out = await run("busctl", f"--address={session_bus}", "call", SERVICE_NAME, "/CustomName",
                    "com.victronenergy.BusItem", "SetValue", "v", "s", name)  # fmt: skip
    assert out == "i 0"


async def test_charge_mode_and_custom_name_share_the_state_file(
    start_service: ServiceFactory, session_bus: str, tmp_path: Path
) -> None:
    """Each owner merges its key: saving the charge mode keeps the user's name, and the other way round."""
    store = tmp_path / "state.json"
    await start_service(packs=1, custom_name_store=store)
    await set_name(session_bus, "Shed bank")
    wall = [1_700_000_000.0]
    restore, save = charge_mode_io(store, wall_clock=lambda: wall[0])
    save(ChargeState(Mode.FLOAT, 10.0, None, 3.45, 5.0), 100.0)  # last SoC reset 95 s ago
    data = json.loads(store.read_text())
    assert data["CustomName"] == "Shed bank"
    assert data["ChargeMode"] == {"mode": "Float", "last_soc_reset": 1_700_000_000 - 95}
    await set_name(session_bus, "Barn")
    wall[0] += 3600.0  # restarted an hour later; the pipeline's clock starts at 2 s
    restored = restore(2.0)
    assert restored.mode is Mode.FLOAT and restored.last_soc_reset == 2.0 - 3695.0
    assert json.loads(store.read_text())["CustomName"] == "Barn"
