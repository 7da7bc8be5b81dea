"""The fake BlueZ's agent rules, as BlueZ 5.72 has them (src/agent.c, src/device.c), without a bus."""

from __future__ import annotations

from btbattery.sim.pairing import (
    ERR_ALREADY_EXISTS,
    ERR_DOES_NOT_EXIST,
    ERR_INVALID_ARGUMENTS,
    AgentRegistry,
)

OURS, OTHER = ":1.7", ":1.9"


def test_one_agent_per_connection_with_a_known_capability() -> None:
    agents = AgentRegistry()
    assert agents.register(OURS, "/a", "Telepathy")[0] == ERR_INVALID_ARGUMENTS  # type: ignore[index]
    assert agents.register(OURS, "/a", "KeyboardOnly") is None
    assert agents.register(OURS, "/b", "KeyboardOnly")[0] == ERR_ALREADY_EXISTS  # type: ignore[index]
    assert agents.register(OTHER, "/a", "") is None  # "" is KeyboardDisplay; paths are per connection
    assert agents.for_pairing(OTHER).capability == "KeyboardDisplay"  # type: ignore[union-attr]


def test_default_agent_only_from_its_owner_and_gone_with_the_connection() -> None:
    agents = AgentRegistry()
    agents.register(OURS, "/a", "KeyboardOnly")
    assert agents.request_default(OTHER, "/a")[0] == ERR_DOES_NOT_EXIST  # type: ignore[index]
    assert agents.request_default(OURS, "/wrong")[0] == ERR_DOES_NOT_EXIST  # type: ignore[index]
    assert agents.for_pairing(OTHER) is None  # no own agent, no default yet: Just Works
    assert agents.request_default(OURS, "/a") is None
    # Pair from bleak's own connection finds the default agent; its owner's own call finds its own.
    assert agents.for_pairing(OTHER).owner == OURS  # type: ignore[union-attr]
    agents.gone(OURS)
    assert agents.for_pairing(OTHER) is None
    assert agents.unregister(OURS, "/a")[0] == ERR_DOES_NOT_EXIST  # type: ignore[index]
