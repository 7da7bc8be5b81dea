"""doctor's verdict and report are pure: findings in, exit code and text out."""

from btbattery.commands.doctor import (
    LINK_ADVICE,
    OK,
    PROBLEM,
    SKIPPED,
    UNKNOWN,
    WARNING,
    Finding,
    _pack_from_service,
    report,
    verdict,
)


def test_problems_win_over_unchecked_and_warnings_are_advice() -> None:
    assert verdict([Finding("a", OK, ""), Finding("b", WARNING, ""), Finding("c", SKIPPED, "")]) == 0
    assert verdict([Finding("a", OK, ""), Finding("b", UNKNOWN, "")]) == 2
    assert verdict([Finding("a", UNKNOWN, ""), Finding("b", PROBLEM, "")]) == 1


def test_report_lists_each_check_then_the_verdict_and_the_next_steps() -> None:
    findings = [Finding("bluez", OK, "answers"), Finding("pack 2", PROBLEM, "not heard", "move closer")]
    text = report(findings, verdict(findings))
    assert text.splitlines()[:2] == ["[ok  ] bluez            answers", "[FAIL] pack 2           not heard"]
    assert text.endswith("verdict: problems found\nnext steps:\n  - pack 2: move closer")


SERVICE = {
    "/Parallel/Battery1/Address": "A4:C1:37:00:00:01",
    "/Parallel/Battery1/LinkState": "backoff",
    "/Parallel/Battery2/Address": "A4:C1:37:00:00:02",
    "/Parallel/Battery2/LinkState": "polling",
    "/Parallel/Battery2/Voltage": 53.2,
}


def test_a_running_services_pack_states_get_their_advice() -> None:
    polling = _pack_from_service(2, "A4:C1:37:00:00:02", SERVICE, {"Connected": True, "RSSI": -70})
    assert polling.status == OK and "answering (53.2 V)" in polling.summary and "-70 dBm" in polling.summary
    backing_off = _pack_from_service(1, "A4:C1:37:00:00:01", SERVICE, None)
    assert (backing_off.status, backing_off.next_step) == LINK_ADVICE["backoff"]
    stranger = _pack_from_service(3, "A4:C1:37:00:00:03", SERVICE, None)
    assert stranger.status == PROBLEM and "not one of the running service's packs" in stranger.summary


def test_a_pack_connected_but_not_polled_by_the_service_is_held_by_another_client() -> None:
    held = _pack_from_service(1, "A4:C1:37:00:00:01", SERVICE, {"Connected": True})
    assert held.status == PROBLEM and held.details["held_by_other"] and "another program" in held.next_step
