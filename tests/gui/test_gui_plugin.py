"""The Venus OS gui-v2 plugin, tested off-device with the Qt of gui-v2 on the GX (PySide6 6.8.x):
qmllint against a stub of the Victron.VenusOS types it uses, the checked-in JSON rebuilt from its sources,
and its pages loaded from that JSON's resource, rendered offscreen with values read over D-Bus from the
demo's stack (fake BlueZ, the real service) and from a second, non-parallel 0xBA77 battery."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before Qt is loaded
os.environ["QML_DISABLE_DISK_CACHE"] = "1"  # always the QML of the JSON under test, never a cached compile

import pytest
from PySide6.QtCore import QObject, QResource, QUrl
from PySide6.QtGui import QColor, QGuiApplication
from PySide6.QtQml import QQmlComponent
from PySide6.QtQuick import QQuickItem, QQuickView

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from venus_client import VenusClient

from btbattery.dbus.busitem import BusItemTree, connect_bus
from btbattery.sim.stack import SimulatedStack

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "gui-v2" / "dbus-btbattery.json"
QML = ROOT / "gui-v2" / "qml"
STUB = Path(__file__).resolve().parent / "stub"
PYSIDE = Path(sys.modules["PySide6"].__file__).parent
ARTIFACTS = Path(os.environ.get("BTBATTERY_ARTIFACTS", ROOT / "build" / "artifacts")) / "gui"
BANK = "com.victronenergy.battery.virtual_parallel"
OTHER = "com.victronenergy.battery.ttyUSB0"  # another community driver, same product id, no /Parallel
PACKS = 3  # the demo's default scenario
START_TIMEOUT = 60.0  # to every pack polling with its model read; a loaded CI machine is slow


# ----- build and lint ----------------------------------------------------------------------------------


def test_qml_is_lint_clean_against_the_stub() -> None:
    files = sorted(str(p) for p in QML.glob("*.qml"))
    run = subprocess.run(
        [str(PYSIDE / "qmllint"), "--max-warnings", "0", "-I", str(STUB), *files],
        capture_output=True,
        text=True,
    )
    assert (run.returncode, run.stdout + run.stderr) == (0, "")


def test_checked_in_plugin_is_what_the_sources_build() -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build-gui-plugin.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr


def test_plugin_json_has_the_shape_gui_v2_reads() -> None:
    plugin = json.loads(PLUGIN.read_text(encoding="utf-8"))
    assert list(plugin) == [
        "name",
        "version",
        "minRequiredVersion",
        "maxRequiredVersion",
        "translations",
        "integrations",
        "resource",
    ]
    assert plugin["name"] == "dbus-btbattery" and plugin["translations"] == []
    assert base64.b64decode(plugin["resource"])[:4] == b"qres"  # a binary Qt resource, as rcc writes it
    titles = [(i["type"], i["productId"], i["title"]) for i in plugin["integrations"]]
    assert titles == [(2, "0xBA77", "Parallel bank"), (2, "0xBA77", "Packs"), (2, "0xBA77", "Cells")]


# ----- rendering ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def plugin_pages() -> Iterator[dict[str, str]]:
    """The plugin's resource registered the way gui-v2 does it; title -> page url."""
    app = QGuiApplication.instance() or QGuiApplication([])
    plugin = json.loads(PLUGIN.read_text(encoding="utf-8"))
    resource = base64.b64decode(plugin["resource"])
    assert QResource.registerResourceData(resource)
    yield {i["title"]: i["url"] for i in plugin["integrations"]}
    QResource.unregisterResourceData(resource)
    del app


async def _items(client: VenusClient) -> dict[str, Any]:
    return {path: value for path, value in (await client.get_items()).items() if value is not None}


@pytest.fixture
async def live_values(tmp_path: Path) -> AsyncIterator[dict[str, dict[str, Any]]]:
    """service -> {path: value} read over D-Bus from the demo's stack and from a non-parallel 0xBA77."""
    log = (tmp_path / "service.log").open("wb")
    state = ["--state-file", str(tmp_path / "state.json")]
    async with SimulatedStack(scenario="default", service_args=state, service_log=log) as stack:
        other_bus = await connect_bus(stack.session_address)
        other = BusItemTree(other_bus)
        for path, value in (("/ProductId", 0xBA77), ("/ProductName", "Other BMS"), ("/Dc/0/Voltage", 52.4)):
            other.add(path, value)
        await other.register(OTHER)
        client = await VenusClient.connect(stack.session_address, BANK)
        try:
            await client.wait_for_service(START_TIMEOUT)
            await client.wait_until(
                lambda c: (
                    c.values.get("/Parallel/ActiveBatteries") == PACKS
                    and all(c.values.get(f"/Parallel/Battery{n}/Model") for n in range(1, PACKS + 1))
                ),
                START_TIMEOUT,
            )
            bank = await _items(client)
            other_client = await VenusClient.connect(stack.session_address, OTHER)
            yield {BANK: bank, OTHER: await _items(other_client)}
            other_client.close()
        finally:
            client.close()
            await other.close()
            other_bus.disconnect()


class Screen:
    """One QQuickView showing plugin pages for one device, with StubBackend holding the values."""

    def __init__(self, values: dict[str, Any], service_uid: str) -> None:
        self.view = QQuickView()
        self.view.setColor(QColor("black"))
        self.view.setResizeMode(QQuickView.ResizeMode.SizeRootObjectToView)
        self.view.resize(800, 480)  # the GX Touch 50 / Cerbo's display
        engine = self.view.engine()
        engine.addImportPath(str(STUB))
        backend = engine.singletonInstance("Victron.VenusOS", "StubBackend")
        backend.setProperty("values", {service_uid + path: value for path, value in values.items()})
        component = QQmlComponent(engine)
        component.setData(b"import Victron.VenusOS\nDevice {}", QUrl())
        self.device = component.create()
        assert self.device is not None, component.errors()
        self.device.setProperty("serviceUid", service_uid)
        self.device.setProperty("productId", values.get("/ProductId", 0))
        self.view.setInitialProperties({"device": self.device})

    def show(self, url: str, png: str) -> QQuickItem:
        self.view.setSource(QUrl(url))
        assert not self.view.errors(), [e.toString() for e in self.view.errors()]
        self.view.show()
        for _ in range(3):
            QGuiApplication.processEvents()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        assert self.view.grabWindow().save(str(ARTIFACTS / png))
        return self.view.rootObject()

    def __enter__(self) -> Screen:
        return self

    def __exit__(self, *exc: object) -> None:
        self.view.close()
        self.view.deleteLater()


def _tree(item: QQuickItem) -> Iterator[QQuickItem]:
    yield item
    for child in item.childItems():
        yield from _tree(child)


def _named(root: QQuickItem) -> dict[str, QObject]:
    return {item.objectName(): item for item in _tree(root) if item.objectName()}


def _shown(item: QObject) -> bool:
    return bool(item.property("visible"))


async def test_pages_render_live_values_and_hide_on_other_batteries(
    plugin_pages: dict[str, str], live_values: dict[str, dict[str, Any]]
) -> None:
    """One stack start for all three checks: the machine is small and shared."""
    bank, other = live_values[BANK], live_values[OTHER]
    _show_the_live_bank(plugin_pages, bank)

    # In the browser and VRM console the same device is "mqtt/battery/<instance>": nothing is hard-coded.
    with Screen(bank, "mqtt/battery/512") as screen:
        packs = _named(screen.show(plugin_pages["Packs"], "packs-mqtt.png"))
        voltage = f"{bank['/Parallel/Battery2/Voltage']:.2f} V"
        assert packs["pack2"].property("secondaryText").startswith(voltage)

    # Another community driver's battery with the same product id: every page hides itself.
    assert other["/ProductId"] == 0xBA77 and "/Parallel/TotalBatteries" not in other
    with Screen(other, f"dbus/{OTHER}") as screen:
        for title, url in plugin_pages.items():
            named = _named(screen.show(url, f"other-{title.split()[-1].lower()}.png"))
            assert _shown(named["notABank"]), title
            lists = [item for name, item in named.items() if name.endswith("List")]
            assert len(lists) == 1 and not _shown(lists[0]), title
            rows = [name for name in named if name.startswith(("pack", "cell")) and not name.endswith("List")]
            assert rows == [], title


def _show_the_live_bank(plugin_pages: dict[str, str], values: dict[str, Any]) -> None:
    with Screen(values, f"dbus/{BANK}") as screen:
        summary = _named(screen.show(plugin_pages["Parallel bank"], "bank.png"))
        assert not _shown(summary["notABank"]) and _shown(summary["bankList"])
        active = values["/Parallel/ActiveBatteries"]
        assert summary["activePacks"].property("secondaryText") == f"{active} / {PACKS}"
        assert summary["cvl"].property("secondaryText") == f"{values['/Info/MaxChargeVoltage']:.2f} V"
        assert summary["ccl"].property("secondaryText") == f"{values['/Info/MaxChargeCurrent']:.1f} A"
        assert summary["ccl"].property("caption") == values["/Info/ChargeLimitation"]
        assert summary["dcl"].property("caption") == values["/Info/DischargeLimitation"]
        assert _shown(summary["chargeMode"])  # shown once the service publishes a mode
        assert summary["chargeMode"].property("secondaryText") == values["/Info/ChargeMode"]
        flag = "yes" if values["/Parallel/SocImbalance"] else "no"
        assert summary["socImbalance"].property("secondaryText").startswith(flag + "  ·  spread ")

        packs = _named(screen.show(plugin_pages["Packs"], "packs.png"))
        rows = {name: item for name, item in packs.items() if name.startswith("pack") and name != "packList"}
        assert sorted(rows) == [f"pack{n}" for n in range(1, PACKS + 1)]
        for n in range(1, PACKS + 1):
            row, path = rows[f"pack{n}"], f"/Parallel/Battery{n}/"
            assert row.property("text") == f"Pack {n}  ·  polling"
            assert row.property("secondaryText").startswith(f"{values[path + 'Voltage']:.2f} V")
            caption = row.property("caption")
            assert f"{values[path + 'Temperature']:.1f} °C" in caption
            assert "charge on, discharge on" in caption and "no protection" in caption
            assert (
                f"{values[path + 'Rssi']} dBm" in caption
                and f"link {values[path + 'LinkQuality']} %" in caption
            )

        cells = _named(screen.show(plugin_pages["Cells"], "cells.png"))
        for n in range(1, PACKS + 1):
            labels = [cells[f"cell{n}_{c}"] for c in range(1, values[f"/Parallel/Battery{n}/CellCount"] + 1)]
            assert f"cell{n}_{len(labels) + 1}" not in cells
            voltages = [values[f"/Voltages/Cell{n}_{c}"] for c in range(1, len(labels) + 1)]
            assert [label.property("text").rstrip("*") for label in labels] == [f"{v:.3f}" for v in voltages]
            marked_high = [v for v, label in zip(voltages, labels, strict=True) if label.property("highest")]
            marked_low = [v for v, label in zip(voltages, labels, strict=True) if label.property("lowest")]
            assert marked_high and set(marked_high) == {max(voltages)}
            assert marked_low and set(marked_low) == {min(voltages)}
            balancing = [bool(values[f"/Balances/Cell{n}_{c}"]) for c in range(1, len(labels) + 1)]
            assert [label.property("balancing") for label in labels] == balancing
