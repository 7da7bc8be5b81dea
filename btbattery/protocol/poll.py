"""One pack's notifications -> :class:`~btbattery.model.PackReading`, shared by the live link and replay.

A poll is a 0x03 request followed by a 0x04 request. The 0x03 answer is held until the 0x04 answer
completes it; a poll whose 0x04 never comes is still delivered (without cells) by :meth:`flush` or by the
next 0x03, so a pack with a flaky cell register still reports its headline values.
"""

from __future__ import annotations

from collections.abc import Callable

from btbattery.model import BasicInfo, CellVoltages, HardwareInfo, PackReading
from btbattery.protocol.jbd import DROP_PAYLOAD, FrameAssembler, JbdError, decode_frame


class PollDecoder:
    """Reassembles, verifies and decodes one pack's notifications into readings."""

    __slots__ = ("_pending", "_pending_time", "address", "assembler", "hardware", "pack")

    def __init__(self, pack: int, address: str, on_drop: Callable[[str, bytes], None] | None = None) -> None:
        self.pack = pack
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

    def flush(self) -> PackReading | None:
        """Deliver a held 0x03 without cells and forget any partial frame (poll timed out, link lost)."""
        self.assembler.reset()
        return self._reading(None) if self._pending is not None else None

    def _reading(self, cells: CellVoltages | None) -> PackReading:
        assert self._pending is not None
        reading = PackReading(self.pack, self.address, self._pending_time, self._pending, cells)
        self._pending = None
        return reading
