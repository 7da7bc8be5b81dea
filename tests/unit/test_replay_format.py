"""Recording format: writer/reader round trip, errors that name file:line, and the checked-in recording."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from btbattery.model import LinkState
from btbattery.replay import Header, LinkChange, RecordingError, RecordingWriter, Traffic, read_recording

DATA = Path(__file__).resolve().parents[1] / "data"
BANK3_WEAK = DATA / "bank3_weak.jsonl"
PACKS = ("A4:C1:37:00:00:01", "A4:C1:37:00:00:02")


def write(path: Path, header: Header, events: list) -> None:
    buffer = io.StringIO()
    RecordingWriter(buffer, header).write_all(events)
    path.write_text(buffer.getvalue(), encoding="utf-8")


def test_round_trip(tmp_path: Path) -> None:
    events = [
        LinkChange(0.0, PACKS[0], LinkState.CONNECTING),
        Traffic(0.5, PACKS[0], "tx", bytes.fromhex("dda50300fffd77")),
        Traffic(0.54, PACKS[0], "rx", bytes.fromhex("dd03001b")),
        LinkChange(9.25, PACKS[1], LinkState.BACKOFF, "link lost"),
    ]
    header = Header(PACKS, 2.0, {"scenario": "test", "seed": 3})
    path = tmp_path / "r.jsonl"
    write(path, header, events)
    got_header, got = read_recording(path)
    assert got_header == header
    assert list(got) == events


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ('{"t": 1, "pack": "x", "dir": "up", "hex": "00"}', "dir"),
        ('{"t": 1, "pack": "x", "dir": "rx", "hex": "zz"}', "bad event"),
        ('{"t": 1, "pack": "x", "link": "dancing"}', "dancing"),
        ('{"pack": "x", "dir": "rx", "hex": "00"}', "'t'"),
        ("not json", "bad event"),
    ],
)
def test_a_bad_event_names_file_and_line(tmp_path: Path, line: str, words: str) -> None:
    path = tmp_path / "bad.jsonl"
    write(path, Header(PACKS), [Traffic(0.1, PACKS[0], "tx", b"\xdd")])
    with path.open("a", encoding="utf-8") as stream:
        stream.write("\n" + line + "\n")  # a blank line 3 is skipped; the bad one is line 4
    _, events = read_recording(path)
    with pytest.raises(RecordingError, match=rf"{path}:4: .*{words}"):
        list(events)


def test_a_bad_header_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    path.write_text('{"format": "something-else"}\n', encoding="utf-8")
    with pytest.raises(RecordingError, match=rf"{path}:1: not a btbattery recording"):
        read_recording(path)
    path.write_text('{"format": "btbattery-recording", "version": 9}\n', encoding="utf-8")
    with pytest.raises(RecordingError, match=rf"{path}:1: .*version 9"):
        read_recording(path)
    path.write_text("{{{\n", encoding="utf-8")
    with pytest.raises(RecordingError, match=rf"{path}:1: not JSON"):
        read_recording(path)


def test_checked_in_recording_is_a_weak3_bank_in_time_order() -> None:
    header, events = read_recording(BANK3_WEAK)
    assert len(header.packs) == 3 and header.poll_interval == 1.0
    assert header.meta["scenario"] == "weak3"
    times = []
    per_pack: Counter[tuple[str, str]] = Counter()
    for event in events:
        times.append(event.t)
        if isinstance(event, Traffic):
            per_pack[event.pack, event.direction] += 1
            assert len(event.data) <= 20
    assert times == sorted(times)
    assert times[-1] >= 240  # a few minutes
    for pack in header.packs:
        assert per_pack[pack, "tx"] == 601  # 0x05 once, then 0x03 + 0x04 every second for 300 s
    assert BANK3_WEAK.stat().st_size < 2_000_000


def test_decode_file_over_the_checked_in_recording() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "btbattery", "decode", "--file", str(BANK3_WEAK)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    objects = [json.loads(line) for line in result.stdout.splitlines()]
    assert not [o for o in objects if "error" in o]
    counts = Counter((o["pack"], o["register"]) for o in objects)
    header, _ = read_recording(BANK3_WEAK)
    assert counts == {(pack, reg): n for pack in header.packs for reg, n in ((3, 300), (4, 300), (5, 1))}
    basic = [o for o in objects if o["register"] == 3]
    assert {o["cell_count"] for o in basic} == {16}
    # The weak pack (the third) carries visibly less current than the others while charging.
    first_second: dict[str, float] = {}
    for o in basic:
        first_second.setdefault(o["pack"], o["current"])
    weak, strong = first_second[header.packs[2]], first_second[header.packs[0]]
    assert 0 < weak < 0.8 * strong


def test_recordings_never_carry_a_password_frame() -> None:
    from btbattery.protocol import jbd

    secret = jbd.password_request(PACKS[0], "s3cr3t", 0x42)
    buffer = io.StringIO()
    RecordingWriter(buffer, Header(PACKS)).write_all(
        [Traffic(0.1, PACKS[0], "tx", jbd.app_key_request()), Traffic(0.2, PACKS[0], "tx", secret)]
    )
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()[1:]]
    assert lines[0]["hex"] == jbd.app_key_request().hex()  # harmless frames stay as they were
    assert lines[1]["hex"] == "ffaa1806" + "00" * 7
    assert secret[4:].hex() not in buffer.getvalue()
