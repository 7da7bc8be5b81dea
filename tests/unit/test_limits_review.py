"""Limit paths found in the second safety review: each test pins one way a limit could have gone up."""

from __future__ import annotations

from test_pipeline_pure import CONFIG, specs, status

from btbattery.model import ImbalanceStatus
from btbattery.pipeline.aggregate import aggregate
from btbattery.pipeline.limits import target_limits


def test_pack_tapered_to_zero_with_its_fet_on_still_takes_its_capacity_share() -> None:
    """A pack whose highest cell reached the end of the taper (3.55 V: limit 0 A, below over-voltage) still
    has its charge FET on, so in parallel it takes its share of whatever the bank is given. Below the share
    current that share is its capacity share; the bank limit must therefore be 0, not the other pack's."""
    full = status(1, cells=(3.40, 3.56, 3.40, 3.40))  # taper fraction 0, no protection, FET on
    empty = status(2, cells=(3.30, 3.30, 3.30, 3.30))
    limits = target_limits(
        aggregate(0.0, [full, empty]), ImbalanceStatus(), specs((50, 50), (50, 50)), CONFIG
    )
    assert limits.charge_current == 0.0
    cold = status(1, temperatures=(-1.0,))  # temperature fraction 0 at 0 degC and below, FET on
    limits = target_limits(
        aggregate(0.0, [cold, empty]), ImbalanceStatus(), specs((50, 50), (50, 50)), CONFIG
    )
    assert limits.charge_current == 0.0


def test_pack_with_its_fet_off_takes_no_share() -> None:
    """The other side of the rule: a pack that cannot take current (FET off) leaves the bank to the others."""
    off = status(1, charge_fet=False)
    limits = target_limits(
        aggregate(0.0, [off, status(2)]), ImbalanceStatus(), specs((50, 50), (50, 50)), CONFIG
    )
    assert limits.charge_current == 50.0
