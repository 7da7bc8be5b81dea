"""The whole service on simulated packs: CPU per pack-hour (service and system bus daemon), wake-ups, D-Bus
traffic with BlueZ, peak RSS, D-Bus signals, time to first values.

    .venv/bin/python tests/bench/bench_service.py [--packs 1 4 8 16] [--seconds 60]
    .venv/bin/python tests/bench/bench_service.py --compare "NOTIFY_METHOD=start,WRITE_METHOD=write" "" \\
        --packs 4 --seconds 60 --rounds 3
    .venv/bin/python tests/bench/bench_service.py --python .venv/bin/python .venv-pure/bin/python --rounds 2
    .venv/bin/python tests/bench/bench_service.py --recorder-minutes 0 10 --rounds 3

The fake BlueZ runs in its own process and is not counted; the private system bus daemon it and the service
talk through is (a GX runs one too, and routes every BlueZ message). Budgets (design.md, issue 15): service
<= 3 CPU-s per pack-hour, service + bus daemon <= 3.5, <= 50 MB, <= 1 ItemsChanged per publish cycle, first
valid values within 10 s.

Wake-ups are the service's voluntary context switches (all threads): each is the event loop (or a thread)
going to sleep and being woken again, the cost that follows the number of loop iterations rather than the
work done in them. D-Bus messages with BlueZ are what the fake BlueZ received and sent (calls, their
replies, signals) as it counts them.

``--compare A B`` runs configurations alternately for ``--rounds`` rounds (the machine's load falls on both
alike) and prints each figure side by side with the ratio B/A. A configuration is config-file lines as
``KEY=VALUE,KEY=VALUE`` ("" is the defaults); ``timing=quick`` among them runs the fake radio on that
timing (see TIMING), ``python=PATH`` runs the service under that
interpreter, ``root=PATH`` runs the btbattery of another checkout (``git worktree add /tmp/before main``: the
code before a change, against the same fake BlueZ). ``--python`` is the same with one interpreter per
configuration (compiled dbus-fast against the pure-Python build Venus OS ships, with ``.venv-pure`` from
scripts/setup.sh --pure). ``--recorder-minutes`` is the same over RECORDER_MINUTES values (0 = the flight
recorder off): its CPU cost, and how much the ring holds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "e2e")]

from dbus_fast.aio import MessageBus  # noqa: E402
from venus_client import VenusClient  # noqa: E402

from btbattery.sim.bluez import call_control  # noqa: E402
from btbattery.sim.stack import SimulatedStack  # noqa: E402

SERVICE = "com.victronenergy.battery.virtual_parallel"
# The fake radio's timing (python -m btbattery.sim.bluez --timing): "field" answers each pack out of step,
# 18-60 ms after the request, one notification per 40 ms connection event, as real packs do; "quick" is the
# fake's own (every pack 30 ms, 7.5 ms apart: answers share wake-ups, which flatters the figures).
TIMING = "field"
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_times(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICKS, int(fields[12]) / TICKS


def cpu_seconds(pid: int) -> float:
    return sum(cpu_times(pid))


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wakeups(pid: int) -> int:
    """Voluntary context switches of every thread of the process."""
    total = 0
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        for line in status.read_text().splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                total += int(line.split()[1])
    return total


@dataclass
class Config:
    """One configuration of the service: its label, interpreter and config-file lines."""

    label: str
    python: str = sys.executable
    root: Path = ROOT  # the checkout whose btbattery the service runs
    lines: dict[str, str] = field(default_factory=dict)
    timing: str | None = None  # the fake radio's --timing; None: --timing of the command line

    @classmethod
    def parse(cls, spec: str) -> Config:
        config = cls(spec or "defaults")
        for item in filter(None, (part.strip() for part in spec.split(","))):
            key, sep, value = item.partition("=")
            if not sep:
                raise SystemExit(f"--compare: {item!r} is not KEY=VALUE")
            if key.strip() == "python":
                config.python = value.strip()
            elif key.strip() == "root":
                config.root = Path(value.strip()).resolve()
            elif key.strip() == "timing":
                config.timing = value.strip()
            else:
                config.lines[key.strip()] = value.strip()
        return config


class ServiceUnder(SimulatedStack):
    """The stack with the service run by another interpreter (the fake BlueZ and the client stay ours)."""

    python = sys.executable
    root = ROOT

    def service_env(self) -> dict[str, str]:
        env = super().service_env()
        env["PYTHONPATH"] = str(self.root)
        return env

    def service_command(self) -> list[str]:
        return [self.python, *super().service_command()[1:]]


def dbus_fast_of(python: str) -> str:
    """``2.21.1 pure Python`` or ``2.21.1 compiled``: the dbus-fast that interpreter runs."""
    out = subprocess.run(
        [python, "-m", "btbattery", "versions", "--json"], capture_output=True, text=True, cwd=ROOT
    ).stdout
    info = json.loads(out)["dbus-fast"]
    return f"{info['version']} {'compiled' if info['compiled'] else 'pure Python'}"


async def bluez_messages(stack: SimulatedStack) -> int:
    """Messages the fake BlueZ exchanged: calls in, a reply to each, signals out."""
    bus = await MessageBus(bus_address=stack.system_address).connect()
    try:
        reply = await call_control(bus, "Stats")
    finally:
        bus.disconnect()
    stats = json.loads(reply.body[0])
    return 2 * stats["dbus_calls"] + stats["dbus_signals"]


# figure name -> (format, budget text): the table every run prints and --compare puts side by side
FIGURES = {
    "service_cpu": ("{:.2f} CPU-s per pack-hour", "budget 3"),
    "bus_cpu": ("{:.2f} CPU-s per pack-hour", "system bus daemon"),
    "total_cpu": ("{:.2f} CPU-s per pack-hour", "budget 3.5"),
    "wakeups": ("{:.1f} per pack per second", "voluntary context switches"),
    "bluez_messages": ("{:.1f} per pack per second", "D-Bus messages with BlueZ"),
    "rss": ("{:.1f} MB", "peak RSS, budget 50"),
    "items_changed": ("{:.2f} per second", "ItemsChanged, budget 1"),
    "first_values": ("{:.2f} s", "start to first valid values, budget 10"),
}


async def bench(packs: int, seconds: float, config: Config | None = None) -> dict[str, float]:
    """Print one run's figures and return them (see FIGURES)."""
    config = config or Config("defaults")
    os.environ["BTBATTERY_CONFIG_DIRS"] = ""
    log = Path(tempfile.gettempdir()) / "btbattery-bench-service.log"
    with tempfile.TemporaryDirectory(prefix="btbattery-bench-") as tmp, log.open("wb") as log_file:
        ini = Path(tmp) / "config.ini"  # the flight recorder writes its captures next to it
        lines = {"RECORDER_DIR": tmp, **config.lines}
        ini.write_text("[DEFAULT]\n" + "".join(f"{k} = {v}\n" for k, v in lines.items()))
        stack = ServiceUnder(
            scenario="default",
            packs=packs,
            service_log=log_file,
            start_service=False,
            service_args=["--config", str(ini)],
            bluez_args=["--timing", config.timing or TIMING],
        )
        stack.python, stack.root = config.python, config.root
        async with stack:
            client = await VenusClient.connect(stack.session_address, SERVICE)
            started = time.monotonic()
            os.chdir(config.root)  # python -m puts the working directory first on sys.path
            try:
                await stack.start_service_process()
            finally:
                os.chdir(ROOT)
            assert stack.service is not None and stack.system.pid is not None
            pid, bus_pid = stack.service.pid, stack.system.pid
            await client.wait_for_service(30)
            await client.wait_until(
                lambda c: (
                    c.values.get("/Parallel/ActiveBatteries") == packs
                    and c.values.get("/Dc/0/Voltage") is not None
                ),
                30,
            )
            first_values = time.monotonic() - started
            await asyncio.sleep(2.0)  # let the last connects' traffic settle
            cpu0, bus0, wake0 = cpu_seconds(pid), cpu_seconds(bus_pid), wakeups(pid)
            msgs0, signals0, t0 = await bluez_messages(stack), client.items_changed, time.monotonic()
            await asyncio.sleep(seconds)  # a benchmark measures over real time; tests never do this
            cpu1, bus1, wake1 = cpu_seconds(pid), cpu_seconds(bus_pid), wakeups(pid)
            msgs1, signals1, t1 = await bluez_messages(stack), client.items_changed, time.monotonic()
            rss = peak_rss_mb(pid)
            recorder = await recorder_status(stack.session_address)
            client.close()
    elapsed = t1 - t0
    pack_hours = packs * elapsed / 3600
    figures = {
        "service_cpu": (cpu1 - cpu0) / pack_hours,
        "bus_cpu": (bus1 - bus0) / pack_hours,
        "total_cpu": (cpu1 - cpu0 + bus1 - bus0) / pack_hours,
        "wakeups": (wake1 - wake0) / elapsed / packs,
        "bluez_messages": (msgs1 - msgs0) / elapsed / packs,  # Stats calls are not counted
        "rss": rss,
        "items_changed": (signals1 - signals0) / elapsed,
        "first_values": first_values,
    }
    print(f"packs: {packs}, {config.label}, measured over {elapsed:.1f} s (service log: {log})")
    for name, value in figures.items():
        unit, note = FIGURES[name]
        print(f"  {name:<15} {unit.format(value):<32} ({note})")
    if recorder.get("enabled"):
        print(
            f"  flight recorder: {recorder['minutes']:g} min, holds {recorder['bytes'] / 1e3:.1f} kB "
            f"({recorder['records']} records) of at most {recorder['max_bytes'] / 1e6:.2f} MB"
        )
    else:
        print("  flight recorder: off (or not in this checkout)")
    return figures


async def recorder_status(address: str) -> dict:
    """The service's own account of its flight recorder (io.btbattery.Recorder1.Status); {} without one."""
    from dbus_fast import Message, MessageType

    from btbattery.dbus.recorder import RECORDER_IFACE, RECORDER_PATH

    bus = await MessageBus(bus_address=address).connect()
    try:
        reply = await bus.call(
            Message(
                destination=SERVICE,
                path=RECORDER_PATH,
                interface=RECORDER_IFACE,
                member="Status",
            )
        )
    finally:
        bus.disconnect()
    if reply is None or reply.message_type == MessageType.ERROR or not reply.body:
        return {}
    return json.loads(reply.body[0])


async def compare(packs_list: list[int], seconds: float, configs: list[Config], rounds: int) -> None:
    for packs in packs_list:
        results: list[list[dict[str, float]]] = [[] for _ in configs]
        for round_number in range(1, rounds + 1):
            for index, config in enumerate(configs):
                print(f"\n--- {packs} packs, round {round_number}: {config.label} ({config.python})")
                results[index].append(await bench(packs, seconds, config))
        means = [{name: sum(r[name] for r in runs) / len(runs) for name in FIGURES} for runs in results]
        print(f"\n{packs} packs, mean of {rounds} round(s), {seconds:.0f} s each:")
        header = "".join(f"{c.label[:26]:>28}" for c in configs)
        print(f"  {'':<15}{header}{'ratio last/first':>18}")
        for name in FIGURES:
            row = "".join(f"{mean[name]:>28.2f}" for mean in means)
            first, last = means[0][name], means[-1][name]
            ratio = f"{last / first:.2f}" if first else "-"
            print(f"  {name:<15}{row}{ratio:>18}")


def main() -> None:
    global TIMING
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packs", type=int, nargs="+", default=[4], help="pack counts, e.g. 1 4 8 16")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--compare", nargs="+", metavar="CONFIG", help='configurations: "KEY=VALUE,..."')
    parser.add_argument("--python", nargs="+", metavar="PYTHON", help="run the service under each of these")
    parser.add_argument("--rounds", type=int, default=1, help="rounds over the configurations")
    parser.add_argument(
        "--timing", default=TIMING, help="the fake radio: field (default), quick, or NAME=SECONDS,..."
    )
    parser.add_argument(
        "--recorder-minutes", nargs="+", type=float, metavar="M", help="compare RECORDER_MINUTES (0 = off)"
    )
    args = parser.parse_args()
    TIMING = args.timing
    if args.python:
        configs = [Config(f"dbus-fast {dbus_fast_of(p)}", python=p) for p in args.python]
        asyncio.run(compare(args.packs, args.seconds, configs, args.rounds))
    elif args.recorder_minutes:
        configs = [Config.parse(f"RECORDER_MINUTES={m:g}") for m in args.recorder_minutes]
        asyncio.run(compare(args.packs, args.seconds, configs, args.rounds))
    elif args.compare:
        asyncio.run(compare(args.packs, args.seconds, [Config.parse(s) for s in args.compare], args.rounds))
    else:
        for packs in args.packs:
            asyncio.run(bench(packs, args.seconds))


if __name__ == "__main__":
    main()
