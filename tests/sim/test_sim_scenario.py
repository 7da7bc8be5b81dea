"""Scenario files: the built-ins load and run, bad files say which file and key, changes and faults apply."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from btbattery.sim.scenario import (
    FAULT_KINDS,
    ScenarioError,
    builtin_names,
    load_scenario,
    parse_scenario,
)

MINIMAL = {"packs": [{"address": "A4:C1:37:00:00:01"}]}


def test_every_builtin_scenario_loads_and_builds_a_bank() -> None:
    assert {"default", "dropout", "imbalance", "weak3"} <= set(builtin_names())
    for name in builtin_names():
        scenario = load_scenario(name)
        assert scenario.name == name
        bank = scenario.build_bank()
        assert len(bank.packs) == len(scenario.packs) >= 1
        scenario.advance(bank, 0.0, 1.0)
        assert sum(bank.pack_currents) == pytest.approx(scenario.bank_current(0.0))


def test_default_has_an_older_third_pack() -> None:
    packs = load_scenario("default").packs
    assert len(packs) == 3
    assert packs[2].resistance_ohm > packs[0].resistance_ohm
    assert packs[2].capacity_ah < packs[0].capacity_ah
    assert all(p.address.startswith("A4:C1:37:") for p in packs)


def test_dropout_drops_pack_two_for_about_forty_seconds() -> None:
    scenario = load_scenario("dropout")
    (fault,) = scenario.faults
    assert (fault.pack, fault.kind) == (2, "drop")
    assert 25 <= fault.at <= 35 and 35 <= fault.duration <= 45
    assert scenario.faults_for(2, fault.at + 1) == [fault]
    assert scenario.faults_for(1, fault.at + 1) == []
    assert scenario.faults_for(2, fault.at + fault.duration) == []


def test_load_profile_repeats() -> None:
    doc = {**MINIMAL, "load": [{"duration": 10, "current": 5}, {"duration": 20, "current": -7}]}
    scenario = parse_scenario(json.dumps(doc), "x.json")
    assert [scenario.bank_current(t) for t in (0, 9.9, 10, 29.9, 30, 45)] == [5, 5, -7, -7, 5, -7]
    assert parse_scenario(json.dumps(MINIMAL), "x.json").bank_current(12.0) == 0.0


def test_defaults_apply_to_every_pack_and_packs_override_them() -> None:
    doc = {
        "defaults": {"capacity_ah": 50, "soc": 40},
        "packs": [{"soc": 70}, {"capacity_ah": 80, "production_date": "2021-02-03"}],
    }
    a, b = parse_scenario(json.dumps(doc), "x.json").packs
    assert (a.capacity_ah, a.soc, b.capacity_ah, b.soc) == (50, 70, 80, 40)
    assert a.address != b.address  # generated when absent
    assert str(b.production_date) == "2021-02-03"


def test_imbalance_scenario_drifts_apart_then_clears() -> None:
    scenario = load_scenario("imbalance")
    bank = scenario.build_bank()
    spreads: dict[float, tuple[float, float]] = {}
    t = 0.0
    while t < scenario.duration:
        scenario.advance(bank, t, 1.0)
        t += 1.0
        if t in (20.0, 100.0, 200.0, 280.0):
            currents = bank.pack_currents
            socs = [p.true_soc for p in bank.packs]
            spreads[t] = (max(currents) - min(currents), max(socs) - min(socs))
    assert spreads[100.0][0] > 2 * spreads[20.0][0]  # the loose connection starves pack 2
    assert spreads[100.0][1] > 10  # SoC imbalance
    assert spreads[200.0][0] < spreads[100.0][0]  # fixed: current imbalance clears
    assert spreads[280.0][1] < 3  # levelled: SoC imbalance clears


def test_a_scenario_file_by_path(tmp_path: Path) -> None:
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({**MINIMAL, "seed": 9}), encoding="utf-8")
    scenario = load_scenario(str(path))
    assert (scenario.name, scenario.seed) == ("mine", 9)


def test_same_seed_same_bank_behaviour() -> None:
    def run(seed: int) -> list[bytes]:
        scenario = load_scenario("weak3")
        scenario = type(scenario)(**{**{f: getattr(scenario, f) for f in scenario.__slots__}, "seed": seed})
        bank = scenario.build_bank()
        out = []
        for step in range(30):
            scenario.advance(bank, float(step), 1.0)
            out += [p.respond(bytes.fromhex("dda50400fffc77")) or b"" for p in bank.packs]
        return out

    assert run(5) == run(5)
    assert run(5) != run(6)


@pytest.mark.parametrize(
    ("doc", "key"),
    [
        ({"packs": [{"capacity_ah": "big"}]}, "packs[0].capacity_ah"),
        ({"packs": [{"address": "nonsense"}]}, "packs[0].address"),
        ({"packs": [{"colour": "red"}]}, "packs[0].colour"),
        ({"packs": [{"soc": 150}]}, "packs[0].soc"),
        ({"packs": [{"cell_count": 40}]}, "packs[0].cell_count"),
        ({"packs": [{"resistance_ohm": 0}]}, "packs[0].resistance_ohm"),
        ({"packs": [{"production_date": "yesterday"}]}, "packs[0].production_date"),
        ({"packs": []}, "packs"),
        ({}, "packs"),
        ({**MINIMAL, "poll_interval": "fast"}, "poll_interval"),
        ({**MINIMAL, "surprise": 1}, "surprise"),
        ({**MINIMAL, "defaults": {"address": "A4:C1:37:00:00:09"}}, "defaults.address"),
        ({**MINIMAL, "load": [{"duration": 5}]}, "load[0]"),
        ({**MINIMAL, "load": [{"duration": -5, "current": 1}]}, "load[0].duration"),
        ({**MINIMAL, "faults": [{"at": 1, "pack": 1, "kind": "meteor"}]}, "faults[0].kind"),
        ({**MINIMAL, "faults": [{"at": 1, "pack": 2, "kind": "drop"}]}, "faults[0].pack"),
        ({**MINIMAL, "faults": [{"pack": 1, "kind": "drop"}]}, "faults[0].at"),
        (
            {**MINIMAL, "changes": [{"at": 1, "pack": 1, "set": {"cell_count": 8}}]},
            "changes[0].set.cell_count",
        ),
        ({**MINIMAL, "changes": [{"at": 1, "pack": 1, "set": {"soc": "full"}}]}, "changes[0].set.soc"),
        (
            {**MINIMAL, "changes": [{"at": 1, "pack": 1, "set": {"cell_soc": {"17": 90}}}]},
            "changes[0].set.cell_soc.17",
        ),
        (
            {"packs": [{"address": "A4:C1:37:00:00:01"}, {"address": "a4:c1:37:00:00:01"}]},
            "packs[1].address",
        ),
    ],
)
def test_bad_scenario_names_file_and_key(tmp_path: Path, doc: dict, key: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(ScenarioError) as error:
        load_scenario(str(path))
    assert str(error.value).startswith(f"{path}: {key}:"), str(error.value)


def test_unreadable_or_unknown_scenarios(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match=r"no such built-in scenario .*default"):
        load_scenario("no-such-scenario")
    with pytest.raises(ScenarioError, match=r"missing\.json: cannot read"):
        load_scenario(str(tmp_path / "missing.json"))
    broken = tmp_path / "broken.json"
    broken.write_text('{\n  "packs": [\n', encoding="utf-8")
    with pytest.raises(ScenarioError, match=rf"{broken}:3: not JSON"):
        load_scenario(str(broken))


def test_every_fault_kind_is_accepted() -> None:
    faults = [{"at": i, "pack": 1, "kind": kind, "duration": 1} for i, kind in enumerate(FAULT_KINDS)]
    scenario = parse_scenario(json.dumps({**MINIMAL, "faults": faults}), "x.json")
    assert [f.kind for f in scenario.faults] == list(FAULT_KINDS)


def test_changes_land_at_their_time() -> None:
    doc = {**MINIMAL, "changes": [{"at": 5, "pack": 1, "set": {"resistance_ohm": 0.08, "soc": 20}}]}
    scenario = parse_scenario(json.dumps(doc), "x.json")
    bank = scenario.build_bank()
    for step in range(5):
        scenario.advance(bank, float(step), 1.0)
    assert bank.packs[0].params.resistance_ohm == 0.02
    scenario.advance(bank, 5.0, 1.0)
    assert bank.packs[0].params.resistance_ohm == 0.08
    assert bank.packs[0].true_soc == pytest.approx(20, abs=0.5)
