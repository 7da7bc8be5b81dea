"""Decoder throughput: one 0x03 + 0x04 poll pair (16 cells) arriving as 20-byte notifications.

Run: .venv/bin/python tests/bench/bench_decoder.py
Prints microseconds per poll pair (best of several runs) for PollDecoder.feed, which reassembles, verifies
and decodes both frames into one PackReading. Target: under 50 us on the development machine.
"""

from __future__ import annotations

import datetime
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from btbattery.model import BasicInfo, CellVoltages, Protection
from btbattery.protocol import jbd
from btbattery.protocol.poll import PollDecoder

TARGET_US = 50.0


def poll_pair_chunks() -> list[bytes]:
    info = BasicInfo(
        voltage=53.12,
        current=-12.34,
        remaining_capacity=61.5,
        nominal_capacity=100.0,
        cycles=42,
        production_date=datetime.date(2023, 6, 1),
        balance_bits=0b1000_0000_0001,
        protection=Protection.NONE,
        software_version=3.8,
        soc=62,
        charge_fet=True,
        discharge_fet=True,
        cell_count=16,
        temperatures=(24.3, 25.1),
    )
    cells = CellVoltages(tuple(3.300 + 0.001 * i for i in range(16)))
    return jbd.split_notifications(jbd.encode_basic_info(info)) + jbd.split_notifications(
        jbd.encode_cell_voltages(cells)
    )


def main() -> int:
    chunks = poll_pair_chunks()
    decoder = PollDecoder(1, "A4:C1:37:00:00:01")

    def one_poll() -> None:
        readings = []
        for chunk in chunks:
            readings += decoder.feed(chunk, 0.0)
        assert len(readings) == 1 and readings[0].cells is not None

    one_poll()
    number = 2000
    best = min(timeit.repeat(one_poll, number=number, repeat=7)) / number * 1e6
    verdict = "meets" if best < TARGET_US else "MISSES"
    print(
        f"PollDecoder: {best:.1f} us per 0x03+0x04 poll pair (16 cells, {len(chunks)} notifications of "
        f"<= 20 bytes); {verdict} the {TARGET_US:.0f} us target"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
