"""`dbus-btbattery scan`: list nearby Bluetooth LE devices and say which are JBD BMS units.

A JBD unit is recognised by what it advertises, strongest evidence first: the JBD GATT service (ff00, or
fff0 on the "DH04" style modules), a model-name prefix of the boards and their rebrands, or an address block
the JBD Bluetooth modules are made in. An address block alone is only a hint: the Telink blocks (A4:C1:37/38)
are shared with other products, and many users rename their packs. Packs already connected through this
adapter (to the service, or to another program) do not advertise; they are listed from BlueZ's device list.
"""

from __future__ import annotations

import argparse
import asyncio
import fnmatch
import json
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

_UUID = "0000{}-0000-1000-8000-00805f9b34fb"
# The JBD GATT services: ff00 (ff01 notify / ff02 write) on most modules, fff0 (fff1/fff2) on "DH04" variants.
# Sources: the protocol reference; dbus-serialbattery bms/lltjbd_ble.py (both pairs); aiobmsble jbd_bms.py.
JBD_SERVICES: dict[str, str] = {_UUID.format("ff00"): "ff00", _UUID.format("fff0"): "fff0"}
# Advertised names of JBD boards and their rebrands (case-insensitive shell patterns) -> who uses them.
# Sources: aiobmsble jbd_bms.py matchers; BMS_BLE-HA issue #203 (a maintainer's list of JBD patterns);
# the protocol reference; the old modules' default name "xiaoxiang BMS" (xiaoxiangBMS app, issue #2).
JBD_NAMES: dict[str, str] = {
    "JBD-*": "JBD",
    "SP0?S*": "JBD SP series",
    "SP1?S*": "JBD SP series",
    "SP2?S*": "JBD SP series",
    "DP04S*": "JBD DP series (ECO-WORTHY, DCHOUSE)",
    "GJ-*": "Accurat",
    "SX1*": "Supervolt v3",
    "SX60*": "Supervolt Ultra",
    "SBL-*": "SBL",
    "OGR-*": "OGRPHY",
    "TZ-H*": "CERRNSS",
    "121?0*": "Eleksol, Ultimatron",
    "12200*": "Eleksol, Ultimatron",
    "12300*": "Eleksol, Ultimatron",
    "xiaoxiang*": "Xiaoxiang module (default name)",
}
# Address blocks (first three bytes) of the Bluetooth modules on JBD boards. Sources: aiobmsble jbd_bms.py
# (matched there only together with the ff00 service); the protocol reference.
JBD_ADDRESS_BLOCKS: tuple[str, ...] = (
    "A4:C1:37",
    "A4:C1:38",
    "A5:C2:37",
    "A5:C2:39",
    "AA:C2:37",
    "70:3E:97",
    "10:A5:62",
)
# Other BMS makers whose names get mistaken for JBD: said so plainly instead of "not JBD".
# Sources: BMS_BLE-HA issue #806 (Daly modules advertise "DL-..."); JK BMS units advertise "JK-..."/"JK_...".
OTHER_BMS_NAMES: dict[str, str] = {"DL-*": "Daly BMS", "JK-*": "JK BMS", "JK_*": "JK BMS"}


@dataclass(frozen=True, slots=True)
class Found:
    """One device. ``--json`` prints these keys, in this order; new keys are only ever added."""

    address: str
    name: str | None
    rssi: int | None  # dBm when heard in this scan; None for a connected pack (connected packs are silent)
    jbd: bool  # a JBD service UUID or a JBD name: use it
    evidence: list[str] = field(default_factory=list)  # "service ff00", "name JBD-*", "address block ..."
    maker: str | None = None  # who the name pattern belongs to (also for non-JBD BMS names)
    connected: bool = False  # connected through this adapter now (to the service or to another program)
    connectable: bool = False  # advertising and not connected: a client can connect now
    paired: bool = False  # BlueZ holds a bond with it (a unit that wants LE pairing needs one: PASSKEY)


def identify(address: str, name: str | None, service_uuids: list[str]) -> tuple[bool, list[str], str | None]:
    """(is JBD, the evidence, maker) from an advertisement. An address block alone is a hint, not a yes."""
    evidence: list[str] = []
    strong = False
    for uuid in service_uuids:
        short = JBD_SERVICES.get(uuid.lower())
        if short is not None:
            evidence.append(f"service {short}")
            strong = True
    maker = None
    if name:
        for pattern, who in JBD_NAMES.items():
            if fnmatch.fnmatchcase(name.lower(), pattern.lower()):
                evidence.append(f"name {pattern}")
                maker, strong = who, True
                break
        else:
            for pattern, who in OTHER_BMS_NAMES.items():
                if fnmatch.fnmatchcase(name.lower(), pattern.lower()):
                    maker = f"{who} (not JBD)"
                    break
    block = address.upper()[:8]
    if block in JBD_ADDRESS_BLOCKS:
        evidence.append(f"address block {block}")
    return strong, evidence, maker


def looks_like_jbd(address: str, name: str | None, service_uuids: list[str]) -> bool:
    """Yes on a JBD service or name; an address block counts alone only for a nameless advertisement
    (a named device in a Telink block may be anything: thermometers, lights...)."""
    strong, evidence, _ = identify(address, name, service_uuids)
    return strong or (bool(evidence) and not name)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timeout", type=float, default=10.0, metavar="S", help="listen for S seconds (10)")
    parser.add_argument(
        "--json",
        action="store_true",
        help="print a JSON list (address, name, rssi, jbd, evidence, maker, connected, connectable, paired)",
    )
    parser.add_argument("--adapter", default=None, help="Bluetooth adapter, e.g. hci0 (default: first)")
    parser.add_argument("--jbd-only", action="store_true", help="list only devices that look like JBD")


def _found(
    address: str, name: str | None, rssi: int | None, uuids: list[str], props: dict[str, Any]
) -> Found:
    """``props``: what BlueZ's device object says now (empty when it has none)."""
    _, evidence, maker = identify(address, name, uuids)
    jbd = looks_like_jbd(address, name, uuids)
    connected = bool(props.get("Connected"))
    connectable = not connected and rssi is not None
    paired = bool(props.get("Paired"))
    return Found(address.upper(), name, rssi, jbd, evidence, maker, connected, connectable, paired)


async def discover(timeout: float, adapter: str | None = None) -> list[Found]:
    """Everything heard within ``timeout`` s plus the packs connected now; JBD first, strongest first."""
    from bleak import BleakScanner

    kwargs: dict[str, Any] = {"bluez": {"adapter": adapter}} if adapter else {}
    heard = await BleakScanner.discover(timeout=timeout, return_adv=True, **kwargs)
    known = await known_devices(adapter)
    found = {
        device.address.upper(): _found(
            device.address,
            adv.local_name or device.name,
            adv.rssi,
            list(adv.service_uuids),
            known.get(device.address.upper(), {}),
        )
        for device, adv in heard.values()
    }
    for address, props in known.items():
        if props.get("Connected") and address not in found:  # a connected pack does not advertise
            found[address] = _found(address, props.get("Name"), None, list(props.get("UUIDs", [])), props)
    return sorted(found.values(), key=lambda f: (not f.jbd, f.rssi is None, -(f.rssi or 0), f.address))


async def known_devices(adapter: str | None) -> dict[str, dict[str, Any]]:
    """Address -> Device1 properties of every device BlueZ knows on ``adapter`` (any adapter if None)."""
    from btbattery.bluez import devices, managed_objects

    return devices(await managed_objects(), adapter)


def _no_bluetooth(exc: BaseException) -> str:
    return (
        f"scan: no usable Bluetooth adapter: {exc or type(exc).__name__}\n"
        "  Is Bluetooth enabled and BlueZ (bluetoothd) running? On Venus OS check Settings > Bluetooth.\n"
        "  dbus-btbattery doctor checks this step by step."
    )


def config_line(found: list[Found]) -> str:
    """The line to put in the config (or -p), or what to do when no pack was found."""
    addresses = [f.address for f in found if f.jbd]
    if not addresses:
        return (
            "no JBD unit found: is each pack's Bluetooth module powered and in range, and no phone app "
            "connected to it (a module takes one connection)?"
        )
    joined = " ".join(addresses)
    return f"put these in the config: BATTERY_ADDRESSES = {joined}   (or on the command line: -p {joined})"


def _row(f: Found) -> str:
    rssi = "conn" if f.connected and f.rssi is None else f"{f.rssi:>4}" if f.rssi is not None else "   -"
    verdict = "yes" if f.jbd else "hint" if f.evidence else " - "
    state = "connected" if f.connected else "free" if f.connectable else "-"
    state += ",paired" if f.paired else ""  # BlueZ holds a bond
    why = ", ".join(f.evidence) + (f"; {f.maker}" if f.maker else "")
    return f"{f.address:<17}  {rssi:>4}  {verdict:<4} {state:<14}  {f.name or '':<20}  {why}"


def main(args: argparse.Namespace) -> int:
    from bleak.exc import BleakError

    from btbattery.bluez import BluezMissing

    if args.timeout <= 0:
        print("scan: --timeout must be positive", file=sys.stderr)
        return 2
    try:
        found = asyncio.run(discover(args.timeout, args.adapter))
    except (BleakError, BluezMissing, OSError, EOFError) as exc:  # no BlueZ on the bus, no bus, no adapter
        print(_no_bluetooth(exc), file=sys.stderr)
        return 1
    if args.jbd_only:
        found = [f for f in found if f.jbd]
    if args.json:
        print(json.dumps([asdict(f) for f in found], indent=2))
        return 0
    if not found:
        print(f"no Bluetooth LE devices heard in {args.timeout:g} s")
    else:
        print(f"{'address':<17}  {'rssi':>4}  jbd  {'state':<14}  {'name':<20}  why")
        for f in found:
            print(_row(f))
        print(f"\n{sum(f.jbd for f in found)} of {len(found)} look like JBD BMS units")
    print(config_line(found))
    return 0
