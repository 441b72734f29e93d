"""What presence reads of the store, on SQLite and PostgreSQL."""

from __future__ import annotations

from hubbub.store.base import Store


async def test_contacts_through_small_conversations_only(store: Store) -> None:
    await store.get_or_create_direct("ann", "dm", 0)
    await store.create_group("ann", "small", ["s1", "s2"], 0)  # 3 members
    await store.create_group("ann", "large", [f"l{i}" for i in range(5)], 0)  # 6 members
    await store.create_group("ann", "room", ["r1"], 0, kind="room")
    everyone = {"dm", "s1", "s2", *(f"l{i}" for i in range(5))}
    assert set(await store.contacts("ann")) == everyone
    assert set(await store.contacts("ann", 3)) == {"dm", "s1", "s2"}  # at the bound: kept
    assert set(await store.contacts("ann", 2)) == {"dm"}  # a direct one counts at any bound
    assert set(await store.contacts("ann", 6)) == everyone
    assert await store.contacts("l0", 3) == []


async def test_shared_with_names_those_in_a_direct_conversation_or_group(store: Store) -> None:
    await store.get_or_create_direct("bea", "dm", 0)
    await store.create_group("bea", "g", ["g1", "g2"], 0)
    await store.create_group("bea", "room", ["r1"], 0, kind="room")
    asked = ["g2", "r1", "dm", "bea", "nobody"]
    assert sorted(await store.shared_with("bea", asked)) == ["dm", "g2"]
    assert await store.shared_with("bea", []) == []


async def test_last_seen_of_many_in_one_go(store: Store) -> None:
    await store.set_last_seen("cat", 5)
    await store.set_last_seen_many([("cat", 10), ("dan", 20)])
    assert await store.last_seen(["cat", "dan", "eve"]) == {"cat": 10, "dan": 20, "eve": None}
