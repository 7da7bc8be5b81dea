"""The README's generated tables match the code, and every published path is documented."""

from __future__ import annotations

import re
from pathlib import Path

from btbattery import docs
from btbattery.dbus.battery import BatteryService, all_paths

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_generated_sections_are_up_to_date() -> None:
    text = README.read_text(encoding="utf-8")
    assert docs.render_readme(text) == text, "run: python -m btbattery.docs --write README.md"


def test_the_service_publishes_exactly_the_paths_of_the_one_table(tmp_path: Path) -> None:
    """Built from the table, checked against it: no path without a meaning, no meaning without a path."""
    service = BatteryService(
        None,  # type: ignore[arg-type]  # building the tree needs no bus
        [(1, "AA:BB:CC:DD:EE:01"), (2, "AA:BB:CC:DD:EE:02")],
        cells_per_pack=4,
        custom_name_store=tmp_path / "state.json",
    )
    patterns = {
        re.sub(r"Cell\d+_\d+$", "Cell<n>_<c>", re.sub(r"/Battery\d+/", "/Battery<n>/", path))
        for path in service.tree.paths()
    }
    assert patterns == set(all_paths())


def test_every_config_key_is_in_the_readme() -> None:
    table = docs.config_keys_markdown()
    keys = re.findall(r"^\| `([A-Z_]+)` \|", table, re.M)
    from btbattery.config import KEYS

    assert set(keys) == set(KEYS)
    assert all(f"`{key}`" in README.read_text(encoding="utf-8") for key in KEYS)
