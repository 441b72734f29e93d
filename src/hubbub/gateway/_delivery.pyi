from collections.abc import Sequence

from hubbub.gateway.session import Session

def deliver(
    by_user: dict[str, list[Session]],
    recipients: Sequence[str],
    frame: bytes,
    direct: bool,
    failed: list[tuple[Session, BaseException]],
    conversation_id: str = "",
    seq: int = 0,
    /,
) -> list[Session]: ...
def handed() -> int: ...
