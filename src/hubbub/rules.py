"""Who may do what: the chat's rules as pure functions.

Each rule takes the facts it needs (kinds, roles, counts, records) and either
returns a decision or raises the domain error that refuses the action. They
touch no database: the service calls them on what it knows, and the store's
transactions call them on what they have just read, under the same locks as
the write that follows, so a rule is never decided on stale data. Tested
without a database in tests/unit/test_rules.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from hubbub.errors import Forbidden, Invalid, NotFound, TooLarge
from hubbub.models import Attachment, Message

MODERATORS = ("owner", "admin")
MAX_REACTIONS_PER_USER = 20

Place = tuple[str, str | None]
"""``(conversation kind, the user's role)``; the role is None for a non-member."""


def member(place: Place | None) -> tuple[str, str]:
    """The user's ``(kind, role)``: NotFound without a conversation, Forbidden for outsiders."""
    if place is None:
        raise NotFound("no such conversation")
    kind, role = place
    if role is None:
        raise Forbidden("you are not a member of this conversation")
    return kind, role


def may_send(place: Place | None, blocked: bool) -> None:
    """A member may send, except into a direct conversation where either side blocked."""
    kind, _role = member(place)
    if kind == "direct" and blocked:
        raise Forbidden("this direct conversation is blocked")


def reply_target(conversation_id: str, parent_conversation: str | None) -> None:
    if parent_conversation != conversation_id:
        raise Invalid("reply_to must be a message of the same conversation")


def attachments(
    kind: str, wanted: Sequence[str], found: dict[str, tuple[str, str, int]], url: str
) -> list[Attachment]:
    """A message's uploads, from the sender's own (``found``: id -> name, type, size).

    ``url`` is the download path with ``{id}`` in place of the upload id.
    """
    missing = [u for u in wanted if u not in found]
    if missing:
        raise Invalid(f"unknown upload {missing[0]!r}: attach only your own uploads")
    if kind == "image" and not all(found[u][1].startswith("image/") for u in wanted):
        raise Invalid("an image message carries image uploads only")
    return [
        Attachment(
            id=u,
            name=found[u][0],
            content_type=found[u][1],
            size=found[u][2],
            url=url.format(id=u),
        )
        for u in wanted
    ]


def live(message: Message | None) -> Message:
    """A message that exists and is not deleted."""
    if message is None:
        raise NotFound("no such message")
    if message.deleted_at is not None:
        raise NotFound("the message was deleted")
    return message


def may_edit(user: str, message: Message) -> None:
    if message.sender_id != user:
        raise Forbidden("only the sender can edit a message")
    if message.kind == "system":
        raise Forbidden("system messages cannot be edited")


def may_delete(user: str, message: Message, kind: str, role: str) -> None:
    """The sender may delete; so may a group's or room's owner or admin."""
    if message.sender_id != user and not (kind != "direct" and role in MODERATORS):
        raise Forbidden("only the sender or a group owner or admin can delete a message")


def may_react(mine: int) -> None:
    """``mine``: how many reactions the user already has on the message."""
    if mine >= MAX_REACTIONS_PER_USER:
        raise Invalid(f"at most {MAX_REACTIONS_PER_USER} reactions per message")


def may_moderate(kind: str, role: str, roles: Sequence[str] = MODERATORS) -> None:
    """Changing a group or room (title, members, roles) takes one of ``roles``."""
    if kind == "direct":
        raise Forbidden("direct conversations have no membership to change")
    if role not in roles:
        raise Forbidden(f"only a {' or '.join(roles)} can do this")


def may_leave(kind: str) -> None:
    if kind == "direct":
        raise Forbidden("you cannot leave a direct conversation; hide it instead")


def may_remove(my_role: str, target_role: str | None) -> None:
    """An owner removes anyone; an admin removes members only."""
    if target_role is None:
        raise NotFound("not a member")
    if my_role == "admin" and target_role != "member":
        raise Forbidden("an admin can remove members only")


def joining(current: Sequence[str], new: Sequence[str], limit: int) -> list[str]:
    """Who of ``new`` joins (once each, not already in), within the member limit."""
    present = set(current)
    joiners = [u for u in dict.fromkeys(new) if u not in present]
    if len(present) + len(joiners) > limit:
        raise TooLarge(f"a conversation has at most {limit} members")
    return joiners


def room_joiner_role(kind: str | None, current: Sequence[str], user: str, limit: int) -> str | None:
    """The role a user joins a room with; None when already a member.

    Whoever joins an empty room takes it over, so a room never lacks an owner.
    """
    if kind != "room":
        raise NotFound("no such room")
    if user in current:
        return None
    if len(current) >= limit:
        raise TooLarge(f"a room has at most {limit} members")
    return "member" if current else "owner"


def heir(remaining: Sequence[tuple[str, str, int]]) -> str | None:
    """Who becomes owner when the owner leaves: the longest-standing admin, else member.

    ``remaining``: ``(user_id, role, joined_at)`` of the members left.
    """
    if not remaining:
        return None
    return min(remaining, key=lambda m: (m[1] != "admin", m[2], m[0]))[0]


def role_changes(user: str, target: str, current: str | None, role: str) -> list[tuple[str, str]]:
    """``(user, new role)`` pairs that setting ``target``'s role makes, in order.

    Giving the owner role is a transfer: the previous owner becomes an admin.
    """
    if current is None:
        raise NotFound("not a member")
    if target == user:
        raise Invalid("transfer ownership by giving another member the owner role")
    if current == role:
        return []
    changes = [(target, role)]
    if role == "owner":
        changes.append((user, "admin"))
    return changes


def reason(by: str | None) -> Literal["left", "removed"]:
    return "left" if by is None else "removed"
