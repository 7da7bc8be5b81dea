"""The link machine table and its backoff policy, without any radio."""

from __future__ import annotations

import asyncio
import random
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from btbattery.link import machine
from btbattery.link.machine import (
    ACTIVE_STATES,
    BACKOFF,
    IDLE,
    LOCATING,
    POLLING,
    SCANNING,
    STATES,
    TRANSITIONS,
    Backoff,
    LinkTimeouts,
    backoff_delay,
    build_machine,
)
from btbattery.model import LinkState

ROOT = Path(__file__).resolve().parents[2]


# ----- backoff --------------------------------------------------------------------------------------


def test_backoff_doubles_until_the_cap_without_jitter() -> None:
    policy = Backoff(initial=1.0, factor=2.0, cap=10.0, jitter=0.0)
    assert [backoff_delay(policy, n, 0.5) for n in range(6)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


@given(
    attempt=st.integers(min_value=0, max_value=10_000),
    u=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
    initial=st.floats(min_value=0.01, max_value=10.0),
    factor=st.floats(min_value=1.0, max_value=4.0),
    cap=st.floats(min_value=0.01, max_value=600.0),
    jitter=st.floats(min_value=0.0, max_value=1.0),
)
def test_backoff_stays_within_jitter_band_and_cap(
    attempt: int, u: float, initial: float, factor: float, cap: float, jitter: float
) -> None:
    policy = Backoff(initial=initial, factor=factor, cap=cap, jitter=jitter)
    delay = backoff_delay(policy, attempt, u)
    base = min(cap, initial * factor ** min(attempt, 64))
    assert 0.0 <= delay <= cap
    assert base * (1 - jitter) - 1e-9 <= delay <= base * (1 + jitter) + 1e-9


def test_backoff_jitter_is_seeded_and_spreads_packs() -> None:
    policy = Backoff(initial=1.0, factor=2.0, cap=60.0, jitter=0.2)
    first = [policy.delay(n, random.Random(5)) for n in range(5)]
    again = [policy.delay(n, random.Random(5)) for n in range(5)]
    other = [policy.delay(n, random.Random(6)) for n in range(5)]
    assert first == again
    assert first != other


# ----- the table ------------------------------------------------------------------------------------


def test_states_are_the_link_states_of_the_model() -> None:
    names = {s["name"] for s in STATES}
    assert names == {s.value for s in LinkState} - {"offline"}


def test_every_transition_joins_declared_states() -> None:
    names = {s["name"] for s in STATES}
    for t in TRANSITIONS:
        sources = t["source"] if isinstance(t["source"], list) else [t["source"]]
        assert set(sources) <= names and t["dest"] in names, t


def _dest(trigger: str, source: str) -> str | None:
    for t in TRANSITIONS:
        sources = t["source"] if isinstance(t["source"], list) else [t["source"]]
        if t["trigger"] == trigger and source in sources:
            return t["dest"]
    return None


def test_failure_from_any_working_state_backs_off_and_stop_always_reaches_idle() -> None:
    for state in ACTIVE_STATES:
        assert _dest("fail", state) == BACKOFF
    for state in [*ACTIVE_STATES, BACKOFF, "refused"]:
        assert _dest("halt", state) == IDLE
    # Every new attempt starts by asking BlueZ afresh (a device object may have gone since).
    assert _dest("retry", BACKOFF) == LOCATING
    assert _dest("fail", IDLE) is None and _dest("fail", BACKOFF) is None


def test_a_known_device_is_connected_without_a_scan_and_a_lost_link_skips_the_backoff() -> None:
    assert _dest("known", LOCATING) == "connecting"
    assert _dest("unknown", LOCATING) == SCANNING
    assert _dest("forgotten", LOCATING) == SCANNING  # removed from BlueZ: only a scan brings it back
    assert _dest("lost", POLLING) == LOCATING
    assert _dest("wedged", LOCATING) == "resetting" and _dest("reset", "resetting") == LOCATING


def test_timed_states_have_a_timeout_handler() -> None:
    timed = {s["name"] for s in STATES if "timeout" in s}
    locks = {"pairing", "authenticating", "refused"}
    assert timed == {"locating", "scanning", "connecting", "subscribing", "backoff", "resetting"} | locks
    timeouts = LinkTimeouts(
        locate=2, scan=7, connect_wait=9, subscribe=4, pair=61, authenticate=8, refused=240, reset=5
    )
    resolved = machine.state_table(timeouts, Backoff(initial=3))
    assert {s["name"]: s.get("timeout") for s in resolved} == {
        "idle": None,
        "locating": 2,
        "resetting": 5,
        "scanning": 7,
        "connecting": 9,
        "pairing": 61,
        "subscribing": 4,
        "authenticating": 8,
        "polling": None,
        "backoff": 3,
        "refused": 240,
    }


def test_a_locked_pack_is_retried_only_after_minutes_and_can_always_stop() -> None:
    from btbattery.link.machine import LOCK_STATES, REFUSED

    assert LinkTimeouts().refused >= 120  # never a tight loop against a pack that refuses us
    for state in LOCK_STATES:
        assert _dest("refuse", state) == REFUSED
    assert _dest("refuse", SCANNING) is None and _dest("refuse", BACKOFF) is None
    assert _dest("retry", REFUSED) == LOCATING and _dest("halt", REFUSED) == IDLE


class _Model:
    """Just the callbacks the table names; records what the machine did."""

    state: str

    def __init__(self) -> None:
        self.entered: list[tuple[str, str]] = []
        self.left: list[str] = []
        self.delays: list[float] = []

    def leave_state(self, event: Any) -> None:
        self.left.append(self.state)

    def enter_state(self, event: Any) -> None:
        self.entered.append((self.state, str(event.kwargs.get("reason", ""))))

    def plan_backoff(self, event: Any) -> None:
        self.delays.append(len(self.delays) + 1.0)
        self.machine.get_state(BACKOFF).timeout = 30.0  # not reached in this test

    def in_origin(self, event: Any) -> bool:
        return event.kwargs.get("origin", self.state) == self.state

    async def timed_out(self, event: Any) -> None:
        raise AssertionError("no state should time out here")


async def test_machine_walks_the_table_and_ignores_stale_triggers() -> None:
    model = _Model()
    model.machine = build_machine(model, LinkTimeouts(), Backoff(), "unit")  # type: ignore[attr-defined]
    m: Any = model
    await m.begin(reason="start")
    await m.unknown(origin=LOCATING)
    await m.found(origin=SCANNING)
    await m.connected(origin="connecting")
    await m.subscribed(origin="subscribing")
    assert model.state == POLLING
    # A result for a state the link already left must not move it (queued triggers always return True).
    await m.found(origin=SCANNING)
    await m.fail(origin="connecting", reason="stale")
    assert model.state == POLLING
    await m.fail(origin=POLLING, reason="link lost")
    assert model.state == BACKOFF and model.delays == [1.0]
    await m.halt(reason="stopping")
    assert model.state == IDLE
    assert [s for s, _ in model.entered] == [
        "locating",
        "scanning",
        "connecting",
        "subscribing",
        "polling",
        "backoff",
        "idle",
    ]
    assert ("backoff", "link lost") in model.entered
    # Leaving backoff cancelled its timer: nothing fires later.
    await asyncio.sleep(0)


# ----- diagrams ----------------------------------------------------------------------------------------


def test_checked_in_diagram_matches_the_table() -> None:
    checked_in = (ROOT / "diagrams" / "link-states.mmd").read_text(encoding="utf-8")
    assert checked_in == machine.mermaid(), "diagram out of date: run `dbus-btbattery diagram`"


def test_diagram_sources_show_every_transition() -> None:
    mermaid, dot = machine.mermaid(), machine.dot()
    # Mermaid edges: "src --> dest: a | b" (transitions joins triggers between the same two states).
    edges = {
        (src, dest, trigger)
        for line in mermaid.splitlines()
        if " --> " in line and ": " in line
        for src, _, rest in [line.strip().partition(" --> ")]
        for dest, _, label in [rest.partition(": ")]
        for trigger in label.split(" | ")
    }
    for t in TRANSITIONS:
        sources = t["source"] if isinstance(t["source"], list) else [t["source"]]
        for src in sources:
            assert (src, t["dest"], t["trigger"]) in edges
            assert f'{src} -> {t["dest"]} [label="{t["trigger"]}"]' in dot


def test_diagram_command_writes_mermaid(tmp_path: Path) -> None:
    from btbattery.cli import main

    assert main(["diagram", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "link-states.mmd").read_text(encoding="utf-8") == machine.mermaid()


def test_diagram_command_reports_an_unwritable_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from btbattery.cli import main

    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["diagram", "--out", str(blocker / "sub")]) == 1
    assert "cannot write" in capsys.readouterr().err


# ----- manager construction ------------------------------------------------------------------------


def test_manager_builds_every_link_without_a_running_loop() -> None:
    from btbattery.link.manager import LinkManager

    manager = LinkManager([(1, "a4:c1:37:00:00:01"), (2, "A4:C1:37:00:00:02")], poll_interval=0.5)
    assert [(link.pack, link.address, link.state) for link in manager.links] == [
        (1, "A4:C1:37:00:00:01", IDLE),
        (2, "A4:C1:37:00:00:02", IDLE),
    ]
    assert all(link.port is manager.port for link in manager.links)  # one lock and one scan per adapter
    assert manager.drops == {1: 0, 2: 0}
    with pytest.raises(ValueError, match="poll interval"):
        LinkManager([(1, "A4:C1:37:00:00:01")], poll_interval=0)


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz 'dot' not installed (SVG is optional)")
def test_diagram_command_renders_svg_with_graphviz(tmp_path: Path) -> None:
    from btbattery.cli import main

    assert main(["diagram", "--out", str(tmp_path)]) == 0
    svg = (tmp_path / "link-states.svg").read_text(encoding="utf-8")
    assert "<svg" in svg and all(s["name"] in svg for s in STATES)
