"""Start and stop safety, the disconnect policy and the bank alerts, as pure functions of time and banks.

Invariants (hypothesis, over sequences of generated banks): no valid 0 V CVL is ever published; while no pack
is fresh the CCL is 0 and the DCL never rises; the stop limits have CCL 0 and nothing above the last limits.
"""

from __future__ import annotations

import dataclasses

from bankgen import NOW, banks
from hypothesis import given, settings
from hypothesis import strategies as st

from btbattery.app import stop_state
from btbattery.config import default_config
from btbattery.dbus.battery import limit_values
from btbattery.model import (
    BankState,
    BasicInfo,
    CellVoltages,
    ChargeLimits,
    ImbalanceStatus,
    LinkState,
    PackReading,
    PackStatus,
    Protection,
)
from btbattery.pipeline.aggregate import aggregate
from btbattery.pipeline.alerts import ALARM, OK, WARNING, AlertTracker, low_soc_level
from btbattery.pipeline.disconnect import STOPPING, DisconnectPolicy

CONFIG = default_config()
limits = st.builds(
    ChargeLimits,
    st.one_of(st.just(0.0), st.floats(40, 60)),
    st.floats(0, 200),
    st.floats(0, 300),
)


def blind(snapshot):
    """The same bank with every pack's data gone stale (still shown, nothing fresh)."""
    packs = tuple(dataclasses.replace(p, fresh=False) for p in snapshot.packs)
    return aggregate(snapshot.time, packs)


# ---- publishing: no valid 0 V CVL, ever ----


@given(st.lists(limits, min_size=1, max_size=30))
def test_no_valid_zero_volt_cvl_and_invalid_until_the_first_real_one(sequence) -> None:
    last_cvl = None
    for tick in sequence:
        values = limit_values(tick, last_cvl)
        cvl = values["/Info/MaxChargeVoltage"]
        assert cvl is None or cvl > 0
        if cvl is None:
            assert all(tick.charge_voltage == 0 for tick in sequence[: sequence.index(tick) + 1])
            assert values["/Info/MaxChargeCurrent"] is None and values["/Io/AllowToCharge"] == 0
        else:
            assert values["/Io/AllowToCharge"] == int(values["/Info/MaxChargeCurrent"] > 0)
            assert values["/Io/AllowToDischarge"] == int(values["/Info/MaxDischargeCurrent"] > 0)
        last_cvl = cvl


# ---- the disconnect policy ----


@settings(max_examples=150, deadline=None)
@given(banks(), limits, st.booleans(), st.lists(st.tuples(st.floats(0, 120), limits), max_size=8))
def test_blind_bank_never_charges_and_its_dcl_never_rises(bank, before, block, later) -> None:
    snapshot, _ = bank
    config = dataclasses.replace(CONFIG, block_on_disconnect=block)
    policy = DisconnectPolicy(config)
    first = policy.apply(snapshot, before, NOW)
    dcl_ceiling = first.discharge_current
    now = NOW
    for step, computed in later:
        now += step
        out = policy.apply(blind(snapshot), computed, now)
        assert out.charge_current == 0
        assert out.discharge_current <= max(dcl_ceiling, computed.discharge_current)
        if block:
            assert out.discharge_current == computed.discharge_current  # nothing kept: the rules decide
        stop = policy.stop_limits(out, now)
        assert stop.charge_current == 0 and stop.charge_voltage == out.charge_voltage
        assert stop.discharge_current <= out.discharge_current


def _fresh_bank(min_cell: float, max_cell: float, soc: int = 50):
    """Two fresh 4-cell packs whose cells span min_cell..max_cell."""
    statuses = []
    for number in (1, 2):
        cells = (min_cell, min_cell, max_cell, max_cell)
        info = BasicInfo(
            voltage=sum(cells), current=-10.0, remaining_capacity=50.0, nominal_capacity=100.0, cycles=1,
            production_date=None, balance_bits=0, protection=Protection.NONE, software_version=3.8, soc=soc,
            charge_fet=True, discharge_fet=True, cell_count=4, temperatures=(20.0,),
        )  # fmt: skip
        address = f"A4:C1:37:00:00:0{number}"
        reading = PackReading(number, address, 0.0, info, CellVoltages(cells))
        statuses.append(PackStatus(number, address, LinkState.POLLING, reading, True, True))
    return aggregate(0.0, tuple(statuses))


def test_dcl_is_kept_for_the_timeout_only_when_the_last_cells_were_in_the_band() -> None:
    snapshot = _fresh_bank(3.30, 3.34)
    policy = DisconnectPolicy(CONFIG)
    normal = ChargeLimits(53.6, 80.0, 120.0, (), "x", "y")
    assert policy.apply(snapshot, normal, 0.0) == normal
    lost = ChargeLimits(53.6, 0.0, 0.0, ("no active pack",), "no active pack", "no active pack")
    held = policy.apply(blind(snapshot), lost, 10.0)
    assert (held.charge_current, held.discharge_current) == (0.0, 120.0)
    assert "BLOCK_ON_DISCONNECT" in held.discharge_reason
    timeout = CONFIG.block_on_disconnect_timeout_minutes * 60
    assert policy.apply(blind(snapshot), lost, 10.0 + timeout - 1).discharge_current == 120.0
    assert policy.apply(blind(snapshot), lost, 10.0 + timeout).discharge_current == 0.0

    high = DisconnectPolicy(CONFIG)  # last cells above the band: blocked at once
    high.apply(_fresh_bank(3.30, 3.40), normal, 0.0)
    assert high.apply(blind(snapshot), lost, 10.0).discharge_current == 0.0
    blocking = DisconnectPolicy(dataclasses.replace(CONFIG, block_on_disconnect=True))
    blocking.apply(snapshot, normal, 0.0)
    assert blocking.apply(blind(snapshot), lost, 10.0).discharge_current == 0.0
    assert blocking.stop_limits(normal, 0.0).discharge_current == 0.0


def test_stop_state_publishes_ccl_zero_the_policy_dcl_and_the_last_cvl() -> None:
    snapshot = _fresh_bank(3.30, 3.34)
    policy = DisconnectPolicy(CONFIG)
    normal = ChargeLimits(53.6, 80.0, 120.0)
    policy.apply(snapshot, normal, 0.0)
    state = BankState(snapshot, ImbalanceStatus(), normal, True, stop_limits=policy.stop_limits(normal, 0.0))
    stopped = stop_state(state)
    assert (stopped.limits.charge_voltage, stopped.limits.charge_current) == (53.6, 0.0)
    assert stopped.limits.discharge_current == 120.0
    assert stopped.limits.charge_reason == STOPPING
    assert stopped.alerts.bms_cable == OK
    assert stop_state(state, no_data=True).alerts.bms_cable == ALARM
    bare = stop_state(BankState(snapshot, ImbalanceStatus(), normal, True))  # from a fail-safe tick
    assert (bare.limits.charge_current, bare.limits.discharge_current) == (0.0, 0.0)


# ---- alerts ----


def test_low_soc_levels() -> None:
    assert [low_soc_level(soc, 20, 10) for soc in (None, 50, 20, 19.9, 10, 9.9)] == [
        None,
        OK,
        OK,
        WARNING,
        WARNING,
        ALARM,
    ]


def test_the_low_soc_level_stays_while_no_soc_is_known() -> None:
    tracker = AlertTracker(CONFIG, 0.0)
    assert tracker.update(_fresh_bank(3.0, 3.1, soc=5), 0.0).low_soc == ALARM
    gone = aggregate(
        1.0, tuple(dataclasses.replace(p, fresh=False, active=False) for p in _fresh_bank(3, 3).packs)
    )
    assert gone.soc is None and tracker.update(gone, 1.0).low_soc == ALARM
    assert tracker.update(_fresh_bank(3.3, 3.3, soc=60), 2.0).low_soc == OK


def test_bms_cable_warns_for_one_lost_pack_and_alarms_for_a_blind_bank() -> None:
    snapshot = _fresh_bank(3.30, 3.34)
    tracker = AlertTracker(CONFIG, 0.0)
    after = CONFIG.bms_cable_alarm
    assert tracker.update(snapshot, 0.0).bms_cable == OK
    one_lost = dataclasses.replace(snapshot.packs[1], fresh=False, active=False)
    partial = aggregate(1.0, (snapshot.packs[0], one_lost))
    assert tracker.update(partial, after - 1).bms_cable == OK
    assert tracker.update(partial, after).bms_cable == WARNING
    gone = aggregate(1.0, tuple(dataclasses.replace(p, fresh=False, active=False) for p in snapshot.packs))
    assert tracker.update(gone, after + 1).bms_cable == WARNING
    assert tracker.update(gone, 2 * after).bms_cable == ALARM
    assert tracker.update(snapshot, 2 * after + 1).bms_cable == OK
    off = AlertTracker(dataclasses.replace(CONFIG, bms_cable_alarm=0.0), 0.0)
    assert off.update(gone, 1e6).bms_cable == OK


def test_charge_request_from_under_voltage_until_recharged() -> None:
    tracker = AlertTracker(CONFIG, 0.0)
    assert not tracker.update(_fresh_bank(3.20, 3.25), 0.0).charge_request
    low = dataclasses.replace(_fresh_bank(2.80, 2.90), protection=Protection.CELL_UNDERVOLTAGE)
    assert tracker.update(low, 1.0).charge_request
    gone = aggregate(2.0, tuple(dataclasses.replace(p, fresh=False, active=False) for p in low.packs))
    assert tracker.update(gone, 2.0).charge_request  # no news: the request stays
    assert tracker.update(_fresh_bank(3.05, 3.08), 3.0).charge_request  # charging, still tapered
    recharged = _fresh_bank(3.12, 3.15)
    assert recharged.soc is not None and recharged.soc > CONFIG.soc_low_alarm
    assert not tracker.update(recharged, 4.0).charge_request
    below = _fresh_bank(CONFIG.cell_undervoltage - 0.01, 3.2)  # the DCL rule's own threshold
    assert AlertTracker(CONFIG, 0.0).update(below, 0.0).charge_request
