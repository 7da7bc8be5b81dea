"""JBD (Jiabaida / Xiaoxiang) BMS protocol over BLE: pure bytes <-> typed registers.

No I/O and no asyncio here. The link feeds notification chunks to :class:`FrameAssembler` and decodes the
frames it yields; the simulator builds its answers with the encoders, so both directions stay symmetric.

Request:  DD <op> <reg> <len> <data...> <chk_hi> <chk_lo> 77
Response: DD <reg> <status> <len> <data...> <chk_hi> <chk_lo> 77
"""

from __future__ import annotations

import datetime
import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from btbattery.model import BasicInfo, CellVoltages, HardwareInfo, Protection, Register

START = 0xDD
END = 0x77
READ = 0xA5
WRITE = 0x5A

REG_BASIC_INFO = 0x03
REG_CELL_VOLTAGES = 0x04
REG_HARDWARE = 0x05

HEADER_LEN = 4  # DD reg status len
OVERHEAD = 7  # header + checksum (2) + end byte
MAX_FRAME = 0xFF + OVERHEAD
# Two full frames of slack: anything more is garbage we will never complete.
MAX_BUFFER = 2 * MAX_FRAME

BASIC_FIXED_LEN = 23  # bytes of 0x03 data before the temperatures
KELVIN_OFFSET_RAW = 2731  # 0.1 K


class JbdError(ValueError):
    """Anything wrong with JBD bytes. The codec raises nothing else on bad input."""


def checksum(body: bytes | bytearray | memoryview) -> int:
    """JBD checksum: two's complement of the byte sum, 16 bits."""
    return (0x10000 - sum(body)) & 0xFFFF


def build_request(register: int, data: bytes = b"", op: int = READ) -> bytes:
    """A request frame; a plain read of ``register`` by default."""
    if len(data) > 0xFF or not 0 <= register <= 0xFF or not 0 <= op <= 0xFF:
        raise JbdError(f"request for register {register} with {len(data)} bytes does not fit a JBD frame")
    body = bytes((register, len(data))) + data
    return bytes((START, op)) + body + checksum(body).to_bytes(2, "big") + bytes((END,))


def parse_request(frame: bytes) -> tuple[int, int, bytes]:
    """(op, register, data) of a request frame; raises :class:`JbdError` when it is not one."""
    if len(frame) < OVERHEAD or frame[0] != START or frame[-1] != END:
        raise JbdError(f"not a request frame: {frame.hex()}")
    op, register, length = frame[1], frame[2], frame[3]
    if len(frame) != length + OVERHEAD:
        raise JbdError(f"request length {length} does not match frame of {len(frame)} bytes")
    body = frame[2 : 4 + length]
    if int.from_bytes(frame[-3:-1], "big") != checksum(body):
        raise JbdError("request checksum mismatch")
    return op, register, bytes(frame[4 : 4 + length])


def build_response(register: int, data: bytes, status: int = 0) -> bytes:
    """A response frame as a BMS sends it."""
    if not 0 <= register <= 0xFF or not 0 <= status <= 0xFF:
        raise JbdError(f"register {register} / status {status} do not fit a byte")
    if len(data) > 0xFF:
        raise JbdError(f"payload of {len(data)} bytes does not fit a JBD frame")
    body = bytes((status, len(data))) + data
    return bytes((START, register)) + body + checksum(body).to_bytes(2, "big") + bytes((END,))


@dataclass(frozen=True, slots=True)
class Frame:
    """A complete, checksum-verified response frame with status 0."""

    register: int
    data: bytes


# Why the assembler threw bytes away. Counted per reason; reported through ``on_drop``.
DROP_GARBAGE = "garbage"  # bytes outside any frame
DROP_CHECKSUM = "checksum"
DROP_END_MARKER = "end_marker"  # length field pointed to a byte that is not 0x77
DROP_REJECTED = "rejected"  # valid frame, BMS status != 0
DROP_OVERFLOW = "overflow"  # buffer bound exceeded
DROP_LENGTH = "length"  # length field ran past a complete frame that starts inside it (corrupt length)
DROP_TRUNCATED = "truncated"  # stream ended (or was reset) mid-frame
DROP_PAYLOAD = "payload"  # verified frame whose data does not decode (counted by the caller)


class FrameAssembler:
    """Reassembles response frames from notification chunks of any size.

    A frame may be split anywhere, several frames may share a chunk, and garbage may surround them. Only
    complete frames with a valid end byte, checksum and status 0 come out; everything else is counted in
    :attr:`drops` and handed to ``on_drop(reason, raw_bytes)``. On a bad frame it resynchronises at the next
    0xDD after the bad start byte, and the buffer never holds more than :data:`MAX_BUFFER` bytes.
    """

    __slots__ = ("_buf", "drops", "frames", "on_drop")

    def __init__(self, on_drop: Callable[[str, bytes], None] | None = None) -> None:
        self._buf = bytearray()
        self.drops: Counter[str] = Counter()
        self.frames = 0
        self.on_drop = on_drop

    @property
    def pending(self) -> int:
        """Bytes held while waiting for the rest of a frame."""
        return len(self._buf)

    def feed(self, chunk: bytes | bytearray) -> list[Frame]:
        buf = self._buf
        buf += chunk
        out: list[Frame] = []
        while buf:
            if buf[0] != START:
                self._skip_to_start()
                continue
            if len(buf) < HEADER_LEN:
                break
            total = buf[3] + OVERHEAD
            if len(buf) < total:
                if buf.find(START, 1) > 0 and self._rescue():  # cheap test first: this runs per chunk
                    continue
                break
            frame = self._verify(total)
            if frame is not None:
                out.append(frame)
        if len(buf) > MAX_BUFFER:
            self._drop(DROP_OVERFLOW, len(buf))
        return out

    def reset(self) -> None:
        """Forget a partial frame (the link calls this when a poll times out or reconnects)."""
        if self._buf:
            self._drop(DROP_TRUNCATED, len(self._buf))

    def count_drop(self, reason: str, raw: bytes) -> None:
        """Count a frame the caller rejected after it left the assembler (e.g. an undecodable payload)."""
        self.drops[reason] += 1
        if self.on_drop is not None:
            self.on_drop(reason, raw)

    def _rescue(self) -> bool:
        """While waiting for the rest of a frame: if a complete, valid frame already sits inside the
        announced length, that length was corrupt. Drop the false start now rather than hold good frames
        back until enough bytes arrive to disprove it (a flipped length byte would stall several polls)."""
        buf = self._buf
        size = len(buf)
        pos = buf.find(START, 1)
        while pos > 0 and pos + HEADER_LEN <= size:
            end = pos + buf[pos + 3] + OVERHEAD
            if (
                end <= size
                and buf[end - 1] == END
                and int.from_bytes(buf[end - 3 : end - 1], "big") == checksum(buf[pos + 2 : end - 3])
            ):
                self._drop(DROP_LENGTH, pos)
                return True
            pos = buf.find(START, pos + 1)
        return False

    def _skip_to_start(self) -> None:
        nxt = self._buf.find(START)
        self._drop(DROP_GARBAGE, nxt if nxt > 0 else len(self._buf))

    def _verify(self, total: int) -> Frame | None:
        buf = self._buf
        reason = None
        if buf[total - 1] != END:
            reason = DROP_END_MARKER
        elif (
            int.from_bytes(buf[total - 3 : total - 1], "big") != (0x10000 - sum(buf[2 : total - 3])) & 0xFFFF
        ):
            reason = DROP_CHECKSUM
        if reason is not None:
            # Keep everything after the bad start byte: a real frame may begin inside it.
            nxt = buf.find(START, 1)
            self._drop(reason, nxt if nxt > 0 else len(buf))
            return None
        register, status = buf[1], buf[2]
        if status != 0:
            self._drop(DROP_REJECTED, total)
            return None
        frame = Frame(register, bytes(buf[HEADER_LEN : total - 3]))
        del buf[:total]
        self.frames += 1
        return frame

    def _drop(self, reason: str, count: int) -> None:
        raw = bytes(self._buf[:count])
        del self._buf[:count]
        self.drops[reason] += 1
        if self.on_drop is not None:
            self.on_drop(reason, raw)


# ---------------------------------------------------------------------------------------------------------
# Register decoders


def _date_from_raw(raw: int) -> datetime.date | None:
    try:
        return datetime.date(2000 + (raw >> 9), (raw >> 5) & 0x0F, raw & 0x1F)
    except ValueError:
        return None


def _date_to_raw(date: datetime.date | None) -> int:
    if date is None:
        return 0
    if not 2000 <= date.year < 2128:
        raise JbdError(f"production date {date} cannot be encoded (years 2000-2127)")
    return (date.year - 2000) << 9 | date.month << 5 | date.day


_BASIC = struct.Struct(">HhHHHHHHHBBBBB")
# Decoding runs for every poll of every pack on a small ARM board: cache what repeats from poll to poll
# (the struct for a given sensor count, protection flags, production date) instead of rebuilding it.
_BASIC_WITH_TEMPS: dict[int, struct.Struct] = {}
_CACHE_LIMIT = 256
_PROTECTIONS: dict[int, Protection] = {}
_DATES: dict[int, datetime.date | None] = {}


def _basic_struct(ntc_count: int) -> struct.Struct:
    layout = _BASIC_WITH_TEMPS.get(ntc_count)
    if layout is None:
        layout = _BASIC_WITH_TEMPS[ntc_count] = struct.Struct(_BASIC.format + "H" * ntc_count)
    return layout


def _protection(raw: int) -> Protection:
    flags = _PROTECTIONS.get(raw)
    if flags is None:
        flags = Protection(raw & 0x3FFF)
        if len(_PROTECTIONS) < _CACHE_LIMIT:  # corrupt-but-valid frames must not grow it without bound
            _PROTECTIONS[raw] = flags
    return flags


def _date(raw: int) -> datetime.date | None:
    if raw in _DATES:
        return _DATES[raw]
    date = _date_from_raw(raw)
    if len(_DATES) < _CACHE_LIMIT:
        _DATES[raw] = date
    return date


def decode_basic_info(data: bytes) -> BasicInfo:
    """Register 0x03 payload -> :class:`BasicInfo`. Extra trailing bytes (newer firmware) are ignored."""
    if len(data) < BASIC_FIXED_LEN:
        raise JbdError(f"0x03 payload of {len(data)} bytes is shorter than {BASIC_FIXED_LEN}")
    ntc_count = data[BASIC_FIXED_LEN - 1]
    if len(data) < BASIC_FIXED_LEN + 2 * ntc_count:
        raise JbdError(f"0x03 payload announces {ntc_count} temperatures but has {len(data)} bytes")
    (
        voltage,
        current,
        remaining,
        nominal,
        cycles,
        date,
        bal_lo,
        bal_hi,
        protection,
        version,
        soc,
        fet,
        cell_count,
        _,
        *temps,
    ) = _basic_struct(ntc_count).unpack_from(data)
    return BasicInfo(
        voltage=voltage / 100,
        current=current / 100,
        remaining_capacity=remaining / 100,
        nominal_capacity=nominal / 100,
        cycles=cycles,
        production_date=_date(date),
        balance_bits=bal_lo | bal_hi << 16,
        protection=_protection(protection),
        software_version=(version >> 4) + (version & 0x0F) / 10,
        soc=soc,
        charge_fet=bool(fet & 1),
        discharge_fet=bool(fet & 2),
        cell_count=cell_count,
        temperatures=tuple([(t - KELVIN_OFFSET_RAW) / 10 for t in temps]),
    )


_CELL_STRUCTS: dict[int, struct.Struct] = {}


def decode_cell_voltages(data: bytes) -> CellVoltages:
    """Register 0x04 payload -> :class:`CellVoltages` (V). A payload without cells is an error: every
    consumer takes the min and max of the cells."""
    size = len(data)
    if size % 2 or not size:
        raise JbdError(f"0x04 payload of {size} bytes is not a whole, non-zero number of cells")
    layout = _CELL_STRUCTS.get(size)
    if layout is None:
        layout = _CELL_STRUCTS[size] = struct.Struct(f">{size // 2}H")
    return CellVoltages(tuple([mv / 1000 for mv in layout.unpack(data)]))


def decode_hardware(data: bytes) -> HardwareInfo:
    """Register 0x05 payload -> :class:`HardwareInfo`."""
    return HardwareInfo(data.decode("ascii", errors="replace").rstrip("\x00 "))


_DECODERS: dict[int, Callable[[bytes], Register]] = {
    REG_BASIC_INFO: decode_basic_info,
    REG_CELL_VOLTAGES: decode_cell_voltages,
    REG_HARDWARE: decode_hardware,
}


def decode_frame(frame: Frame) -> Register:
    """Decode a verified frame; raises :class:`JbdError` for an unknown register or a bad payload."""
    decoder = _DECODERS.get(frame.register)
    if decoder is None:
        raise JbdError(f"register 0x{frame.register:02x} is not decoded")
    return decoder(frame.data)


# ---------------------------------------------------------------------------------------------------------
# Register encoders (the simulator's side)


def _raw(value: float, scale: float, lo: int, hi: int, name: str) -> int:
    raw = round(value * scale)
    if not lo <= raw <= hi:
        raise JbdError(f"{name} {value} out of range for the JBD encoding")
    return raw


def encode_basic_info(info: BasicInfo, extra: bytes = b"") -> bytes:
    """:class:`BasicInfo` -> complete 0x03 response frame (``extra`` appends newer-firmware bytes)."""
    version = round(info.software_version * 10)
    try:
        data = _BASIC.pack(
            _raw(info.voltage, 100, 0, 0xFFFF, "voltage"),
            _raw(info.current, 100, -0x8000, 0x7FFF, "current"),
            _raw(info.remaining_capacity, 100, 0, 0xFFFF, "remaining_capacity"),
            _raw(info.nominal_capacity, 100, 0, 0xFFFF, "nominal_capacity"),
            info.cycles,
            _date_to_raw(info.production_date),
            info.balance_bits & 0xFFFF,
            info.balance_bits >> 16 & 0xFFFF,
            int(info.protection),
            (version // 10) << 4 | version % 10,
            info.soc,
            int(info.charge_fet) | int(info.discharge_fet) << 1,
            info.cell_count,
            len(info.temperatures),
        )
    except struct.error as exc:
        raise JbdError(f"0x03 value out of range for the JBD encoding: {exc}") from None
    temps = b"".join(
        (
            _raw(t, 10, -KELVIN_OFFSET_RAW, 0xFFFF - KELVIN_OFFSET_RAW, "temperature") + KELVIN_OFFSET_RAW
        ).to_bytes(2, "big")
        for t in info.temperatures
    )
    return build_response(REG_BASIC_INFO, data + temps + extra)


def encode_cell_voltages(cells: CellVoltages) -> bytes:
    """:class:`CellVoltages` -> complete 0x04 response frame."""
    data = b"".join(_raw(v, 1000, 0, 0xFFFF, "cell voltage").to_bytes(2, "big") for v in cells.voltages)
    return build_response(REG_CELL_VOLTAGES, data)


def encode_hardware(hw: HardwareInfo) -> bytes:
    """:class:`HardwareInfo` -> complete 0x05 response frame."""
    try:
        model = hw.model.encode("ascii")
    except UnicodeEncodeError:
        raise JbdError(f"model {hw.model!r} is not ASCII") from None
    return build_response(REG_HARDWARE, model)


def split_notifications(frame: bytes, size: int = 20) -> list[bytes]:
    """Cut a frame into BLE notifications of at most ``size`` bytes (MTU 23 gives 20)."""
    return [frame[i : i + size] for i in range(0, len(frame), size)]


BASIC_INFO_REQUEST = build_request(REG_BASIC_INFO)
CELL_VOLTAGES_REQUEST = build_request(REG_CELL_VOLTAGES)
HARDWARE_REQUEST = build_request(REG_HARDWARE)


# ---------------------------------------------------------------------------------------------------------
# FF AA handshake (newer Bluetooth modules): see ../shared/reference/jbd-auth.md for the captures.
#
# Frame, both directions: FF AA <cmd> <len> <data: len bytes> <sum8>, sum8 = (cmd + len + data) & 0xFF, no
# end byte. Every frame fits one write and one notification. The module answers each command with one data
# byte. Order used by the official app: 0x15 (app key "000000") -> 0x17 (random byte r) -> 0x18 (password
# mixed with the pack's MAC and r); DD A5 reads are relayed only after the 0x18 is accepted.

AUTH_START = b"\xff\xaa"
AUTH_OVERHEAD = 5  # FF AA cmd len ... sum8
AUTH_APP_KEY = 0x15
AUTH_CHANGE_PASSWORD = 0x16
AUTH_RANDOM = 0x17
AUTH_PASSWORD = 0x18
AUTH_ROOT_PASSWORD = 0x1D
APP_KEY = b"000000"  # what the app sends in 0x15 whatever the password (captures)
ROOT_PASSWORD = b"JBDbtpwd!@#2023"
PASSWORD_LEN = 6
ANSWER_ACCEPTED = 0x00


@dataclass(frozen=True, slots=True)
class AuthCommand:
    """One FF AA command: what the client sends and what the module's one answer byte means."""

    name: str
    request_len: int  # data bytes the client sends
    secret: bool  # the request carries (or is derived from) a password: redacted in logs and recordings
    answers: dict[int, str]  # answer byte -> meaning; empty when the byte is a value (0x17's random byte)
    sent: bool  # whether monitoring ever sends it (0x16 changes the password: never)


AUTH_COMMANDS: dict[int, AuthCommand] = {
    AUTH_APP_KEY: AuthCommand(
        "app key", 6, False, {0x00: "accepted", 0x01: "app key rejected", 0x02: "no password set"}, True
    ),
    AUTH_RANDOM: AuthCommand("random", 0, False, {}, True),
    AUTH_PASSWORD: AuthCommand("password", 6, True, {0x00: "accepted", 0x01: "wrong password"}, True),
    AUTH_ROOT_PASSWORD: AuthCommand("root password", 15, True, {0x00: "accepted"}, False),
    AUTH_CHANGE_PASSWORD: AuthCommand("change password", 6, True, {0x00: "accepted"}, False),
}


@dataclass(frozen=True, slots=True)
class AuthFrame:
    """A checksum-verified FF AA frame (request or answer)."""

    command: int
    data: bytes

    @property
    def answer(self) -> int:
        """The module's one answer byte (raises on a frame that carries more or none)."""
        if len(self.data) != 1:
            raise JbdError(f"FF AA 0x{self.command:02x} carries {len(self.data)} bytes, not one answer byte")
        return self.data[0]

    def meaning(self) -> str:
        """What the answer byte says, in words, from :data:`AUTH_COMMANDS`."""
        command = AUTH_COMMANDS.get(self.command)
        known = command.answers if command is not None else {}
        return known.get(self.answer, f"unknown answer 0x{self.answer:02x}")


def _sum8(command: int, data: bytes) -> int:
    return (command + len(data) + sum(data)) & 0xFF


def build_auth(command: int, data: bytes = b"") -> bytes:
    """An FF AA frame (either direction)."""
    if not 0 <= command <= 0xFF or len(data) > 0xFF:
        raise JbdError(f"FF AA 0x{command:02x} with {len(data)} bytes does not fit a frame")
    return AUTH_START + bytes((command, len(data))) + data + bytes((_sum8(command, data),))


def is_auth_frame(chunk: bytes | bytearray) -> bool:
    return chunk[:2] == AUTH_START


def parse_auth(frame: bytes | bytearray) -> AuthFrame:
    """Verify and split one FF AA frame; raises :class:`JbdError` when it is not one."""
    if len(frame) < AUTH_OVERHEAD or not is_auth_frame(frame):
        raise JbdError(f"not an FF AA frame ({len(frame)} bytes)")
    command, length = frame[2], frame[3]
    if len(frame) != length + AUTH_OVERHEAD:
        raise JbdError(f"FF AA length {length} does not match a frame of {len(frame)} bytes")
    data = bytes(frame[4 : 4 + length])
    if frame[-1] != _sum8(command, data):
        raise JbdError("FF AA checksum mismatch")
    return AuthFrame(command, data)


def valid_password(password: str) -> bool:
    """Exactly 6 ASCII letters or digits, as the modules and the app accept."""
    return len(password) == PASSWORD_LEN and password.isascii() and password.isalnum()


def mac_bytes(address: str) -> bytes:
    """``"10:A5:62:32:75:36"`` -> bytes in printed order (mac[0] = 0x10)."""
    try:
        raw = bytes.fromhex(address.replace(":", ""))
    except ValueError:
        raise JbdError(f"{address!r} is not a Bluetooth address") from None
    if len(raw) != 6:
        raise JbdError(f"{address!r} is not a Bluetooth address")
    return raw


def mix_password(address: str, secret: bytes, random_byte: int) -> bytes:
    """The 0x18 / 0x1D payload: ``(mac[i] XOR secret[i]) + r`` mod 256, mac[i] = 0 beyond the 6 MAC bytes.
    Mod 256, not 255: every captured frame matches only that way."""
    mac = mac_bytes(address)
    return bytes(((mac[i] if i < len(mac) else 0) ^ b) + random_byte & 0xFF for i, b in enumerate(secret))


def app_key_request() -> bytes:
    return build_auth(AUTH_APP_KEY, APP_KEY)


def random_request() -> bytes:
    return build_auth(AUTH_RANDOM)


def password_request(address: str, password: str, random_byte: int) -> bytes:
    if not valid_password(password):
        raise JbdError("a password is 6 ASCII letters or digits")
    return build_auth(AUTH_PASSWORD, mix_password(address, password.encode("ascii"), random_byte))


def auth_answer(command: int, value: int) -> bytes:
    """The module's reply to ``command``: ``FF AA <cmd> 01 <value> <sum8>`` (the simulator's side)."""
    return build_auth(command, bytes((value & 0xFF,)))


def check_password(address: str, password: str, random_byte: int, frame: AuthFrame) -> bool:
    """The module's check of a 0x18 request against its own password (the simulator's side)."""
    return frame.command == AUTH_PASSWORD and frame.data == mix_password(
        address, password.encode("ascii"), random_byte
    )


def redact(data: bytes) -> bytes:
    """``data`` with the payload and checksum of a secret FF AA request (0x16, 0x18, 0x1D) zeroed, so no
    log, recording or flight-recorder file carries what a password can be recomputed from. Anything else
    comes back unchanged (the same object: cheap on the hot path)."""
    if len(data) < AUTH_OVERHEAD or not is_auth_frame(data):
        return data
    command = AUTH_COMMANDS.get(data[2])
    if command is None or not command.secret or data[3] != command.request_len:
        return data  # the module's one-byte answer ("accepted", "wrong password") is no secret
    return bytes(data[:4]) + bytes(len(data) - 4)
