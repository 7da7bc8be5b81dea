"""Our own ``org.bluez.Agent1``, so BlueZ can ask this process for a pack's LE pairing passkey.

bleak 3.1 has no agent: ``BleakClient.pair()`` only calls ``Device1.Pair`` from bleak's own D-Bus connection,
and BlueZ then asks the *default* agent for the passkey (src/device.c ``pair_device`` -> src/agent.c
``agent_get(NULL)``; doc/org.bluez.AgentManager.rst). So the service registers an agent on a connection of
its own: ``RegisterAgent(path, "KeyboardOnly")`` (it can type a passkey, shows nothing), then
``RequestDefaultAgent(path)``. It answers ``RequestPasskey`` only for a pack that has a PASSKEY configured,
and rejects everything else (PIN codes, confirmations, authorisations, other devices), so it never helps
pair a device it does not know.

Served by a message handler, not an exported ``ServiceInterface``: the handler works the same on the older
dbus-fast that Venus OS ships. The passkey leaves the process only in the ``RequestPasskey`` reply.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from dbus_fast import BusType, Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from btbattery.model import Secret

log = logging.getLogger(__name__)

AGENT_IFACE = "org.bluez.Agent1"
AGENT_MANAGER_IFACE = "org.bluez.AgentManager1"
AGENT_PATH = "/io/btbattery/agent"
CAPABILITY = "KeyboardOnly"
ERR_REJECTED = "org.bluez.Error.Rejected"


def address_of(device_path: str) -> str:
    """``/org/bluez/hci0/dev_AA_BB_CC_DD_EE_FF`` -> ``AA:BB:CC:DD:EE:FF`` (empty when not a device)."""
    leaf = device_path.rsplit("/", 1)[-1]
    return leaf[4:].replace("_", ":").upper() if leaf.startswith("dev_") else ""


class PairingAgent:
    """``agent = PairingAgent({"AA:..": Secret("123456")})``; ``await agent.register()`` before pairing.

    Registration is repeated before every pairing (cheap, and rare): bluetoothd forgets agents when it
    restarts, and our connection may have been replaced meanwhile.
    """

    def __init__(self, passkeys: Mapping[str, Secret], bus_address: str | None = None) -> None:
        self._passkeys = {address.upper(): key for address, key in passkeys.items()}
        self._bus_address = bus_address
        self._bus: MessageBus | None = None
        self.requests = 0  # RequestPasskey calls answered with a passkey, for tests and logs
        self.refused = 0  # calls rejected (unknown device, PIN code, confirmation, ...)

    async def register(self) -> None:
        """Export the agent (once per connection) and make it BlueZ's default agent."""
        bus = await self._connection()
        reply = await self._call(bus, "RegisterAgent", "os", [AGENT_PATH, CAPABILITY])
        # AlreadyExists: registered earlier on this connection (src/agent.c allows one per connection).
        if reply.message_type == MessageType.ERROR and reply.error_name != "org.bluez.Error.AlreadyExists":
            raise RuntimeError(f"RegisterAgent failed: {reply.error_name}: {_text(reply)}")
        reply = await self._call(bus, "RequestDefaultAgent", "o", [AGENT_PATH])
        if reply.message_type == MessageType.ERROR:
            raise RuntimeError(f"RequestDefaultAgent failed: {reply.error_name}: {_text(reply)}")

    async def is_paired(self, device_path: str) -> bool:
        """BlueZ's ``Paired`` of the device now (False when BlueZ does not know it)."""
        bus = await self._connection()
        reply = await bus.call(
            Message(
                destination="org.bluez",
                path=device_path,
                interface="org.freedesktop.DBus.Properties",
                member="Get",
                signature="ss",
                body=["org.bluez.Device1", "Paired"],
            )
        )
        if reply.message_type != MessageType.METHOD_RETURN:
            return False
        value = reply.body[0]
        return bool(value.value if isinstance(value, Variant) else value)

    @property
    def bus_name(self) -> str | None:
        """Our connection's unique name, where BlueZ calls the agent (None before :meth:`register`)."""
        return self._bus.unique_name if self._bus is not None and self._bus.connected else None

    def close(self) -> None:
        bus, self._bus = self._bus, None
        if bus is not None and bus.connected:
            bus.disconnect()  # BlueZ drops the agent with its connection

    async def _connection(self) -> MessageBus:
        if self._bus is None or not self._bus.connected:
            if self._bus_address:
                bus = MessageBus(bus_address=self._bus_address)
            else:
                bus = MessageBus(bus_type=BusType.SYSTEM)
            self._bus = await bus.connect()
            self._bus.add_message_handler(self._on_message)
        return self._bus

    @staticmethod
    async def _call(bus: MessageBus, member: str, signature: str, body: list[object]) -> Message:
        return await bus.call(
            Message(
                destination="org.bluez",
                path="/org/bluez",
                interface=AGENT_MANAGER_IFACE,
                member=member,
                signature=signature,
                body=body,
            )
        )

    def _on_message(self, msg: Message) -> Message | None:
        if msg.message_type != MessageType.METHOD_CALL or msg.path != AGENT_PATH:
            return None
        if msg.interface not in (AGENT_IFACE, None):
            return None
        member = msg.member
        if member == "RequestPasskey":
            address = address_of(str(msg.body[0]))
            passkey = self._passkeys.get(address)
            if passkey is None:
                self.refused += 1
                log.warning("pairing request from %s refused: no PASSKEY configured for it", address or "?")
                return Message.new_error(msg, ERR_REJECTED, "no passkey for this device")
            self.requests += 1
            log.info("pack %s: BlueZ asked for the passkey; answered from PASSKEY", address)
            return Message.new_method_return(msg, "u", [int(passkey.reveal())])
        if member in ("Release", "Cancel", "DisplayPasskey", "DisplayPinCode"):
            if member == "Cancel":
                log.info("BlueZ cancelled a pairing request")
            return Message.new_method_return(msg)
        # RequestPinCode (classic), RequestConfirmation, RequestAuthorization, AuthorizeService: not ours.
        self.refused += 1
        return Message.new_error(msg, ERR_REJECTED, f"{member} is not handled by this agent")


def _text(reply: Message) -> str:
    return str(reply.body[0]) if reply.body else ""
