"""Recordings: what crossed each pack's BLE link, with times, as JSON Lines.

One JSON object per line. The first line is a header; the rest are events in time order::

    {"format": "btbattery-recording", "version": 1, "packs": ["AA:BB:CC:DD:EE:01", ...], "poll_interval": 1.0}
    {"t": 0.512, "pack": "AA:BB:CC:DD:EE:01", "dir": "tx", "hex": "dda50300fffd77"}
    {"t": 0.540, "pack": "AA:BB:CC:DD:EE:01", "dir": "rx", "hex": "dd0300..."}   # one BLE notification
    {"t": 9.000, "pack": "AA:BB:CC:DD:EE:01", "link": "backoff", "reason": "link lost"}

``t`` is seconds from the start of the recording. ``rx`` lines hold notification chunks exactly as they
arrived (a frame may span several lines); ``link`` lines hold :class:`~btbattery.model.LinkState` values.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from btbattery.model import LinkState
from btbattery.protocol.jbd import redact

FORMAT = "btbattery-recording"
VERSION = 1


class RecordingError(ValueError):
    """A recording that cannot be read; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class Header:
    packs: tuple[str, ...]
    poll_interval: float = 1.0
    meta: dict[str, object] = field(default_factory=dict)  # free-form: scenario, seed, ...


@dataclass(frozen=True, slots=True)
class Traffic:
    """Bytes that crossed a link: ``tx`` = request written, ``rx`` = notification received."""

    t: float
    pack: str
    direction: str
    data: bytes


@dataclass(frozen=True, slots=True)
class LinkChange:
    t: float
    pack: str
    state: LinkState
    reason: str = ""


Event = Traffic | LinkChange


def _event_to_json(event: Event) -> dict[str, object]:
    if isinstance(event, Traffic):
        # Every recording (record, flight recorder) passes here: no password frame reaches a file.
        data = redact(event.data)
        return {"t": round(event.t, 6), "pack": event.pack, "dir": event.direction, "hex": data.hex()}
    line: dict[str, object] = {"t": round(event.t, 6), "pack": event.pack, "link": event.state.value}
    if event.reason:
        line["reason"] = event.reason
    return line


def _event_from_json(obj: dict[str, object]) -> Event:
    t = float(obj["t"])  # type: ignore[arg-type]
    pack = str(obj["pack"])
    if "link" in obj:
        return LinkChange(t, pack, LinkState(obj["link"]), str(obj.get("reason", "")))
    direction = obj["dir"]
    if direction not in ("rx", "tx"):
        raise ValueError(f"dir must be 'rx' or 'tx', not {direction!r}")
    return Traffic(t, pack, direction, bytes.fromhex(str(obj["hex"])))


class RecordingWriter:
    """Writes a recording line by line (flushes nothing itself: the caller owns the file)."""

    def __init__(self, stream: IO[str], header: Header) -> None:
        self._stream = stream
        head = {
            "format": FORMAT,
            "version": VERSION,
            "packs": list(header.packs),
            "poll_interval": header.poll_interval,
        }
        if header.meta:
            head["meta"] = header.meta
        self._write(head)

    def write(self, event: Event) -> None:
        self._write(_event_to_json(event))

    def write_all(self, events: Iterable[Event]) -> None:
        for event in events:
            self.write(event)

    def _write(self, obj: dict[str, object]) -> None:
        self._stream.write(json.dumps(obj, separators=(",", ":")) + "\n")


def _parse_header(obj: object, where: str) -> Header:
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise RecordingError(f"{where}: not a btbattery recording (first line must be its header)")
    if obj.get("version") != VERSION:
        raise RecordingError(f"{where}: recording version {obj.get('version')!r} is not {VERSION}")
    return Header(
        tuple(obj.get("packs", ())), float(obj.get("poll_interval", 1.0)), dict(obj.get("meta", {}))
    )


def read_recording(path: str | Path) -> tuple[Header, Iterator[Event]]:
    """Header and a lazy iterator of events. Bad lines raise :class:`RecordingError` naming the line."""
    path = Path(path)
    stream = path.open(encoding="utf-8")
    first = stream.readline()
    try:
        header = _parse_header(json.loads(first), f"{path}:1")
    except json.JSONDecodeError as exc:
        stream.close()
        raise RecordingError(f"{path}:1: not JSON ({exc.msg})") from None
    except RecordingError:
        stream.close()
        raise
    return header, _events(stream, path)


def _events(stream: IO[str], path: Path) -> Iterator[Event]:
    with stream:
        for number, line in enumerate(stream, start=2):
            if not line.strip():
                continue
            try:
                yield _event_from_json(json.loads(line))
            except (ValueError, KeyError, TypeError) as exc:
                raise RecordingError(f"{path}:{number}: bad event ({exc})") from None
