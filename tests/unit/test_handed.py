"""What a session has handed its client: the rules that keep each event once, in order."""

from __future__ import annotations

from dataclasses import dataclass

from hubbub.gateway.handed import DROP, GAP, SEND, Handed, visible


@dataclass
class E:
    seq: int


def seqs(events: list[E]) -> list[int]:
    return [e.seq for e in events]


def test_live_events_go_on_once_and_a_jump_is_a_gap() -> None:
    h = Handed()
    assert h.live("c", 7) == SEND  # the first one starts the span
    assert [h.live("c", s) for s in (8, 8, 7, 3, 10)] == [SEND, DROP, DROP, DROP, GAP]
    assert h.high == {"c": 8} and h.low == {"c": 7}
    assert h.live("d", 1) == SEND and h.high["c"] == 8


def test_a_replay_hands_on_only_what_the_client_lacks() -> None:
    h = Handed()
    for s in (5, 6):
        h.live("c", s)
    # The client says it has up to 2: 3 and 4 are new, 5 and 6 were handed.
    new = h.replay("c", 2, 8, [E(s) for s in range(3, 9)])
    assert seqs(new) == [3, 4, 7, 8]
    assert (h.low["c"], h.high["c"]) == (3, 8)
    assert [h.live("c", s) for s in (8, 9)] == [DROP, SEND]


def test_a_replay_without_earlier_state_takes_everything_and_its_cursor() -> None:
    h = Handed()
    assert seqs(h.replay("c", 4, 6, [E(5), E(6)])) == [5, 6]
    assert (h.low["c"], h.high["c"]) == (5, 6)
    # An empty replay still moves the span to what the client says it has.
    assert h.replay("d", 9, 9, []) == [] and h.high["d"] == 9
    assert h.live("d", 9) == DROP and h.live("d", 10) == SEND


def test_a_replay_reaching_past_last_seq_counts_what_it_brought() -> None:
    h = Handed()
    assert seqs(h.replay("c", 0, 2, [E(1), E(2), E(3)])) == [1, 2, 3]
    assert h.live("c", 3) == DROP


def test_a_cursor_above_everything_handed_starts_a_new_span() -> None:
    h = Handed()
    h.live("c", 3)
    assert seqs(h.replay("c", 10, 11, [E(11)])) == [11]
    assert (h.low["c"], h.high["c"]) == (11, 11)
    assert h.live("c", 9) == DROP


def test_too_far_behind_drops_live_events_up_to_the_point_to_page_to() -> None:
    h = Handed()
    h.paging("c", 50)
    assert [h.live("c", s) for s in (40, 50, 51)] == [DROP, DROP, SEND]
    # Paging through the stream later is allowed (it lies below the span).
    assert seqs(h.replay("c", 45, 51, [E(s) for s in range(46, 52)])) == [46, 47, 48, 49, 50]
    h.paging("c", 20)  # behind what it has: changes nothing
    assert h.high["c"] == 51


@dataclass
class M:
    seq: int
    type: str = "message.new"
    data: dict[str, str] | None = None


def left(seq: int, user: str) -> M:
    return M(seq, "member.left", {"user_id": user})


def joined(seq: int, user: str) -> M:
    return M(seq, "member.joined", {"user_id": user})


def test_a_member_removed_and_added_again_sees_nothing_from_between() -> None:
    stretch = [M(1), left(2, "bob"), M(3), joined(4, "eve"), M(5), joined(6, "bob"), M(7)]
    assert [e.seq for e in visible(stretch, "bob")] == [1, 2, 6, 7]
    assert [e.seq for e in visible(stretch, "eve")] == [4, 5, 6, 7]  # joined at 4
    assert [e.seq for e in visible(stretch, "ann")] == [1, 2, 3, 4, 5, 6, 7]
    # Two rounds out and back in.
    twice = [left(1, "bob"), M(2), joined(3, "bob"), M(4), left(5, "bob"), M(6), joined(7, "bob")]
    assert [e.seq for e in visible(twice, "bob")] == [1, 3, 4, 5, 7]


def test_a_stretch_that_ends_with_the_member_s_own_join_is_not_its() -> None:
    assert [e.seq for e in visible([M(3), M(4), joined(5, "bob")], "bob")] == [5]
    assert [e.seq for e in visible([M(3), M(4)], "bob")] == [3, 4]


def test_skip_to_marks_what_is_not_for_the_client() -> None:
    h = Handed()
    h.live("c", 2)
    h.skip_to("c", 6)  # 3..5 were not for this client
    assert h.live("c", 6) == SEND
    h.skip_to("c", 4)  # behind: changes nothing
    assert h.high["c"] == 6
