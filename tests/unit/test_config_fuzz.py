"""The config loader on random ini text: a config within bounds, or one clear line (issue 16). The long run
is tests/bench/bench_fuzz.py."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from support.configfuzz import INI_TEXT, check_loads_or_refuses


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(INI_TEXT)
def test_random_ini_text_loads_within_bounds_or_is_refused_in_one_line(text: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        check_loads_or_refuses(Path(folder) / "config.ini", text)
