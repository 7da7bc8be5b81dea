"""JBD codec properties (hypothesis) and the reassembler's handling of every kind of bad stream."""

from __future__ import annotations

import contextlib
import datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from btbattery.model import BasicInfo, CellVoltages, HardwareInfo, Protection
from btbattery.protocol import jbd
from btbattery.protocol.poll import PollDecoder

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def on_grid(scale: int, lo: int, hi: int) -> st.SearchStrategy[float]:
    """Values the wire can carry exactly: integers of 1/scale units."""
    return st.integers(lo, hi).map(lambda raw: raw / scale)


basic_infos = st.builds(
    BasicInfo,
    voltage=on_grid(100, 0, 0xFFFF),
    current=on_grid(100, -0x8000, 0x7FFF),
    remaining_capacity=on_grid(100, 0, 0xFFFF),
    nominal_capacity=on_grid(100, 0, 0xFFFF),
    cycles=st.integers(0, 0xFFFF),
    production_date=st.one_of(st.none(), st.dates(datetime.date(2000, 1, 1), datetime.date(2127, 12, 31))),
    balance_bits=st.integers(0, 0xFFFFFFFF),
    protection=st.integers(0, 0x3FFF).map(Protection),
    software_version=st.integers(0, 159).map(lambda v: v / 10),
    soc=st.integers(0, 100),
    charge_fet=st.booleans(),
    discharge_fet=st.booleans(),
    cell_count=st.integers(1, 32),
    temperatures=st.lists(on_grid(10, -400, 1200), max_size=8).map(tuple),
)
cell_voltage_sets = st.lists(on_grid(1000, 0, 0xFFFF), min_size=1, max_size=32).map(
    lambda vs: CellVoltages(tuple(vs))
)
hardware = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=60).map(
    HardwareInfo
)
frames = st.one_of(
    basic_infos.map(jbd.encode_basic_info),
    cell_voltage_sets.map(jbd.encode_cell_voltages),
    hardware.map(jbd.encode_hardware),
)


def feed_all(assembler: jbd.FrameAssembler, chunks: list[bytes]) -> list[jbd.Frame]:
    out: list[jbd.Frame] = []
    for chunk in chunks:
        out += assembler.feed(chunk)
        assert assembler.pending <= jbd.MAX_BUFFER
    return out


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


# ----- round trips -----------------------------------------------------------------------------------------


@FAST
@given(basic_infos)
def test_basic_info_round_trip(info: BasicInfo) -> None:
    (frame,) = jbd.FrameAssembler().feed(jbd.encode_basic_info(info))
    assert jbd.decode_frame(frame) == info


@FAST
@given(cell_voltage_sets)
def test_cell_voltages_round_trip(cells: CellVoltages) -> None:
    (frame,) = jbd.FrameAssembler().feed(jbd.encode_cell_voltages(cells))
    assert jbd.decode_frame(frame) == cells


@FAST
@given(hardware)
def test_hardware_round_trip(hw: HardwareInfo) -> None:
    (frame,) = jbd.FrameAssembler().feed(jbd.encode_hardware(hw))
    assert jbd.decode_frame(frame) == hw


@FAST
@given(basic_infos, st.binary(max_size=20))
def test_newer_firmware_extra_bytes_are_ignored(info: BasicInfo, extra: bytes) -> None:
    (frame,) = jbd.FrameAssembler().feed(jbd.encode_basic_info(info, extra))
    assert jbd.decode_frame(frame) == info


@FAST
@given(st.integers(0, 0xFF), st.binary(max_size=40), st.sampled_from([jbd.READ, jbd.WRITE]))
def test_request_round_trip(register: int, data: bytes, op: int) -> None:
    assert jbd.parse_request(jbd.build_request(register, data, op)) == (op, register, data)


# ----- splitting ------------------------------------------------------------------------------------------


@FAST
@given(st.lists(frames, min_size=1, max_size=5), st.lists(st.integers(0, 2000), max_size=30))
def test_any_split_of_a_valid_stream_yields_the_same_frames(encoded: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(encoded)
    whole = jbd.FrameAssembler()
    expected = feed_all(whole, [stream])
    assert len(expected) == len(encoded)
    split = jbd.FrameAssembler()
    assert feed_all(split, split_at(stream, cuts)) == expected
    assert split.pending == 0 and not split.drops


@FAST
@given(st.lists(frames, min_size=1, max_size=4))
def test_byte_by_byte_feeding_yields_the_same_frames(encoded: list[bytes]) -> None:
    stream = b"".join(encoded)
    expected = jbd.FrameAssembler().feed(stream)
    assert feed_all(jbd.FrameAssembler(), [bytes([b]) for b in stream]) == expected


# ----- hostile input --------------------------------------------------------------------------------------


def every_entry_point(data: bytes) -> None:
    """Call every codec entry point with ``data``; only JbdError may escape."""
    for call in (
        lambda: jbd.decode_basic_info(data),
        lambda: jbd.decode_cell_voltages(data),
        lambda: jbd.decode_hardware(data),
        lambda: jbd.parse_request(data),
        lambda: jbd.decode_frame(jbd.Frame(data[0] if data else 3, data[1:])),
    ):
        with contextlib.suppress(jbd.JbdError):
            call()


@FAST
@given(st.lists(st.binary(max_size=300), max_size=12))
def test_random_bytes_raise_only_jbd_errors_and_keep_the_buffer_bounded(chunks: list[bytes]) -> None:
    assembler = jbd.FrameAssembler()
    decoder = PollDecoder(1, "A4:C1:37:00:00:01")
    for chunk in chunks:
        every_entry_point(chunk)
        for frame in assembler.feed(chunk):
            every_entry_point(frame.data)
        assert assembler.pending <= jbd.MAX_BUFFER
        decoder.feed(chunk, 0.0)
        assert decoder.assembler.pending <= jbd.MAX_BUFFER


@FAST
@given(
    st.lists(frames, min_size=1, max_size=4),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), min_size=1, max_size=4),
    st.lists(st.integers(0, 2000), max_size=10),
)
def test_corrupted_valid_frames_raise_only_jbd_errors(
    encoded: list[bytes], flips: list[tuple[int, int]], cuts: list[int]
) -> None:
    stream = bytearray(b"".join(encoded))
    for position, mask in flips:
        stream[position % len(stream)] ^= mask
    decoder = PollDecoder(1, "A4:C1:37:00:00:01")
    for chunk in split_at(bytes(stream), cuts):
        every_entry_point(chunk)
        decoder.feed(chunk, 1.0)  # must not raise: bad frames become drop counts
        assert decoder.assembler.pending <= jbd.MAX_BUFFER
    decoder.flush()
    assert decoder.assembler.pending == 0


@FAST
@given(st.lists(frames, min_size=1, max_size=3), st.binary(min_size=1, max_size=50))
def test_garbage_before_and_between_frames_is_dropped_and_frames_survive(
    encoded: list[bytes], garbage: bytes
) -> None:
    noise = garbage.replace(b"\xdd", b"\x00")  # garbage without a start byte cannot fake a frame
    stream = noise + noise.join(encoded) + noise
    assembler = jbd.FrameAssembler()
    got = feed_all(assembler, [stream[i : i + 20] for i in range(0, len(stream), 20)])
    assert [jbd.build_response(f.register, f.data) for f in got] == encoded
    assert assembler.drops["garbage"] >= 1


# ----- assembler cases ------------------------------------------------------------------------------------

INFO = BasicInfo(53.12, -4.5, 60.0, 100.0, 12, datetime.date(2023, 6, 1), 0, Protection.NONE, 3.8, 60, True,
                 True, 16, (25.0, 24.5))  # fmt: skip
CELLS = CellVoltages(tuple((3300 + i) / 1000 for i in range(16)))
F03 = jbd.encode_basic_info(INFO)
F04 = jbd.encode_cell_voltages(CELLS)
F05 = jbd.encode_hardware(HardwareInfo("SP04S034"))


def collect() -> tuple[jbd.FrameAssembler, list[tuple[str, bytes]]]:
    seen: list[tuple[str, bytes]] = []
    return jbd.FrameAssembler(on_drop=lambda reason, raw: seen.append((reason, raw))), seen


def test_several_frames_in_one_chunk() -> None:
    assembler, seen = collect()
    got = assembler.feed(F03 + F04 + F05)
    assert [f.register for f in got] == [3, 4, 5]
    assert not seen and assembler.frames == 3


def test_a_chunk_holding_a_tail_and_the_next_head() -> None:
    assembler, _ = collect()
    stream = F03 + F04
    assert assembler.feed(stream[:30]) == []
    (first,) = assembler.feed(stream[30:45])  # tail of 0x03 plus the head of 0x04
    assert first.register == 3
    (second,) = assembler.feed(stream[45:])
    assert second.register == 4


def test_garbage_before_a_frame_is_counted_and_reported() -> None:
    assembler, seen = collect()
    (frame,) = assembler.feed(b"\x01\x02\x03" + F05)
    assert frame.register == 5
    assert seen == [("garbage", b"\x01\x02\x03")]


def test_truncated_frame_followed_by_a_good_one() -> None:
    assembler, seen = collect()
    got = assembler.feed(F04[:20]) + assembler.feed(F03)
    assert [f.register for f in got] == [3]
    assert [reason for reason, _ in seen] == ["end_marker"]
    assert seen[0][1] == F04[:20]


def test_truncated_long_frame_followed_by_a_short_good_one_is_not_held_back() -> None:
    assembler, seen = collect()
    got = assembler.feed(F04[:20]) + assembler.feed(F05)
    assert [f.register for f in got] == [5]
    assert seen == [("length", F04[:20])]
    assert assembler.pending == 0


def test_absurd_length_does_not_stall_the_frames_behind_it() -> None:
    assembler, seen = collect()
    corrupt = bytearray(F03)
    corrupt[3] = 0xFF  # announces 255 bytes of data
    got = assembler.feed(bytes(corrupt)) + assembler.feed(F04)
    assert [f.register for f in got] == [4]
    assert seen[0][0] == "length"
    assert assembler.pending == 0


def test_absurd_length_alone_waits_within_the_bound_then_gives_up() -> None:
    assembler, seen = collect()
    assembler.feed(b"\xdd\x03\x00\xff" + bytes(100))
    assert assembler.pending == 104  # could still be a 262-byte frame
    assembler.feed(bytes(200))
    assert assembler.pending == 0
    assert seen[0][0] == "end_marker"
    assert assembler.pending <= jbd.MAX_BUFFER


def test_bad_checksum_is_dropped_and_the_next_frame_found() -> None:
    assembler, seen = collect()
    bad = bytearray(F03)
    bad[10] ^= 0x01
    got = assembler.feed(bytes(bad) + F04)
    assert [f.register for f in got] == [4]
    assert [reason for reason, _ in seen] == ["checksum"]
    assert assembler.drops == {"checksum": 1}


def test_non_zero_status_is_counted_as_rejected() -> None:
    assembler, seen = collect()
    refused = jbd.build_response(0x03, b"", status=0x80)
    got = assembler.feed(refused + F05)
    assert [f.register for f in got] == [5]
    assert seen == [("rejected", refused)]


def test_reset_drops_a_partial_frame_as_truncated() -> None:
    assembler, seen = collect()
    assembler.feed(F03[:20])
    assembler.reset()
    assert seen == [("truncated", F03[:20])] and assembler.pending == 0
    assembler.reset()  # nothing pending: nothing counted
    assert assembler.drops["truncated"] == 1


def test_a_start_byte_inside_a_bad_frame_is_not_lost() -> None:
    # The corrupt frame's data contains the start of the real one: resynchronising keeps it.
    assembler, _ = collect()
    got = assembler.feed(b"\xdd\x03\x00\x05" + F05)
    assert [f.register for f in got] == [5]


# ----- decoders -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("register", "data"),
    [
        (3, bytes(22)),  # too short for the fixed part
        (3, bytes(22) + b"\x03"),  # announces three sensors, has none
        (4, bytes(3)),  # half a cell
        (4, b""),  # no cells at all
        (6, b"\x00"),  # a register we do not decode
    ],
)
def test_bad_payloads_raise_jbd_error(register: int, data: bytes) -> None:
    with pytest.raises(jbd.JbdError):
        jbd.decode_frame(jbd.Frame(register, data))


def test_impossible_production_date_decodes_to_none() -> None:
    data = bytearray(jbd.encode_basic_info(INFO)[4:-3])
    data[10:12] = (0).to_bytes(2, "big")  # month 0
    assert jbd.decode_basic_info(bytes(data)).production_date is None


@pytest.mark.parametrize(
    "info",
    [
        BasicInfo(**{**{f: getattr(INFO, f) for f in INFO.__slots__}, "cycles": 70000}),  # type: ignore[arg-type]
        BasicInfo(**{**{f: getattr(INFO, f) for f in INFO.__slots__}, "voltage": 700.0}),  # type: ignore[arg-type]
        BasicInfo(**{**{f: getattr(INFO, f) for f in INFO.__slots__}, "soc": 300}),  # type: ignore[arg-type]
        BasicInfo(
            **{**{f: getattr(INFO, f) for f in INFO.__slots__}, "production_date": datetime.date(1999, 1, 1)}
        ),  # type: ignore[arg-type]
    ],
)
def test_encoder_rejects_values_the_wire_cannot_carry(info: BasicInfo) -> None:
    with pytest.raises(jbd.JbdError):
        jbd.encode_basic_info(info)


def test_encoders_reject_oversize_payloads() -> None:
    with pytest.raises(jbd.JbdError):
        jbd.encode_cell_voltages(CellVoltages((3.3,) * 200))
    with pytest.raises(jbd.JbdError):
        jbd.build_request(0x03, bytes(300))
    with pytest.raises(jbd.JbdError):
        jbd.encode_hardware(HardwareInfo("ünïcode"))
