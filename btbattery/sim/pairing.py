"""The fake BlueZ's agent registry and LE pairing, with BlueZ 5.72's rules (src/agent.c, src/device.c).

- ``AgentManager1`` at ``/org/bluez`` (doc/org.bluez.AgentManager.rst): ``RegisterAgent(o, s)`` registers at
  most one agent per D-Bus connection (a second -> ``AlreadyExists``) with a capability from
  :data:`CAPABILITIES` (``""`` means KeyboardDisplay; anything else -> ``InvalidArguments``);
  ``RequestDefaultAgent(o)`` / ``UnregisterAgent(o)`` accept only the caller's own registered path, else
  ``DoesNotExist``. An agent disappears with its connection (agent.c ``agent_disconnect``).
- ``Device1.Pair`` (device.c ``pair_device``) uses the caller's own agent, else the default agent; with
  neither it pairs as NoInputNoOutput (Just Works). A bond in progress -> ``InProgress``; already bonded ->
  ``AlreadyExists``. For passkey entry BlueZ calls ``Agent1.RequestPasskey(o) -> u`` and waits at most
  60 s (agent.c ``REQUEST_TIMEOUT``), then calls ``Agent1.Cancel``; failures map to the
  ``Authentication*`` errors below.

Whether the pack side wants a passkey is the simulated unit's ``pairing`` kind (see
:class:`~btbattery.sim.pack.PackParams`).
"""

from __future__ import annotations

from dataclasses import dataclass

AGENT_MANAGER_IFACE = "org.bluez.AgentManager1"
AGENT_IFACE = "org.bluez.Agent1"
AGENT_MANAGER_PATH = "/org/bluez"
CAPABILITIES = {
    "": "KeyboardDisplay",
    "DisplayOnly": "DisplayOnly",
    "DisplayYesNo": "DisplayYesNo",
    "KeyboardOnly": "KeyboardOnly",
    "NoInputNoOutput": "NoInputNoOutput",
    "KeyboardDisplay": "KeyboardDisplay",
}
# Capabilities that can type a passkey the unit displays (or knows): passkey entry needs one of them.
CAN_TYPE = {"KeyboardOnly", "KeyboardDisplay"}
REQUEST_TIMEOUT = 60.0  # s, agent.c

ERR_ALREADY_EXISTS = "org.bluez.Error.AlreadyExists"
ERR_DOES_NOT_EXIST = "org.bluez.Error.DoesNotExist"
ERR_INVALID_ARGUMENTS = "org.bluez.Error.InvalidArguments"
ERR_AUTH_FAILED = "org.bluez.Error.AuthenticationFailed"
ERR_AUTH_TIMEOUT = "org.bluez.Error.AuthenticationTimeout"
ERR_AUTH_CANCELED = "org.bluez.Error.AuthenticationCanceled"
ERR_AUTH_REJECTED = "org.bluez.Error.AuthenticationRejected"
ERR_NOT_PERMITTED = "org.bluez.Error.NotPermitted"
# gatt-client.c: ATT Insufficient Authentication / Encryption / Key Size become this on ReadValue,
# WriteValue type "request" and StartNotify (the CCCD write).
NOT_PAIRED = (ERR_NOT_PERMITTED, "Not paired")


@dataclass(frozen=True, slots=True)
class Agent:
    owner: str  # unique bus name of the connection that registered it
    path: str
    capability: str


class AgentRegistry:
    """Who registered which agent, and which one is the default."""

    def __init__(self) -> None:
        self._agents: dict[str, Agent] = {}
        self._default: str | None = None  # owner of the default agent

    def register(self, owner: str, path: str, capability: str) -> tuple[str, str] | None:
        """None on success, else a D-Bus error (name, text)."""
        if owner in self._agents:
            return ERR_ALREADY_EXISTS, "Already Exists"
        if capability not in CAPABILITIES:
            return ERR_INVALID_ARGUMENTS, "Invalid arguments in method call"
        self._agents[owner] = Agent(owner, path, CAPABILITIES[capability])
        return None

    def request_default(self, owner: str, path: str) -> tuple[str, str] | None:
        agent = self._agents.get(owner)
        if agent is None or agent.path != path:
            return ERR_DOES_NOT_EXIST, "Does Not Exist"
        self._default = owner
        return None

    def unregister(self, owner: str, path: str) -> tuple[str, str] | None:
        agent = self._agents.get(owner)
        if agent is None or agent.path != path:
            return ERR_DOES_NOT_EXIST, "Does Not Exist"
        self.gone(owner)
        return None

    def gone(self, owner: str) -> None:
        """The connection went away: its agent goes with it."""
        self._agents.pop(owner, None)
        if self._default == owner:
            self._default = None

    def for_pairing(self, caller: str) -> Agent | None:
        """device.c: the caller's own agent, else the default one, else none (Just Works)."""
        return self._agents.get(caller) or (self._agents.get(self._default) if self._default else None)

    def clear(self) -> None:
        """bluetoothd went away: every registration is lost."""
        self._agents.clear()
        self._default = None
