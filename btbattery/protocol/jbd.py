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

    def _skip_to_start(self) -> None:
        nxt = self._buf.find(START)
        self._drop(DROP_GARBAGE, nxt if nxt > 0 else len(self._buf))

    def _verify(self, total: int) -> Frame | None:
        buf = self._buf
        reason = None
        if buf[total - 1] != END:
            reason = DROP_END_MARKER
        elif int.from_bytes(buf[total - 3 : total - 1], "big") != checksum(buf[2 : total - 3]):
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
    return (date.year - 2000) << 9 | date.month << 5 | date.day


_BASIC = struct.Struct(">HhHHHHHHHBBBBB")


def decode_basic_info(data: bytes) -> BasicInfo:
    """Register 0x03 payload -> :class:`BasicInfo`. Extra trailing bytes (newer firmware) are ignored."""
    if len(data) < BASIC_FIXED_LEN:
        raise JbdError(f"0x03 payload of {len(data)} bytes is shorter than {BASIC_FIXED_LEN}")
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
        ntc_count,
    ) = _BASIC.unpack_from(data)
    if len(data) < BASIC_FIXED_LEN + 2 * ntc_count:
        raise JbdError(f"0x03 payload announces {ntc_count} temperatures but has {len(data)} bytes")
    temps = struct.unpack_from(f">{ntc_count}H", data, BASIC_FIXED_LEN)
    return BasicInfo(
        voltage=voltage / 100,
        current=current / 100,
        remaining_capacity=remaining / 100,
        nominal_capacity=nominal / 100,
        cycles=cycles,
        production_date=_date_from_raw(date),
        balance_bits=bal_lo | bal_hi << 16,
        protection=Protection(protection & 0x3FFF),
        software_version=(version >> 4) + (version & 0x0F) / 10,
        soc=soc,
        charge_fet=bool(fet & 1),
        discharge_fet=bool(fet & 2),
        cell_count=cell_count,
        temperatures=tuple((t - KELVIN_OFFSET_RAW) / 10 for t in temps),
    )


def decode_cell_voltages(data: bytes) -> CellVoltages:
    """Register 0x04 payload -> :class:`CellVoltages` (V)."""
    if len(data) % 2:
        raise JbdError(f"0x04 payload of {len(data)} bytes is not a whole number of cells")
    return CellVoltages(tuple(mv / 1000 for mv in struct.unpack(f">{len(data) // 2}H", data)))


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
    return build_response(REG_HARDWARE, hw.model.encode("ascii"))


def split_notifications(frame: bytes, size: int = 20) -> list[bytes]:
    """Cut a frame into BLE notifications of at most ``size`` bytes (MTU 23 gives 20)."""
    return [frame[i : i + size] for i in range(0, len(frame), size)]


BASIC_INFO_REQUEST = build_request(REG_BASIC_INFO)
CELL_VOLTAGES_REQUEST = build_request(REG_CELL_VOLTAGES)
HARDWARE_REQUEST = build_request(REG_HARDWARE)
