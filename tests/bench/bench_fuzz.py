"""Fuzz at length: the reassembler and decoders (mutation fuzzing, >= 1 M inputs, and hypothesis), the config
loader on random ini text, and the D-Bus surface of a running service.

    .venv/bin/python tests/bench/bench_fuzz.py [--inputs 1000000] [--examples 20000] [--ini 5000]
        [--calls 20000] [--atheris N]

What must hold: the decoder never raises, whatever the bytes (a bad frame is dropped and counted); every
reading that leaves plausibility is within the physical bounds; the config loader gives a config within every
bound or one ConfigError line; the D-Bus surface answers every call with a return or a clear error and no
value changes. ``--atheris N`` also runs N coverage-guided inputs through the decoder when atheris imports.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "dbus")]

from btbattery.pipeline.plausibility import BOUNDS, PackPlausibility  # noqa: E402
from btbattery.protocol import jbd  # noqa: E402
from btbattery.protocol.poll import PollDecoder  # noqa: E402
from btbattery.sim.pack import PackParams, SimPack  # noqa: E402


def seed_frames() -> list[bytes]:
    """Valid answers of simulated 4S, 16S and 32S packs to every register: where mutations start."""
    frames = []
    for cells in (4, 16, 32):
        pack = SimPack(PackParams(address="A4:C1:37:00:00:01", cell_count=cells, ntc_count=cells // 8 + 1))
        for request in (jbd.BASIC_INFO_REQUEST, jbd.CELL_VOLTAGES_REQUEST, jbd.HARDWARE_REQUEST):
            frame = pack.respond(request)
            assert frame is not None
            frames.append(frame)
    return frames


def mutate(rng: random.Random, frame: bytes) -> bytes:
    data = bytearray(frame)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(7)
        if op == 0 and data:  # flip bits
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        elif op == 1 and data:  # set a byte to an edge value
            data[rng.randrange(len(data))] = rng.choice((0x00, 0xFF, 0xDD, 0x77, 0xA5, 0x5A))
        elif op == 2:  # truncate
            del data[rng.randrange(len(data) + 1) :]
        elif op == 3:  # random bytes
            data[rng.randrange(len(data) + 1) : rng.randrange(len(data) + 1)] = rng.randbytes(
                rng.randrange(40)
            )
        elif op == 4 and len(data) > 4:  # lie in the length field, keep the checksum consistent or not
            data[3] = rng.randrange(256)
        elif op == 5:  # two frames glued
            data += rng.choice(SEEDS)
        elif op == 6 and len(data) > 7:  # recompute the checksum so the payload decoder sees the mutation
            body = data[2:-3]
            data[-3:-1] = ((0x10000 - sum(body)) & 0xFFFF).to_bytes(2, "big")
    return bytes(data)


def split(rng: random.Random, data: bytes) -> list[bytes]:
    chunks, i = [], 0
    while i < len(data):
        n = rng.choice((20, 20, 20, rng.randint(1, 40)))
        chunks.append(data[i : i + n])
        i += n
    return chunks


def check_reading(reading) -> None:  # type: ignore[no-untyped-def]
    info = reading.info
    for name, value in (("voltage", info.voltage), ("soc", info.soc), ("cell_count", info.cell_count)):
        bound = BOUNDS[name]
        assert bound.low <= value <= bound.high, (name, value)
    if reading.cells is not None:
        assert all(0 <= v <= 5 for v in reading.cells.voltages)


def fuzz_decoder(inputs: int, seed: int = 1) -> dict[str, object]:
    """``inputs`` mutated frames (each split into notifications) through PollDecoder and plausibility."""
    rng = random.Random(seed)
    decoder = PollDecoder(1, "A4:C1:37:00:00:01")
    judge = PackPlausibility(1, "A4:C1:37:00:00:01")
    readings = passed = chunks = 0
    started = time.perf_counter()
    for n in range(inputs):
        frame = mutate(rng, rng.choice(SEEDS)) if rng.random() < 0.9 else rng.choice(SEEDS)
        for chunk in split(rng, frame):
            chunks += 1
            for reading in decoder.feed(chunk, float(n)):
                readings += 1
                checked = judge.check(reading)
                if checked is not None:
                    passed += 1
                    check_reading(checked)
        if rng.random() < 0.01:
            decoder.flush()
    return {
        "inputs": inputs,
        "chunks": chunks,
        "readings decoded": readings,
        "readings passed plausibility": passed,
        "frames dropped": dict(decoder.drops),
        "implausible dropped": dict(judge.dropped),
        "seconds": round(time.perf_counter() - started, 1),
    }


def hypothesis_decoder(examples: int) -> dict[str, object]:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    count = Counter()
    frames = st.one_of(st.sampled_from(SEEDS), st.binary(max_size=80))
    mutated = st.tuples(frames, st.integers(0, 2**32)).map(lambda p: mutate(random.Random(p[1]), p[0]))

    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(st.one_of(mutated, st.binary(max_size=40)), max_size=8), st.integers(0, 2**32))
    def never_raises(parts: list[bytes], cut: int) -> None:
        decoder = PollDecoder(1, "A4:C1:37:00:00:01")
        judge = PackPlausibility(1, "A4:C1:37:00:00:01")
        for chunk in split(random.Random(cut), b"".join(parts)):
            count["chunks"] += 1
            for reading in decoder.feed(chunk, 0.0):
                checked = judge.check(reading)
                if checked is not None:
                    check_reading(checked)
        count["examples"] += 1

    started = time.perf_counter()
    never_raises()
    return {**count, "seconds": round(time.perf_counter() - started, 1)}


def hypothesis_config(examples: int) -> dict[str, object]:
    from hypothesis import HealthCheck, given, settings
    from support.configfuzz import INI_TEXT, check_loads_or_refuses

    outcome = Counter()

    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(INI_TEXT)
    def loads_or_refuses(text: str) -> None:
        with tempfile.TemporaryDirectory() as folder:
            config = check_loads_or_refuses(Path(folder) / "config.ini", text)
        outcome["loaded" if config is not None else "refused"] += 1

    started = time.perf_counter()
    loads_or_refuses()
    return {**outcome, "seconds": round(time.perf_counter() - started, 1)}


async def dbus_surface(calls: int) -> dict[str, object]:
    from dbus_bank import ADDRESSES, bank_state
    from dbus_fast.aio import MessageBus
    from support.dbusfuzz import fuzz_surface

    from btbattery.dbus.battery import SERVICE_NAME, BatteryService
    from btbattery.dbus.busitem import connect_bus
    from btbattery.sim.privatebus import PrivateBus

    with PrivateBus() as private, tempfile.TemporaryDirectory() as folder:
        bus = await connect_bus(private.address)
        service = BatteryService(
            bus, [(n, ADDRESSES[n - 1]) for n in (1, 2, 3, 4)], cells_per_pack=16,
            custom_name_store=Path(folder) / "state.json",
        )  # fmt: skip
        await service.start()
        service.publish(bank_state(packs=4, cells=16))
        client = await MessageBus(bus_address=private.address).connect()
        before = dict(service.tree._items)
        values = {path: item.value for path, item in before.items()}
        started = time.perf_counter()
        answers = await fuzz_surface(client, SERVICE_NAME, sorted(values), calls, seed=16)
        changed = [
            p for p, item in service.tree._items.items() if p != "/CustomName" and item.value != values[p]
        ]
        assert not changed, changed
        assert bus.connected
        client.disconnect()
        await service.stop()
        bus.disconnect()
    return {**answers, "changed values": 0, "seconds": round(time.perf_counter() - started, 1)}


def atheris_decoder(runs: int) -> str:
    try:
        import atheris  # type: ignore[import-not-found]
    except ImportError as exc:
        return f"atheris not available: {exc}"

    decoder = PollDecoder(1, "A4:C1:37:00:00:01")
    judge = PackPlausibility(1, "A4:C1:37:00:00:01")

    def one(data: bytes) -> None:
        for reading in decoder.feed(data, 0.0):
            checked = judge.check(reading)
            if checked is not None:
                check_reading(checked)

    atheris.instrument_all()  # our modules are imported already: instrument what is loaded
    atheris.Setup([sys.argv[0], f"-runs={runs}"], one)
    atheris.Fuzz()
    return "done"


SEEDS = seed_frames()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=1_000_000, help="mutated frames through the decoder")
    parser.add_argument("--examples", type=int, default=20_000, help="hypothesis examples for the decoder")
    parser.add_argument("--ini", type=int, default=5_000, help="hypothesis examples for the config loader")
    parser.add_argument("--calls", type=int, default=20_000, help="random D-Bus calls on a running service")
    parser.add_argument("--atheris", type=int, default=0, help="coverage-guided runs (0: skip)")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # every implausible frame warns once per judge; the counters tell
    print("decoder, mutation fuzzing:", fuzz_decoder(args.inputs), flush=True)
    print("decoder, hypothesis:", hypothesis_decoder(args.examples), flush=True)
    print("config loader, hypothesis:", hypothesis_config(args.ini), flush=True)
    print("D-Bus surface:", asyncio.run(dbus_surface(args.calls)), flush=True)
    if args.atheris:
        print("decoder, atheris:", atheris_decoder(args.atheris), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
