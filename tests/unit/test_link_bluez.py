"""What the link reads from BlueZ's object tree, and how an adapter is found by name or address (pure)."""

from __future__ import annotations

from btbattery.link.bluez import Adapter, is_adapter_spec, parse_objects, resolve_adapter

BUILT_IN, DONGLE = "00:1A:7D:DA:71:13", "5C:F3:70:A1:B2:C3"
ADAPTERS = {"hci1": Adapter("hci1", DONGLE, True), "hci0": Adapter("hci0", BUILT_IN, False)}


def test_adapter_by_name_by_address_or_the_first() -> None:
    assert resolve_adapter("hci0", ADAPTERS) == "hci0"
    assert resolve_adapter(DONGLE.lower(), ADAPTERS) == "hci1"
    assert resolve_adapter(None, ADAPTERS) == "hci0"  # the lowest number, as bleak's default
    assert resolve_adapter("hci2", ADAPTERS) is None
    assert resolve_adapter("AA:BB:CC:DD:EE:FF", ADAPTERS) is None
    assert resolve_adapter(None, {}) is None


def test_adapter_spec_is_a_name_or_an_address() -> None:
    assert all(map(is_adapter_spec, ["hci0", "hci12", BUILT_IN, DONGLE.lower()]))
    assert not any(map(is_adapter_spec, ["", "hci", "usb0", "hci0 ", "00:1A:7D:DA:71", "00-1A-7D-DA-71-13"]))


def test_view_keys_devices_by_adapter_and_address() -> None:
    path = "/org/bluez/hci1/dev_A4_C1_37_00_00_01"
    objects = {
        "/org/bluez/hci0": {"org.bluez.Adapter1": {"Address": BUILT_IN, "Powered": True}},
        "/org/bluez/hci1": {"org.bluez.Adapter1": {"Address": DONGLE, "Powered": False}},
        path: {
            "org.bluez.Device1": {
                "Address": "a4:c1:37:00:00:01",
                "Adapter": "/org/bluez/hci1",
                "Name": "JBD-01",
                "Connected": True,
                "RSSI": -60,
            }
        },
    }
    view = parse_objects(objects)
    assert view.adapters["hci1"] == Adapter("hci1", DONGLE, False)
    device = view.device("hci1", "A4:C1:37:00:00:01")
    assert device is not None and device.path == path and device.connected and device.name == "JBD-01"
    assert view.device("hci0", "A4:C1:37:00:00:01") is None
