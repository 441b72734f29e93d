"""What the WebSocket and the HTTP stream check before a session starts."""

from __future__ import annotations

from hubbub.config import normal_origin


def origin_allowed(origin: str | None, host: str | None, allowed: tuple[str, ...]) -> bool:
    """With an origin list, a browser's handshake must come from one of them.

    Clients that send no ``Origin`` (mobile apps, servers) are let through,
    and so is a page served from this server's own origin. With no list, any
    origin may connect, as tokens travel in the request, never in cookies.
    """
    if not allowed or "*" in allowed or origin is None:
        return True
    origin = normal_origin(origin)
    own = host is not None and origin.split("://", 1)[-1] == host.lower()
    return origin in allowed or own


def bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer`` header, if there is one."""
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip()
    return None
