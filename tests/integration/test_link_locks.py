"""Locked JBD units through the real link, real bleak and the fake BlueZ: the FF AA password handshake,
LE passkey pairing through our own agent, and a clear report when a lock has no secret configured."""

from __future__ import annotations

import dataclasses
import logging

import pytest
from linkharness import LinkRig, scenario

from btbattery.link.pack_link import NEEDS_PAIRING, NEEDS_PASSWORD, PackLocks
from btbattery.model import LinkState, Secret

pytestmark = pytest.mark.usefixtures("system_bus")

PASSWORD, PASSKEY = "s3cr3t", 246810


def locked_bank(packs: int = 2, **lock: object):  # type: ignore[no-untyped-def]
    """The default bank with pack 2 locked as ``lock`` says (PackParams fields)."""
    bank = scenario(packs)
    params = list(bank.packs)
    params[1] = dataclasses.replace(params[1], **lock)  # type: ignore[arg-type]
    return dataclasses.replace(bank, packs=params)


def refused(rig: LinkRig, pack: int) -> bool:
    return rig.rec.state(pack) == LinkState.REFUSED


async def test_password_locked_pack_with_the_right_password_is_polled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    rig = LinkRig(bank=locked_bank(password=PASSWORD), locks={2: PackLocks(password=Secret(PASSWORD))})
    async with rig:
        await rig.rec.all_polling(rig.packs)
        await rig.rec.readings_after(2, 2, since=0, timeout=5.0)
        states = rig.rec.states_of(2)
        assert states[:6] == [
            LinkState.LOCATING,
            LinkState.SCANNING,
            LinkState.CONNECTING,
            LinkState.SUBSCRIBING,
            LinkState.AUTHENTICATING,
            LinkState.POLLING,
        ]
        assert LinkState.AUTHENTICATING not in rig.rec.states_of(1)  # no password, no handshake
        sim = rig.fake.packs[1].sim
        assert sim.unlocked and sim.handshakes == 1
        # The handshake is made again on every connection: the module forgets it with the link.
        rig.fake.inject(2, "drop", 0.3)
        await rig.rec.wait(lambda: rig.rec.states_of(2).count(LinkState.POLLING) >= 2, 15.0, "pack 2 back")
        assert sim.handshakes == 2
    assert_no_secret(caplog, rig, PASSWORD)


async def test_wrong_password_is_refused_once_without_retry_storm(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    rig = LinkRig(bank=locked_bank(password=PASSWORD), locks={2: PackLocks(password=Secret("wr0ng1"))})
    async with rig:
        await rig.rec.wait(lambda: refused(rig, 2), 15.0, "pack 2 refused")
        sim = rig.fake.packs[1].sim
        assert not sim.unlocked and sim.handshakes == 1
        seen = len(rig.rec.readings[1])
        # Meanwhile pack 1 carries on; pack 2 is not tried again within the next (many) polls.
        await rig.rec.readings_after(1, 8, since=seen, timeout=15.0)
        assert refused(rig, 2) and sim.handshakes == 1
        assert rig.rec.states_of(2).count(LinkState.CONNECTING) == 1
        assert not rig.rec.readings[2]
        assert rig.manager is not None and 2 not in rig.fake.connected()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "pack 2" in errors[0].getMessage() and "PASSWORD is wrong" in errors[0].getMessage()
    assert_no_secret(caplog, rig, "wr0ng1", PASSWORD)


async def test_locked_pack_without_password_is_reported_as_needing_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    rig = LinkRig(bank=locked_bank(password=PASSWORD))
    async with rig:
        await rig.rec.wait(lambda: refused(rig, 2), 20.0, "pack 2 reported as locked")
        event = next(e for e in reversed(rig.rec.events) if e.pack == 2)
        assert event.reason.startswith(NEEDS_PASSWORD)
        assert rig.rec.state(1) == LinkState.POLLING
        assert rig.manager is not None and rig.manager.links[1].lock_problem == event.reason
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and NEEDS_PASSWORD in errors[0]
    # An unlocked pack that goes silent is not mistaken for a locked one: it backs off as before.
    assert "poll timeouts" not in errors[0]


async def test_unlocked_silent_pack_is_not_called_locked() -> None:
    async with LinkRig(packs=2) as rig:
        await rig.rec.all_polling(rig.packs)
        await rig.rec.readings_after(2, 1, since=0, timeout=5.0)
        rig.fake.inject(2, "silent", 3.0)
        rig.fake.inject(2, "drop", 0.3)  # a fresh connection that never answers
        await rig.rec.wait(
            lambda: any(e.pack == 2 and "poll timeouts" in e.reason for e in rig.rec.events),
            20.0,
            "pack 2 to back off on timeouts",
        )
        assert LinkState.REFUSED not in rig.rec.states_of(2)


async def test_passkey_pack_pairs_once_and_keeps_the_bond(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    rig = LinkRig(
        bank=locked_bank(pairing="passkey", passkey=PASSKEY),
        locks={2: PackLocks(passkey=Secret(str(PASSKEY)))},
    )
    async with rig:
        await rig.rec.all_polling(rig.packs)
        await rig.rec.readings_after(2, 2, since=0, timeout=5.0)
        stats, link = rig.fake.stats, rig.manager.links[1]  # type: ignore[union-attr]
        assert rig.rec.states_of(2)[:5] == [
            LinkState.LOCATING,
            LinkState.SCANNING,
            LinkState.CONNECTING,
            LinkState.PAIRING,
            LinkState.SUBSCRIBING,
        ]
        assert (stats.pair_calls, stats.passkey_requests, stats.bonds, link.pairings) == (1, 1, 1, 1)
        assert rig.fake.packs[1].paired and rig.fake.packs[1].mitm
        # Reconnects reuse the bond: no Pair call, no passkey asked again.
        for round_ in (2, 3):
            rig.fake.inject(2, "drop", 0.3)
            await rig.rec.wait(
                lambda n=round_: rig.rec.states_of(2).count(LinkState.POLLING) >= n, 15.0, "pack 2 back"
            )
        assert (stats.pair_calls, stats.passkey_requests, link.pairings) == (1, 1, 1)
        # A bond BlueZ lost is made again on the next connection.
        rig.fake.forget_bond(2)
        rig.fake.inject(2, "drop", 0.3)
        await rig.rec.wait(lambda: rig.rec.states_of(2).count(LinkState.POLLING) >= 4, 15.0, "re-paired")
        assert (stats.pair_calls, stats.passkey_requests, link.pairings) == (2, 2, 2)
        assert stats.not_paired_errors == 0
        assert LinkState.PAIRING not in rig.rec.states_of(1)
    assert_no_secret(caplog, rig, str(PASSKEY))


async def test_wrong_passkey_is_refused_without_retry_storm() -> None:
    rig = LinkRig(
        bank=locked_bank(pairing="passkey", passkey=PASSKEY), locks={2: PackLocks(passkey=Secret("111111"))}
    )
    async with rig:
        await rig.rec.wait(lambda: refused(rig, 2), 15.0, "pack 2 refused")
        assert "check PASSKEY" in rig.rec.events[-1].reason or any(
            "check PASSKEY" in e.reason for e in rig.rec.events if e.pack == 2
        )
        seen = len(rig.rec.readings[1])
        await rig.rec.readings_after(1, 6, since=seen, timeout=15.0)
        assert rig.fake.stats.pair_calls == 1 and not rig.fake.packs[1].paired


@pytest.mark.parametrize("kind", ["passkey", "echo"])
async def test_pairing_lock_without_passkey_is_reported_as_needing_pairing(kind: str) -> None:
    rig = LinkRig(bank=locked_bank(pairing=kind, passkey=PASSKEY))
    async with rig:
        await rig.rec.wait(lambda: refused(rig, 2), 20.0, f"pack 2 ({kind}) reported")
        event = next(e for e in reversed(rig.rec.events) if e.pack == 2)
        assert event.reason.startswith(NEEDS_PAIRING)
        assert ("echoes" in event.reason) == (kind == "echo")
        if kind == "echo":
            assert rig.fake.stats.echoes >= 1
        else:
            assert rig.fake.stats.not_paired_errors >= 1
        assert rig.fake.stats.pair_calls == 0  # nothing to pair with: we do not guess a passkey
        assert rig.rec.state(1) == LinkState.POLLING


async def test_echo_unit_answers_after_pairing_with_its_passkey() -> None:
    rig = LinkRig(
        bank=locked_bank(pairing="echo", passkey=PASSKEY), locks={2: PackLocks(passkey=Secret(str(PASSKEY)))}
    )
    async with rig:
        await rig.rec.readings_after(2, 2, since=0, timeout=15.0)
        assert rig.fake.packs[1].mitm and rig.fake.stats.echoes == 0


def assert_no_secret(caplog: pytest.LogCaptureFixture, rig: LinkRig, *secrets: str) -> None:
    """No log line and no link event carries a secret (the D-Bus side is checked end to end)."""
    text = "\n".join(r.getMessage() for r in caplog.records)
    text += "\n".join(f"{e}" for e in rig.rec.events)
    for secret in secrets:
        assert secret not in text
    assert text  # something was captured: the search above means something


async def test_check_locks_names_the_lock_for_doctor() -> None:
    from linkharness import FAST_LINK, FAST_RADIO

    from btbattery.link.probe import check_locks
    from btbattery.sim.bluez import FakeBluez

    bank = locked_bank(password=PASSWORD)
    async with FakeBluez(bank, timing=FAST_RADIO, scripted_faults=False) as fake:
        plain, locked = fake.addresses
        found = await check_locks(locked, timeouts=FAST_LINK, timeout=20.0)
        assert found.state == LinkState.REFUSED and found.problem.startswith(NEEDS_PASSWORD)
        ok = await check_locks(locked, PackLocks(password=Secret(PASSWORD)), timeouts=FAST_LINK, timeout=20.0)
        assert ok.state == LinkState.POLLING and ok.problem == ""
        assert (await check_locks(plain, timeouts=FAST_LINK, timeout=20.0)).state == LinkState.POLLING
        assert fake.connected() == []  # it lets go of the pack every time


async def test_password_set_for_an_unlocked_pack_does_not_keep_it_from_polling(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    rig = LinkRig(packs=2, locks={2: PackLocks(password=Secret(PASSWORD))})  # pack 2 has no lock
    async with rig:
        await rig.rec.readings_after(2, 2, since=0, timeout=15.0)
        assert rig.rec.states_of(2)[4:6] == [LinkState.AUTHENTICATING, LinkState.POLLING]
    ours = [r for r in caplog.records if r.name.startswith("btbattery")]
    warnings = [r.getMessage() for r in ours if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "ignores the FF AA handshake" in warnings[0]


async def test_our_agent_gives_the_passkey_only_for_its_pack(system_bus: str) -> None:
    from dbus_fast import Message, MessageType
    from dbus_fast.aio import MessageBus

    from btbattery.link.agent import AGENT_IFACE, AGENT_PATH

    rig = LinkRig(
        bank=locked_bank(pairing="passkey", passkey=PASSKEY),
        locks={2: PackLocks(passkey=Secret(str(PASSKEY)))},
    )
    async with rig:
        await rig.rec.readings_after(2, 1, since=0, timeout=15.0)
        agent = rig.manager.port.agent  # type: ignore[union-attr]
        assert agent is not None and agent.bus_name
        bus = await MessageBus(bus_address=system_bus).connect()

        async def ask(member: str, signature: str, body: list[object]) -> Message:
            call = Message(
                destination=agent.bus_name,
                path=AGENT_PATH,
                interface=AGENT_IFACE,
                member=member,
                signature=signature,
                body=body,
            )
            return await bus.call(call)

        try:
            plain, locked = (p.path for p in rig.fake.packs)
            refused = [
                await ask("RequestPasskey", "o", [plain]),  # a device without a PASSKEY
                await ask("RequestConfirmation", "ou", [locked, 123456]),  # not how we pair
                await ask("RequestPinCode", "o", [locked]),
            ]
            assert [r.error_name for r in refused] == ["org.bluez.Error.Rejected"] * 3
            answer = await ask("RequestPasskey", "o", [locked])
            assert answer.message_type == MessageType.METHOD_RETURN and answer.body == [PASSKEY]
        finally:
            bus.disconnect()


@pytest.mark.parametrize("kind", ["echo", "passkey"])
async def test_a_bond_the_unit_does_not_accept_is_replaced_once(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    """BlueZ holds a bond the unit does not accept (made Just Works by another tool or before PASSKEY was
    set, or forgotten by the unit): an echo unit keeps echoing, a passkey unit keeps saying "Not paired",
    and BlueZ would skip pairing for ever. The link removes that bond once and pairs again with the
    passkey (esphome-jbd-bms #245: mode 9 echoes, mode 13 answers)."""
    caplog.set_level(logging.INFO)
    rig = LinkRig(
        bank=locked_bank(pairing=kind, passkey=PASSKEY), locks={2: PackLocks(passkey=Secret(str(PASSKEY)))}
    )
    rig.fake.packs[1].paired = True  # BlueZ holds a bond, made without MITM
    async with rig:
        await rig.rec.readings_after(2, 2, since=0, timeout=20.0)
        stats = rig.fake.stats
        assert rig.fake.packs[1].mitm
        assert (stats.echoes if kind == "echo" else stats.not_paired_errors) >= 1
        assert (stats.pair_calls, stats.passkey_requests, stats.bonds) == (1, 1, 1)
        assert LinkState.REFUSED not in rig.rec.states_of(2)
    ours = [r for r in caplog.records if r.name.startswith("btbattery")]
    assert [r.getMessage() for r in ours if r.levelno >= logging.WARNING] == [
        next(r.getMessage() for r in ours if "re-pairing" in r.getMessage())
    ]
