"""Replay over checked-in recordings: expected timelines (see tests/data/replay_expected/README.md), the
safety rules tick by tick, and the command's table, JSON, plot and error paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from btbattery.cli import main as cli
from btbattery.commands.replay import replay, timeline
from btbattery.config import load_config
from btbattery.model import BankState

DATA = Path(__file__).resolve().parents[1] / "data"
CONFIG = load_config(DATA / "replay_config.ini", search_dirs=())
DAY_CONFIG = load_config(DATA / "replay_day_config.ini", search_dirs=())
# recording -> the config it is replayed with (tests/data/replay_expected/README.md explains each timeline)
RECORDINGS = {
    "replay_dropout": CONFIG,
    "replay_imbalance": CONFIG,
    "bank3_weak": CONFIG,
    "replay_runaway_cell": CONFIG,
    "replay_full_day": DAY_CONFIG,
    "replay_adapter_loss": CONFIG,
    "replay_broken_ntc": CONFIG,
    "replay_cold_no_ntc": CONFIG,
    "replay_bottom_sag": CONFIG,
}
_cache: dict[str, list[BankState]] = {}


def states_of(name: str) -> list[BankState]:
    if name not in _cache:
        out: list[BankState] = []
        replay(DATA / f"{name}.jsonl", RECORDINGS[name], out.append)
        _cache[name] = out
    return _cache[name]


def at(name: str, t: float) -> BankState:
    return next(s for s in states_of(name) if s.snapshot.time == t)


@pytest.mark.parametrize("name", RECORDINGS)
def test_timeline_matches_the_checked_in_expectation(name: str) -> None:
    expected = json.loads((DATA / "replay_expected" / f"{name}.timeline.json").read_text())
    assert timeline(states_of(name)) == expected


@pytest.mark.parametrize("name", RECORDINGS)
def test_every_tick_keeps_the_safety_rules(name: str) -> None:
    states = states_of(name)
    config = RECORDINGS[name]
    interval = states[1].snapshot.time - states[0].snapshot.time
    assert [s.snapshot.time for s in states] == [i * interval for i in range(len(states))]  # one per tick
    previous, ever_active = None, False
    for state in states:
        lim, snap = state.limits, state.snapshot
        fresh = [s for s in snap.packs if s.fresh]
        stale = [s for s in snap.packs if s.active and not s.fresh]
        assert lim.charge_current <= 50.0 * len(fresh) + 1e-9  # default pack limit 50 A; stale packs: none
        dropout = config.pack_dropout_discharge_fraction
        bound = 75.0 * (len(fresh) + dropout * len(stale))
        if (
            not fresh and previous is not None
        ):  # BLOCK_ON_DISCONNECT = False may keep the last DCL, never more
            bound = max(bound, previous.discharge_current)
        assert lim.discharge_current <= bound + 1e-9
        cells = snap.cells_per_pack
        if cells:
            assert cells * config.min_cell_voltage - 1e-9 <= lim.charge_voltage
            assert lim.charge_voltage <= cells * config.soc_reset_cell_voltage + 1e-9
            if snap.max_cell_voltage is not None and snap.max_cell_voltage > config.max_cell_voltage:
                assert lim.charge_voltage <= max(snap.voltage, cells * config.min_cell_voltage) + 1e-9
        if ever_active:
            assert lim.charge_voltage > 0  # never a 0 V CVL once it was known
        total = sum(s.reading.info.current for s in fresh)
        if total >= config.share_min_bank_current:  # measured shares: nobody above its own limit
            for status in fresh:
                assert lim.charge_current * status.reading.info.current / total <= 50.0 + 1e-9
        if previous is not None and ever_active:  # the first limits after start are taken as they are
            rise = config.current_limit_rise_rate * interval
            assert lim.charge_current - previous.charge_current <= rise + 1e-9
        previous, ever_active = lim, ever_active or snap.active_packs > 0


def test_dropout_derates_at_once_and_recovers() -> None:
    assert at("replay_dropout", 30.0).limits.charge_current == 100.0  # settled, three packs
    dropped = at("replay_dropout", 31.0)  # link lost at 30.57
    assert not dropped.snapshot.packs[1].fresh and dropped.limits.charge_current < 75.0
    assert at("replay_dropout", 40.0).snapshot.active_packs == 3
    assert at("replay_dropout", 41.0).snapshot.active_packs == 2
    assert at("replay_dropout", 72.0).snapshot.active_packs == 3
    assert at("replay_dropout", 80.0).limits.charge_current == 100.0


def test_imbalance_raised_and_cleared_at_the_right_moments() -> None:
    flags = [(s.snapshot.time, s.imbalance) for s in states_of("replay_imbalance")]
    current_on = [t for t, imb in flags if imb.current]
    soc_on = [t for t, imb in flags if imb.soc]
    assert 30 < current_on[0] <= 90 and 150 < current_on[-1] + 1 <= 210  # degraded 30 s .. fixed 150 s
    assert soc_on[0] <= 30 and 210 < soc_on[-1] + 1 <= 270  # levelled at 210 s
    assert current_on == list(range(int(current_on[0]), int(current_on[-1]) + 1))  # no flapping
    assert not any(imb.voltage for _, imb in flags)
    assert at("replay_imbalance", 100.0).limits.charge_voltage == pytest.approx(16 * (3.45 - 0.05))
    assert not any(s.imbalance.any for s in states_of("bank3_weak"))  # an aged pack is not a fault


def test_json_output_is_one_object_per_tick(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        cli(
            [
                "replay",
                str(DATA / "replay_dropout.jsonl"),
                "--json",
                "--config",
                str(DATA / "replay_config.ini"),
            ]
        )
        == 0
    )
    out, err = capsys.readouterr()
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 181 and rows[31]["packs"][1]["state"] == "stale"
    assert rows[31]["limits"]["ccl"] == pytest.approx(71.1, abs=0.05) and "replay: 180 s" in err


def test_table_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["replay", str(DATA / "replay_imbalance.jsonl")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["t/s", "packs", "V"]
    assert any("..S" in line and "soc imbalance" in line for line in out)
    assert any(".IS" in line for line in out)


def test_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    target = tmp_path / "bank.png"
    assert cli(["replay", str(DATA / "replay_dropout.jsonl"), "--json", "--plot", str(target)]) == 0
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_inputs_fail_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["replay", str(tmp_path / "missing.jsonl")]) == 2
    assert "missing.jsonl" in capsys.readouterr().err
    broken = tmp_path / "broken.jsonl"
    broken.write_text((DATA / "sample.jsonl").read_text() + "{not json\n")
    assert cli(["replay", str(broken)]) == 2
    assert "broken.jsonl:7" in capsys.readouterr().err
    bad_config = tmp_path / "c.ini"
    bad_config.write_text("SOC_IMBALANCE_TRESHOLD = 5\n")
    assert cli(["replay", str(DATA / "sample.jsonl"), "--config", str(bad_config)]) == 2
    assert "did you mean SOC_IMBALANCE_THRESHOLD" in capsys.readouterr().err


def test_packs_listed_in_the_config_keep_their_own_limits(tmp_path: Path) -> None:
    from btbattery.commands.replay import pack_specs

    pack_file = tmp_path / "p2.ini"
    pack_file.write_text("MAX_PACK_CHARGE_CURRENT = 12\n")
    config_file = tmp_path / "c.ini"
    config_file.write_text(f"BATTERY_ADDRESSES = a4:c1:37:20:00:02:{pack_file}\n")
    config = load_config(config_file, search_dirs=())
    specs = pack_specs(("A4:C1:37:20:00:01", "A4:C1:37:20:00:02"), config)
    assert [(s.number, s.charge_limit) for s in specs] == [(1, config.max_pack_charge_current), (2, 12.0)]


def test_the_charge_mode_text_says_when_the_cells_hold_the_cvl() -> None:
    """/Info/ChargeMode names the mode and, while a cell holds the CVL down, says so (serialbattery's
    "Cell OVP"); the runaway recording crosses MAX_CELL_VOLTAGE at 17 s."""
    assert at("replay_runaway_cell", 10.0).charge_mode == "Bulk"
    assert at("replay_runaway_cell", 20.0).charge_mode == "Bulk (CVL held by the cells)"
    assert at("replay_full_day", 900.0).charge_mode == "Float"
