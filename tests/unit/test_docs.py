"""The README's generated tables match the code, and every published path is documented."""

from __future__ import annotations

import re
from pathlib import Path

from btbattery import docs
from btbattery.dbus.battery import BANK_PATHS, PACK_PATHS

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_generated_sections_are_up_to_date() -> None:
    text = README.read_text(encoding="utf-8")
    assert docs.render_readme(text) == text, "run: python -m btbattery.docs --write README.md"


def test_every_published_path_has_a_meaning() -> None:
    described = set(docs.PATH_MEANINGS)
    assert set(BANK_PATHS) <= described
    assert {f"/Parallel/Battery<n>/{leaf}" for leaf in PACK_PATHS} <= described


def test_every_config_key_is_in_the_readme() -> None:
    table = docs.config_keys_markdown()
    keys = re.findall(r"^\| `([A-Z_]+)` \|", table, re.M)
    from btbattery.config import KEYS

    assert set(keys) == set(KEYS)
    assert all(f"`{key}`" in README.read_text(encoding="utf-8") for key in KEYS)
