"""The soak over many seeds: whole simulated days of 4- and 16-pack banks with random faults of every kind,
the design invariants checked at every publish tick (tests/support/soak.py).

    .venv/bin/python tests/bench/bench_soak.py [--seeds 10] [--hours 24] [--poll 30] [--packs 4 16]
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from support.soak import run_soak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--poll", type=float, default=30.0, help="poll and publish interval, s")
    parser.add_argument("--packs", type=int, nargs="+", default=[4, 16])
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    failed = 0
    print("packs seed ticks  wall_s  violations  recovered  implausible            frame_drops  objects+")
    for packs in args.packs:
        for seed in range(1, args.seeds + 1):
            r = run_soak(packs, seed, args.hours * 3600, args.poll)
            failed += bool(r.violations)
            print(
                f"{packs:5} {seed:4} {r.ticks:5} {r.wall:7.1f} {len(r.violations):11} {r.recovered:10}  "
                f"{dict(r.implausible)!s:22} {sum(r.frame_drops.values()):11} {r.objects_growth:9}"
            )
            for violation in r.violations[:5]:
                print(f"      {violation}")
    print("FAILED" if failed else "all invariants held at every tick")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
