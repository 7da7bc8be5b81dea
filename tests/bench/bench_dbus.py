"""D-Bus sink cost: a 4-pack x 16-cell bank publishing at 1 Hz, and GetItems on a 16 x 16 bank.

Run: .venv/bin/python tests/bench/bench_dbus.py            (60 cycles at 1 Hz, about 1 min)
     .venv/bin/python tests/bench/bench_dbus.py --rate 20  (same cycles, faster; per-cycle figures hold)

On a private dbus-daemon it measures
- publish cost: CPU seconds of BatteryService.publish per cycle (mapping, change detection, marshalling and
  the socket write, which dbus-fast does inline), and of the whole service process per cycle;
- bus traffic: every message the service sends, counted by an independent ``dbus-monitor --pcap`` process
  (messages and bytes per cycle = per second at 1 Hz);
- GetItems latency with 16 packs x 16 cells (client and service share this process, as they share a CPU
  on a GX device).
Each cycle ~30% of cells move by 1 mV and pack currents, voltages and temperatures drift, roughly what
JBD packs report at 1 s polling; ``--all-change`` makes every value change every cycle (worst case).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from dbus_fast import Message
from dbus_fast.aio import MessageBus

from btbattery.dbus.battery import BatteryService
from btbattery.dbus.busitem import connect_bus
from btbattery.model import (
    BankSnapshot,
    BankState,
    BasicInfo,
    CellVoltages,
    ChargeLimits,
    ImbalanceStatus,
    LinkState,
    PackReading,
    PackStatus,
    Protection,
)
from btbattery.sim.privatebus import PrivateBus

SERVICE = "com.victronenergy.battery.virtual_parallel"
STATE_FILE = str(Path(tempfile.gettempdir()) / "btbattery-bench-state.json")


class DriftingBank:
    """Bank states whose values drift like a real bank at 1 s polling (deterministic)."""

    def __init__(self, packs: int, cells: int, all_change: bool, seed: int = 1) -> None:
        self.rng = random.Random(seed)
        self.all_change = all_change
        self.cells = [[3.300 + 0.001 * self.rng.randrange(20) for _ in range(cells)] for _ in range(packs)]
        self.currents = [-5.0 - p for p in range(packs)]
        self.temps = [22.0 + p for p in range(packs)]
        self.tick = 0

    def step(self) -> BankState:
        self.tick += 1
        moved = 1.0 if self.all_change else 0.3
        for p, cells in enumerate(self.cells):
            for c in range(len(cells)):
                if self.rng.random() < moved:
                    cells[c] = round(cells[c] + self.rng.choice((-0.001, 0.001)), 3)
            self.currents[p] = round(self.currents[p] + self.rng.uniform(-0.3, 0.3), 2)
            if self.all_change or self.rng.random() < 0.1:
                self.temps[p] = round(self.temps[p] + self.rng.choice((-0.1, 0.1)), 1)
        return self._state()

    def _state(self) -> BankState:
        statuses = []
        for p, cells in enumerate(self.cells):
            info = BasicInfo(
                voltage=round(sum(cells), 2),
                current=self.currents[p],
                remaining_capacity=round(80.0 - 0.001 * self.tick, 2),
                nominal_capacity=100.0,
                cycles=42,
                production_date=None,
                balance_bits=(self.tick >> 3) & 0xFFFF,
                protection=Protection.NONE,
                software_version=3.8,
                soc=80 - self.tick // 360,
                charge_fet=True,
                discharge_fet=True,
                cell_count=len(cells),
                temperatures=(self.temps[p], self.temps[p] + 0.5),
            )
            reading = PackReading(
                p + 1, f"AA:BB:CC:DD:EE:{p + 1:02X}", float(self.tick), info, CellVoltages(tuple(cells))
            )
            statuses.append(PackStatus(p + 1, reading.address, LinkState.POLLING, reading, True, True))
        flat = [(v, f"{p + 1}-{c + 1}") for p, cells in enumerate(self.cells) for c, v in enumerate(cells)]
        low, high = min(flat), max(flat)
        current = round(sum(self.currents), 2)
        voltage = round(statistics.fmean(sum(cells) for cells in self.cells), 2)
        snapshot = BankSnapshot(
            time=float(self.tick),
            packs=tuple(statuses),
            total_packs=len(self.cells),
            active_packs=len(self.cells),
            voltage=voltage,
            current=current,
            power=round(voltage * current, 0),
            remaining_capacity=round(len(self.cells) * (80.0 - 0.001 * self.tick), 2),
            nominal_capacity=100.0 * len(self.cells),
            soc=round(80.0 - 0.001 * self.tick, 1),
            min_cell_voltage=low[0],
            min_cell_id=low[1],
            max_cell_voltage=high[0],
            max_cell_id=high[1],
            cells_per_pack=len(self.cells[0]),
            min_temperature=min(self.temps),
            max_temperature=max(self.temps) + 0.5,
            temperature=max(self.temps) + 0.5,
            cycles=42,
            balancing=bool(self.tick & 8),
            charge_fet=True,
            discharge_fet=True,
        )
        spread = round(max(sum(c) for c in self.cells) - min(sum(c) for c in self.cells), 3)
        imbalance = ImbalanceStatus(voltage_spread=spread, current_spread=0.04, soc_spread=0.0)
        limits = ChargeLimits(55.2, round(100.0 - (self.tick % 7), 1), 150.0)
        return BankState(snapshot, imbalance, limits, connected=True)


def read_pcap(data: bytes) -> list[bytes]:
    """The messages in a dbus-monitor --pcap capture."""
    messages, offset = [], 24  # global header
    while offset + 16 <= len(data):
        incl = struct.unpack_from("<I", data, offset + 8)[0]
        if offset + 16 + incl > len(data):
            break
        messages.append(data[offset + 16 : offset + 16 + incl])
        offset += 16 + incl
    return messages


class Monitor:
    """An independent ``dbus-monitor --pcap`` eavesdropping on everything one connection sends."""

    def __init__(self, address: str, sender: str) -> None:
        self.argv = ["dbus-monitor", "--address", address, "--pcap", f"sender='{sender}'"]
        self.capture = bytearray()

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
        )
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while chunk := await self.proc.stdout.read(65536):
            self.capture += chunk

    async def wait_for(self, bus: MessageBus, marker: str, resend: bool) -> None:
        """Send a marker signal (again, while the monitor may still be starting) until it is captured."""
        deadline = time.monotonic() + 10
        send_marker(bus, marker)
        while marker.encode() not in self.capture:
            if time.monotonic() > deadline:
                raise TimeoutError(f"dbus-monitor never saw {marker}")
            await asyncio.sleep(0.02)
            if resend:
                send_marker(bus, marker)

    async def stop(self) -> list[bytes]:
        self.proc.terminate()
        await self.proc.wait()
        await self.reader
        return read_pcap(bytes(self.capture))


def send_marker(bus: MessageBus, member: str) -> None:
    bus.send(Message.new_signal("/bench", "org.btbattery.Bench", member))


def between(messages: list[bytes], first: str, last: str) -> list[bytes]:
    start = max(i for i, m in enumerate(messages) if first.encode() in m)
    end = next(i for i, m in enumerate(messages) if last.encode() in m)
    return messages[start + 1 : end]


async def measure_publish(address: str, cycles: int, rate: float, all_change: bool) -> dict[str, float]:
    bus = await connect_bus(address)
    service = BatteryService(bus, [(n, f"AA:BB:CC:DD:EE:{n:02X}") for n in range(1, 5)], cells_per_pack=16,
                             custom_name_store=STATE_FILE)  # fmt: skip
    await service.start()
    monitor = Monitor(address, bus.unique_name)
    await monitor.start()
    await monitor.wait_for(bus, "BenchReady", resend=True)
    bank = DriftingBank(4, 16, all_change)
    states = [bank.step() for _ in range(cycles + 1)]
    service.publish(states[0])  # the first publish sends everything: not a steady-state cycle
    send_marker(bus, "BenchStart")
    sent_before = service.tree.signals_sent
    publish_cpu: list[float] = []
    cpu0, wall0 = time.process_time(), time.monotonic()
    for n, state in enumerate(states[1:], start=1):
        t = time.process_time()
        service.publish(state)
        publish_cpu.append(time.process_time() - t)
        await asyncio.sleep(max(0.0, wall0 + n / rate - time.monotonic()))
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    signals = service.tree.signals_sent - sent_before
    await monitor.wait_for(bus, "BenchEnd", resend=False)
    steady = between(await monitor.stop(), "BenchStart", "BenchEnd")
    await service.stop()
    bus.disconnect()
    return {
        "cycles": cycles,
        "wall_s": wall,
        "publish_cpu_mean_ms": 1000 * statistics.fmean(publish_cpu),
        "publish_cpu_max_ms": 1000 * max(publish_cpu),
        "process_cpu_per_cycle_ms": 1000 * cpu / cycles,
        "signals_per_cycle": signals / cycles,
        "captured_per_cycle": len(steady) / cycles,
        "bytes_per_cycle": sum(map(len, steady)) / cycles,
        "cpu_s_per_hour_at_1hz": 3600 * cpu / cycles,
    }


async def measure_get_items(address: str, packs: int, cells: int, calls: int) -> dict[str, float]:
    bus = await connect_bus(address)
    packs_list = [(n, f"AA:BB:CC:DD:EE:{n:02X}") for n in range(1, packs + 1)]
    service = BatteryService(bus, packs_list, cells_per_pack=cells, custom_name_store=STATE_FILE)
    await service.start()
    service.publish(DriftingBank(packs, cells, False).step())
    client = await MessageBus(bus_address=address).connect()
    request = dict(destination=SERVICE, path="/", interface="com.victronenergy.BusItem", member="GetItems")
    latencies = []
    size = 0
    for _ in range(calls):
        t = time.perf_counter()
        reply = await client.call(Message(**request))
        latencies.append(time.perf_counter() - t)
        size = len(reply.body[0])
    client.disconnect()
    await service.stop()
    bus.disconnect()
    latencies.sort()
    return {
        "paths": size,
        "median_ms": 1000 * statistics.median(latencies),
        "p95_ms": 1000 * latencies[int(0.95 * len(latencies))],
        "max_ms": 1000 * latencies[-1],
    }


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=60)
    parser.add_argument("--rate", type=float, default=1.0, help="publish cycles per second (1 = real time)")
    parser.add_argument("--all-change", action="store_true", help="every value changes every cycle")
    parser.add_argument("--get-items-calls", type=int, default=200)
    args = parser.parse_args()
    with PrivateBus() as bus:
        pub = await measure_publish(bus.address, args.cycles, args.rate, args.all_change)
        items = await measure_get_items(bus.address, 16, 16, args.get_items_calls)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    moved = "every value changes" if args.all_change else "~30% of cells move per cycle"
    lines = [
        f"4 packs x 16 cells, {pub['cycles']} cycles in {pub['wall_s']:.1f} s ({moved})",
        f"  publish() CPU per cycle:    mean {pub['publish_cpu_mean_ms']:.2f} ms,"
        f" max {pub['publish_cpu_max_ms']:.2f} ms",
        f"  process CPU per cycle:      {pub['process_cpu_per_cycle_ms']:.2f} ms"
        f"  (= {pub['cpu_s_per_hour_at_1hz']:.1f} CPU-s per hour at 1 Hz)",
        f"  signals sent per cycle:     {pub['signals_per_cycle']:.2f}",
        f"  on the bus per cycle (=/s): {pub['captured_per_cycle']:.2f} messages,"
        f" {pub['bytes_per_cycle']:.0f} bytes (dbus-monitor --pcap)",
        f"GetItems, 16 packs x 16 cells ({items['paths']} paths), {args.get_items_calls} calls:",
        f"  latency median {items['median_ms']:.2f} ms, p95 {items['p95_ms']:.2f} ms,"
        f" max {items['max_ms']:.2f} ms",
        f"peak RSS of the bench process: {rss_mb:.0f} MB",
    ]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
