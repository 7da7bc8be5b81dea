"""How requests reach a JBD unit and its answers come back, over one connected bleak client.

Kept apart from the link's lifecycle so the transport can change (notifications and writes over the
``AcquireNotify``/``AcquireWrite`` sockets instead of D-Bus messages) without touching the state machine:
the link only opens a transport on a fresh connection, writes requests, and closes it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bleak import BleakClient
    from bleak.backends.characteristic import BleakGATTCharacteristic
    from bleak.backends.service import BleakGATTServiceCollection

_UUID = "0000{}-0000-1000-8000-00805f9b34fb"
# (notify, write) characteristic pairs, most common first: ff01/ff02, and fff1/fff2 on some units.
GATT_PAIRS = ((_UUID.format("ff01"), _UUID.format("ff02")), (_UUID.format("fff1"), _UUID.format("fff2")))


class TransportError(Exception):
    """The unit cannot be talked to on this connection; the message says why."""


class GattTransport:
    """``transport = await GattTransport.open(client, on_data)``; ``await transport.write(frame)``."""

    def __init__(
        self, client: BleakClient, notify: BleakGATTCharacteristic, write: BleakGATTCharacteristic
    ) -> None:
        self._client = client
        self._notify = notify
        self._write = write
        # Write-without-response when the unit offers it: the BMS answers on the notify characteristic
        # anyway, so an ATT acknowledgement only costs airtime.
        self.with_response = "write-without-response" not in write.properties

    @property
    def offers_both_write_types(self) -> bool:
        props = self._write.properties
        return "write" in props and "write-without-response" in props

    @classmethod
    async def open(cls, client: BleakClient, on_data: Callable[[object, bytearray], None]) -> GattTransport:
        pair = jbd_characteristics(client.services)
        if pair is None:
            raise TransportError("no JBD characteristics (ff01/ff02 or fff1/fff2)")
        transport = cls(client, *pair)
        try:
            await client.start_notify(transport._notify, on_data)
        except Exception as exc:
            raise TransportError(f"notify failed: {_describe(exc)}") from exc
        return transport

    async def write(self, frame: bytes) -> None:
        try:
            await self._client.write_gatt_char(self._write, frame, response=self.with_response)
        except Exception as exc:
            raise TransportError(f"write failed: {_describe(exc)}") from exc

    async def close(self) -> None:
        """Stop notifications (the caller bounds the time and disconnects)."""
        if self._client.is_connected:
            await self._client.stop_notify(self._notify)


def jbd_characteristics(
    services: BleakGATTServiceCollection,
) -> tuple[BleakGATTCharacteristic, BleakGATTCharacteristic] | None:
    for notify_uuid, write_uuid in GATT_PAIRS:
        notify = services.get_characteristic(notify_uuid)
        write = services.get_characteristic(write_uuid)
        if notify is not None and write is not None:
            return notify, write
    return None


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
