"""LinkQuality's bookkeeping: % of requests answered over the last minute."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from btbattery.link.answers import AnswerWindow


def test_nothing_sent_is_unknown_not_zero() -> None:
    assert AnswerWindow().quality(0.0) is None


def test_answered_unanswered_and_expiry() -> None:
    window = AnswerWindow(60.0)
    for t in range(10):
        window.sent(float(t))
        window.answered()
    window.sent(10.0)
    assert window.quality(10.5) == 100  # still in flight: not counted yet
    window.answered()  # the answer belongs to the latest request only, once
    window.answered()
    assert window.quality(11.0) == 100
    window.sent(11.0)  # this one times out: it counts once the next one is sent
    window.sent(12.0)
    assert window.quality(12.5) == 11 * 100 // 12
    assert window.quality(69.5) == 50  # requests at 0..9 s have left the window, 10 and 11 s are in
    assert window.quality(72.0) is None  # everything left: unknown again


def test_a_window_must_have_a_length() -> None:
    with pytest.raises(ValueError):
        AnswerWindow(0.0)


@given(st.lists(st.tuples(st.floats(0, 5), st.booleans()), max_size=200), st.floats(0, 120))
def test_quality_is_the_share_answered_inside_the_window(
    steps: list[tuple[float, bool]], later: float
) -> None:
    window, t, log = AnswerWindow(60.0), 0.0, []
    for gap, answered in steps:
        t += gap
        window.sent(t)
        if answered:
            window.answered()
        log.append((t, answered))
    now = t + later
    if log and not log[-1][1]:
        log.pop()  # the latest request, unanswered so far, may still be answered: not counted yet
    inside = [ok for sent, ok in log if sent > now - 60.0]
    quality = window.quality(now)
    if not inside:
        assert quality is None
    else:
        assert quality == sum(inside) * 100 // len(inside)
        assert (quality == 100) == all(inside)


def test_an_outage_counts_the_requests_it_kept_from_being_sent() -> None:
    window = AnswerWindow(60.0, request_interval=0.5)
    window.down(0.0)  # not connected yet: start-up is not a bad link
    window.up(2.0)
    for k in range(2 * 30):  # 30 s of polling, every request answered
        window.sent(2.0 + k * 0.5)
        window.answered()
    window.down(32.0)  # the link drops...
    assert window.quality(38.0) == 60 * 100 // 72  # ...6 s = 12 requests not sent, counted while down
    window.up(38.0)  # ...and is back: the same 12 are now entries of their own
    assert window.quality(38.0) == 60 * 100 // 72
    assert window.quality(95.0) == 0  # only the missed ones are still inside the window (35.5..38 s)
    assert window.quality(98.1) is None  # and then nothing is
