"""An independent D-Bus client reading a battery service the way Venus does: GetItems, then ItemsChanged."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

from btbattery.sim.bluez import call_control

BUSITEM = "com.victronenergy.BusItem"
DBUS = {
    "destination": "org.freedesktop.DBus",
    "path": "/org/freedesktop/DBus",
    "interface": "org.freedesktop.DBus",
}


def _plain(props: dict[str, Any]) -> Any:
    value = props["Value"].value
    return None if isinstance(value, list) and not value else value  # empty array = invalid


class VenusClient:
    """Follows one service: ``values`` always holds the latest value per path (None = invalid)."""

    def __init__(self, bus: MessageBus, service: str) -> None:
        self.bus = bus
        self.service = service
        self.values: dict[str, Any] = {}
        self.owner: str | None = None
        self.items_changed = 0
        self._scan_serial = -1
        self.values_when_name_went: dict[str, Any] | None = None  # what it knew as the name went
        self.history: list[tuple[str, Any]] = []  # every (path, value) received, in order
        self._changed = asyncio.Event()
        bus.add_message_handler(self._on_message)

    @classmethod
    async def connect(cls, address: str, service: str) -> VenusClient:
        bus = await MessageBus(bus_address=address).connect()
        client = cls(bus, service)
        rule = f"type='signal',interface='{BUSITEM}',member='ItemsChanged',path='/'"
        await bus.call(Message(**DBUS, member="AddMatch", signature="s", body=[rule]))
        rule = f"type='signal',member='NameOwnerChanged',arg0='{service}'"
        await bus.call(Message(**DBUS, member="AddMatch", signature="s", body=[rule]))
        return client

    def _on_message(self, msg: Message) -> None:
        if msg.message_type == MessageType.METHOD_RETURN and msg.reply_serial == self._scan_serial:
            # Applied here, in the order messages arrived: a signal that came after this reply is newer and
            # must win, which it would not if the awaiting coroutine applied the reply when it resumes.
            self.values.update({path: _plain(props) for path, props in msg.body[0].items()})
            return
        if msg.message_type != MessageType.SIGNAL:
            return
        if msg.member == "ItemsChanged" and msg.sender == self.owner:
            self.items_changed += 1
            for path, props in msg.body[0].items():
                self.values[path] = _plain(props)
                self.history.append((path, self.values[path]))
            self._changed.set()
        elif msg.member == "NameOwnerChanged" and msg.body[0] == self.service:
            self.owner = msg.body[2] or None
            if self.owner is None:
                self.values_when_name_went = dict(self.values)
            self._changed.set()

    async def name_owner(self) -> str | None:
        reply = await self.bus.call(
            Message(**DBUS, member="GetNameOwner", signature="s", body=[self.service])
        )
        return reply.body[0] if reply.message_type == MessageType.METHOD_RETURN else None

    async def get_items(self) -> dict[str, Any]:
        reply = await self.bus.call(
            Message(destination=self.service, path="/", interface=BUSITEM, member="GetItems")
        )
        assert reply.message_type == MessageType.METHOD_RETURN, reply.body
        return {path: _plain(props) for path, props in reply.body[0].items()}

    async def wait_for_service(self, timeout: float) -> None:
        """Wait for the name, then read every path once (the Venus scan)."""
        await self.wait_until(lambda c: c.owner is not None, timeout, poll_owner=True)
        scan = Message(
            destination=self.service,
            path="/",
            interface=BUSITEM,
            member="GetItems",
            serial=self.bus.next_serial(),
        )
        self._scan_serial = scan.serial
        reply = await self.bus.call(scan)
        assert reply.message_type == MessageType.METHOD_RETURN, reply.body

    async def wait_until(
        self, predicate: Callable[[VenusClient], bool], timeout: float, poll_owner: bool = False
    ) -> None:
        async def watch() -> None:
            while True:
                if poll_owner and self.owner is None:
                    self.owner = await self.name_owner()
                if predicate(self):
                    return
                self._changed.clear()
                await self._changed.wait()

        try:
            await asyncio.wait_for(watch(), timeout)
        except TimeoutError:  # say what did arrive: a bare TimeoutError leaves a flaky run unexplained
            raise AssertionError(
                f"condition not met within {timeout} s; last values received: {self.history[-16:]}"
            ) from None

    def seen(self, path: str, value: Any, since: int = 0) -> bool:
        """Whether ``path`` took ``value`` in an ItemsChanged after the first ``since`` of :attr:`history`:
        a value that came and went between two looks at :attr:`values` (several signals read in one go by a
        client the machine starved) still counts."""
        return (path, value) in self.history[since:]

    def close(self) -> None:
        self.bus.disconnect()


async def _control_call(
    address: str, member: str, signature: str = "", body: list[Any] | None = None
) -> Message:
    """One call to the fake BlueZ's control object (it lives on the simulated system bus)."""
    bus = await MessageBus(bus_address=address).connect()
    try:
        reply = await call_control(bus, member, signature, body)
    finally:
        bus.disconnect()
    assert reply.message_type == MessageType.METHOD_RETURN, reply.body
    return reply


async def fake_bluez_stats(address: str) -> dict[str, Any]:
    """What the fake BlueZ saw (connect attempts, live connections, ...)."""
    return json.loads((await _control_call(address, "Stats")).body[0])


async def inject_fault(address: str, pack: int, kind: str, duration: float, delay: float = 0.0) -> None:
    await _control_call(address, "Inject", "isdd", [pack, kind, duration, delay])
