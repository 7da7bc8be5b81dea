"""`dbus-btbattery decode`: JBD response bytes -> one JSON object per frame; errors say why.

FF AA handshake frames (one notification each) are shown by name with the module's answer; the payload of
a request is never printed (a 0x18 carries what the password can be recomputed from).
"""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("hex", nargs="*", help="notification chunks as hex, reassembled in order")
    parser.add_argument("--file", metavar="RECORDING", help="decode every received frame of a recording")


def register_to_json(register: object) -> dict[str, object]:
    """The JSON object ``decode`` prints for one decoded register."""
    from btbattery.model import BasicInfo, CellVoltages, HardwareInfo

    if isinstance(register, BasicInfo):
        return {
            "register": 3,
            "voltage": register.voltage,
            "current": register.current,
            "remaining_capacity": register.remaining_capacity,
            "nominal_capacity": register.nominal_capacity,
            "cycles": register.cycles,
            "production_date": register.production_date.isoformat() if register.production_date else None,
            "software_version": register.software_version,
            "soc": register.soc,
            "charge_fet": register.charge_fet,
            "discharge_fet": register.discharge_fet,
            "cell_count": register.cell_count,
            "temperatures": list(register.temperatures),
            "balancing": register.balancing_cells,
            "protection": register.protection.names(),
        }
    if isinstance(register, CellVoltages):
        return {"register": 4, "cell_voltages": list(register.voltages)}
    if isinstance(register, HardwareInfo):
        return {"register": 5, "model": register.model}
    raise TypeError(f"not a register: {register!r}")


def handshake_to_json(frame: object) -> dict[str, object]:
    """The JSON object ``decode`` prints for one FF AA frame (the names come from ``AUTH_COMMANDS``)."""
    from btbattery.protocol.jbd import AUTH_COMMANDS, AuthFrame

    assert isinstance(frame, AuthFrame)
    command = AUTH_COMMANDS.get(frame.command)
    obj: dict[str, object] = {
        "handshake": command.name if command else f"0x{frame.command:02x}",
        "command": frame.command,
    }
    if len(frame.data) == 1:
        obj["answer"] = frame.data[0]
        if command is not None and command.answers:
            obj["meaning"] = frame.meaning()
    else:
        obj["request_bytes"] = len(frame.data)
    return obj


def _streams(args: argparse.Namespace) -> list[tuple[str | None, list[bytes]]]:
    """(pack address or None, chunks) per independent byte stream to reassemble."""
    if args.file:
        from btbattery.replay import Traffic, read_recording

        _, events = read_recording(args.file)
        streams: dict[str, list[bytes]] = {}
        for event in events:
            if isinstance(event, Traffic) and event.direction == "rx":
                streams.setdefault(event.pack, []).append(event.data)
        return list(streams.items())
    chunks = []
    for text in args.hex:
        cleaned = text.replace(" ", "").replace(":", "")
        try:
            chunks.append(bytes.fromhex(cleaned))
        except ValueError:
            raise SystemExit(f"decode: {text!r} is not hex") from None
    return [(None, chunks)]


def main(args: argparse.Namespace) -> int:
    from btbattery.protocol.jbd import AUTH_START, FrameAssembler, JbdError, decode_frame, parse_auth

    if not args.hex and not args.file:
        raise SystemExit("decode: give HEX chunks or --file RECORDING")
    failures = 0

    def emit(obj: dict[str, object], pack: str | None) -> None:
        if pack is not None:
            obj = {"pack": pack, **obj}
        print(json.dumps(obj))

    for pack, chunks in _streams(args):

        def on_drop(reason: str, raw: bytes, pack: str | None = pack) -> None:
            nonlocal failures
            failures += 1
            emit({"error": reason, "bytes": raw.hex()}, pack)

        assembler = FrameAssembler(on_drop=on_drop)
        for chunk in chunks:
            if chunk[:2] == AUTH_START:
                try:
                    emit(handshake_to_json(parse_auth(chunk)), pack)
                    continue
                except JbdError:
                    pass  # only looked like one: the assembler says what it is
            for frame in assembler.feed(chunk):
                try:
                    emit(register_to_json(decode_frame(frame)), pack)
                except JbdError as exc:
                    failures += 1
                    emit({"error": "payload", "register": frame.register, "detail": str(exc)}, pack)
        assembler.reset()  # a frame still incomplete at the end is reported as truncated
    return 1 if failures else 0
