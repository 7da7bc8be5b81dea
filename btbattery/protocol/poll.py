"""One pack's notifications -> :class:`~btbattery.model.PackReading`, shared by the live link and replay.

A poll is a 0x03 request followed by a 0x04 request. The 0x03 answer is held until the 0x04 answer
completes it; a poll whose 0x04 never comes is still delivered (without cells) by :meth:`flush` or by the
next 0x03, so a pack with a flaky cell register still reports its headline values. Answers of the FF AA
handshake (one notification each) are not poll data: they go to ``on_handshake``.
"""

from __future__ import annotations

from collections.abc import Callable

from btbattery.model import BasicInfo, CellVoltages, HardwareInfo, PackReading
from btbattery.protocol.jbd import (
    AUTH_START,
    DROP_PAYLOAD,
    AuthFrame,
    FrameAssembler,
    JbdError,
    decode_frame,
    parse_auth,
)


class PollDecoder:
    """Reassembles, verifies and decodes one pack's notifications into readings."""

    __slots__ = ("_pending", "_pending_time", "address", "assembler", "hardware", "on_handshake", "pack")

    def __init__(
        self,
        pack: int,
        address: str,
        on_drop: Callable[[str, bytes], None] | None = None,
        on_handshake: Callable[[AuthFrame], None] | None = None,
    ) -> None:
        self.pack = pack
        self.on_handshake = on_handshake
        self.address = address
        self.assembler = FrameAssembler(on_drop)
        self.hardware: HardwareInfo | None = None
        self._pending: BasicInfo | None = None
        self._pending_time = 0.0

    @property
    def drops(self):  # Counter of dropped frames by reason
        return self.assembler.drops

    def feed(self, chunk: bytes | bytearray, time: float) -> list[PackReading]:
        """Readings completed by this chunk (usually none or one)."""
        if chunk[:2] == AUTH_START and self._handshake(chunk):
            return []
        out: list[PackReading] = []
        for frame in self.assembler.feed(chunk):
            try:
                register = decode_frame(frame)
            except JbdError:
                self.assembler.count_drop(DROP_PAYLOAD, frame.data)
                continue
            if isinstance(register, BasicInfo):
                if self._pending is not None:
                    out.append(self._reading(None))
                self._pending, self._pending_time = register, time
            elif isinstance(register, CellVoltages):
                if self._pending is not None:
                    self._pending_time = time
                    out.append(self._reading(register))
            else:
                self.hardware = register
        return out

    def _handshake(self, chunk: bytes | bytearray) -> bool:
        """Take a whole FF AA frame; False when the chunk only starts like one (a 0x03 tail can)."""
        try:
            frame = parse_auth(chunk)
        except JbdError:
            return False
        if self.on_handshake is not None:
            self.on_handshake(frame)
        return True

    def flush(self) -> PackReading | None:
        """Deliver a held 0x03 without cells and forget any partial frame (poll timed out, link lost)."""
        self.assembler.reset()
        return self._reading(None) if self._pending is not None else None

    def _reading(self, cells: CellVoltages | None) -> PackReading:
        assert self._pending is not None
        reading = PackReading(self.pack, self.address, self._pending_time, self._pending, cells)
        self._pending = None
        return reading
