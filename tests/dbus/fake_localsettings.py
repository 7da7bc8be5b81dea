"""A small stand-in for Venus's localsettings: just enough for ClassAndVrmInstance (test code, not product).

It hands out the lowest free instance per device class, as localsettings does, answers GetValue on the
setting's path, and can pretend to be old firmware (no AddSettings) or a hung service (never answers).
"""

from __future__ import annotations

from typing import Any

from dbus_fast import ErrorType, Message, MessageType, Variant
from dbus_fast.aio import MessageBus

SETTINGS_SERVICE = "com.victronenergy.settings"


class FakeLocalSettings:
    def __init__(self, bus: MessageBus, *, legacy: bool = False, hung: bool = False) -> None:
        self.bus = bus
        self.legacy = legacy  # only AddSetting, like firmware before AddSettings
        self.hung = hung  # swallow calls without answering
        self.values: dict[str, str] = {}  # "/Settings/Devices/x/ClassAndVrmInstance" -> "battery:1"
        self.calls: list[str] = []

    async def start(self) -> FakeLocalSettings:
        self.bus.add_message_handler(self._on_message)
        await self.bus.request_name(SETTINGS_SERVICE)
        return self

    def _on_message(self, msg: Message) -> Message | bool | None:
        if msg.message_type is not MessageType.METHOD_CALL:
            return None
        self.calls.append(msg.member)
        if self.hung:
            return True
        if msg.member == "AddSettings" and not self.legacy and msg.path == "/Settings":
            return self._add_settings(msg)
        if msg.member == "AddSetting" and msg.path == "/Settings":
            group, name, default = msg.body[0], msg.body[1], msg.body[2].value
            self._allocate(f"/Settings/{group}/{name}", default)
            return Message.new_method_return(msg, "i", [0])
        if msg.member == "GetValue" and msg.path in self.values:
            return Message.new_method_return(msg, "v", [Variant("s", self.values[msg.path])])
        return Message.new_error(msg, ErrorType.UNKNOWN_METHOD, f"{msg.member} on {msg.path}")

    def _add_settings(self, msg: Message) -> Message:
        results: list[dict[str, Variant]] = []
        for request in msg.body[0]:
            path = "/Settings/" + request["path"].value.lstrip("/")
            value = self._allocate(path, request["default"].value)
            results.append(
                {"path": Variant("s", path), "error": Variant("i", 0), "value": Variant("s", value)}
            )
        return Message.new_method_return(msg, "aa{sv}", [results])

    def _allocate(self, path: str, default: Any) -> str:
        if path in self.values:
            return self.values[path]
        value = default
        if path.endswith("/ClassAndVrmInstance"):
            device_class, _, preferred = str(default).partition(":")
            taken = {v for v in self.values.values() if v.startswith(device_class + ":")}
            number = int(preferred)
            while f"{device_class}:{number}" in taken:
                number += 1
            value = f"{device_class}:{number}"
        self.values[path] = value
        return value
