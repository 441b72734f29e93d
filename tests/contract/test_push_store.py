"""The push part of the store contract (``PushStore``), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import inspect
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import pytest

from hubbub.errors import Forbidden, NotFound
from hubbub.models import SendItem
from hubbub.store import push as push_sql
from hubbub.store.base import PushStore, Store
from hubbub.store.postgres import PostgresStore
from hubbub.store.push import MAX_DEVICES, Decision, Due, Settled, Ticket
from hubbub.store.sql import SQLStore
from hubbub.store.tx import Tx
from tests.services import fresh_postgres

NOW = 1_700_000_000_000
WINDOW = 1000
LEASE = 30_000
TOKEN = "ExponentPushToken[{}]"
EXPO = ["expo"]


def push_store(store: Store) -> PushStore:
    assert isinstance(store, SQLStore)
    return cast(PushStore, store)


async def send(store: Store, user: str, cid: str, body: str, at: int = NOW) -> int:
    (result,) = await store.append_messages(user, [SendItem(cid, body, body)], at)
    assert not isinstance(result, Exception), result
    return result[0].seq


async def test_devices_are_idempotent_per_token_and_move(store: Store) -> None:
    push = push_store(store)
    first = await push.register_device("ann", "expo", TOKEN.format(1), "ios", None, NOW)
    again = await push.register_device("ann", "expo", TOKEN.format(1), "android", "app", NOW + 1)
    assert again.id == first.id and again.platform == "android" and again.app_id == "app"
    moved = await push.register_device("bob", "expo", TOKEN.format(1), "ios", None, NOW + 2)
    assert moved.id == first.id
    assert await push.list_devices("ann") == []
    assert [d.id for d in await push.list_devices("bob")] == [first.id]
    with pytest.raises(NotFound):
        await push.delete_device("ann", first.id)
    await push.delete_device("bob", first.id)
    assert await push.list_devices("bob") == []


async def test_a_user_keeps_the_newest_devices(store: Store) -> None:
    push = push_store(store)
    for n in range(MAX_DEVICES + 2):
        await push.register_device("ann", "webhook", f"t{n}", "web", None, NOW + n)
    tokens = {d.token for d in await push.list_devices("ann")}
    assert tokens == {f"t{n}" for n in range(2, MAX_DEVICES + 2)}


async def test_notification_settings_need_membership(store: Store) -> None:
    push = push_store(store)
    group = await store.create_group("ann", "g", ["bob"], NOW)
    assert (await push.get_notifications("bob", group.id)).level == "all"
    set_ = await push.set_notifications("bob", group.id, "mentions", NOW + 60_000)
    assert set_.level == "mentions" and set_.until is not None
    assert await push.get_notifications("bob", group.id) == set_
    with pytest.raises(Forbidden):
        await push.set_notifications("eve", group.id, "none", None)
    with pytest.raises(NotFound):
        await push.get_notifications("bob", "c_missing")
    assert (await push.get_dnd("bob")).until is None
    assert (await push.set_dnd("bob", NOW + 5, NOW)).until is not None
    assert (await push.get_dnd("bob")).until == (await push.set_dnd("bob", NOW + 5, NOW)).until
    assert (await push.set_dnd("bob", None, NOW)).until is None


async def test_only_messages_with_a_device_elsewhere_are_noted(store: Store) -> None:
    push = push_store(store)
    direct, _ = await store.get_or_create_direct("ann", "bob", NOW)
    await send(store, "ann", direct.id, "nobody has a device")
    assert await push.push_expand(NOW, WINDOW, 100) == 0
    await push.register_device("ann", "expo", TOKEN.format("ann"), "ios", None, NOW)
    await send(store, "ann", direct.id, "only the sender has one")
    assert await push.push_expand(NOW, WINDOW, 100) == 0
    await push.register_device("bob", "expo", TOKEN.format("bob"), "ios", None, NOW)
    await send(store, "ann", direct.id, "now bob has one")
    assert await push.push_expand(NOW, WINDOW, 100) == 1
    # A member who joins later with a device already counts.
    group = await store.create_group("ann", "g", [], NOW)
    await store.add_members("ann", group.id, ["bob"], 100, NOW)
    await send(store, "ann", group.id, "to the group")
    assert await push.push_expand(NOW, WINDOW, 100) == 1
    await push.delete_device("bob", (await push.list_devices("bob"))[0].id)
    await send(store, "ann", group.id, "bob's device is gone")
    assert await push.push_expand(NOW, WINDOW, 100) == 0


async def _due(push: PushStore, lease: str = "l1", at: int = NOW + WINDOW) -> list[Due]:
    await push.push_expand(NOW, WINDOW, 100)
    return await push.push_claim_due(at, lease, LEASE, 100)


async def test_a_burst_becomes_one_due_row_with_its_context(store: Store) -> None:
    push = push_store(store)
    group = await store.create_group("ann", "Team", ["bob", "cat"], NOW)
    await push.register_device("bob", "expo", TOKEN.format("bob"), "ios", None, NOW)
    await store.block("bob", "cat", NOW)
    await send(store, "bob", group.id, "bob's own")  # and so bob has read what came before
    seqs = [await send(store, "ann", group.id, f"m{n}") for n in range(3)]
    await send(store, "cat", group.id, "from cat")
    await push.push_expand(NOW, WINDOW, 100)
    assert await push.push_claim_due(NOW + WINDOW - 1, "early", LEASE, 100) == []
    (due,) = await push.push_claim_due(NOW + WINDOW, "l1", LEASE, 100)
    assert due.user_id == "bob" and due.conversation_id == group.id
    assert due.member and due.kind == "group" and due.title == "Team"
    # Newest first, without bob's own message; cat's is there, flagged as blocked.
    assert [m.body for m in due.messages] == ["from cat", "m2", "m1", "m0"]
    assert due.blocked == {"cat"}
    assert [m.seq for m in due.messages[1:]] == seqs[::-1]
    assert [d.token for d in due.devices] == [TOKEN.format("bob")]
    assert due.badge == 4


async def test_read_messages_are_left_out(store: Store) -> None:
    push = push_store(store)
    direct, _ = await store.get_or_create_direct("ann", "bob", NOW)
    await push.register_device("bob", "expo", TOKEN.format("bob"), "ios", None, NOW)
    first = await send(store, "ann", direct.id, "one")
    await send(store, "ann", direct.id, "two")
    await store.mark("bob", direct.id, "read", first)
    (due,) = await _due(push)
    assert [m.body for m in due.messages] == ["two"]
    assert due.badge == 1


async def test_leases_keep_rows_to_one_claimer_until_they_end(store: Store) -> None:
    push = push_store(store)
    direct, _ = await store.get_or_create_direct("ann", "bob", NOW)
    await push.register_device("bob", "expo", TOKEN.format("bob"), "ios", None, NOW)
    await send(store, "ann", direct.id, "hello")
    (due,) = await _due(push, "l1")
    assert await push.push_claim_due(NOW + WINDOW, "l2", LEASE, 100) == []
    # Settling under a lease one does not hold writes nothing.
    assert await push.push_settle_due("l2", [Decision(due, payloads={"d": "{}"})], NOW, 0) == 0
    (again,) = await push.push_claim_due(NOW + WINDOW + LEASE, "l2", LEASE, 100)
    assert again.id == due.id
    assert await push.push_settle_due("l1", [Decision(due, payloads={"d": "{}"})], NOW, 0) == 0
    device = due.devices[0].id
    assert await push.push_settle_due("l2", [Decision(again, payloads={device: "{}"})], NOW, 0) == 1
    assert await push.push_claim_due(NOW + 10 * LEASE, "l3", LEASE, 100) == []


async def test_a_recheck_comes_back_later_once(store: Store) -> None:
    push = push_store(store)
    direct, _ = await store.get_or_create_direct("ann", "bob", NOW)
    await push.register_device("bob", "expo", TOKEN.format("bob"), "ios", None, NOW)
    await send(store, "ann", direct.id, "hello")
    (due,) = await _due(push)
    assert not due.rechecked
    await push.push_settle_due("l1", [Decision(due, recheck_at=NOW + 5000)], NOW, WINDOW)
    assert await push.push_claim_due(NOW + 4999, "l2", LEASE, 100) == []
    (again,) = await push.push_claim_due(NOW + 5000, "l2", LEASE, 100)
    assert again.rechecked


async def test_messages_decided_on_are_never_told_again(store: Store) -> None:
    push = push_store(store)
    direct, _ = await store.get_or_create_direct("ann", "bob", NOW)
    await push.register_device("bob", "expo", TOKEN.format("bob"), "ios", None, NOW)
    await send(store, "ann", direct.id, "one")
    (due,) = await _due(push)
    # A message arriving while the row is leased stays for the next push.
    await send(store, "ann", direct.id, "two")
    await push.push_expand(NOW, WINDOW, 100)
    await push.push_settle_due("l1", [Decision(due)], NOW + WINDOW, WINDOW)
    (later,) = await push.push_claim_due(NOW + 2 * WINDOW, "l2", LEASE, 100)
    assert [m.body for m in later.messages] == ["two"]


async def test_sends_are_claimed_settled_retried_and_dropped_with_their_device(
    store: Store,
) -> None:
    push = push_store(store)
    direct, _ = await store.get_or_create_direct("ann", "bob", NOW)
    phone = await push.register_device("bob", "expo", TOKEN.format("p"), "ios", None, NOW)
    tablet = await push.register_device("bob", "expo", TOKEN.format("t"), "ios", None, NOW)
    await send(store, "ann", direct.id, "hello")
    (due,) = await _due(push)
    payloads = {phone.id: '{"n":1}', tablet.id: '{"n":2}'}
    assert await push.push_settle_due("l1", [Decision(due, payloads=payloads)], NOW, WINDOW) == 2
    assert (await push.push_backlog())[0] == 2
    out = await push.push_claim_sends(NOW, "s1", LEASE, 100, EXPO)
    assert sorted(o.payload for o in out) == ['{"n":1}', '{"n":2}']
    assert {o.user_id for o in out} == {"bob"} and all(o.attempts == 0 for o in out)
    assert await push.push_claim_sends(NOW, "s2", LEASE, 100, EXPO) == []
    ids = sorted(o.id for o in out)
    assert await push.push_renew_sends("s2", ids, NOW + 2 * LEASE) == []  # not its lease
    assert sorted(await push.push_renew_sends("s1", ids, NOW + 2 * LEASE)) == ids
    assert await push.push_claim_sends(NOW + LEASE, "s2", LEASE, 100, EXPO) == []  # renewed
    by_device = {o.device.id: o for o in out}
    settled = Settled(
        retry={by_device[phone.id].id: NOW + 500},
        gone=[tablet.id],
        done=[by_device[tablet.id].id],
        tickets=[(Ticket("ticket-1", "p-1", phone.id, "{}", NOW, 0, NOW), NOW + 900)],
    )
    await push.push_settle_sends("s1", settled, NOW)
    assert [d.id for d in await push.list_devices("bob")] == [phone.id]
    assert await push.push_claim_sends(NOW + 499, "s3", LEASE, 100, EXPO) == []
    (retry,) = await push.push_claim_sends(NOW + 500, "s3", LEASE, 100, EXPO)
    assert retry.attempts == 1
    await push.push_settle_sends("s3", Settled(done=[retry.id]), NOW)
    assert await push.push_backlog() == (0, None)
    assert await push.push_claim_tickets(NOW + 899, LEASE, 10) == []
    (ticket,) = await push.push_claim_tickets(NOW + 900, LEASE, 10)
    assert ticket == Ticket("ticket-1", "p-1", phone.id, "{}", NOW, 0, NOW)
    assert await push.push_claim_tickets(NOW + 900, LEASE, 10) == []  # leased
    # A receipt asking to slow down sends the push again, under its own id.
    await push.push_settle_tickets([], [], {"ticket-1": NOW + 2000})
    (again,) = await push.push_claim_sends(NOW + 2000, "s4", LEASE, 100, EXPO)
    assert (again.id, again.payload, again.attempts) == ("p-1", "{}", 1)
    assert await push.push_claim_tickets(NOW + 10 * LEASE, LEASE, 10) == []
    await push.push_settle_sends(
        "s4", Settled(done=[again.id], tickets=[(ticket, NOW + 3000)]), NOW + 2000
    )
    (ticket,) = await push.push_claim_tickets(NOW + 3000, LEASE, 10)
    await push.push_settle_tickets([ticket.id], [phone.id], {})
    assert await push.list_devices("bob") == []
    assert await push.push_claim_tickets(NOW + 10 * LEASE, LEASE, 10) == []


async def test_concurrent_claims_take_disjoint_rows(store: Store) -> None:
    push = push_store(store)
    await push.register_device("bob", "expo", TOKEN.format("bob"), "ios", None, NOW)
    for n in range(20):
        direct, _ = await store.get_or_create_direct(f"u{n}", "bob", NOW)
        await send(store, f"u{n}", direct.id, "hi")
    await push.push_expand(NOW, WINDOW, 100)
    claims = await asyncio.gather(
        *(push.push_claim_due(NOW + WINDOW, f"l{n}", LEASE, 3) for n in range(8))
    )
    ids = [d.id for claim in claims for d in claim]
    assert len(ids) == len(set(ids)) == 20


def test_every_push_port_method_has_a_contract_test() -> None:
    source = Path(__file__).read_text()
    untested = [
        name
        for name, _ in inspect.getmembers(PushStore, inspect.isfunction)
        if not name.startswith("_") and f".{name}(" not in source
    ]
    assert untested == []


async def test_pushes_are_claimed_only_for_providers_this_process_has(store: Store) -> None:
    push = push_store(store)
    direct, _ = await store.get_or_create_direct("ann", "bob", NOW)
    phone = await push.register_device("bob", "webhook", "fcm-1", "android", None, NOW)
    await send(store, "ann", direct.id, "hello")
    (due,) = await _due(push)
    await push.push_settle_due("l1", [Decision(due, payloads={phone.id: "{}"})], NOW, WINDOW)
    assert await push.push_claim_sends(NOW, "s1", LEASE, 100, EXPO) == []
    (out,) = await push.push_claim_sends(NOW, "s1", LEASE, 100, ["expo", "webhook"])
    assert out.device.id == phone.id
    # Too old and held by no one: dropped.
    assert await push.push_expire_sends(NOW + 1, NOW) == 0  # still leased
    assert await push.push_expire_sends(NOW, NOW + LEASE) == 0  # not older than that
    assert await push.push_expire_sends(NOW + 1, NOW + LEASE) == 1
    assert await push.push_backlog() == (0, None)


async def test_a_device_changing_hands_takes_none_of_its_old_users_pushes(store: Store) -> None:
    push = push_store(store)
    direct, _ = await store.get_or_create_direct("ann", "bob", NOW)
    phone = await push.register_device("bob", "expo", TOKEN.format("p"), "ios", None, NOW)
    await send(store, "ann", direct.id, "for bob only")
    (due,) = await _due(push)
    await push.push_settle_due("l1", [Decision(due, payloads={phone.id: "{}"})], NOW, WINDOW)
    moved = await push.register_device("cat", "expo", TOKEN.format("p"), "ios", None, NOW + 1)
    assert moved.id == phone.id
    assert await push.push_claim_sends(NOW + 1, "s1", LEASE, 100, EXPO) == []


async def test_muted_members_and_a_first_device_get_no_old_messages(store: Store) -> None:
    push = push_store(store)
    group = await store.create_group("ann", "g", ["bob", "cat"], NOW)
    await send(store, "ann", group.id, "before any device")
    await push.register_device("bob", "expo", TOKEN.format("b"), "ios", None, NOW)
    await push.register_device("cat", "expo", TOKEN.format("c"), "ios", None, NOW)
    await push.set_notifications("cat", group.id, "none", None)
    await send(store, "ann", group.id, "after")
    (due,) = await _due(push)  # cat muted: no row; bob's tells only of "after"
    assert due.user_id == "bob"
    assert [m.body for m in due.messages] == ["after"]


@pytest.fixture
async def postgres_store() -> AsyncIterator[PostgresStore]:
    async with fresh_postgres() as url:
        store = PostgresStore(url, pool_size=4)
        await store.open()
        yield store
        await store.close()


async def test_joining_while_registering_a_first_device_still_flags(
    postgres_store: PostgresStore,
) -> None:
    """A first device registered in a transaction still open while its user joins.

    On PostgreSQL neither transaction sees the other's row: without the lock
    on the user the join would leave the membership unflagged and its pushes
    lost. (SQLite has one writer: its transactions never overlap.)
    """
    store = postgres_store
    push = push_store(store)
    room = await store.create_group("ann", "lobby", [], NOW, kind="room")
    gate = asyncio.Event()

    async def register_and_hold(tx: Tx) -> None:
        await push_sql.register_device(tx, "dan", "expo", TOKEN.format("dan"), "ios", None, NOW)
        await gate.wait()  # registered, not committed

    registering = asyncio.create_task(store.transaction(register_and_hold))
    await asyncio.sleep(0.2)
    joining = asyncio.create_task(store.join_room("dan", room.id, 100, NOW))
    await asyncio.sleep(0.3)  # unlocked, the join would commit now, unflagged
    gate.set()
    await registering
    await joining
    await send(store, "ann", room.id, "welcome")
    await push.push_expand(NOW, WINDOW, 100)
    due = await push.push_claim_due(NOW + WINDOW, "l1", LEASE, 100)
    assert [d.user_id for d in due] == ["dan"]


async def _counts(tx: Tx) -> list[tuple[str, int, int]]:
    rows = await tx.all(
        "SELECT c.id, c.push_members, "
        "(SELECT COUNT(*) FROM members m WHERE m.conversation_id = c.id AND m.push = 1) "
        "FROM conversations c ORDER BY c.id"
    )
    return [(r[0], r[1], r[2]) for r in rows]


async def test_push_members_counts_the_flagged_members_through_any_change(store: Store) -> None:
    """Joins, removals, leaves, devices registered, moved and removed, in a seeded order."""
    push = push_store(store)
    rng = random.Random(5)
    users = [f"p{n}" for n in range(6)]
    groups = [(await store.create_group("p0", f"g{n}", users[1 : 2 + n], NOW)).id for n in range(3)]
    devices: dict[str, str] = {}
    most = 0
    for step in range(80):
        user, cid = rng.choice(users), rng.choice(groups)
        action = rng.randrange(5)
        try:
            if action == 0:
                token = TOKEN.format(rng.randrange(8))  # tokens move between users
                devices[token] = (
                    await push.register_device(user, "expo", token, "ios", None, NOW)
                ).id
            elif action == 1 and devices:
                token = rng.choice(sorted(devices))
                await push.push_settle_sends("x", Settled(gone=[devices.pop(token)]), NOW)
            elif action == 2:
                await store.add_members("p0", cid, [user], 100, NOW)
            elif action == 3:
                await store.remove_member(user, cid, user, NOW)
            else:  # refused unless a member
                await store.append_messages(user, [SendItem(cid, "hi", f"m{step}")], NOW)
        except (Forbidden, NotFound):
            pass  # not a member, the owner leaving: fine, the counts must hold all the same
        counts = await cast(SQLStore, store).transaction(_counts)
        assert all(kept == counted for _, kept, counted in counts), (step, counts)
        most = max(most, *(kept for _, kept, _ in counts))
    assert most >= 2  # the sequence did flag members
