"""`dbus-btbattery doctor`: the troubleshooting steps, automated: a verdict and the next step per problem.

Checks, in order: the config files; BlueZ; the adapters (name, address, powered); the service on D-Bus (its
packs, its limits and their reasons); each configured pack (seen, RSSI, held by another client, answering a
poll); the versions in use; the Venus settings whose Bluetooth services share the adapter with us.

It never disturbs a running service: when the service is on D-Bus, pack state is read from it and from
BlueZ's properties (what ``bluetoothctl info`` shows); only when the service is not running does doctor scan
and connect to each pack for one poll. Exit 0: healthy (warnings allowed); 1: problems found; 2: some checks
could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from btbattery.commands import add_service_arguments

if TYPE_CHECKING:
    from btbattery.config import PackSpec

OK, WARNING, PROBLEM, UNKNOWN, SKIPPED = "ok", "warning", "problem", "unknown", "skipped"
EXIT_HEALTHY, EXIT_PROBLEMS, EXIT_UNCHECKED = 0, 1, 2
MARKS = {OK: "ok  ", WARNING: "WARN", PROBLEM: "FAIL", UNKNOWN: "??  ", SKIPPED: "skip"}

# What a pack's link state on D-Bus means, and what to do about it. Issue 14's lock states (a password the
# pack refused, a unit that needs a password or pairing) add their rows here and doctor reports them.
LINK_ADVICE: dict[str, tuple[str, str]] = {
    "polling": (OK, ""),
    "scanning": (
        PROBLEM,
        "the pack is not heard: is its BMS awake and in range, its address right, no phone app on it?",
    ),
    "connecting": (PROBLEM, "the pack is heard but the connection does not come up: move the GX closer"),
    "pairing": (PROBLEM, "the service is pairing with the pack (PASSKEY); if it stays here, check PASSKEY"),
    "subscribing": (PROBLEM, "connected, but the JBD characteristics are not answering: power-cycle the BMS"),
    "authenticating": (PROBLEM, "the password handshake does not finish; check PASSWORD in the pack's file"),
    "backoff": (PROBLEM, "the link keeps failing and is retried; the service log says why"),
    "idle": (PROBLEM, "the link is stopped: restart the service (svc -t /service/dbus-btbattery)"),
    "offline": (PROBLEM, "no state yet: the service has just started, or cannot reach the pack"),
    "refused": (
        PROBLEM,
        "the pack is locked against us (a password or pairing lock): the service log names which and what to "
        "set (PASSWORD or PASSKEY in the pack's own file); the service retries every few minutes",
    ),
}
# The GX's own Bluetooth users (Venus localsettings paths). Sources: victronenergy/venus issues #1587
# (vesmart-server, VictronConnect over Bluetooth, disconnects BLE devices about every 60 s) and #1597
# (dbus-ble-sensors' raw HCI scanning leaves BlueZ discovery "InProgress" for other clients).
VENUS_BLE_SETTINGS: dict[str, tuple[str, str]] = {
    "/Settings/Services/Bluetooth": (
        "VictronConnect over Bluetooth (vesmart-server) shares the adapter and drops BLE links",
        "if you do not use VictronConnect over Bluetooth on this GX, turn it off: Settings > Bluetooth",
    ),
    "/Settings/Services/BleSensors": (
        "BLE sensors (dbus-ble-sensors) scan on the same adapter and make BlueZ refuse our scans",
        "if you have no Bluetooth sensors, turn it off: Settings > I/O > Bluetooth sensors",
    ),
}


@dataclass
class Finding:
    check: str
    status: str
    summary: str
    next_step: str = ""
    details: dict[str, Any] = field(default_factory=dict)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_service_arguments(parser)
    parser.add_argument(
        "-p",
        "--parallel",
        dest="packs",
        nargs="+",
        metavar="MAC[:/path.ini]",
        default=[],
        help="the packs to check (default: BATTERY_ADDRESSES from the config)",
    )
    parser.add_argument("--config", metavar="PATH", help="config file (default: where the service looks)")
    parser.add_argument("--json", action="store_true", help="print the findings and the verdict as JSON")
    parser.add_argument(
        "--adapter", default="hci0", help="Bluetooth adapter the service uses (default: hci0)"
    )
    parser.add_argument(
        "--scan",
        type=float,
        default=8.0,
        metavar="S",
        help="listen S s for packs when the service is not running",
    )


def main(args: argparse.Namespace) -> int:
    if args.scan <= 0:
        print("doctor: --scan must be positive", file=sys.stderr)
        return 2
    # The links' own log lines (a refused pack logs an ERROR) would only repeat the findings on stderr.
    logging.getLogger().addHandler(logging.NullHandler())
    findings = asyncio.run(diagnose(args))
    code = verdict(findings)
    if args.json:
        print(
            json.dumps(
                {"verdict": VERDICTS[code], "exit": code, "findings": [asdict(f) for f in findings]}, indent=2
            )
        )
    else:
        print(report(findings, code))
    return code


VERDICTS = {
    EXIT_HEALTHY: "healthy",
    EXIT_PROBLEMS: "problems found",
    EXIT_UNCHECKED: "could not check everything",
}


def verdict(findings: list[Finding]) -> int:
    """1 when any problem was found, else 2 when any check could not run, else 0 (warnings are advice)."""
    if any(f.status == PROBLEM for f in findings):
        return EXIT_PROBLEMS
    if any(f.status == UNKNOWN for f in findings):
        return EXIT_UNCHECKED
    return EXIT_HEALTHY


def report(findings: list[Finding], code: int) -> str:
    lines = [f"[{MARKS[f.status]}] {f.check:<16} {f.summary}" for f in findings]
    lines += ["", f"verdict: {VERDICTS[code]}"]
    steps = [f for f in findings if f.next_step and f.status in (PROBLEM, UNKNOWN, WARNING)]
    if steps:
        lines.append("next steps:")
        lines += [f"  - {f.check}: {f.next_step}" for f in steps]
    return "\n".join(lines)


# ----- the checks ------------------------------------------------------------------------------------------


async def diagnose(args: argparse.Namespace) -> list[Finding]:
    findings: list[Finding] = []
    packs = _check_config(args, findings)
    objects = await _check_bluez(args.adapter, findings)
    service = await _read_service(args)
    findings.append(_service_finding(args.service, service))
    findings += await _check_packs(packs, args, objects, service)
    findings.append(_versions())
    findings += await _venus_settings(args)
    return findings


def _check_config(args: argparse.Namespace, findings: list[Finding]) -> list[PackSpec]:
    from btbattery.config import ConfigError, PackSpec, load_config

    try:
        config = load_config(args.config, args.packs)
    except ConfigError as exc:
        findings.append(Finding("config", PROBLEM, str(exc), "fix the file and key named above"))
        return [PackSpec(n, a.upper(), 0.0, 0.0) for n, a in enumerate(_plain_addresses(args.packs), start=1)]
    packs = list(config.packs)
    if not packs:
        findings.append(
            Finding(
                "config",
                PROBLEM,
                f"no packs: BATTERY_ADDRESSES is empty ({', '.join(config.sources)})",
                "find the addresses with `dbus-btbattery scan` and set BATTERY_ADDRESSES",
            )
        )
    else:
        findings.append(
            Finding("config", OK, f"valid; {len(packs)} packs; from {', '.join(config.sources)}", details={})
        )
    return packs


def _plain_addresses(items: list[str]) -> list[str]:
    return [item[:17] for item in items]


async def _check_bluez(adapter: str, findings: list[Finding]) -> dict[str, Any] | None:
    from btbattery.bluez import BluezMissing, adapters, managed_objects

    try:
        objects = await managed_objects()
    except (OSError, EOFError) as exc:
        findings.append(
            Finding("bluez", UNKNOWN, f"cannot reach the system D-Bus: {exc}", "run doctor on the GX itself")
        )
        return None
    except BluezMissing:
        findings.append(
            Finding(
                "bluez",
                PROBLEM,
                "BlueZ (bluetoothd) is not running",
                "turn Bluetooth on (Venus OS: Settings > Bluetooth) or start bluetoothd",
            )
        )
        return None
    findings.append(Finding("bluez", OK, "BlueZ answers on the system bus"))
    found = adapters(objects)
    described = {
        name: {"address": p.get("Address"), "powered": bool(p.get("Powered"))} for name, p in found.items()
    }
    if not found:
        findings.append(
            Finding(
                "adapter",
                PROBLEM,
                "BlueZ has no Bluetooth adapter",
                "the GX has no working Bluetooth controller: plug in a USB Bluetooth dongle (or reboot)",
            )
        )
    elif adapter not in found:
        findings.append(
            Finding(
                "adapter",
                PROBLEM,
                f"{adapter} is not there (BlueZ has {', '.join(found)})",
                f"run the service with --adapter {next(iter(found))}",
                described,
            )
        )
    elif not found[adapter].get("Powered"):
        findings.append(
            Finding("adapter", PROBLEM, f"{adapter} is powered off", "bluetoothctl power on", described)
        )
    else:
        names = ", ".join(
            f"{n} ({d['address']}, {'on' if d['powered'] else 'off'})" for n, d in described.items()
        )
        findings.append(Finding("adapter", OK, names, details=described))
    return objects


async def _read_service(args: argparse.Namespace) -> dict[str, Any] | Exception | None:
    """The service's paths (value per path), None when it is not on the bus, the error when no bus."""
    from btbattery.view import ServiceReader

    try:
        reader = await ServiceReader.open(args.dbus_address, args.service)
    except (OSError, EOFError) as exc:
        return exc
    try:
        if not await reader.find():
            return None
        return {path: value for path, (value, _) in reader.items.items()}
    finally:
        reader.close()


def _service_finding(name: str, service: dict[str, Any] | Exception | None) -> Finding:
    if isinstance(service, Exception):
        return Finding("service", UNKNOWN, f"cannot reach the D-Bus the service publishes on: {service}")
    if service is None:
        return Finding(
            "service",
            PROBLEM,
            f"{name} is not running",
            "start it (svc -u /service/dbus-btbattery) and read why it stopped: "
            "tail /var/log/dbus-btbattery/current | tai64nlocal",
        )
    active, total = service.get("/Parallel/ActiveBatteries"), service.get("/Parallel/TotalBatteries")
    ccl, dcl = service.get("/Info/MaxChargeCurrent"), service.get("/Info/MaxDischargeCurrent")
    why = [service.get(p) for p in ("/Info/ChargeLimitation", "/Info/DischargeLimitation") if service.get(p)]
    summary = (
        f"publishing; {active} of {total} packs active; CVL {service.get('/Info/MaxChargeVoltage')} V "
        f"CCL {ccl} A DCL {dcl} A" + (f" ({'; '.join(map(str, why))})" if why else "")
    )
    details = {"active": active, "total": total, "ccl": ccl, "dcl": dcl, "reasons": why}
    if not active:
        return Finding("service", PROBLEM, summary, "no pack is active: see the pack lines below", details)
    if not ccl or not dcl:
        return Finding(
            "service", WARNING, summary, "a limit is 0 A: the reasons say which pack and why", details
        )
    return Finding("service", OK, summary, details=details)


async def _check_packs(
    packs: list[PackSpec],
    args: argparse.Namespace,
    objects: dict[str, Any] | None,
    service: dict[str, Any] | Exception | None,
) -> list[Finding]:
    from btbattery.bluez import devices

    known = devices(objects, args.adapter) if objects is not None else {}
    if isinstance(service, dict):
        return [_pack_from_service(p.number, p.address, service, known.get(p.address)) for p in packs]
    if objects is None or not packs:
        return [Finding(f"pack {p.number}", UNKNOWN, f"{p.address}: not checked (no BlueZ)") for p in packs]
    return await _probe_packs(packs, args, known)


def _pack_from_service(
    n: int, address: str, service: dict[str, Any], device: dict[str, Any] | None
) -> Finding:
    """A running service's view of one pack, and BlueZ's (read, never touched)."""
    number = next(
        (k for k in range(1, 65) if service.get(f"/Parallel/Battery{k}/Address") == address),
        None,
    )
    if number is None:
        return Finding(
            f"pack {n}", PROBLEM, f"{address} is not one of the running service's packs",
            "the service runs with other addresses: restart it after changing the config",
        )  # fmt: skip
    state = str(service.get(f"/Parallel/Battery{number}/LinkState") or "offline")
    status, advice = LINK_ADVICE.get(state, (PROBLEM, "an unknown link state: see the service log"))
    rssi = service.get(f"/Parallel/Battery{number}/Rssi", device.get("RSSI") if device else None)
    details = {"address": address, "link_state": state, "rssi": rssi, "held_by_other": False}
    summary = f"{address}: link {state}" + (f", RSSI {rssi} dBm" if rssi is not None else "")
    if state != "polling" and device is not None and device.get("Connected"):
        details["held_by_other"] = True
        return Finding(
            f"pack {n}", PROBLEM, summary + "; connected, but not by the service: held by another client",
            "another program on this GX holds the pack (a second driver, bluetoothctl): stop it",
            details,
        )  # fmt: skip
    lock = service.get(f"/Parallel/Battery{number}/Lock")
    if lock:  # the service says which lock and what to set (never the secret)
        details["lock"] = lock
        return Finding(f"pack {n}", PROBLEM, f"{summary}; locked: {lock}", f"{lock} ({advice})", details)
    if status == OK:
        voltage = service.get(f"/Parallel/Battery{number}/Voltage")
        summary += f", answering ({voltage} V)" if voltage is not None else ""
    return Finding(f"pack {n}", status, summary, advice, details)


async def _probe_packs(
    packs: list[PackSpec], args: argparse.Namespace, known: dict[str, Any]
) -> list[Finding]:
    """The service is not running: listen for the packs, then run the real link on each heard one until it
    answers a poll or a lock shows (:func:`btbattery.link.probe.check_locks`), and let go."""
    from bleak import BleakScanner

    loop = asyncio.get_running_loop()
    started = loop.time()
    heard: dict[str, tuple[Any, int, float]] = {}
    wanted = {p.address for p in packs}
    all_heard = asyncio.Event()

    def on_advert(device: Any, adv: Any) -> None:
        address = device.address.upper()
        if address in wanted and address not in heard:
            heard[address] = (device, adv.rssi, loop.time() - started)
            if len(heard) == len(wanted):
                all_heard.set()

    scanner = BleakScanner(on_advert, bluez={"adapter": args.adapter})
    try:
        await scanner.start()
        with contextlib.suppress(TimeoutError):  # listen until every pack was heard, or --scan s
            await asyncio.wait_for(all_heard.wait(), args.scan)
        await scanner.stop()
    except Exception as exc:
        return [Finding(f"pack {p.number}", UNKNOWN, f"{p.address}: cannot scan: {exc}") for p in packs]
    findings = []
    for spec in packs:
        n, address = spec.number, spec.address
        device = known.get(address)
        if device is not None and device.get("Connected"):
            findings.append(
                Finding(
                    f"pack {n}",
                    PROBLEM,
                    f"{address}: connected, but the service is not running: held by another client",
                    "another program on this GX holds the pack (a second driver, bluetoothctl): stop it",
                    {"address": address, "held_by_other": True},
                )
            )
            continue
        if address not in heard:
            findings.append(
                Finding(
                    f"pack {n}",
                    PROBLEM,
                    f"{address}: not heard in {args.scan:g} s",
                    "out of range or asleep, a wrong address (dbus-btbattery scan lists what is heard), or a "
                    "phone app connected to it (a JBD module stops advertising while connected)",
                    {"address": address, "heard": False},
                )
            )
            continue
        _, rssi, after = heard[address]
        details = {"address": address, "heard": True, "rssi": rssi, "heard_after_s": round(after, 1)}
        findings.append(await _poll_finding(spec, args.adapter, rssi, after, details))
    return findings


async def _poll_finding(spec: PackSpec, adapter: str, rssi: int, after: float, details: dict) -> Finding:
    """One heard pack, run through the real link (with its PASSWORD / PASSKEY) until it answers or a lock
    shows; the link lets go of it afterwards."""
    from btbattery.link.pack_link import PackLocks
    from btbattery.link.probe import check_locks

    name, heard = f"pack {spec.number}", f"{spec.address}: heard at {rssi} dBm after {after:.1f} s"
    result = await check_locks(spec.address, PackLocks(spec.password, spec.passkey), adapter, timeout=45.0)
    details["link_state"] = str(result.state)
    if result.state == "polling":
        return Finding(name, OK, f"{heard}, answers a poll", details=details)
    if result.state == "refused":
        details["lock"] = result.problem
        return Finding(
            name, PROBLEM, f"{heard}, locked: {result.problem}", LINK_ADVICE["refused"][1], details
        )
    return Finding(
        name,
        PROBLEM,
        f"{heard}, but no answer to a poll (link {result.state}: {result.problem})",
        "power-cycle the BMS and move the GX closer; a pack that never answers may need its password",
        details,
    )


def _versions() -> Finding:
    """The versions in use (program, Python, bleak, dbus-fast, ..., firmware), as the service imports them."""
    from btbattery.versions import describe, missing, versions

    found = versions()
    summary = "; ".join(describe(name, info) for name, info in found.items())
    broken = missing(found)
    if broken:
        return Finding(
            "versions",
            PROBLEM,
            summary,
            f"{', '.join(broken)} cannot be imported: reinstall the release archive (see the README)",
            found,
        )
    return Finding("versions", OK, summary, details=found)


async def _venus_settings(args: argparse.Namespace) -> list[Finding]:
    """The GX's own Bluetooth services that share the adapter (read from localsettings, never changed)."""
    from dbus_fast import Message, MessageType

    from btbattery.dbus.busitem import connect_bus

    try:
        bus = await connect_bus(args.dbus_address)
    except (OSError, EOFError):
        return [Finding("venus settings", UNKNOWN, "cannot reach D-Bus to read them")]
    findings = []
    try:
        for path, (harm, step) in VENUS_BLE_SETTINGS.items():
            reply = await bus.call(
                Message(
                    destination="com.victronenergy.settings",
                    path=path,
                    interface="com.victronenergy.BusItem",
                    member="GetValue",
                )
            )
            if reply.message_type != MessageType.METHOD_RETURN:
                findings.append(Finding("venus settings", SKIPPED, f"{path}: no Venus settings service here"))
                break
            value = getattr(reply.body[0], "value", reply.body[0])
            if value:
                findings.append(
                    Finding("venus settings", WARNING, f"{path} = {value}: {harm}", step, {"path": path})
                )
            else:
                findings.append(Finding("venus settings", OK, f"{path} = {value}"))
    finally:
        bus.disconnect()
    return findings
