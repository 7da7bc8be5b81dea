"""Random method calls against a running BusItem service from another connection (issue 16): only clear
answers (a return, or a D-Bus error of a known kind), never a crash, never a changed value. Shared by
tests/dbus/test_dbus_fuzz.py and tests/bench/bench_fuzz.py."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

from dbus_fast import Message, MessageFlag, MessageType, Variant
from dbus_fast.aio import MessageBus

BUSITEM = "com.victronenergy.BusItem"
CLEAR_ERRORS = {
    f"org.freedesktop.DBus.Error.{name}" for name in ("InvalidArgs", "UnknownMethod", "UnknownObject")
}
# Weighted toward what the service serves, so most calls reach its handlers rather than dbus-fast's.
MEMBERS = [*["GetValue", "GetText", "SetValue", "GetItems"] * 4, "Introspect", "Explode", "", "setvalue"]
INTERFACES = [*[BUSITEM, None] * 3, "org.freedesktop.DBus.Introspectable", "org.example.Other"]
# Variants of every basic type and a few containers; strings include the hostile ones.
_STRINGS = ["", "x" * 10_000, "\u202e", "a\x01b", "../../etc", "%s%n", "🔋"]


def random_variant(rng: random.Random, depth: int = 0) -> Variant:
    kind = rng.choice("ybnqiuxtdsogv" + ("aa" if depth < 2 else ""))
    if kind == "y":
        return Variant("y", rng.randrange(256))
    if kind in "nqiuxt":
        bits = {"n": (-(2**15), 2**15 - 1), "q": (0, 2**16 - 1), "i": (-(2**31), 2**31 - 1),
                "u": (0, 2**32 - 1), "x": (-(2**63), 2**63 - 1), "t": (0, 2**64 - 1)}[kind]  # fmt: skip
        return Variant(kind, rng.choice([bits[0], bits[1], 0, rng.randint(*bits)]))
    if kind == "b":
        return Variant("b", rng.random() < 0.5)
    if kind == "d":
        return Variant(
            "d", rng.choice([0.0, -1.0, 1e308, float("nan"), float("inf"), rng.uniform(-1e6, 1e6)])
        )
    if kind == "s":
        return Variant("s", rng.choice(_STRINGS))
    if kind == "o":
        return Variant("o", rng.choice(["/", "/Soc", "/a/b"]))
    if kind == "g":
        return Variant("g", rng.choice(["", "a{sv}", "i"]))
    if kind == "v":
        return Variant("v", random_variant(rng, depth + 1))
    return Variant("av", [random_variant(rng, depth + 1) for _ in range(rng.randrange(3))])


def random_call(rng: random.Random, service: str, paths: list[str]) -> Message:
    member = rng.choice(MEMBERS)
    path = rng.choice([*rng.sample(paths, min(3, len(paths))), "/", "/No/Such", "/Voltages", "/Info"])
    body: list[Any] = []
    signature = ""
    shape = rng.random()
    if shape < 0.5:
        signature, body = "v", [random_variant(rng)]
    elif shape < 0.6:
        signature, body = "s", [rng.choice(_STRINGS)]
    elif shape < 0.7:
        signature, body = "vv", [random_variant(rng), random_variant(rng)]
    elif shape < 0.8:
        signature, body = "a{sv}", [{"k": random_variant(rng)}]
    return Message(
        destination=service,
        path=path,
        interface=rng.choice(INTERFACES),
        member=member or "GetValue",
        signature=signature,
        body=body,
        flags=MessageFlag.NO_REPLY_EXPECTED if rng.random() < 0.05 else MessageFlag.NONE,
    )


async def fuzz_surface(
    client: MessageBus, service: str, paths: list[str], calls: int, seed: int
) -> Counter[str]:
    """``calls`` random calls; returns how each was answered. Raises AssertionError on an unclear answer."""
    rng = random.Random(seed)
    answers: Counter[str] = Counter()
    for _ in range(calls):
        msg = random_call(rng, service, paths)
        if msg.flags & MessageFlag.NO_REPLY_EXPECTED:
            await client.send(msg)
            answers["no reply asked"] += 1
            continue
        try:
            reply = await asyncio.wait_for(client.call(msg), 5.0)
        except TimeoutError:
            what = f"{msg.member} {msg.path} {msg.interface} {msg.signature}"
            raise AssertionError(f"no answer in 5 s to {what}") from None
        assert reply is not None
        if reply.message_type is MessageType.METHOD_RETURN:
            answers["return"] += 1
        else:
            assert reply.message_type is MessageType.ERROR, reply
            assert reply.error_name in CLEAR_ERRORS, (
                msg.member,
                msg.path,
                msg.signature,
                reply.error_name,
                reply.body,
            )
            answers[reply.error_name.rsplit(".", 1)[1]] += 1
    return answers
