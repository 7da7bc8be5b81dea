"""`dbus-btbattery record`: run a simulated bank in simulated time and write what its BLE links would carry.

No Bluetooth, no clock: the scenario's bank is stepped in simulated time, and each poll writes, per pack,
the 0x03 request and its 20-byte notifications, then the 0x04 request and its notifications, with small
seeded delays like a real BLE connection. Link faults from the scenario shape the traffic: while a link is
dropped nothing is written but link lines (``backoff`` ... ``connecting``/``subscribing``/``polling``);
a silent BMS gets requests and sends nothing; corrupt, truncated and delayed answers are written as such.
A pack locked with an FF AA password gets the handshake on each new link when the scenario's ``pack_files``
give it the password (the 0x18 frame is written redacted, as in every recording), and silence otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import heapq
import os
import random
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from btbattery.replay import Event
    from btbattery.sim.pack import SimPack
    from btbattery.sim.scenario import Fault, Scenario

PHYSICS_STEP = 0.5  # s, physics integration step (polls land between steps)
FIRST_POLL = 0.5  # s
PACK_STAGGER = 0.07  # s between packs' polls: one radio serves them in turn
REPLY_TIMEOUT = 0.5  # s the imagined link waits for an answer before its next request
LINK_LOSS = ("drop", "drop_midframe", "adapter_loss")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scenario", default="default", help="built-in scenario name or JSON file")
    parser.add_argument("--duration", type=float, help="seconds of simulated time (default: the scenario's)")
    parser.add_argument("--seed", type=int, help="random seed (default: the scenario's)")
    parser.add_argument("--poll-interval", type=float, help="seconds between polls (default: the scenario's)")
    parser.add_argument("--out", required=True, metavar="FILE", help="recording to write ('-' = stdout)")


def main(args: argparse.Namespace) -> int:
    from btbattery.replay import Header, RecordingWriter
    from btbattery.sim.scenario import ScenarioError, load_scenario

    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as exc:
        print(f"record: {exc}", file=sys.stderr)
        return 2
    if args.seed is not None:
        scenario = dataclasses.replace(scenario, seed=args.seed)
    poll_interval = args.poll_interval if args.poll_interval is not None else scenario.poll_interval
    duration = args.duration if args.duration is not None else scenario.duration
    if poll_interval <= 0 or duration < 0:
        print("record: --poll-interval must be > 0 and --duration >= 0", file=sys.stderr)
        return 2
    header = Header(
        packs=tuple(p.address for p in scenario.packs),
        poll_interval=poll_interval,
        meta={"scenario": scenario.name, "seed": scenario.seed, "duration": duration},
    )
    if args.out == "-":
        try:
            RecordingWriter(sys.stdout, header).write_all(simulate(scenario, duration, poll_interval))
            sys.stdout.flush()
        except BrokenPipeError:  # the reader (e.g. head) stopped early: not an error
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    try:
        with open(args.out, "w", encoding="utf-8") as out:
            RecordingWriter(out, header).write_all(simulate(scenario, duration, poll_interval))
    except OSError as exc:
        print(f"record: cannot write {args.out}: {exc.strerror}", file=sys.stderr)
        return 2
    return 0


def simulate(
    scenario: Scenario, duration: float, poll_interval: float, physics_step: float = PHYSICS_STEP
) -> Iterator[Event]:
    """Every recorded event of ``duration`` seconds of ``scenario``, in time order. A coarser
    ``physics_step`` makes a long run (the day-long soak) cheaper."""
    bank = scenario.build_bank()
    rng = random.Random(scenario.seed)
    links = [
        _Link(n, pack, rng, scenario.pack_files.get(n, {}).get("PASSWORD"))
        for n, pack in enumerate(bank.packs, start=1)
    ]
    pending: list[tuple[float, int, Event]] = []  # heap: (t, sequence, event); delayed answers overtake
    sequence = 0
    t_phys = 0.0
    poll_t = FIRST_POLL
    while poll_t < duration:
        while t_phys < poll_t - 1e-9:
            dt = min(physics_step, poll_t - t_phys)
            scenario.advance(bank, t_phys, dt)
            t_phys += dt
        for link in links:
            t = poll_t + (link.number - 1) * PACK_STAGGER
            for event in link.poll(t, scenario.faults_for(link.number, t)):
                heapq.heappush(pending, (event.t, sequence, event))
                sequence += 1
        # Everything before the next poll is final: nothing later can be stamped earlier than that.
        poll_t += poll_interval
        while pending and pending[0][0] < poll_t:
            yield heapq.heappop(pending)[2]
    while pending:  # the last poll's answers, even if they end just after ``duration``
        yield heapq.heappop(pending)[2]


class _Link:
    """One pack's BLE link as the recorder imagines it: up or down, and what a poll puts on the air."""

    def __init__(self, number: int, pack: SimPack, rng: random.Random, password: str | None = None) -> None:
        self.number = number
        self.pack = pack
        self.address = pack.params.address
        self.rng = rng
        self.password = password
        self.up = False
        self.answer: bytes | None = None  # the last frame the pack answered

    def poll(self, t: float, faults: list[Fault]) -> list[Event]:
        from btbattery.model import LinkState
        from btbattery.protocol import jbd
        from btbattery.replay import LinkChange

        kinds = {f.kind for f in faults}
        lost = kinds & set(LINK_LOSS)
        if lost:
            if not self.up:
                return []
            self.up = False
            reason = "adapter lost" if "adapter_loss" in lost else "link lost"
            events = self._midframe(t) if "drop_midframe" in lost else []
            t_lost = events[-1].t + 0.01 if events else t
            return [*events, LinkChange(t_lost, self.address, LinkState.BACKOFF, reason)]
        events: list[Event] = []
        if not self.up:
            events += [
                LinkChange(t, self.address, LinkState.CONNECTING),
                LinkChange(t + 0.15, self.address, LinkState.SUBSCRIBING),
                LinkChange(t + 0.25, self.address, LinkState.POLLING),
            ]
            self.up = True
            self.pack.new_session()
            t += 0.3
            if self.password is not None:
                t = self._handshake(events, t, faults)
            t = self._exchange(events, t + 0.3, jbd.HARDWARE_REQUEST, faults)
        t = self._exchange(events, t, jbd.BASIC_INFO_REQUEST, faults)
        self._exchange(events, t, jbd.CELL_VOLTAGES_REQUEST, faults)
        return events

    def _handshake(self, events: list[Event], t: float, faults: list[Fault]) -> float:
        """The FF AA exchange the service makes with a configured password: 0x15, 0x17, 0x18."""
        from btbattery.model import LinkState
        from btbattery.protocol import jbd
        from btbattery.replay import LinkChange

        assert self.password is not None
        events.append(LinkChange(t, self.address, LinkState.AUTHENTICATING))
        t = self._exchange(events, t + 0.01, jbd.app_key_request(), faults)
        t = self._exchange(events, t, jbd.random_request(), faults)
        try:
            random_byte = jbd.parse_auth(self.answer or b"").answer
        except jbd.JbdError:
            return t  # no random byte (silent, corrupt): the handshake stops here, as the link's would
        return self._exchange(
            events, t, jbd.password_request(self.address, self.password, random_byte), faults
        )

    def _exchange(self, events: list[Event], t: float, request: bytes, faults: list[Fault]) -> float:
        """Append a request at ``t`` and the notifications that answer it, shaped by the active faults;
        return when the link sends its next request (after the answer, or when it stops waiting)."""
        from btbattery.protocol import jbd
        from btbattery.replay import Traffic

        events.append(Traffic(t, self.address, "tx", request))
        frame = self.answer = self.pack.respond(request)
        kinds = {f.kind for f in faults}
        if frame is None or "silent" in kinds:
            return t + REPLY_TIMEOUT
        rng = self.rng
        if "truncate" in kinds:
            frame = frame[: rng.randrange(1, len(frame))]
        chunks = jbd.split_notifications(frame)
        if "corrupt" in kinds:
            i = rng.randrange(len(chunks))
            damaged = bytearray(chunks[i])
            damaged[rng.randrange(len(damaged))] ^= rng.randrange(1, 256)
            chunks[i] = bytes(damaged)
        late = max((f.delay for f in faults if f.kind == "delay"), default=0.0)
        at = last = t + late + rng.uniform(0.03, 0.06)
        for chunk in chunks:
            events.append(Traffic(at, self.address, "rx", chunk))
            last = at
            at += rng.uniform(0.0075, 0.015)  # one notification per connection interval
        # The link waits for the answer, but not for ever: a late one arrives after the next request.
        return min(last + 0.02, t + REPLY_TIMEOUT)

    def _midframe(self, t: float) -> list[Event]:
        """A 0x03 request whose answer stops after the first notification, then the link is gone."""
        from btbattery.protocol import jbd
        from btbattery.replay import Traffic

        frame = self.pack.respond(jbd.BASIC_INFO_REQUEST) or b""
        first = jbd.split_notifications(frame)[:1]
        at = t + self.rng.uniform(0.03, 0.06)
        return [Traffic(t, self.address, "tx", jbd.BASIC_INFO_REQUEST)] + [
            Traffic(at, self.address, "rx", chunk) for chunk in first
        ]
