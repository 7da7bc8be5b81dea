"""`dbus-btbattery -p MAC[:/path.ini] ...`: the service itself (what runit starts on a Venus device)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-p",
        "--parallel",
        dest="packs",
        nargs="+",
        action="extend",  # -p A -p B means both packs, not only B (whose protections A's would then lack)
        metavar="MAC[:/path.ini]",
        default=[],
        help="the packs wired in parallel (at most 16), numbered 1..N in this order; each may name its own "
        "config file; -p may be given more than once (default: BATTERY_ADDRESSES from the config)",
    )
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="config file (default: /data/etc/dbus-btbattery/"
        "config.ini, then /etc/dbus-btbattery/config.ini, then built-in defaults)",
    )
    parser.add_argument(
        "--dbus-address",
        metavar="ADDR",
        help="publish on this D-Bus (default: the session bus "
        "when DBUS_SESSION_BUS_ADDRESS is set, else the system bus)",
    )
    parser.add_argument(
        "--service-name",
        default="com.victronenergy.battery.virtual_parallel",
        help="D-Bus service name (default: %(default)s)",
    )
    parser.add_argument(
        "--adapter",
        default=None,
        help="Bluetooth adapter, hci0 or its address (default: BLUETOOTH_ADAPTER of the config)",
    )
    parser.add_argument(
        "--device-instance",
        type=int,
        default=1,
        metavar="N",
        help="VRM device instance when no settings service answers (default: %(default)s)",
    )
    parser.add_argument(
        "--state-file",
        metavar="PATH",
        help="where /CustomName and the charge mode are kept (default: /data/etc/dbus-btbattery/state.json)",
    )
    parser.add_argument(
        "--watchdog",
        type=float,
        default=600.0,
        metavar="S",
        help="exit for a restart when no pack has delivered data for S seconds (default: 600)",
    )
    parser.add_argument(
        "--error-delay",
        type=float,
        default=0.0,
        metavar="S",
        help="after a failure, wait S seconds before exiting, so a supervisor that restarts at once does not "
        "spin (the runit service uses 30)",
    )
    parser.add_argument(
        "--log-level",
        default=os.environ.get("BTBATTERY_LOG_LEVEL", "INFO"),
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        type=str.upper,
        help="log detail on stderr (default: INFO; DEBUG shows every frame)",
    )


def setup_logging(level: str) -> None:
    """One line per event on stderr; multilog adds the timestamp, so we do not."""
    logging.basicConfig(
        level=getattr(logging, level), stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    # transitions narrates every callback at INFO; our own link log already says what matters.
    logging.getLogger("transitions").setLevel(max(logging.WARNING, getattr(logging, level)))


def log_versions(log: logging.Logger) -> None:
    """One line at start: which Python and packages run, above all which dbus-fast (firmware or shipped)."""
    from btbattery.versions import describe, versions

    found = versions()
    log.info("versions: %s", "; ".join(describe(name, info) for name, info in found.items()))


def check_options(args: argparse.Namespace) -> str | None:
    """The first option outside its bounds (config.OPTIONS) or an unusable --dbus-address, as one line."""
    from btbattery.config import OPTIONS

    for option, value in (
        ("--watchdog", args.watchdog),
        ("--error-delay", args.error_delay),
        ("--device-instance", args.device_instance),
    ):
        bound = OPTIONS[option]
        if value not in bound:
            return f"{option} {value:g} is out of range; accepted: {bound.describe()}"
    if args.dbus_address is not None:
        return dbus_address_problem(args.dbus_address)
    return None


def dbus_address_problem(address: str) -> str | None:
    """Why ``address`` cannot be connected to (None: it can be tried). dbus-fast's own parser accepts
    addresses it then fails on with a traceback (``unix:`` without a path, a tcp port that is no number)."""
    from dbus_fast._private.address import parse_address
    from dbus_fast.errors import InvalidAddressError

    accepted = "accepted: unix:path=/path/to/socket, unix:abstract=NAME or tcp:host=HOST,port=N"
    try:
        transports = parse_address(address)
    except InvalidAddressError as exc:
        return f"--dbus-address {address!r} is not a D-Bus address ({exc}); {accepted}"
    for transport, options in transports:
        unix_ok = transport == "unix" and ("path" in options or "abstract" in options)
        tcp_ok = transport == "tcp" and "host" in options and options.get("port", "").isdigit()
        if not (unix_ok or tcp_ok):
            return f"--dbus-address {address!r} cannot be connected to; {accepted}"
    return None


def main(args: argparse.Namespace) -> int:
    problem = check_options(args)
    if problem is not None:  # refused before anything starts, and without the error delay (it may be bad)
        print(f"dbus-btbattery: {problem}", file=sys.stderr)
        return 2
    code = _main(args)
    if code != 0 and args.error_delay > 0:
        print(f"dbus-btbattery: exiting with code {code} in {args.error_delay:g} s", file=sys.stderr)
        time.sleep(args.error_delay)  # SIGTERM still ends us at once (its default action)
    return code


def _main(args: argparse.Namespace) -> int:
    from btbattery.app import RunOptions, Service
    from btbattery.config import ConfigError, load_config

    setup_logging(args.log_level)
    log = logging.getLogger("btbattery")
    log_versions(log)
    from btbattery.link.bluez import is_adapter_spec

    if args.adapter is not None and not is_adapter_spec(args.adapter):
        print(
            f"dbus-btbattery: --adapter {args.adapter!r} is neither an adapter name like hci0 nor a "
            "Bluetooth address like 00:1A:7D:DA:71:13",
            file=sys.stderr,
        )
        return 2
    try:
        config = load_config(args.config, args.packs)
    except ConfigError as exc:
        print(f"dbus-btbattery: {exc}", file=sys.stderr)
        return 2
    if not config.packs:
        print(
            "dbus-btbattery: no packs: give them with -p MAC [MAC ...] or set BATTERY_ADDRESSES in the "
            f"config ({', '.join(config.sources)})",
            file=sys.stderr,
        )
        return 2
    for spec in config.packs:
        locks = [name for name, secret in (("password", spec.password), ("passkey", spec.passkey)) if secret]
        log.info(
            "pack %d %s: charge limit %.0f A, discharge limit %.0f A%s%s",
            spec.number,
            spec.address,
            spec.charge_limit,
            spec.discharge_limit,
            f", {' and '.join(locks)} set" if locks else "",
            f" (from {spec.config_path})" if spec.config_path else "",
        )
    options = RunOptions(
        dbus_address=args.dbus_address,
        service_name=args.service_name,
        adapter=args.adapter or config.bluetooth_adapter,
        device_instance=args.device_instance,
        state_file=args.state_file,
        no_data_timeout=args.watchdog,
    )
    return asyncio.run(Service(config, options).run())
