"""PollDecoder: one pack's notifications -> PackReadings, with 0x03 held until its 0x04 arrives."""

from __future__ import annotations

import datetime

from btbattery.model import BasicInfo, CellVoltages, HardwareInfo, Protection
from btbattery.protocol import jbd
from btbattery.protocol.poll import PollDecoder

INFO = BasicInfo(53.12, 12.5, 60.0, 100.0, 12, datetime.date(2023, 6, 1), 0b101, Protection.NONE, 3.8, 60,
                 True, True, 16, (25.0, 24.5))  # fmt: skip
CELLS = CellVoltages(tuple((3300 + i) / 1000 for i in range(16)))
F03 = jbd.encode_basic_info(INFO)
F04 = jbd.encode_cell_voltages(CELLS)
ADDRESS = "A4:C1:37:00:00:02"


def feed(decoder: PollDecoder, frame: bytes, time: float) -> list:
    out = []
    for chunk in jbd.split_notifications(frame):
        out += decoder.feed(chunk, time)
    return out


def test_a_poll_pair_becomes_one_reading_stamped_when_it_completed() -> None:
    decoder = PollDecoder(2, ADDRESS)
    assert feed(decoder, F03, 10.0) == []
    (reading,) = feed(decoder, F04, 10.1)
    assert (reading.pack, reading.address, reading.time) == (2, ADDRESS, 10.1)
    assert reading.info == INFO and reading.cells == CELLS
    assert decoder.flush() is None  # nothing held any more


def test_a_basic_info_without_cells_is_delivered_by_the_next_one() -> None:
    decoder = PollDecoder(1, ADDRESS)
    feed(decoder, F03, 1.0)
    (reading,) = feed(decoder, F03, 2.0)
    assert reading.time == 1.0 and reading.cells is None
    (second,) = feed(decoder, F04, 2.1)
    assert second.time == 2.1 and second.cells == CELLS


def test_flush_delivers_a_held_basic_info_and_forgets_a_partial_frame() -> None:
    decoder = PollDecoder(1, ADDRESS)
    feed(decoder, F03, 1.0)
    decoder.feed(F04[:20], 1.1)
    reading = decoder.flush()
    assert reading is not None and reading.info == INFO and reading.cells is None
    assert decoder.drops["truncated"] == 1
    assert decoder.assembler.pending == 0


def test_cells_without_a_basic_info_are_ignored() -> None:
    decoder = PollDecoder(1, ADDRESS)
    assert feed(decoder, F04, 1.0) == []


def test_hardware_is_kept_and_undecodable_payloads_are_counted() -> None:
    drops: list[str] = []
    decoder = PollDecoder(1, ADDRESS, on_drop=lambda reason, raw: drops.append(reason))
    feed(decoder, jbd.encode_hardware(HardwareInfo("SP04S034-L16S")), 0.5)
    assert decoder.hardware == HardwareInfo("SP04S034-L16S")
    feed(decoder, jbd.build_response(0x04, b"\x0c"), 0.6)  # half a cell: verified frame, bad payload
    feed(decoder, jbd.build_response(0x03, bytes(5)), 0.7)  # too short a 0x03
    assert drops == ["payload", "payload"]
    assert decoder.drops["payload"] == 2


def test_a_corrupt_answer_costs_only_that_reading() -> None:
    decoder = PollDecoder(1, ADDRESS)
    bad = bytearray(F03)
    bad[8] ^= 0x40
    assert feed(decoder, bytes(bad), 1.0) + feed(decoder, F04, 1.1) == []
    assert decoder.drops["checksum"] == 1
    readings = feed(decoder, F03, 2.0) + feed(decoder, F04, 2.1)
    assert [r.time for r in readings] == [2.1]


def test_handshake_answers_go_aside_and_do_not_disturb_a_poll() -> None:
    answers: list[jbd.AuthFrame] = []
    decoder = PollDecoder(2, ADDRESS, on_handshake=answers.append)
    chunks = jbd.split_notifications(F03)
    # An FF AA answer arriving between two notifications of a 0x03 frame is taken whole, not as garbage.
    assert decoder.feed(chunks[0], 1.0) == []
    assert decoder.feed(jbd.auth_answer(jbd.AUTH_RANDOM, 0x5A), 1.0) == []
    for chunk in chunks[1:]:
        decoder.feed(chunk, 1.0)
    (reading,) = feed(decoder, F04, 1.1)
    assert reading.info == INFO and answers == [jbd.AuthFrame(jbd.AUTH_RANDOM, b"\x5a")]
    assert not decoder.drops
    # Something that only starts like one is left to the assembler (here: garbage it throws away).
    assert decoder.feed(b"\xff\xaa\x17\x01", 2.0) == []
    assert answers[1:] == [] and decoder.drops["garbage"] == 1
