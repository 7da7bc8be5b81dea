"""The soak, short enough for every run: a whole simulated day of a 4-pack bank and 8 hours of a 16-pack bank,
random faults of every kind, the design invariants checked at every publish tick (tests/support/soak.py).
The seed sweep over whole days is tests/bench/bench_soak.py."""

from __future__ import annotations

import logging

import pytest
from support.soak import LINK_FAULTS, run_soak

from btbattery.sim.scenario import FAULT_KINDS

HOUR = 3600.0


@pytest.mark.parametrize(("packs", "hours"), [(4, 24), (16, 8)])
def test_soak_holds_every_invariant_at_every_tick(packs: int, hours: int) -> None:
    logging.disable(logging.WARNING)  # thousands of expected fault warnings; the counters below tell
    try:
        result = run_soak(packs, seed=packs, duration=hours * HOUR, poll=60.0)
    finally:
        logging.disable(logging.NOTSET)
    assert result.violations == []
    assert result.ticks >= hours * HOUR / 60 - 1
    assert set(result.faults) == set(FAULT_KINDS)  # every fault kind the simulator knows was drawn
    link_faults = sum(result.faults[kind] for kind in LINK_FAULTS)
    assert result.recovered >= link_faults // 2  # each recovery was checked; the rest overlapped the end
    assert result.implausible["value"] and result.implausible["cell count"]  # edge frames were met
    assert sum(result.frame_drops.values()) > 0  # corrupt and truncated frames were met
    assert result.objects_growth < 500  # memory flat: Python objects at a quarter vs. at the end
    assert result.max_ccl > 0  # the bank did charge at times: the invariants were not checked on zeros only
