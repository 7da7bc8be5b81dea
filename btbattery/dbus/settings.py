"""The VRM device instance, handed out by Venus's settings service (localsettings).

localsettings keeps ``/Settings/Devices/<unique id>/ClassAndVrmInstance`` = ``"battery:<n>"`` and picks the
next free ``n`` the first time a device asks, so the same bank keeps the same instance across restarts.
With no settings service on the bus (a laptop, a test, a demo) we fall back to a configured instance
and say so in the log.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from dbus_fast import DBusError, Message, MessageType, Variant
from dbus_fast.aio import MessageBus

log = logging.getLogger(__name__)

SETTINGS_SERVICE = "com.victronenergy.settings"
SETTINGS_INTERFACE = "com.victronenergy.Settings"
BUSITEM = "com.victronenergy.BusItem"
SETTINGS_ROOT = "/Settings"


class SettingsUnavailable(Exception):
    """The settings service did not hand out an instance."""


async def device_instance(
    bus: MessageBus,
    unique_id: str,
    *,
    device_class: str = "battery",
    fallback: int = 1,
    timeout: float = 5.0,
) -> int:
    """This device's VRM instance from localsettings, or ``fallback`` (logged) when it cannot be had."""
    try:
        return await asyncio.wait_for(_ask_settings(bus, unique_id, device_class, fallback), timeout)
    except TimeoutError:
        reason = f"no answer within {timeout:g} s"
    except (SettingsUnavailable, DBusError) as err:
        reason = str(err) or type(err).__name__
    log.warning("device instance: settings service unavailable (%s); using configured %d", reason, fallback)
    return fallback


async def _ask_settings(bus: MessageBus, unique_id: str, device_class: str, preferred: int) -> int:
    setting = f"Devices/{unique_id}/ClassAndVrmInstance"
    default = f"{device_class}:{preferred}"
    try:
        value = await _add_settings(bus, setting, default)
    except DBusError as err:
        if err.type != "org.freedesktop.DBus.Error.UnknownMethod":
            raise
        value = await _add_setting_legacy(bus, setting, default)  # firmware before AddSettings existed
    if value is None:
        value = await _read_back(bus, f"{SETTINGS_ROOT}/{setting}")
    instance = _parse_instance(value, device_class)
    log.info("device instance %d from the settings service (%s)", instance, setting)
    return instance


async def _call(
    bus: MessageBus, path: str, interface: str, member: str, signature: str, body: list[Any]
) -> Any:
    reply = await bus.call(
        Message(
            destination=SETTINGS_SERVICE,
            path=path,
            interface=interface,
            member=member,
            signature=signature,
            body=body,
        )
    )
    if reply is None:
        raise SettingsUnavailable(f"{member}: no reply")
    if reply.message_type is MessageType.ERROR:
        text = str(reply.body[0]) if reply.body else ""
        raise DBusError(reply.error_name or "org.freedesktop.DBus.Error.Failed", text, reply)
    return reply.body


async def _add_settings(bus: MessageBus, setting: str, default: str) -> str | None:
    request = [{"path": Variant("s", setting), "default": Variant("s", default)}]
    body = await _call(bus, SETTINGS_ROOT, SETTINGS_INTERFACE, "AddSettings", "aa{sv}", [request])
    results = body[0] if body else []
    if not results:
        raise SettingsUnavailable("AddSettings returned no result")
    result = results[0]
    error = result.get("error")
    if error is not None and error.value != 0:
        raise SettingsUnavailable(f"AddSettings refused {setting}: error {error.value}")
    value = result.get("value")
    return value.value if value is not None else None


async def _add_setting_legacy(bus: MessageBus, setting: str, default: str) -> None:
    group, name = setting.rsplit("/", 1)
    args = [group, name, Variant("s", default), "s", Variant("i", 0), Variant("i", 0)]
    body = await _call(bus, SETTINGS_ROOT, SETTINGS_INTERFACE, "AddSetting", "ssvsvv", args)
    if body and body[0] != 0:
        raise SettingsUnavailable(f"AddSetting refused {setting}: error {body[0]}")


async def _read_back(bus: MessageBus, path: str) -> Any:
    body = await _call(bus, path, BUSITEM, "GetValue", "", [])
    return body[0].value


def _parse_instance(value: Any, device_class: str) -> int:
    """``"battery:3"`` -> 3; anything else is a settings service we do not understand."""
    if isinstance(value, str):
        klass, _, number = value.partition(":")
        if klass == device_class and number.strip().isdigit():
            return int(number)
    raise SettingsUnavailable(f"unexpected ClassAndVrmInstance value {value!r}")
