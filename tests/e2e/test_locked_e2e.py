"""Newer, locked JBD units through the real service: the built-in ``locked`` scenario (the demo's), with a
password and a passkey handed to the service in per-pack files, read back the way Venus reads it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from venus_client import VenusClient, fake_bluez_stats

from btbattery.link.pack_link import NEEDS_PASSWORD
from btbattery.sim.scenario import load_scenario
from btbattery.sim.stack import SimulatedStack

DATA = Path(__file__).resolve().parents[1] / "data"
SERVICE = "com.victronenergy.battery.virtual_parallel"
TIMEOUT = 60.0  # a locked pack is judged after three unanswered polls and a probe; CI is slow and shared


@pytest.fixture(autouse=True)
def _no_machine_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BTBATTERY_CONFIG_DIRS", "")


def _states(client: VenusClient) -> list[str | None]:
    return [client.values.get(f"/Parallel/Battery{n}/LinkState") for n in range(1, 5)]


async def test_locked_bank_authenticates_pairs_and_reports_the_missing_password(tmp_path: Path) -> None:
    scenario = load_scenario("locked")
    secrets = [v for keys in scenario.pack_files.values() for v in keys.values()]
    assert len(secrets) == 2  # the password of pack 2 and the passkey of pack 3
    log_path = tmp_path / "service.log"
    stack = SimulatedStack(
        scenario="locked",
        # DEBUG: the most the service ever says, searched for the secrets below.
        service_args=["--config", str(DATA / "e2e_config.ini"), "--log-level", "DEBUG"],
        service_log=log_path.open("wb"),
    )
    async with stack:
        client = await VenusClient.connect(stack.session_address, SERVICE)
        try:
            await client.wait_for_service(TIMEOUT)
            await client.wait_until(
                lambda c: _states(c) == ["polling", "polling", "polling", "refused"], TIMEOUT
            )
            await client.wait_until(lambda c: c.values.get("/Parallel/ActiveBatteries") == 3, TIMEOUT)
            values = await client.get_items()
        finally:
            client.close()
        stats = await fake_bluez_stats(stack.system_address)
        # Pack 3 was paired once through our agent with its passkey; nothing else was paired.
        assert (stats["pair_calls"], stats["passkey_requests"], stats["bonds"]) == (1, 1, 1)
        assert stats["not_paired_errors"] == 0
    log = log_path.read_text(encoding="utf-8", errors="replace")
    errors = [line for line in log.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1, errors
    assert NEEDS_PASSWORD in errors[0] and "pack 4" in errors[0]
    assert "password set" in log and "passkey set" in log  # the service says it has them, not what
    published = "\n".join(f"{path}={value}" for path, value in values.items())
    for secret in secrets:
        assert not re.search(re.escape(secret), log), "a secret reached the service log"
        assert secret not in published, "a secret reached D-Bus"
    assert "/Parallel/Battery4/LinkState=refused" in published
    # The reason is published too, for doctor and the GUI; the packs that answer have none.
    assert values["/Parallel/Battery4/Lock"].startswith(NEEDS_PASSWORD)
    assert [values[f"/Parallel/Battery{n}/Lock"] for n in (1, 2, 3)] == ["", "", ""]
