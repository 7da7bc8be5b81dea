"""The FF AA handshake codec against the public captures (jbd-auth.md), both directions, and redaction."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from btbattery.protocol import jbd

# Bytes from the reference: the worked example, and the frame captured in esphome-jbd-bms PR #148.
WORKED = [
    (jbd.app_key_request(), "ffaa15063030303030303b"),
    (jbd.auth_answer(jbd.AUTH_APP_KEY, 0), "ffaa15010016"),
    (jbd.random_request(), "ffaa170017"),
    (jbd.auth_answer(jbd.AUTH_RANDOM, 0x5A), "ffaa17015a72"),
    (jbd.password_request("AA:BB:CC:00:00:01", "123456", 0x5A), "ffaa1806f5e3598e8f91fd"),
    (jbd.auth_answer(jbd.AUTH_PASSWORD, 0), "ffaa18010019"),
    (jbd.password_request("10:A5:62:32:75:36", "123456", 0x24), "ffaa180645bb752a642445"),
]


@pytest.mark.parametrize(("built", "expected"), WORKED)
def test_frames_match_the_reference_bytes(built: bytes, expected: str) -> None:
    assert built.hex() == expected


def test_captured_password_frame_is_recognised_by_the_module_side() -> None:
    frame = jbd.parse_auth(bytes.fromhex("ffaa180645bb752a642445"))
    assert jbd.check_password("10:A5:62:32:75:36", "123456", 0x24, frame)
    assert not jbd.check_password("10:A5:62:32:75:36", "123457", 0x24, frame)
    assert not jbd.check_password("10:A5:62:32:75:36", "123456", 0x25, frame)


def test_answers_mean_what_the_table_says() -> None:
    assert jbd.parse_auth(bytes.fromhex("ffaa18010019")).meaning() == "accepted"
    assert jbd.parse_auth(jbd.auth_answer(jbd.AUTH_PASSWORD, 1)).meaning() == "wrong password"
    assert jbd.parse_auth(jbd.auth_answer(jbd.AUTH_APP_KEY, 2)).meaning() == "no password set"
    assert jbd.parse_auth(bytes.fromhex("ffaa17015a72")).answer == 0x5A
    # Monitoring never sends the password change, and it is a secret like the password itself.
    assert not jbd.AUTH_COMMANDS[jbd.AUTH_CHANGE_PASSWORD].sent
    assert {c for c, cmd in jbd.AUTH_COMMANDS.items() if cmd.secret} == {0x16, 0x18, 0x1D}


@pytest.mark.parametrize(
    "raw",
    ["ffaa1801001a", "ffaa180200", "ffaa", "dda50300fffd77", "ffaa170117", "ffab170017"],
)
def test_bad_frames_are_rejected(raw: str) -> None:
    with pytest.raises(jbd.JbdError):
        jbd.parse_auth(bytes.fromhex(raw))


@pytest.mark.parametrize("password", ["12345", "1234567", "12345!", "12345é", "", "12 456"])
def test_invalid_passwords(password: str) -> None:
    assert not jbd.valid_password(password)
    with pytest.raises(jbd.JbdError) as err:
        jbd.password_request("AA:BB:CC:00:00:01", password, 1)
    assert password not in str(err.value) or not password


ALNUM = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
passwords = st.text(alphabet=ALNUM, min_size=6, max_size=6)
macs = st.binary(min_size=6, max_size=6).map(lambda b: ":".join(f"{x:02X}" for x in b))


@given(macs, passwords, st.integers(0, 255))
def test_password_frames_round_trip_and_redact(address: str, password: str, r: int) -> None:
    frame = jbd.password_request(address, password, r)
    parsed = jbd.parse_auth(frame)
    assert parsed.command == jbd.AUTH_PASSWORD and len(parsed.data) == 6
    assert jbd.check_password(address, password, r, parsed)
    hidden = jbd.redact(frame)
    assert len(hidden) == len(frame) and hidden[:4] == frame[:4]
    assert set(hidden[4:]) == {0}  # payload and checksum: nothing to recompute the password from


@given(st.sampled_from([0x15, 0x17]), st.binary(max_size=8))
def test_redact_leaves_other_traffic_alone(command: int, data: bytes) -> None:
    frame = jbd.build_auth(command, data)
    assert jbd.redact(frame) is frame
    assert jbd.redact(jbd.BASIC_INFO_REQUEST) is jbd.BASIC_INFO_REQUEST
    for answer in (jbd.auth_answer(jbd.AUTH_PASSWORD, 1), jbd.auth_answer(jbd.AUTH_ROOT_PASSWORD, 0)):
        assert jbd.redact(answer) is answer  # "wrong password" is worth seeing in a recording


@given(st.integers(0, 255), st.binary(max_size=32))
def test_any_frame_round_trips(command: int, data: bytes) -> None:
    assert jbd.parse_auth(jbd.build_auth(command, data)) == jbd.AuthFrame(command, data)


def test_decode_command_names_handshake_frames_and_never_prints_a_payload() -> None:
    import json
    import subprocess
    import sys

    frames = [
        jbd.auth_answer(jbd.AUTH_APP_KEY, 0),
        jbd.auth_answer(jbd.AUTH_RANDOM, 0x5A),
        jbd.auth_answer(jbd.AUTH_PASSWORD, 1),
        jbd.password_request("AA:BB:CC:00:00:01", "123456", 0x5A),
    ]
    result = subprocess.run(
        [sys.executable, "-m", "btbattery", "decode", *(f.hex() for f in frames)],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines == [
        {"handshake": "app key", "command": 0x15, "answer": 0, "meaning": "accepted"},
        {"handshake": "random", "command": 0x17, "answer": 0x5A},
        {"handshake": "password", "command": 0x18, "answer": 1, "meaning": "wrong password"},
        {"handshake": "password", "command": 0x18, "request_bytes": 6},
    ]
    assert frames[3][4:10].hex() not in result.stdout
