"""`record`: a scenario in simulated time to a recording that the decoder reads back, faults included."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from btbattery.cli import main as cli_main
from btbattery.model import LinkState
from btbattery.protocol.poll import PollDecoder
from btbattery.replay import LinkChange, Traffic, read_recording


def record(tmp_path: Path, scenario: dict | str, *extra: str) -> Path:
    if isinstance(scenario, dict):
        path = tmp_path / "scenario.json"
        path.write_text(json.dumps(scenario), encoding="utf-8")
        scenario = str(path)
    out = tmp_path / "out.jsonl"
    assert cli_main(["record", "--scenario", scenario, "--out", str(out), *extra]) == 0
    return out


def readings_and_drops(path: Path) -> tuple[dict[str, list], dict[str, Counter]]:
    header, events = read_recording(path)
    decoders = {a: PollDecoder(n, a) for n, a in enumerate(header.packs, start=1)}
    readings: dict[str, list] = {a: [] for a in header.packs}
    for event in events:
        if isinstance(event, Traffic) and event.direction == "rx":
            readings[event.pack] += decoders[event.pack].feed(event.data, event.t)
    return readings, {a: Counter(d.drops) for a, d in decoders.items()}


def scenario_with(faults: list[dict], duration: int = 20) -> dict:
    return {
        "seed": 1,
        "duration": duration,
        "packs": [{"address": "A4:C1:37:00:00:01", "soc": 50}, {"address": "A4:C1:37:00:00:02", "soc": 55}],
        "load": [{"duration": 60, "current": 40}],
        "faults": faults,
    }


def test_a_clean_recording_has_one_reading_per_pack_per_poll(tmp_path: Path) -> None:
    out = record(tmp_path, scenario_with([]), "--poll-interval", "2")
    header, events = read_recording(out)
    assert header.poll_interval == 2.0 and header.meta["scenario"] == "scenario"
    events = list(events)
    assert [e.t for e in events] == sorted(e.t for e in events)
    readings, drops = readings_and_drops(out)
    for address in header.packs:
        assert len(readings[address]) == 10  # polls at 0.5, 2.5, ... 18.5
        assert all(r.cells is not None and len(r.cells.voltages) == 16 for r in readings[address])
        assert not drops[address]
    # Charging at 40 A: the readings show it, and the pack's remaining capacity climbs.
    first, last = readings[header.packs[0]][0], readings[header.packs[0]][-1]
    assert first.info.current > 10 and last.info.remaining_capacity > first.info.remaining_capacity


def test_recording_is_deterministic_under_a_seed(tmp_path: Path) -> None:
    a = record(tmp_path, "weak3", "--duration", "10", "--seed", "4").read_bytes()
    b = record(tmp_path, "weak3", "--duration", "10", "--seed", "4").read_bytes()
    c = record(tmp_path, "weak3", "--duration", "10", "--seed", "5").read_bytes()
    assert a == b and a != c


def test_a_dropped_link_goes_quiet_and_comes_back(tmp_path: Path) -> None:
    out = record(tmp_path, scenario_with([{"at": 5, "pack": 2, "kind": "drop", "duration": 6}]))
    _, events = read_recording(out)
    events = list(events)
    changes = [(e.state, round(e.t)) for e in events if isinstance(e, LinkChange) and e.pack.endswith("02")]
    states = [s for s, _ in changes]
    assert states == [LinkState.CONNECTING, LinkState.SUBSCRIBING, LinkState.POLLING, LinkState.BACKOFF,
                      LinkState.CONNECTING, LinkState.SUBSCRIBING, LinkState.POLLING]  # fmt: skip
    lost, back = changes[3][1], changes[4][1]
    quiet = [e for e in events if isinstance(e, Traffic) and e.pack.endswith("02") and lost <= e.t < back]
    assert quiet == []
    readings, _ = readings_and_drops(out)
    assert len(readings["A4:C1:37:00:00:02"]) < len(readings["A4:C1:37:00:00:01"])


def test_silent_corrupt_and_truncated_answers(tmp_path: Path) -> None:
    faults = [
        {"at": 2, "pack": 1, "kind": "silent", "duration": 3},
        {"at": 8, "pack": 1, "kind": "corrupt", "duration": 3},
        {"at": 14, "pack": 2, "kind": "truncate", "duration": 3},
    ]
    out = record(tmp_path, scenario_with(faults))
    _, events = read_recording(out)
    events = list(events)
    silent_rx = [e for e in events if isinstance(e, Traffic) and e.pack.endswith("01") and 2 <= e.t < 5]
    assert {e.direction for e in silent_rx} == {"tx"}
    readings, drops = readings_and_drops(out)
    assert sum(drops["A4:C1:37:00:00:01"].values()) >= 3  # every corrupt answer is caught
    assert sum(drops["A4:C1:37:00:00:02"].values()) >= 3  # truncated ones too
    assert 10 <= len(readings["A4:C1:37:00:00:01"]) < 20


def test_a_midframe_drop_leaves_a_partial_answer(tmp_path: Path) -> None:
    out = record(tmp_path, scenario_with([{"at": 5, "pack": 1, "kind": "drop_midframe", "duration": 3}]))
    _, events = read_recording(out)
    events = list(events)
    (lost,) = [e for e in events if isinstance(e, LinkChange) and e.state == LinkState.BACKOFF]
    before = [e for e in events if isinstance(e, Traffic) and e.pack == lost.pack and 5 <= e.t <= lost.t]
    assert [e.direction for e in before] == ["tx", "rx"]
    assert len(before[1].data) == 20


def test_delayed_answers_arrive_late(tmp_path: Path) -> None:
    out = record(
        tmp_path, scenario_with([{"at": 5, "pack": 1, "kind": "delay", "duration": 2, "delay": 0.8}])
    )
    _, events = read_recording(out)
    pack1 = [e for e in events if isinstance(e, Traffic) and e.pack.endswith("01") and 5 <= e.t < 8]
    tx = next(e for e in pack1 if e.direction == "tx")
    rx = next(e for e in pack1 if e.direction == "rx")
    assert rx.t - tx.t >= 0.8


def test_adapter_loss_takes_every_pack_down(tmp_path: Path) -> None:
    out = record(tmp_path, scenario_with([{"at": 5, "pack": 1, "kind": "adapter_loss", "duration": 4}]))
    _, events = read_recording(out)
    lost = [e for e in events if isinstance(e, LinkChange) and e.state == LinkState.BACKOFF]
    assert {e.pack for e in lost} == {"A4:C1:37:00:00:01", "A4:C1:37:00:00:02"}
    assert {e.reason for e in lost} == {"adapter lost"}


def test_a_bad_scenario_is_an_error_not_a_traceback(tmp_path: Path, capsys) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"packs": [{"capacity_ah": -1}]}', encoding="utf-8")
    assert cli_main(["record", "--scenario", str(path), "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "packs[0].capacity_ah" in capsys.readouterr().err


def test_an_unwritable_output_is_an_error_not_a_traceback(tmp_path: Path, capsys) -> None:
    target = tmp_path / "no-such-dir" / "x.jsonl"
    assert cli_main(["record", "--duration", "2", "--out", str(target)]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_locked_packs_are_recorded_with_the_handshake_redacted(tmp_path: Path) -> None:
    from btbattery.sim.scenario import load_scenario

    scenario = load_scenario("locked")
    out = record(tmp_path, "locked", "--duration", "6")
    text = out.read_text(encoding="utf-8")
    readings, drops = readings_and_drops(out)
    unlocked, configured, echo, unconfigured = (p.address for p in scenario.packs)
    # The pack whose password the scenario's pack file gives answers after the handshake; the one
    # nobody gave a password to stays silent (the echo unit's lock lives in BlueZ, not in recordings).
    assert readings[unlocked] and readings[configured] and readings[echo]
    assert not readings[unconfigured]
    assert not any(drops.values())
    _, events = read_recording(out)
    sent = [e.data for e in events if isinstance(e, Traffic) and e.pack == configured and e.direction == "tx"]
    (password_frame,) = [d for d in sent if d[:3] == b"\xff\xaa\x18"]
    assert password_frame == bytes.fromhex("ffaa1806") + bytes(7)
    password = scenario.pack_files[2]["PASSWORD"]
    assert password not in text and password.encode().hex() not in text
