"""How many of the requests meant for one pack were answered over the last minute (``LinkQuality``).

Pure bookkeeping, no I/O. The link calls :meth:`AnswerWindow.sent` when it asks the pack something and
:meth:`AnswerWindow.answered` when the answer comes, so a request that timed out or was lost with the link
stays unanswered without a separate path for each way of failing. The request in flight is not counted
until the next one is sent or the link goes down: it may yet be answered.

While the link is down (after it had worked once) nothing can be asked, yet the pack is not answering: the
requests the link would have sent at its polling rate count as unanswered, so a pack that was gone for 6 s
of the last minute shows 90 %, not the 100 % of the few requests that happened to be sent. Before the
first connection it is unknown.
"""

from __future__ import annotations

import math
from collections import deque

LINK_QUALITY_WINDOW = 60.0  # s


class AnswerWindow:
    """``sent(t)`` then ``answered()``; ``down(t)`` / ``up(t)`` around outages; ``quality(now)`` -> %."""

    __slots__ = ("_answered", "_down_since", "_in_flight", "_polled", "_requests", "request_interval", "span")

    def __init__(self, span: float = LINK_QUALITY_WINDOW, request_interval: float = 0.5) -> None:
        if span <= 0 or request_interval <= 0:
            raise ValueError("the window and the request interval must be longer than 0 s")
        self.span = span
        self.request_interval = request_interval  # s between requests while polling
        self._requests: deque[list[float | bool]] = deque()  # [time sent, answered]
        self._answered = 0
        self._down_since: float | None = None
        self._polled = False  # the link has polled at least once
        self._in_flight = False  # the latest request may still be answered

    def sent(self, time: float) -> None:
        self._requests.append([time, False])
        self._in_flight = True
        self._expire(time)

    def answered(self) -> None:
        """The latest request got its answer (JBD has one request in flight at a time)."""
        if self._in_flight:
            self._requests[-1][1] = True
            self._answered += 1
            self._in_flight = False

    def down(self, time: float) -> None:
        """The link stopped polling (ignored before it ever polled, and while already down)."""
        self._in_flight = False  # lost with the link
        if self._polled and self._down_since is None:
            self._down_since = time

    def up(self, time: float) -> None:
        """Polling (again): an outage's missed requests become unanswered entries of their own."""
        self._polled = True
        if self._down_since is None:
            return
        start, self._down_since = self._down_since, None
        step = self.request_interval
        self._requests.extend([start + k * step, False] for k in self._missed(start, time))
        self._expire(time)

    def quality(self, now: float) -> int | None:
        """Whole % answered, rounded down (100 only when nothing was missed); None before any request."""
        self._expire(now)
        missed = 0 if self._down_since is None else len(self._missed(self._down_since, now))
        total = len(self._requests) - self._in_flight + missed
        if not total:
            return None
        return self._answered * 100 // total

    def _missed(self, start: float, end: float) -> range:
        """k of the requests due at ``start + k * request_interval`` up to ``end`` that are still in the
        window (later than ``end - span``)."""
        step = self.request_interval
        first = max(1, math.floor((end - self.span - start) / step) + 1)
        return range(first, math.floor((end - start) / step) + 1)

    def _expire(self, now: float) -> None:
        requests, oldest = self._requests, now - self.span
        while requests and requests[0][0] <= oldest:
            if requests.popleft()[1]:
                self._answered -= 1
        if not requests:
            self._in_flight = False
