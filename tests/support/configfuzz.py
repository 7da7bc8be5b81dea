"""Random ini text for the config loader: known keys with hostile values, unknown keys, sections, BOMs, keys
twice in different case, comments, stray unicode. Shared by tests/unit/test_config_fuzz.py and
tests/bench/bench_fuzz.py."""

from __future__ import annotations

import math
from pathlib import Path

from hypothesis import strategies as st

from btbattery.config import KEYS, Config, ConfigError, load_config

NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(
        ["0", "-0", "1e-9", "1e300", "1e308", "-1", "nan", "inf", "-inf", "0x10", "1_000", "", " "]
    ),
    st.integers(-(10**6), 10**6).map(str),
)
VALUES = st.one_of(NUMBERS, st.text(max_size=20), st.lists(NUMBERS, max_size=5).map(", ".join))
KEY_NAMES = st.one_of(
    st.sampled_from(sorted(KEYS)),
    st.sampled_from(sorted(KEYS)).map(str.lower),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12),
)
LINES = st.one_of(
    st.tuples(KEY_NAMES, st.sampled_from([" = ", "=", ": "]), VALUES).map("".join),
    st.sampled_from(["[DEFAULT]", "[other]", "# comment", "; comment", "", "   ", "=", "[", "\ufeff"]),
    st.text(max_size=30),
)
INI_TEXT = st.tuples(st.booleans(), st.lists(LINES, max_size=12)).map(
    lambda parts: ("\ufeff" if parts[0] else "") + "\n".join(parts[1])
)


def check_loads_or_refuses(path: Path, text: str) -> Config | None:
    """The loader either gives a config whose every number is within its bounds, or one ConfigError line."""
    try:
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
    except UnicodeEncodeError:
        return None
    try:
        config = load_config(path, ["AA:BB:CC:DD:EE:01"], search_dirs=())
    except ConfigError as exc:
        message = str(exc)
        assert message and "\n" not in message and "Traceback" not in message, message
        return None
    for name, key in KEYS.items():
        value = getattr(config, name.lower())
        if key.bounds is None:
            continue
        for number in value if isinstance(value, tuple) else (value,):
            assert math.isfinite(number) and number in key.bounds, (name, number)
    return config
