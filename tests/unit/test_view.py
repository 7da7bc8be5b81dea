"""The demo's screen is a pure function of what D-Bus shows."""

from btbattery.view import items_from_dbus, render, snapshot


class V:  # stands for a dbus-fast Variant: only .value is read
    def __init__(self, value):
        self.value = value


def test_render_shows_bank_limits_flags_and_each_pack() -> None:
    items: dict = {}
    items_from_dbus(
        {
            "/Dc/0/Voltage": {"Value": V(53.2), "Text": V("53.20V")},
            "/Soc": {"Value": V([]), "Text": V("---")},  # invalid
            "/Info/MaxChargeCurrent": {"Value": V(42.0), "Text": V("42.0A")},
            "/Parallel/SocImbalance": {"Value": V(1), "Text": V("1")},
            "/Parallel/Battery2/Address": {"Value": V("A4:C1:37:00:00:02"), "Text": V("A4:C1:37:00:00:02")},
            "/Parallel/Battery2/LinkState": {"Value": V("backoff"), "Text": V("backoff")},
            "/Voltages/Cell2_1": {"Value": V(3.301), "Text": V("3.301V")},
            "/Voltages/Cell2_2": {"Value": V(3.412), "Text": V("3.412V")},
        },
        items,
    )
    assert items["/Soc"] == (None, "---")
    screen = render(items, "svc")
    assert "53.20V" in screen and "42.0A" in screen
    assert "SoC             1" in screen
    pack_row = next(line for line in screen.splitlines() if "A4:C1:37:00:00:02" in line)
    assert pack_row.split()[0] == "2" and "backoff" in pack_row and "3.301/3.412 V" in pack_row


def _items(values: dict) -> dict:
    items: dict = {}
    items_from_dbus(
        {p: {"Value": V(v), "Text": V(str(v) if v != [] else "---")} for p, v in values.items()}, items
    )
    return items


def test_per_pack_detail_and_limit_reasons_show_where_published() -> None:
    items = _items(
        {
            "/Info/MaxChargeCurrent": 42.0,
            "/Info/ChargeLimitation": "pack 2 cell 3.55 V",
            "/Parallel/Battery1/Address": "A4:C1:37:00:00:01",
            "/Parallel/Battery1/Temperature": 31.5,
            "/Parallel/Battery1/Protection": "",
        }
    )
    screen = render(items, "svc")
    assert "Charge limited by        pack 2 cell 3.55 V" in screen
    assert "Discharge limited by" not in screen  # not published by this service: no empty row
    assert screen.endswith("\n        Temperature 31.5\n")  # an empty Protection is left out
    snap = snapshot(items, "svc")
    assert snap["limits"]["charge_limitation"] == "pack 2 cell 3.55 V"
    assert "discharge_limitation" not in snap["limits"]
    assert snap["packs"] == [
        {"number": 1, "address": "A4:C1:37:00:00:01", "protection": "", "temperature": 31.5, "cells": []}
    ]


def test_snapshot_keys_come_from_the_view_tables_and_invalid_is_null() -> None:
    items = _items({"/Soc": [], "/Voltages/Cell1_2": 3.31, "/Voltages/Cell1_1": 3.30})
    snap = snapshot(items, "svc")
    assert list(snap) == ["service", "bank", "limits", "imbalance", "packs", "paths"]
    assert snap["bank"]["soc"] is None and snap["bank"]["voltage"] is None
    assert snap["packs"] == [{"number": 1, "cells": [3.30, 3.31]}]  # cells in cell order, not path order
    assert snap["paths"]["/Soc"] is None


def test_every_link_state_fits_its_column() -> None:
    from btbattery.model import LinkState
    from btbattery.view import render

    rows = []
    for state in LinkState:
        items = {
            "/Parallel/Battery1/Address": ("A4:C1:37:00:00:01", "A4:C1:37:00:00:01"),
            "/Parallel/Battery1/LinkState": (state.value, state.value),
            "/Parallel/Battery1/Connected": (0, "0"),
        }
        screen = render(items, "svc", "status")
        rows.append(next(line for line in screen.splitlines() if "A4:C1:37:00:00:01" in line))
    assert len({row.index(" 0 ") for row in rows}) == 1  # the next column starts at the same place
