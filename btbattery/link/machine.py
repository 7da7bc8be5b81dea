"""The pack link lifecycle, declared once as data: states, triggers, state timeouts and the backoff policy.

The same table builds every pack's live machine (:func:`build_machine`) and the diagram in ``diagrams/``
(:func:`mermaid`, :func:`dot`), so the picture cannot drift from the code without a test noticing.

Decision on ``queued``: the machine runs with ``queued=True``. With transitions' default a new trigger cancels
the callbacks still running for the previous one, which once cancelled a BLE connect awaited in ``on_enter``.
Here callbacks never await BLE work: entering a state starts that state's *activity* as a task owned by the
link, the activity fires the next trigger when it is done, and leaving the state cancels it. Triggers are
therefore short, and queueing them keeps them strictly in order (a disconnect callback and a timeout arriving
together are processed one after the other, the second usually ignored as invalid in the new state).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Any

(
    IDLE,
    LOCATING,
    SCANNING,
    CONNECTING,
    PAIRING,
    SUBSCRIBING,
    AUTHENTICATING,
    POLLING,
    BACKOFF,
    REFUSED,
    RESETTING,
) = (
    "idle",
    "locating",
    "scanning",
    "connecting",
    "pairing",
    "subscribing",
    "authenticating",
    "polling",
    "backoff",
    "refused",
    "resetting",
)
ACTIVE_STATES = [LOCATING, SCANNING, CONNECTING, PAIRING, SUBSCRIBING, AUTHENTICATING, POLLING, RESETTING]
# Where a pack can turn out to be locked against us: pairing refused or needed, wrong or missing password.
LOCK_STATES = [PAIRING, SUBSCRIBING, AUTHENTICATING, POLLING]

# Each state: name, and for timed states which LinkTimeouts field bounds it and the callback that fires.
STATES: list[dict[str, Any]] = [
    {"name": IDLE},
    # Asks BlueZ what it knows of the pack: closes a connection a previous client left, removes the device
    # after repeated identical failures, notices an unpowered adapter.
    {"name": LOCATING, "timeout": "locate", "on_timeout": "timed_out"},
    {"name": SCANNING, "timeout": "scan", "on_timeout": "timed_out"},
    {"name": CONNECTING, "timeout": "connect", "on_timeout": "timed_out"},
    # Only packs with a PASSKEY pass here; a bond BlueZ still holds makes it a quick check.
    {"name": PAIRING, "timeout": "pair", "on_timeout": "timed_out"},
    {"name": SUBSCRIBING, "timeout": "subscribe", "on_timeout": "timed_out"},
    # Only packs with a PASSWORD: the FF AA handshake 0x15 -> 0x17 -> 0x18.
    {"name": AUTHENTICATING, "timeout": "authenticate", "on_timeout": "timed_out"},
    {"name": POLLING},
    # Its timeout is the backoff delay, set afresh each time the link backs off.
    {"name": BACKOFF, "timeout": "backoff", "on_timeout": "retry"},
    # The pack is locked against us (wrong or missing password or passkey): nothing a quick retry mends,
    # so it is tried again only after minutes, and the other packs carry on.
    {"name": REFUSED, "timeout": "refused", "on_timeout": "retry"},
    # Power-cycles the adapter (shared by its packs, bounded per hour).
    {"name": RESETTING, "timeout": "reset", "on_timeout": "timed_out"},
]

# "in_origin" drops a trigger fired for a state the link has already left (a timeout and a result racing).
TRANSITIONS: list[dict[str, Any]] = [
    {"trigger": "begin", "source": IDLE, "dest": LOCATING},
    # BlueZ has a device object: connect to it without waiting for an advert (a connected pack sends none).
    {"trigger": "known", "source": LOCATING, "dest": CONNECTING, "conditions": "in_origin"},
    {"trigger": "unknown", "source": LOCATING, "dest": SCANNING, "conditions": "in_origin"},
    # Removed from BlueZ after the same failure again and again (stale cache, a dead client's connect).
    {"trigger": "forgotten", "source": LOCATING, "dest": SCANNING, "conditions": "in_origin"},
    {"trigger": "wedged", "source": LOCATING, "dest": RESETTING, "conditions": "in_origin"},
    {"trigger": "reset", "source": RESETTING, "dest": LOCATING, "conditions": "in_origin"},
    {"trigger": "found", "source": SCANNING, "dest": CONNECTING, "conditions": "in_origin"},
    {"trigger": "connected", "source": CONNECTING, "dest": SUBSCRIBING, "conditions": "in_origin"},
    {"trigger": "pair", "source": CONNECTING, "dest": PAIRING, "conditions": "in_origin"},
    {"trigger": "paired", "source": PAIRING, "dest": SUBSCRIBING, "conditions": "in_origin"},
    {"trigger": "subscribed", "source": SUBSCRIBING, "dest": POLLING, "conditions": "in_origin"},
    {"trigger": "authenticate", "source": SUBSCRIBING, "dest": AUTHENTICATING, "conditions": "in_origin"},
    {"trigger": "authenticated", "source": AUTHENTICATING, "dest": POLLING, "conditions": "in_origin"},
    # A working link lost (another client disconnected everyone): straight back to the known device.
    {"trigger": "lost", "source": POLLING, "dest": LOCATING, "conditions": "in_origin"},
    # Any failure, from any working state: tear down, wait, start again.
    {
        "trigger": "fail",
        "source": ACTIVE_STATES,
        "dest": BACKOFF,
        "conditions": "in_origin",
        "before": "plan_backoff",
    },
    {"trigger": "refuse", "source": LOCK_STATES, "dest": REFUSED, "conditions": "in_origin"},
    {"trigger": "retry", "source": [BACKOFF, REFUSED], "dest": LOCATING},
    {"trigger": "halt", "source": [*ACTIVE_STATES, BACKOFF, REFUSED], "dest": IDLE},
]
# Model methods run on every state change: leaving stops the old state's activity, entering starts
# the new one.
LEAVE_CALLBACK, ENTER_CALLBACK = "leave_state", "enter_state"
TRIGGERS = tuple(dict.fromkeys(t["trigger"] for t in TRANSITIONS))


@dataclass(frozen=True, slots=True)
class LinkTimeouts:
    """Bounds on each step, seconds. ``request`` bounds one poll answer; ``dead_after`` timeouts in a row
    mean the link is dead and gets rebuilt."""

    locate: float = 10.0  # asking BlueZ, closing a stale connection, removing a device
    scan: float = 30.0
    connect: float = 20.0  # one connection attempt (bleak's own bound)
    connect_wait: float = 60.0  # the connecting state, waiting for the adapter's turn included
    subscribe: float = 10.0
    pair: float = 75.0  # BlueZ waits up to 60 s for the agent's passkey, plus the SMP exchange
    authenticate: float = 10.0  # the whole FF AA handshake (esphome's auth_timeout)
    refused: float = 300.0  # before a locked pack is tried again
    request: float = 2.0
    dead_after: int = 3
    disconnect: float = 3.0
    reset: float = 15.0  # an adapter power cycle
    forget_after: int = 3  # identical failures in a row (not timeouts) before the device is removed


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter and a cap: ``min(cap, initial * factor**attempt) * (1 ± jitter)``,
    never above ``cap``. Attempt 0 is the first retry after a failure; success resets the count."""

    initial: float = 1.0
    factor: float = 2.0
    cap: float = 60.0
    jitter: float = 0.2  # fraction either side

    def delay(self, attempt: int, rng: random.Random) -> float:
        return backoff_delay(self, attempt, rng.random())


def backoff_delay(policy: Backoff, attempt: int, u: float) -> float:
    """The delay for ``attempt`` given a uniform sample ``u`` in [0, 1). Pure, for tests and the machine."""
    exponent = min(max(attempt, 0), 64)  # beyond this the cap has long won; keeps the power finite
    base = min(policy.cap, policy.initial * policy.factor**exponent)
    jittered = base * (1.0 + policy.jitter * (2.0 * u - 1.0))
    return max(0.0, min(policy.cap, jittered))


def state_table(timeouts: LinkTimeouts, backoff: Backoff) -> list[dict[str, Any]]:
    """The STATES table with timeout names resolved to seconds for one link."""
    values = {
        "locate": timeouts.locate,
        "reset": timeouts.reset,
        "scan": timeouts.scan,
        "connect": timeouts.connect_wait,
        "subscribe": timeouts.subscribe,
        "pair": timeouts.pair,
        "authenticate": timeouts.authenticate,
        "refused": timeouts.refused,
        "backoff": backoff.initial,
    }
    return [{**s, "timeout": values[s["timeout"]]} if "timeout" in s else dict(s) for s in STATES]


def build_machine(model: object, timeouts: LinkTimeouts, backoff: Backoff, name: str) -> Any:
    """One asyncio machine with state timeouts driving ``model`` (which provides the callbacks)."""
    from transitions.extensions.asyncio import AsyncMachine, AsyncTimeout
    from transitions.extensions.states import add_state_features

    # transitions logs two INFO lines per state change without the pack's name; the link logs its own.
    quiet = logging.getLogger("transitions")
    if quiet.level == logging.NOTSET:
        quiet.setLevel(logging.WARNING)

    @add_state_features(AsyncTimeout)
    class LinkMachine(AsyncMachine):
        pass

    return LinkMachine(
        model=model,
        states=state_table(timeouts, backoff),
        transitions=TRANSITIONS,
        initial=IDLE,
        queued=True,
        send_event=True,
        ignore_invalid_triggers=True,
        auto_transitions=False,
        before_state_change=LEAVE_CALLBACK,
        after_state_change=ENTER_CALLBACK,
        name=name,
    )


# ----- diagrams ---------------------------------------------------------------------------------


def mermaid() -> str:
    """Mermaid ``stateDiagram-v2`` source of the link machine, drawn by transitions from the table."""
    from transitions.extensions import MachineFactory

    graph_machine = MachineFactory.get_predefined(graph=True)

    class _Model:
        pass

    machine = graph_machine(
        model=_Model(),
        states=[s["name"] for s in STATES],
        transitions=TRANSITIONS,
        initial=IDLE,
        auto_transitions=False,
        graph_engine="mermaid",
        title="pack link",
    )
    # transitions writes "Class" where Mermaid's grammar has "class"; trailing blanks are noise in diffs.
    lines = [
        line.rstrip().replace("  Class ", "  class ", 1) for line in machine.get_graph().source.splitlines()
    ]
    return _with_timeouts("\n".join(lines).rstrip() + "\n")


def _with_timeouts(source: str) -> str:
    notes = [
        f"  note right of {s['name']}: timeout ({s['timeout']}) -> {s['on_timeout']}"
        for s in STATES
        if "timeout" in s
    ]
    return source + "\n".join(notes) + "\n"


def dot() -> str:
    """Graphviz source of the same table (rendered to SVG when the ``dot`` program is installed)."""
    lines = [
        "digraph link {",
        '  rankdir=LR; node [shape=box, style=rounded, fontname="sans"];',
        "  start [shape=point]; start -> idle;",
    ]
    for state in STATES:
        label = state["name"]
        if "timeout" in state:
            label += f"\\n(timeout: {state['timeout']} -> {state['on_timeout']})"
        lines.append(f'  {state["name"]} [label="{label}"];')
    for t in TRANSITIONS:
        sources = t["source"] if isinstance(t["source"], list) else [t["source"]]
        lines += [f'  {src} -> {t["dest"]} [label="{t["trigger"]}"];' for src in sources]
    lines.append("}")
    return "\n".join(lines) + "\n"
