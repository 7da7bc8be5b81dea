"""Random method calls and variants from another connection while the battery service runs: only clear errors,
never a crash or a changed value (issue 16). The long run is tests/bench/bench_fuzz.py."""

from __future__ import annotations

from dbus_bank import ServiceFactory, bank_state, get_items
from dbus_fast.aio import MessageBus
from support.dbusfuzz import fuzz_surface

from btbattery.dbus.battery import SERVICE_NAME

WRITABLE = {"/CustomName"}  # the one path a client may change (with a valid string)


async def test_random_calls_get_clear_answers_and_change_nothing(
    start_service: ServiceFactory, client: MessageBus
) -> None:
    service = await start_service(packs=2, cells_per_pack=4)
    service.publish(bank_state(packs=2, cells=4))
    before = await get_items(client, SERVICE_NAME)
    paths = sorted(before)
    answers = await fuzz_surface(client, SERVICE_NAME, paths, calls=300, seed=16)
    after = await get_items(client, SERVICE_NAME)
    assert service.tree._bus.connected
    assert set(after) == set(before)
    changed = {p for p in before if p not in WRITABLE and after[p] != before[p]}
    assert not changed, changed
    assert answers["return"] > 25 and answers["InvalidArgs"] > 5 and answers["UnknownObject"] > 5, answers
