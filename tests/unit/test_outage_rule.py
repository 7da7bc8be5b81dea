"""The no-ramp rule (issue 16, finding 6: after SIGSTOP/SIGCONT CCL jumped 0 -> 130.7 A in one step): only the
first limits after the service starts are taken as computed; after an outage of every pack, and after a stall
of the service itself, they rise at the rise rate (README, rule "Rise rates")."""

from __future__ import annotations

import itertools

import pytest

from btbattery.config import default_config
from btbattery.model import BasicInfo, CellVoltages, LinkState, PackReading, Protection
from btbattery.pipeline.aggregate import PackFeed
from btbattery.pipeline.streams import BankCycle

CONFIG = default_config()
ADDRESS = "A4:C1:37:00:00:01"
SPEC = CONFIG.pack_spec(1, ADDRESS)
INFO = BasicInfo(13.2, 0.0, 60.0, 100.0, 5, None, 0, Protection.NONE, 3.8, 60, True, True, 4, (25.0,))


def feed(reading_time: float) -> PackFeed:
    """The pack as last polled at ``reading_time`` (link up: only the age of the reading counts)."""
    reading = PackReading(1, ADDRESS, reading_time, INFO, CellVoltages((3.30,) * 4))
    return PackFeed(1, ADDRESS, reading, LinkState.POLLING, cells_time=reading_time)


def run_until_full(cycle: BankCycle) -> float:
    for t in range(60):
        limits = cycle.tick([feed(float(t))], float(t)).limits
    return limits.charge_current


def test_the_first_limits_after_start_come_at_once() -> None:
    cycle = BankCycle([SPEC], CONFIG, 0.0)
    assert cycle.tick([feed(0.0)], 0.0).limits.charge_current > 10


def test_after_an_outage_of_every_pack_the_limits_ramp() -> None:
    cycle = BankCycle([SPEC], CONFIG, 0.0)
    full = run_until_full(cycle)
    assert full > 10
    for t in range(60, 120):  # the service ticks on; the pack's last reading (t=59) ages out
        assert cycle.tick([feed(59.0)], float(t)).snapshot.active_packs == (1 if t < 59 + 15 else 0)
    back = cycle.tick([feed(120.0)], 120.0).limits.charge_current
    assert back <= CONFIG.current_limit_rise_rate * CONFIG.publish_interval + 1e-9


def test_after_a_stall_of_the_service_itself_the_limits_ramp() -> None:
    cycle = BankCycle([SPEC], CONFIG, 0.0)
    full = run_until_full(cycle)
    # Stopped for a minute: the next tick comes 61 s late and finds the reading of t=59 aged out.
    stalled = cycle.tick([feed(59.0)], 120.0)
    assert stalled.snapshot.active_packs == 0 and stalled.limits.charge_current == 0
    back = cycle.tick([feed(120.5)], 121.0).limits.charge_current
    assert back == pytest.approx(CONFIG.current_limit_rise_rate * CONFIG.publish_interval)
    later = [cycle.tick([feed(t - 0.5)], t).limits.charge_current for t in map(float, range(122, 200))]
    assert all(b - a <= CONFIG.current_limit_rise_rate + 1e-9 for a, b in itertools.pairwise([back, *later]))
    assert later[-1] == pytest.approx(full)
