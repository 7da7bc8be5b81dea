"""The bank's battery service, read the way Venus reads it: GetItems once, then ItemsChanged."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
from pathlib import Path

from dbus_bank import (
    ServiceFactory,
    SignalListener,
    bank_state,
    call,
    get_items,
    get_items_when_name_appears,
    pack_reading,
    with_snapshot,
)
from dbus_fast import MessageType
from dbus_fast.aio import MessageBus

from btbattery.dbus.battery import PACK_PATHS, PRODUCT_ID, SERVICE_NAME, BatteryService
from btbattery.model import BankAlerts, ChargeLimits, LinkState, LinkStats, Protection

MANDATORY = [
    "/Mgmt/ProcessName",
    "/Mgmt/ProcessVersion",
    "/Mgmt/Connection",
    "/DeviceInstance",
    "/ProductId",
    "/ProductName",
    "/FirmwareVersion",
    "/HardwareVersion",
    "/Connected",
    "/CustomName",
    "/Serial",
]
GUIDE = [
    "/Parallel/VoltageImbalance",
    "/Parallel/CurrentImbalance",
    "/Parallel/SocImbalance",
    "/Parallel/TotalBatteries",
    "/Parallel/ActiveBatteries",
]
# path -> D-Bus type once a live bank is published
TYPES = {
    "/DeviceInstance": "i",
    "/ProductId": "i",
    "/ProductName": "s",
    "/Connected": "i",
    "/CustomName": "s",
    "/Serial": "s",
    "/Dc/0/Voltage": "d",
    "/Dc/0/Current": "d",
    "/Dc/0/Power": "d",
    "/Dc/0/Temperature": "d",
    "/Soc": "d",
    "/Capacity": "d",
    "/InstalledCapacity": "d",
    "/ConsumedAmphours": "d",
    "/TimeToGo": "i",
    "/Info/MaxChargeVoltage": "d",
    "/Info/MaxChargeCurrent": "d",
    "/Info/MaxDischargeCurrent": "d",
    "/Info/BatteryLowVoltage": "d",
    "/Info/ChargeRequest": "i",
    "/Info/ChargeLimitation": "s",
    "/Info/DischargeLimitation": "s",
    "/System/MinSoc": "i",
    "/System/MinSocBatteryId": "i",
    "/Alarms/BmsCable": "i",
    "/Alarms/LowSoc": "i",
    "/Io/AllowToCharge": "i",
    "/Io/AllowToDischarge": "i",
    "/Io/AllowToBalance": "i",
    "/System/MinCellVoltage": "d",
    "/System/MaxCellVoltage": "d",
    "/System/MinVoltageCellId": "s",
    "/System/MaxVoltageCellId": "s",
    "/System/MinCellTemperature": "d",
    "/System/MaxCellTemperature": "d",
    "/System/NrOfCellsPerBattery": "i",
    "/System/NrOfModulesOnline": "i",
    "/System/NrOfModulesOffline": "i",
    "/System/NrOfModulesBlockingCharge": "i",
    "/System/NrOfModulesBlockingDischarge": "i",
    "/Alarms/HighCellVoltage": "i",
    "/Alarms/CellImbalance": "i",
    "/Balancing": "i",
    "/History/ChargeCycles": "i",
    "/Voltages/Sum": "d",
    "/Voltages/Diff": "d",
    "/State": "i",
    "/Parallel/VoltageImbalance": "i",
    "/Parallel/TotalBatteries": "i",
    "/Parallel/ActiveBatteries": "i",
    "/Parallel/VoltageSpread": "d",
    "/Parallel/CurrentSpread": "d",
    "/Parallel/SocSpread": "d",
    "/Parallel/Battery2/Address": "s",
    "/Parallel/Battery2/LinkState": "s",
    "/Parallel/Battery2/Voltage": "d",
    "/Parallel/Battery2/Current": "d",
    "/Parallel/Battery2/Soc": "i",
    "/Parallel/Battery2/Connected": "i",
    "/Parallel/Battery2/Temperature": "d",
    "/Parallel/Battery2/MinCellVoltage": "d",
    "/Parallel/Battery2/MaxCellVoltage": "d",
    "/Parallel/Battery2/CellCount": "i",
    "/Parallel/Battery2/Capacity": "d",
    "/Parallel/Battery2/InstalledCapacity": "d",
    "/Parallel/Battery2/Cycles": "i",
    "/Parallel/Battery2/ChargeFet": "i",
    "/Parallel/Battery2/DischargeFet": "i",
    "/Parallel/Battery2/Balancing": "i",
    "/Parallel/Battery2/Protection": "s",
    "/Parallel/Battery2/LastUpdate": "i",
    "/Voltages/Cell4_16": "d",
    "/Balances/Cell4_16": "i",
}


async def test_get_items_has_every_path_with_its_type(
    start_service: ServiceFactory, client: MessageBus
) -> None:
    service = await start_service(packs=4, cells_per_pack=16)
    items = await get_items(client, SERVICE_NAME)
    for path in [*MANDATORY, *GUIDE, *TYPES]:
        assert path in items, path
    cells = [p for p in items if p.startswith(("/Voltages/Cell", "/Balances/Cell"))]
    assert len(cells) == 4 * 16 * 2
    assert items["/ProductId"]["Value"].value == PRODUCT_ID
    assert items["/Connected"]["Value"].value == 0
    for path in ("/Info/MaxChargeVoltage", "/Info/MaxChargeCurrent", "/Info/MaxDischargeCurrent"):
        assert items[path]["Value"].signature == "ai", path  # no limits yet: invalid, so DVCC obeys none
    assert items["/Io/AllowToCharge"]["Value"].value == 0
    assert items["/Dc/0/Voltage"]["Value"].signature == "ai"  # ...but measurements are unknown
    assert items["/Parallel/Battery3/Address"]["Value"].value == "AA:BB:CC:DD:EE:03"

    service.publish(bank_state(4, 16))
    items = await get_items(client, SERVICE_NAME)
    wrong = {p: items[p]["Value"].signature for p, t in TYPES.items() if items[p]["Value"].signature != t}
    assert wrong == {}
    assert items["/Dc/0/Voltage"]["Text"].value == "53.10V"
    assert items["/System/MaxVoltageCellId"]["Value"].value == "4-16"
    assert items["/Parallel/TotalBatteries"]["Value"].value == 4
    assert items["/Parallel/ActiveBatteries"]["Value"].value == 4
    assert items["/Voltages/Cell1_3"]["Value"].value == 3.312
    assert [items[f"/Balances/Cell1_{c}"]["Value"].value for c in (1, 2, 3, 4)] == [1, 0, 1, 0]
    assert items["/Connected"]["Value"].value == 1
    assert items["/TimeToGo"]["Value"].value == 320 * 3600 // 10


async def test_first_get_items_after_the_name_appears_has_every_cell(
    start_service: ServiceFactory, client: MessageBus
) -> None:
    first_items = await get_items_when_name_appears(client, SERVICE_NAME)
    service = await start_service(packs=16, cells_per_pack=16)
    items = await asyncio.wait_for(first_items, 5)
    assert set(items) == set(service.tree.paths())
    assert "/Voltages/Cell16_16" in items and "/Balances/Cell16_16" in items
    assert "/Parallel/Battery16/Address" in items


async def test_one_change_one_items_changed_with_only_that_path(
    start_service: ServiceFactory, client: MessageBus
) -> None:
    service = await start_service()
    listener = await SignalListener(client, SERVICE_NAME).start()
    state = bank_state()
    service.publish(state)
    first = await listener.next_items_changed()
    assert "/Dc/0/Voltage" in first and "/Voltages/Cell4_16" in first
    await listener.barrier()
    assert listener.drain() == []

    service.publish(with_snapshot(state, voltage=53.25))
    changed = await listener.next_items_changed()
    assert set(changed) == {"/Dc/0/Voltage"}
    assert changed["/Dc/0/Voltage"]["Value"].value == 53.25

    # The next tick: fresh readings with the same values, so nothing changed (not even LastUpdate)
    service.publish(with_snapshot(bank_state(time=1.0), voltage=53.25))
    await listener.barrier()
    assert listener.drain() == []


async def test_one_cell_change_is_one_path(start_service: ServiceFactory, client: MessageBus) -> None:
    service = await start_service(packs=2, cells_per_pack=4)
    listener = await SignalListener(client, SERVICE_NAME).start()
    state = bank_state(2, 4)
    service.publish(state)
    await listener.next_items_changed()
    reading = pack_reading(2, 4)
    cells = list(reading.cells.voltages)
    cells[2] = 3.5
    reading = dataclasses.replace(reading, cells=dataclasses.replace(reading.cells, voltages=tuple(cells)))
    packs = list(state.snapshot.packs)
    packs[1] = dataclasses.replace(packs[1], reading=reading)
    service.publish(with_snapshot(state, packs=tuple(packs)))
    changed = await listener.next_items_changed()
    # 3.5 V is pack 2's new highest cell, so its per-pack maximum moves with it
    assert set(changed) == {"/Voltages/Cell2_3", "/Voltages/Sum", "/Parallel/Battery2/MaxCellVoltage"}


def _with_pack_reading(state, pack: int, **changes):
    """``state`` with pack ``pack``'s reading changed: ``voltages=`` for its cells, ``info=`` fields."""
    packs = list(state.snapshot.packs)
    reading = packs[pack - 1].reading
    if "voltages" in changes:
        cells = dataclasses.replace(reading.cells, voltages=tuple(changes.pop("voltages")))
        reading = dataclasses.replace(reading, cells=cells)
    if changes:
        reading = dataclasses.replace(reading, info=dataclasses.replace(reading.info, **changes))
    packs[pack - 1] = dataclasses.replace(packs[pack - 1], reading=reading)
    return with_snapshot(state, packs=tuple(packs))


async def test_cell_paths_follow_a_shorter_reading_balancers_and_back(
    start_service: ServiceFactory, client: MessageBus
) -> None:
    """Only moved cells are written each tick; a reading with fewer cells, balancers that change alone,
    and the cells coming back must still reach the bus (each through the same door Venus reads)."""
    service = await start_service(packs=2, cells_per_pack=4)
    listener = await SignalListener(client, SERVICE_NAME).start()
    state = bank_state(2, 4)
    service.publish(state)
    await listener.next_items_changed()
    full = state.snapshot.packs[1].reading.cells.voltages

    service.publish(_with_pack_reading(state, 2, voltages=full[:3]))
    changed = await listener.next_items_changed()
    assert changed["/Voltages/Cell2_4"]["Value"].signature == "ai"  # unknown, not its old value
    assert changed["/Balances/Cell2_4"]["Value"].signature == "ai"

    service.publish(_with_pack_reading(state, 2, balance_bits=0b010))  # all 4 cells again, new balancers
    changed = await listener.next_items_changed()
    assert changed["/Voltages/Cell2_4"]["Value"].value == full[3]
    assert [changed[f"/Balances/Cell2_{c}"]["Value"].value for c in (1, 2, 3)] == [0, 1, 0]

    service.publish(_with_pack_reading(state, 2, balance_bits=0b011))  # balancers alone
    changed = await listener.next_items_changed()
    assert {p for p in changed if "Cell2_" in p} == {"/Balances/Cell2_1"}
    items = await get_items(client, SERVICE_NAME)
    assert [items[f"/Voltages/Cell2_{c}"]["Value"].value for c in (1, 2, 3, 4)] == list(full)


async def test_offline_bank_is_invalid_except_currents_zero_and_the_last_cvl(
    start_service: ServiceFactory, client: MessageBus
) -> None:
    service = await start_service(packs=2, cells_per_pack=4)
    service.publish(bank_state(2, 4))
    service.publish(bank_state(2, 4, active=False))  # its limits are ChargeLimits(0, 0, 0)
    items = await get_items(client, SERVICE_NAME)
    for path in ("/Dc/0/Voltage", "/Soc", "/System/MinCellVoltage", "/Voltages/Cell1_1", "/Balances/Cell2_4"):
        assert items[path]["Value"].signature == "ai", path
        assert items[path]["Text"].value == "---"
    assert items["/Parallel/Battery1/Voltage"]["Value"].value == []
    assert items["/Parallel/Battery1/Connected"]["Value"].value == 0
    assert items["/Parallel/Battery1/LinkState"]["Value"].value == "offline"
    for path in ("/Info/MaxChargeCurrent", "/Info/MaxDischargeCurrent"):
        assert items[path]["Value"].signature == "d" and items[path]["Value"].value == 0.0, path
    assert items["/Info/MaxChargeVoltage"]["Value"].value == 55.2  # 0 V is "unknown": the last CVL stays
    assert items["/Connected"]["Value"].value == 0
    assert items["/Io/AllowToCharge"]["Value"].value == 0
    assert items["/Parallel/ActiveBatteries"]["Value"].value == 0


async def test_broken_limits_fail_toward_zero(start_service: ServiceFactory, client: MessageBus) -> None:
    service = await start_service(packs=1, cells_per_pack=4)
    broken = dataclasses.replace(bank_state(1, 4), limits=ChargeLimits(math.nan, math.inf, -3.0))
    service.publish(broken)
    items = await get_items(client, SERVICE_NAME)
    for path in ("/Info/MaxChargeVoltage", "/Info/MaxChargeCurrent", "/Info/MaxDischargeCurrent"):
        assert items[path]["Value"].signature == "ai", path  # never a real CVL yet: invalid, not 0 V
    service.publish(bank_state(1, 4))
    service.publish(broken)
    items = await get_items(client, SERVICE_NAME)
    assert items["/Info/MaxChargeVoltage"]["Value"].value == 55.2
    assert items["/Info/MaxChargeCurrent"]["Value"].value == 0.0
    assert items["/Info/MaxDischargeCurrent"]["Value"].value == 0.0
    assert items["/Io/AllowToCharge"]["Value"].value == 0


async def test_allow_to_charge_follows_the_ccl_not_one_packs_fet(
    start_service: ServiceFactory, client: MessageBus
) -> None:
    """One pack's charge FET off while the others charge: the bank may be charged (CCL > 0), and the
    blocking pack is counted where Venus looks for it."""
    service = await start_service(packs=2, cells_per_pack=4)
    service.publish(with_snapshot(bank_state(2, 4), charge_fet=False, blocking_charge=1))
    items = await get_items(client, SERVICE_NAME)
    assert items["/Io/AllowToCharge"]["Value"].value == 1
    assert items["/System/NrOfModulesBlockingCharge"]["Value"].value == 1
    service.publish(dataclasses.replace(bank_state(2, 4), limits=ChargeLimits(55.2, 0.0, 150.0)))
    items = await get_items(client, SERVICE_NAME)
    assert items["/Io/AllowToCharge"]["Value"].value == 0
    assert items["/Io/AllowToDischarge"]["Value"].value == 1


async def test_alerts_reasons_and_pack_soc_extremes(
    start_service: ServiceFactory, client: MessageBus
) -> None:
    service = await start_service(packs=3, cells_per_pack=4)
    state = bank_state(3, 4)
    packs = list(state.snapshot.packs)
    for number, soc in ((1, 64), (2, 12), (3, 71)):
        reading = packs[number - 1].reading
        assert reading is not None
        info = dataclasses.replace(reading.info, soc=soc)
        packs[number - 1] = dataclasses.replace(
            packs[number - 1], reading=dataclasses.replace(reading, info=info)
        )
    limits = ChargeLimits(55.2, 40.0, 150.0, (), "cell voltage: pack 3", "MAX_BATTERY_DISCHARGE_CURRENT")
    alerts = BankAlerts(bms_cable=1, low_soc=2, charge_request=True)
    state = dataclasses.replace(state, limits=limits, alerts=alerts)
    service.publish(with_snapshot(state, packs=tuple(packs)))
    items = await get_items(client, SERVICE_NAME)
    value = {path: items[path]["Value"].value for path in items}
    assert value["/System/MinSoc"] == 12 and value["/System/MinSocBatteryId"] == 2
    assert value["/System/MaxSoc"] == 71 and value["/System/MaxSocBatteryId"] == 3
    assert value["/Info/ChargeLimitation"] == "cell voltage: pack 3"
    assert value["/Info/DischargeLimitation"] == "MAX_BATTERY_DISCHARGE_CURRENT"
    assert (value["/Alarms/BmsCable"], value["/Alarms/LowSoc"], value["/Info/ChargeRequest"]) == (1, 2, 1)
    service.publish(bank_state(3, 4, active=False))
    items = await get_items(client, SERVICE_NAME)
    assert items["/System/MinSoc"]["Value"].signature == "ai"
    assert items["/Alarms/BmsCable"]["Value"].value == 0  # valid even without a pack: that is its point


async def test_protection_raises_alarms(start_service: ServiceFactory, client: MessageBus) -> None:
    service = await start_service(packs=1, cells_per_pack=4)
    items = await get_items(client, SERVICE_NAME)
    assert items["/Alarms/HighCellVoltage"]["Value"].signature == "ai"  # nothing known yet
    service.publish(with_snapshot(bank_state(1, 4), protection=Protection.CELL_OVERVOLTAGE))
    items = await get_items(client, SERVICE_NAME)
    assert items["/Alarms/HighCellVoltage"]["Value"].value == 2
    assert items["/Alarms/LowCellVoltage"]["Value"].value == 0
    service.publish(bank_state(1, 4, active=False))  # the bank goes blind: the alarm must not clear
    items = await get_items(client, SERVICE_NAME)
    assert items["/Alarms/HighCellVoltage"]["Value"].value == 2
    assert items["/Alarms/LowCellVoltage"]["Value"].value == 0


async def test_pack_seen_with_more_cells_gains_paths(
    start_service: ServiceFactory, client: MessageBus
) -> None:
    service = await start_service(packs=2, cells_per_pack=None)
    assert "/Voltages/Cell1_1" not in await get_items(client, SERVICE_NAME)
    listener = await SignalListener(client, SERVICE_NAME).start()
    service.publish(bank_state(2, 4))
    changed = await listener.next_items_changed()
    assert "/Voltages/Cell2_4" in changed and "/Balances/Cell2_4" in changed
    service.publish(bank_state(2, 5))
    changed = await listener.next_items_changed()
    assert {"/Voltages/Cell1_5", "/Voltages/Cell2_5", "/Balances/Cell1_5"} <= set(changed)
    items = await get_items(client, SERVICE_NAME)
    assert items["/Voltages/Cell2_5"]["Value"].signature == "d"


async def test_custom_name_is_writable_validated_and_persists(
    start_service: ServiceFactory, client: MessageBus, session_bus: str, tmp_path: Path
) -> None:
    store = tmp_path / "btb" / "state.json"
    service = await start_service(packs=2, custom_name_store=store)
    # an independent command-line client, as a user on the GX would use
    out = await run("busctl", f"--address={session_bus}", "call", SERVICE_NAME, "/CustomName",
                    "com.victronenergy.BusItem", "SetValue", "v", "s", "Shed bank")  # fmt: skip
    assert out == "i 0"
    assert json.loads(store.read_text())["CustomName"] == "Shed bank"
    out = await run("busctl", f"--address={session_bus}", "call", SERVICE_NAME, "/CustomName",
                    "com.victronenergy.BusItem", "SetValue", "v", "i", "5")  # fmt: skip
    assert out == "i 1"  # wrong type
    out = await run("busctl", f"--address={session_bus}", "call", SERVICE_NAME, "/CustomName",
                    "com.victronenergy.BusItem", "SetValue", "v", "s", "x" * 200)  # fmt: skip
    assert out == "i 2"  # rejected: too long
    out = await run("busctl", f"--address={session_bus}", "call", SERVICE_NAME, "/Soc",
                    "com.victronenergy.BusItem", "SetValue", "v", "d", "5")  # fmt: skip
    assert out == "i 1"  # read-only

    await service.stop()
    again = await start_service(packs=2, custom_name_store=store)
    assert again.tree["/CustomName"] == "Shed bank"
    reply = await call(client, SERVICE_NAME, "/CustomName", "GetValue")
    assert reply.body[0].value == "Shed bank"


async def test_unreadable_state_file_starts_with_empty_name(
    start_service: ServiceFactory, tmp_path: Path
) -> None:
    store = tmp_path / "state.json"
    store.write_text("{not json")
    service = await start_service(packs=1, custom_name_store=store)
    assert service.tree["/CustomName"] == ""


async def test_dbus_send_reads_the_service(start_service: ServiceFactory, session_bus: str) -> None:
    service = await start_service(packs=4, cells_per_pack=16)
    service.publish(bank_state())
    out = await run("dbus-send", f"--bus={session_bus}", "--print-reply", f"--dest={SERVICE_NAME}", "/",
                    "com.victronenergy.BusItem.GetItems")  # fmt: skip
    assert '"/Voltages/Cell4_16"' in out and '"/Parallel/Battery4/Address"' in out
    out = await run("busctl", f"--address={session_bus}", "--json=short", "call", SERVICE_NAME, "/Parallel",
                    "com.victronenergy.BusItem", "GetValue")  # fmt: skip
    data = json.loads(out)["data"][0]["data"]
    assert data["TotalBatteries"]["data"] == 4
    assert data["Battery1/Address"]["data"] == "AA:BB:CC:DD:EE:01"


async def test_service_name_and_instance_are_configurable(
    start_service: ServiceFactory, client: MessageBus
) -> None:
    service: BatteryService = await start_service(
        packs=1, service_name="com.victronenergy.battery.bank2", device_instance=42
    )
    items = await get_items(client, "com.victronenergy.battery.bank2")
    assert items["/DeviceInstance"]["Value"].value == 42
    assert items["/Serial"]["Value"].value == service.serial
    reply = await call(client, SERVICE_NAME, "/", "GetItems")
    assert reply.message_type is MessageType.ERROR


async def run(*argv: str) -> str:
    """Run a command-line D-Bus client without blocking the loop that serves the service."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode == 0, err.decode()
    return out.decode().strip()


LINK_PATHS = ("Model", "Rssi", "RssiAge", "LinkQuality", "Reconnects")
MEASURED = [leaf for leaf, row in PACK_PATHS.items() if row.measured]


def _pack_items(items: dict, n: int) -> dict:
    prefix = f"/Parallel/Battery{n}/"
    return {p[len(prefix) :]: v["Value"].value for p, v in items.items() if p.startswith(prefix)}


async def test_per_pack_detail_from_readings_and_link(
    start_service: ServiceFactory, client: MessageBus
) -> None:
    links = {
        1: LinkStats("SP04S034-L16S-100A", -61, 95.0, 98, 2),
        2: LinkStats(None, None, None, None, 0),  # nothing known yet beyond the reconnect count
    }
    service = await start_service(packs=2, cells_per_pack=4, link_stats=lambda: links)
    items = await get_items(client, SERVICE_NAME)
    before = _pack_items(items, 1)
    assert all(before[leaf] == [] for leaf in (*MEASURED, *LINK_PATHS, "LastUpdate")), (
        before
    )  # invalid, not 0

    state = bank_state(2, 4, time=100.0)
    packs = list(state.snapshot.packs)
    hot = dataclasses.replace(
        packs[0].reading.info,
        temperatures=(21.0, 38.5, 30.0),
        protection=Protection.CHARGE_OVERTEMPERATURE | Protection.CELL_OVERVOLTAGE,
        charge_fet=False,
        balance_bits=0,
    )
    packs[0] = dataclasses.replace(
        packs[0], reading=dataclasses.replace(packs[0].reading, info=hot, time=97.4)
    )
    service.publish(with_snapshot(state, packs=tuple(packs)))
    items = await get_items(client, SERVICE_NAME)
    one, two = _pack_items(items, 1), _pack_items(items, 2)
    assert one["Temperature"] == 38.5
    assert items["/Parallel/Battery1/Temperature"]["Text"].value == "38.5°C"
    assert (one["MinCellVoltage"], one["MaxCellVoltage"]) == (3.31, 3.313)
    assert (one["CellCount"], one["Capacity"], one["InstalledCapacity"], one["Cycles"]) == (
        4,
        80.0,
        100.0,
        10,
    )
    assert (one["ChargeFet"], one["DischargeFet"], one["Balancing"]) == (0, 1, 0)
    assert one["Protection"] == "cell OV, charge OT"
    assert two["Protection"] == "" and two["Balancing"] == 1  # valid and empty: no protection active
    assert one["Model"] == "SP04S034-L16S-100A"
    assert (one["Rssi"], one["RssiAge"], one["LinkQuality"], one["Reconnects"]) == (-61, 5, 98, 2)
    assert items["/Parallel/Battery1/Rssi"]["Text"].value == "-61dBm"
    assert one["LastUpdate"] == 2 and two["LastUpdate"] == 0
    assert [two[leaf] for leaf in ("Model", "Rssi", "RssiAge", "LinkQuality")] == [[], [], [], []]
    assert two["Reconnects"] == 0


async def test_pack_out_of_the_bank_shows_no_old_measurements(
    start_service: ServiceFactory, client: MessageBus
) -> None:
    links = {1: LinkStats("JBD-X", -70, 10.0, 40, 1), 2: LinkStats("JBD-X", -70, 10.0, 100, 0)}
    service = await start_service(packs=2, cells_per_pack=4, link_stats=lambda: links)
    state = bank_state(2, 4, time=10.0)
    service.publish(state)
    packs = list(state.snapshot.packs)
    packs[0] = dataclasses.replace(packs[0], link_state=LinkState.BACKOFF, fresh=False, active=False)
    service.publish(with_snapshot(state, packs=tuple(packs), time=42.0))
    one = _pack_items(await get_items(client, SERVICE_NAME), 1)
    assert all(one[leaf] == [] for leaf in MEASURED), {leaf: one[leaf] for leaf in MEASURED}
    assert one["Connected"] == 0 and one["LinkState"] == "backoff"
    # what the link knows stays: it is what tells a user why the pack is gone
    assert (one["Model"], one["Rssi"], one["RssiAge"], one["LinkQuality"], one["Reconnects"]) == (
        "JBD-X",
        -70,
        32,
        40,
        1,
    )
    assert one["LastUpdate"] == 32

    # After a minute, ages move in whole minutes: a connected pack's RSSI ages for hours
    service.publish(with_snapshot(state, packs=tuple(packs), time=135.0))
    one = _pack_items(await get_items(client, SERVICE_NAME), 1)
    assert (one["RssiAge"], one["LastUpdate"]) == (120, 120)
