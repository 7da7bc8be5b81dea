"""Our own stand-ins for standard-library helpers that the Venus OS image lacks (statistics, difflib),
checked against the originals, which the tests (off-device) may import."""

from __future__ import annotations

import difflib
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from btbattery.config import KEYS, _nearest
from btbattery.pipeline.imbalance import median

spreads = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@given(st.lists(spreads, min_size=1, max_size=40))
def test_median_is_the_statistics_median(values: list[float]) -> None:
    assert median(values) == pytest.approx(statistics.median(values), rel=1e-12, abs=1e-9)


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("MAX_CEL_VOLTAGE", "MAX_CELL_VOLTAGE"),
        ("MAX_PACK_CHARGE_CURENT", "MAX_PACK_CHARGE_CURRENT"),
        ("BATTERY_ADRESSES", "BATTERY_ADDRESSES"),
        ("COMPLETELY_UNRELATED", None),
    ],
)
def test_a_misspelt_key_gets_the_nearest_known_key(typed: str, meant: str | None) -> None:
    hint = _nearest(typed, KEYS)
    assert hint == (f"; did you mean {meant}?" if meant else "")
    if meant:  # the same guess difflib would make
        assert difflib.get_close_matches(typed, list(KEYS), n=1)[0] == meant
