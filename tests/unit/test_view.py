"""The demo's screen is a pure function of what D-Bus shows."""

from btbattery.view import items_from_dbus, render


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
