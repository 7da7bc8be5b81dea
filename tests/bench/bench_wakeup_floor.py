"""What one request/answer costs this machine's Python when the loop sleeps in between, and when it does not.

    .venv/bin/python tests/bench/bench_wakeup_floor.py [--requests 2000] [--gap 0.002]

The link's pattern stripped to its bones: a request datagram into a SEQPACKET socketpair (as into BlueZ's
AcquireWrite socket), another process answering with two datagrams (a JBD answer's notifications), our reader
taking them, a future resolved, the waiting coroutine resumed, one timer armed and cancelled. Run twice:
back to back, and with ``--gap`` seconds of idle loop between requests (what a poll every second looks like).
The difference is the price of the loop going to sleep and being woken again (the wake-up itself plus the
caches it finds cold), paid on every wake-up whatever the work done in it. Issue 15's notes use it to tell
how much of the service's CPU is that price: cost follows wake-ups, so fewer wake-ups per poll (packs asked
and answers read together) is where the rest of the budget is.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import time

REQUEST = b"\xdd\xa5\x03\x00\xff\xfd\x77"
ANSWER = (b"\xdd\x03\x00\x1b" + bytes(16), bytes(14))


def answering_peer(sock: socket.socket) -> None:
    while sock.recv(64):
        for chunk in ANSWER:
            sock.send(chunk)


async def round_trips(requests: int, gap: float) -> tuple[float, float]:
    """(CPU s, wall s) per request/answer."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    child = os.fork()
    if child == 0:
        ours.close()
        answering_peer(theirs)
        os._exit(0)
    theirs.close()
    ours.setblocking(False)
    loop = asyncio.get_running_loop()
    waiting: list[asyncio.Future[bool]] = []
    seen = 0

    def readable() -> None:
        nonlocal seen
        while True:
            try:
                ours.recv(512)
            except BlockingIOError:
                return
            seen += 1
            if seen % len(ANSWER) == 0 and waiting and not waiting[-1].done():
                waiting[-1].set_result(True)

    loop.add_reader(ours.fileno(), readable)
    cpu0, wall0 = time.process_time(), time.monotonic()
    for _ in range(requests):
        answer = loop.create_future()
        waiting[:] = [answer]
        ours.send(REQUEST)
        timer = loop.call_later(2.0, lambda: None)
        await answer
        timer.cancel()
        await asyncio.sleep(gap)  # a benchmark: the idle loop between polls is what is measured
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    loop.remove_reader(ours.fileno())
    ours.close()
    os.waitpid(child, 0)
    return cpu / requests, wall / requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--gap", type=float, default=0.002, help="idle seconds between requests")
    args = parser.parse_args()
    for gap in (0.0, args.gap):
        cpu, wall = asyncio.run(round_trips(args.requests, gap))
        label = "back to back" if gap == 0 else f"{gap * 1e3:g} ms idle between"
        print(f"{label:>24}: {cpu * 1e6:6.0f} us CPU per request/answer (wall {wall * 1e3:.2f} ms)")


if __name__ == "__main__":
    main()
