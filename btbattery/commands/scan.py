"""`dbus-btbattery scan`: list nearby Bluetooth LE devices and say which look like JBD BMS units."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import asdict, dataclass

# Facts from the field (see the protocol reference): service UUIDs, advertised name prefixes, vendor OUIs.
JBD_SERVICES = ("0000ff00-0000-1000-8000-00805f9b34fb", "0000fff0-0000-1000-8000-00805f9b34fb")
JBD_NAME_PREFIXES = ("jbd-", "sp04s", "dp04s", "sx1", "gj-", "xiaoxiang")
JBD_OUIS = ("A4:C1:37", "A4:C1:38", "A5:C2:37", "70:3E:97")


@dataclass(frozen=True, slots=True)
class Found:
    address: str
    name: str | None
    rssi: int
    jbd: bool


def looks_like_jbd(address: str, name: str | None, service_uuids: list[str]) -> bool:
    if any(uuid.lower() in JBD_SERVICES for uuid in service_uuids):
        return True
    if name and name.lower().startswith(JBD_NAME_PREFIXES):
        return True
    return address.upper()[:8] in JBD_OUIS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timeout", type=float, default=10.0, metavar="S", help="listen for S seconds (10)")
    parser.add_argument("--json", action="store_true", help="print a JSON list (address, name, rssi, jbd)")
    parser.add_argument("--adapter", default=None, help="Bluetooth adapter, e.g. hci0 (default: first)")
    parser.add_argument("--jbd-only", action="store_true", help="list only devices that look like JBD")


async def discover(timeout: float, adapter: str | None = None) -> list[Found]:
    """Everything heard within ``timeout`` seconds, JBD-looking first, strongest first."""
    from bleak import BleakScanner

    kwargs = {"bluez": {"adapter": adapter}} if adapter else {}
    heard = await BleakScanner.discover(timeout=timeout, return_adv=True, **kwargs)
    found = [
        Found(
            device.address,
            adv.local_name or device.name,
            adv.rssi,
            looks_like_jbd(device.address, adv.local_name or device.name, adv.service_uuids),
        )
        for device, adv in heard.values()
    ]
    return sorted(found, key=lambda f: (not f.jbd, -f.rssi, f.address))


def _no_bluetooth(exc: BaseException) -> str:
    return (
        f"scan: no usable Bluetooth adapter: {exc or type(exc).__name__}\n"
        "  Is Bluetooth enabled and BlueZ (bluetoothd) running? On Venus OS check Settings > Bluetooth."
    )


def main(args: argparse.Namespace) -> int:
    from bleak.exc import BleakError

    if args.timeout <= 0:
        print("scan: --timeout must be positive", file=sys.stderr)
        return 2
    try:
        found = asyncio.run(discover(args.timeout, args.adapter))
    except (BleakError, OSError, EOFError) as exc:  # no BlueZ on the bus, no bus, no adapter
        print(_no_bluetooth(exc), file=sys.stderr)
        return 1
    if args.jbd_only:
        found = [f for f in found if f.jbd]
    if args.json:
        print(json.dumps([asdict(f) for f in found], indent=2))
        return 0
    if not found:
        print(f"no Bluetooth LE devices heard in {args.timeout:g} s")
        return 0
    print(f"{'address':<17}  {'rssi':>4}  jbd  name")
    for f in found:
        print(f"{f.address:<17}  {f.rssi:>4}  {'yes' if f.jbd else ' - '}  {f.name or ''}")
    print(
        f"\n{sum(f.jbd for f in found)} of {len(found)} look like JBD BMS units; use their addresses with -p"
    )
    return 0
