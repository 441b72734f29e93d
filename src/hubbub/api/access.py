"""Who may call a REST operation: declared by each operation, enforced in one place.

Every ``Operation`` names, in its ``auth``, the credentials it accepts:

- ``TOKEN``: ``Authorization: Bearer JWT``, a user (verified by ``auth.py``);
- ``ON_BEHALF``: ``X-Api-Key`` with ``X-On-Behalf-Of: USER``, the app's backend
  acting as that user;
- ``API_KEY``: ``X-Api-Key`` alone, the app's backend itself, which posts as
  the server.

The route built from an operation runs ``Access.admit`` before its handler
and hands the handler what it found: a ``User``, the ``Server``, or ``None``
for a public operation. The OpenAPI document's ``security`` is written from
the same declaration (``Auth.security``), so the document says what is
enforced.
"""

from __future__ import annotations

import enum
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, Generic, TypeVar, cast

from starlette.datastructures import Headers

from hubbub.auth import Identity, TokenVerifier
from hubbub.errors import Forbidden, Unauthorized
from hubbub.service.conversations import check_user_id


class Credential(enum.Enum):
    TOKEN = "token"
    ON_BEHALF = "on_behalf"
    API_KEY = "api_key"


SECURITY: Final[dict[Credential, dict[str, list[str]]]] = {
    Credential.TOKEN: {"bearer": []},
    Credential.ON_BEHALF: {"apiKey": [], "onBehalfOf": []},
    Credential.API_KEY: {"apiKey": []},
}
"""Each credential as an OpenAPI security requirement (schemes in ``openapi.py``)."""


@dataclass(frozen=True, slots=True)
class User:
    """A user: by its own token, or the app's backend acting for it."""

    id: str
    by: Credential


@dataclass(frozen=True, slots=True)
class Server:
    """The app's backend itself (``X-Api-Key`` without ``X-On-Behalf-Of``)."""


SERVER: Final = Server()

C = TypeVar("C", covariant=True)


@dataclass(frozen=True, slots=True)
class Auth(Generic[C]):
    """The credentials an operation accepts; ``C`` is what its handler is handed.

    Declare operations with the constants below: each one's type parameter is
    what ``Access.admit`` returns for its credentials.
    """

    accepts: tuple[Credential, ...]

    @property
    def public(self) -> bool:
        return not self.accepts

    def security(self) -> list[dict[str, list[str]]]:
        return [SECURITY[credential] for credential in self.accepts]


PUBLIC: Final[Auth[None]] = Auth(())
"""No credentials: anyone may call it."""
USER: Final[Auth[User]] = Auth((Credential.TOKEN, Credential.ON_BEHALF))
"""A user, by its token or by the API key on its behalf."""
USER_OR_SERVER: Final[Auth[User | Server]] = Auth(
    (Credential.TOKEN, Credential.ON_BEHALF, Credential.API_KEY)
)
"""A user as for ``USER``, or the app's backend itself by the API key alone."""
SERVER_ONLY: Final[Auth[Server]] = Auth((Credential.API_KEY,))
"""The app's backend itself, by the API key alone (no user may call it)."""


class Access:
    """Finds the caller an operation's declaration admits, or refuses the request.

    ``X-Api-Key`` takes precedence over ``Authorization``: a wrong key (or any
    key while none is configured) is 401 whatever the operation accepts.
    """

    def __init__(
        self,
        verifier: TokenVerifier,
        api_key: str | None,
        seen: Callable[[Identity], Awaitable[None]],
    ) -> None:
        self.verifier = verifier
        self.api_key = api_key
        self.seen = seen

    async def admit(self, headers: Headers, auth: Auth[C]) -> C:
        if auth.public:
            return cast(C, None)
        return cast(C, await self._caller(headers, auth.accepts))

    async def _caller(self, headers: Headers, accepts: tuple[Credential, ...]) -> User | Server:
        key = headers.get("x-api-key")
        if key is not None:
            if not self.api_key or not hmac.compare_digest(key.encode(), self.api_key.encode()):
                raise Unauthorized("invalid API key")
            on_behalf = headers.get("x-on-behalf-of")
            if on_behalf is not None and Credential.ON_BEHALF in accepts:
                return User(check_user_id(on_behalf, "X-On-Behalf-Of"), Credential.ON_BEHALF)
            if on_behalf is None and Credential.API_KEY in accepts:
                return SERVER
            if Credential.ON_BEHALF in accepts:
                raise Forbidden("with an API key, name the user in X-On-Behalf-Of")
            if Credential.API_KEY in accepts:
                raise Forbidden("with an API key, this operation takes no X-On-Behalf-Of")
            raise Forbidden("this operation needs a user's token, not an API key")
        if Credential.TOKEN not in accepts:
            raise Unauthorized("missing API key")
        header = headers.get("authorization", "")
        token = header[7:].strip() if header[:7].lower() == "bearer " else None
        identity = await self.verifier.verify(token)
        await self.seen(identity)
        return User(identity.user_id, Credential.TOKEN)
