"""The flight recorder: the last minutes of every pack's raw BLE traffic and link events, kept in memory and
written as a recording (:mod:`btbattery.replay`'s format) when something goes wrong or someone asks.

Memory is bounded by the ring, not by the traffic: records are packed into segments of
:data:`SEGMENT_SECONDS` (a 12-byte header plus the bytes that crossed the link), whole segments are dropped
when older than RECORDER_MINUTES, and the oldest are dropped early when the ring would grow past
``RECORDER_MINUTES x 60 x packs x`` :data:`BYTES_PER_PACK_SECOND` (a 16-cell pack polled every second
carries about 250 bytes a second). The hot path (one notification) is one ``struct.pack`` and a
``bytearray`` extend; turning the ring into JSON Lines happens only when a file is written, off the loop.

What makes an incident is pure (:func:`incidents`), so it is tested without a clock; :class:`Incidents`
adds the rate limit (one automatic file per :data:`INCIDENT_MIN_GAP`) and waits :data:`INCIDENT_TAIL`
after the trigger so the file shows what happened next too.
"""

from __future__ import annotations

import datetime
import itertools
import logging
import os
import re
import struct
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from btbattery.model import BankState, LinkEvent, LinkState, Protection
from btbattery.protocol.jbd import redact

log = logging.getLogger(__name__)

SEGMENT_SECONDS = 10.0
BYTES_PER_PACK_SECOND = 1024  # the ring's byte budget per pack and second of RECORDER_MINUTES
INCIDENT_MIN_GAP = 300.0  # s between automatic recordings; one file holds RECORDER_MINUTES anyway
INCIDENT_TAIL = 5.0  # s of aftermath recorded after the trigger before the file is written

TX, RX, LINK = 0, 1, 2  # record kinds
_DIRECTION = {TX: "tx", RX: "rx"}
_HEAD = struct.Struct("<dBBH")  # time (monotonic s), pack number, kind, payload length


@dataclass
class _Segment:
    start: float
    data: bytearray = field(default_factory=bytearray)


class FlightRecorder:
    """``recorder.traffic(pack, TX, bytes)`` / ``recorder.link(event)`` on the hot path;
    ``recorder.snapshot()`` then :func:`write_recording` to turn the ring into a file."""

    def __init__(
        self,
        packs: Sequence[str],
        minutes: float,
        poll_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.packs = tuple(packs)  # addresses; pack number n is packs[n - 1]
        self.minutes = minutes
        self.poll_interval = poll_interval
        self.clock = clock
        self.max_bytes = int(minutes * 60 * max(1, len(self.packs)) * BYTES_PER_PACK_SECOND)
        self._segment_bytes = max(4096, self.max_bytes // 16)
        self._ring: deque[_Segment] = deque()
        self._bytes = 0
        # each pack's link state at the start of the ring (updated as old segments go), so a capture says
        # where every link stood when its window opens
        self._state_at_start: dict[int, tuple[str, str]] = {}
        self.records = 0  # kept since start, for the benchmark and Status

    @property
    def enabled(self) -> bool:
        return self.minutes > 0

    @property
    def size(self) -> int:
        """Bytes held in the ring now."""
        return self._bytes

    # ----- hot path ---------------------------------------------------------------------------------

    def traffic(self, pack: int, kind: int, data: bytes) -> None:
        # A password frame is redacted before it enters memory, not only when a file is written.
        self._append(pack, kind, redact(bytes(data)))

    def link(self, event: LinkEvent) -> None:
        self._append(event.pack, LINK, f"{event.state.value}\0{event.reason}".encode()[:1000])

    def _append(self, pack: int, kind: int, payload: bytes) -> None:
        if not self.enabled:
            return
        now = self.clock()
        ring = self._ring
        if not ring or now - ring[-1].start >= SEGMENT_SECONDS or len(ring[-1].data) >= self._segment_bytes:
            ring.append(_Segment(now))
            self._evict(now)
        segment = ring[-1].data
        segment += _HEAD.pack(now, pack & 0xFF, kind, len(payload))
        segment += payload
        self._bytes += _HEAD.size + len(payload)
        self.records += 1

    def _evict(self, now: float) -> None:
        """Drop whole segments that are too old, or the oldest while over the byte budget (not the newest)."""
        horizon = now - self.minutes * 60
        ring = self._ring
        while len(ring) > 1 and (ring[1].start <= horizon or self._bytes > self.max_bytes):
            old = ring.popleft()
            self._bytes -= len(old.data)
            for _t, pack, kind, payload in _records(bytes(old.data)):
                if kind == LINK:
                    state, _, reason = payload.decode(errors="replace").partition("\0")
                    self._state_at_start[pack] = (state, reason)

    # ----- capture ----------------------------------------------------------------------------------

    def snapshot(self) -> RingCopy:
        """A copy of the ring to write from another thread (bytes are immutable, the copy is cheap)."""
        return RingCopy(
            self.packs,
            self.poll_interval,
            [bytes(s.data) for s in self._ring],
            dict(self._state_at_start),
            self.minutes,
        )


@dataclass(frozen=True)
class RingCopy:
    packs: tuple[str, ...]
    poll_interval: float
    segments: list[bytes]
    state_at_start: dict[int, tuple[str, str]]
    minutes: float

    def events(self) -> Iterator[object]:
        """:class:`~btbattery.replay.Traffic` / :class:`~btbattery.replay.LinkChange`, t from the first."""
        from btbattery.replay import LinkChange, Traffic

        records = itertools.chain.from_iterable(_records(s) for s in self.segments)
        first = next(records, None)
        if first is None:
            return
        t0 = first[0]
        for pack, (state, reason) in sorted(self.state_at_start.items()):
            if 1 <= pack <= len(self.packs):
                yield LinkChange(0.0, self.packs[pack - 1], LinkState(state), reason)
        for t, pack, kind, payload in itertools.chain((first,), records):
            if not 1 <= pack <= len(self.packs):
                continue
            address = self.packs[pack - 1]
            if kind == LINK:
                state, _, reason = payload.decode(errors="replace").partition("\0")
                yield LinkChange(t - t0, address, LinkState(state), reason)
            else:
                yield Traffic(t - t0, address, _DIRECTION[kind], payload)


def _records(data: bytes) -> Iterator[tuple[float, int, int, bytes]]:
    offset, size = 0, _HEAD.size
    while offset + size <= len(data):
        t, pack, kind, length = _HEAD.unpack_from(data, offset)
        offset += size
        yield t, pack, kind, data[offset : offset + length]
        offset += length


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "capture"


def write_recording(ring: RingCopy, directory: str | Path, reason: str, max_files: int) -> Path:
    """Write ``ring`` as a recording named after the wall clock and ``reason``; keep the newest
    ``max_files`` recordings in ``directory``. Raises OSError (the caller reports it)."""
    from btbattery import __version__
    from btbattery.replay import Header, RecordingWriter

    folder = Path(directory)
    # Only the folder itself is made: its parent (/data/log on a GX) must exist, so a machine without it
    # gets a clear error instead of a new tree outside the install.
    folder.mkdir(exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    stem = f"capture-{now:%Y%m%dT%H%M%SZ}-{_slug(reason)}"
    path = folder / f"{stem}.jsonl"
    for n in itertools.count(2):
        if not path.exists():
            break
        path = folder / f"{stem}-{n}.jsonl"
    header = Header(
        packs=ring.packs,
        poll_interval=ring.poll_interval,
        meta={
            "source": "flight recorder",
            "reason": reason,
            "captured_at": now.isoformat(timespec="seconds"),
            "program": f"dbus-btbattery {__version__}",
            "minutes": ring.minutes,
        },
    )
    partial = path.with_suffix(".part")
    with partial.open("w", encoding="utf-8") as out:
        RecordingWriter(out, header).write_all(ring.events())  # type: ignore[arg-type]
    os.replace(partial, path)  # a reader never sees half a file
    prune(folder, max_files)
    return path


def prune(folder: Path, max_files: int) -> None:
    """Remove the oldest recordings beyond ``max_files`` (names sort by time)."""
    files = sorted(folder.glob("capture-*.jsonl"), key=lambda p: (p.stat().st_mtime, p.name))
    for old in files[: max(0, len(files) - max_files)]:
        try:
            old.unlink()
        except OSError as exc:
            log.warning("cannot remove old recording %s: %s", old, exc)


# ----- incidents --------------------------------------------------------------------------------------


def incidents(before: BankState | None, after: BankState) -> list[str]:
    """What went wrong between two consecutive bank states, in words (empty: nothing)."""
    if before is None:
        return []
    found = []
    previous = {p.pack: p for p in before.snapshot.packs}
    for pack in after.snapshot.packs:
        was = previous.get(pack.pack)
        if was is None:
            continue
        if was.active and not pack.active:
            found.append(f"pack {pack.pack} dropped out of the bank (link {pack.link_state})")
        old = was.reading.info.protection if was.reading is not None else Protection.NONE
        new = pack.reading.info.protection if pack.reading is not None else Protection.NONE
        risen = Protection(new & ~old)
        if risen:
            found.append(f"pack {pack.pack} protection: {', '.join(risen.names())}")
    for name, old_limit, new_limit in (
        ("CCL", before.limits.charge_current, after.limits.charge_current),
        ("DCL", before.limits.discharge_current, after.limits.discharge_current),
    ):
        if old_limit > 0 and new_limit <= 0:
            why = "; ".join(after.limits.reasons)
            found.append(f"{name} fell to 0 A" + (f" ({why})" if why else ""))
    return found


def link_incident(event: LinkEvent, previous: LinkState | None) -> str | None:
    """A link that was polling and went down."""
    if previous == LinkState.POLLING and event.state == LinkState.BACKOFF:
        return f"pack {event.pack} link lost" + (f" ({event.reason})" if event.reason else "")
    return None


class Incidents:
    """Turns incident words into at most one automatic recording per :data:`INCIDENT_MIN_GAP`.

    ``capture(reason)`` is called :data:`INCIDENT_TAIL` s after the first trigger of a burst; later triggers
    within the gap are only logged (the file already holds the minutes before them)."""

    def __init__(
        self,
        schedule: Callable[[float, Callable[[], None]], object],
        capture: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
        min_gap: float = INCIDENT_MIN_GAP,
        tail: float = INCIDENT_TAIL,
    ) -> None:
        self._schedule = schedule
        self._capture = capture
        self._clock = clock
        self._min_gap = min_gap
        self._tail = tail
        self._last: float | None = None
        self._pending: list[str] = []
        self.triggers = 0

    def __call__(self, what: str) -> None:
        self.triggers += 1
        now = self._clock()
        if self._pending:
            self._pending.append(what)
            return
        if self._last is not None and now - self._last < self._min_gap:
            log.info(
                "incident: %s (the recording of %.0f s ago covers the time before it)", what, now - self._last
            )
            return
        self._last = now
        self._pending.append(what)
        log.warning("incident: %s; recording in %.0f s", what, self._tail)
        self._schedule(self._tail, self._fire)

    def _fire(self) -> None:
        reasons, self._pending = self._pending, []
        if reasons:
            self._capture("; ".join(dict.fromkeys(reasons)))


class ErrorTrigger(logging.Handler):
    """An unexpected error is an incident: any ERROR the service logs (but the recorder's own)."""

    def __init__(self, on_error: Callable[[str], None]) -> None:
        super().__init__(logging.ERROR)
        self._on_error = on_error

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(("btbattery.recorder", "btbattery.dbus.recorder")):
            return
        try:
            self._on_error(f"error: {record.getMessage()[:120]}")
        except Exception:  # a handler must never raise into the code that logged
            self.handleError(record)
