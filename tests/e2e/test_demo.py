"""The README's first command, through the same door a user uses: the demo shows live D-Bus values."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _demo(*args: str, timeout: float = 120) -> tuple[subprocess.CompletedProcess[str], str]:
    """Run the demo as a user would; the result and its last screen."""
    env = dict(os.environ, BTBATTERY_CONFIG_DIRS="", PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [sys.executable, "-m", "btbattery", "demo", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr
    return result, result.stdout.rsplit("com.victronenergy.battery.virtual_parallel", 1)[-1]


def test_demo_shows_every_pack_polling_and_the_bank_on_dbus() -> None:
    result, last_screen = _demo("--duration", "10", "--refresh", "0.5")
    assert "[live]" in last_screen
    assert "Active       3 of 3 packs" in last_screen
    assert last_screen.count(" polling ") == 3
    assert "service exit code 0" in result.stdout


def test_demo_refuses_an_impossible_pack_count() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "btbattery", "demo", "--packs", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert result.returncode != 0 and "--packs" in result.stderr


def test_demo_locked_scenario_shows_the_locks() -> None:
    _, last_screen = _demo("--scenario", "locked", "--duration", "30", timeout=150)
    # Packs 2 (password) and 3 (passkey) were unlocked with what the scenario's pack files say;
    # pack 4's password was never configured.
    assert last_screen.count(" polling ") == 3
    assert last_screen.count(" refused ") == 1
    assert "Active       3 of 4 packs" in last_screen
