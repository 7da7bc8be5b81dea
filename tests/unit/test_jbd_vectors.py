"""The public capture from the protocol reference, decoded through the codec and through the CLI."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys

from btbattery.model import Protection
from btbattery.protocol import jbd

VECTOR_03 = bytes.fromhex(
    "dd030026111400000d481b580000309b0000000010003831010c030b610b4f0b4f0000001b580d480000fbb177"
)


def test_public_basic_info_vector_decodes_to_the_documented_values() -> None:
    (frame,) = jbd.FrameAssembler().feed(VECTOR_03)
    info = jbd.decode_frame(frame)
    assert info.voltage == 43.72
    assert info.current == 0.0
    assert info.remaining_capacity == 34.0
    assert info.nominal_capacity == 70.0
    assert info.cycles == 0
    assert info.production_date == datetime.date(2024, 4, 27)
    assert info.software_version == 3.8
    assert info.soc == 49
    assert info.charge_fet and not info.discharge_fet
    assert info.protection == Protection.MOSFET_SOFTWARE_LOCK
    assert info.cell_count == 12
    assert info.temperatures == (18.2, 16.4, 16.4)


def test_request_frames_match_the_reference() -> None:
    assert jbd.BASIC_INFO_REQUEST.hex() == "dda50300fffd77"
    assert jbd.CELL_VOLTAGES_REQUEST.hex() == "dda50400fffc77"
    assert jbd.HARDWARE_REQUEST.hex() == "dda50500fffb77"


def test_decode_command_prints_the_documented_keys() -> None:
    chunks = [VECTOR_03[i : i + 20].hex() for i in range(0, len(VECTOR_03), 20)]
    out = subprocess.run(
        [sys.executable, "-m", "btbattery", "decode", *chunks], capture_output=True, text=True, check=True
    ).stdout
    (obj,) = [json.loads(line) for line in out.splitlines()]
    assert obj["register"] == 3
    assert obj["voltage"] == 43.72
    assert obj["protection"] == ["mosfet_software_lock"]
    assert obj["production_date"] == "2024-04-27"
    assert obj["temperatures"] == [18.2, 16.4, 16.4]


def test_decode_command_reports_a_bad_checksum_and_exits_non_zero() -> None:
    bad = bytearray(VECTOR_03)
    bad[-2] ^= 0xFF
    result = subprocess.run(
        [sys.executable, "-m", "btbattery", "decode", bad.hex()], capture_output=True, text=True
    )
    assert result.returncode != 0
    (obj,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert obj["error"] == "checksum"
