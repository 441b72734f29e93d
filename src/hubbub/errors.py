"""Domain errors.

Services raise these; each transport maps ``code`` to its own vocabulary (an
HTTP status in ``api/``, an ``error`` frame in ``gateway/``). The codes are part
of the public protocol and are listed in docs/protocol.md.
"""

from __future__ import annotations


class HubbubError(Exception):
    """Base class: a refusal the client can understand and act on."""

    code = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Invalid(HubbubError):
    """The request is malformed or breaks a documented rule."""

    code = "invalid"


class UnknownType(Invalid):
    """A WebSocket frame carries a ``type`` the server does not know."""

    code = "unknown_type"


class TooLarge(Invalid):
    """A frame, body or list exceeds a documented limit."""

    code = "too_large"


class Unauthorized(HubbubError):
    """No valid credentials: missing, malformed, badly signed or expired token."""

    code = "unauthorized"


class Forbidden(HubbubError):
    """Authenticated, but not allowed to do this."""

    code = "forbidden"


class NotFound(HubbubError):
    """No such resource, or the caller may not know it exists."""

    code = "not_found"


class Conflict(HubbubError):
    """The request conflicts with stored state."""

    code = "conflict"


class RateLimited(HubbubError):
    """Too many requests; retry later (after ``retry_after_ms``, when known)."""

    code = "rate_limited"

    def __init__(self, message: str, retry_after_ms: int | None = None) -> None:
        super().__init__(message)
        self.retry_after_ms = retry_after_ms


class Unavailable(HubbubError):
    """A backing service (the database) does not answer."""

    code = "unavailable"
