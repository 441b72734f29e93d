"""Push settings (``HUBBUB_PUSH_*``, ``HUBBUB_EXPO_*``; the README's table)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from hubbub.push.expo import SEND_URL


class PushSettingsError(ValueError):
    pass


@dataclass(frozen=True)
class PushSettings:
    enabled: bool = True
    """Whether this process drains the outbox (devices are accepted either way)."""
    expo_url: str = SEND_URL
    expo_access_token: str | None = None
    expo_receipts_url: str | None = None
    """Default: the send URL's sibling ``getReceipts``."""
    expo_receipt_delay: float = 900.0
    """Seconds after sending that Expo's receipts are checked (Expo advises 15 minutes)."""
    webhook_url: str | None = None
    webhook_secret: str | None = None
    window: float = 3.0
    """Seconds a first message waits for more of the same conversation (one push for all)."""
    preview: bool = True
    """Show the message's text; off: "New message" only."""
    max_age: float = 3600.0
    """A push not delivered this many seconds after its message is dropped (and counted)."""
    retry_base: float = 1.0
    retry_max: float = 300.0
    poll: float = 0.5
    """Seconds between the worker's looks at the outbox."""
    lease: float = 60.0
    """Seconds a process holds rows it works on; then another may take them."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> PushSettings:
        def get(name: str) -> str | None:
            value = env.get(f"HUBBUB_{name}", "").strip()
            return value or None

        def seconds(name: str, default: float) -> float:
            raw = get(name)
            if raw is None:
                return default
            try:
                value = float(raw)
            except ValueError:
                raise PushSettingsError(f"HUBBUB_{name}={raw!r} is not a number") from None
            if value < 0 or (value == 0 and name != "PUSH_WINDOW"):
                raise PushSettingsError(f"HUBBUB_{name} must be positive")
            return value

        def url(name: str) -> str | None:
            value = get(name)
            if value is not None and not value.startswith(("http://", "https://")):
                raise PushSettingsError(f"HUBBUB_{name} must be an http(s) URL")
            return value

        preview = (get("PUSH_PREVIEW") or "preview").lower()
        if preview not in ("preview", "generic"):
            raise PushSettingsError("HUBBUB_PUSH_PREVIEW must be preview or generic")
        webhook, secret = url("PUSH_WEBHOOK_URL"), get("PUSH_WEBHOOK_SECRET")
        if webhook and not secret:
            raise PushSettingsError(
                "HUBBUB_PUSH_WEBHOOK_URL needs HUBBUB_PUSH_WEBHOOK_SECRET (to sign the requests)"
            )
        base = cls()
        return cls(
            enabled=(get("PUSH") or "on").lower() not in ("0", "off", "false", "no"),
            expo_url=url("EXPO_PUSH_URL") or SEND_URL,
            expo_access_token=get("EXPO_ACCESS_TOKEN"),
            expo_receipts_url=url("EXPO_RECEIPTS_URL"),
            expo_receipt_delay=seconds("EXPO_RECEIPT_DELAY", base.expo_receipt_delay),
            webhook_url=webhook,
            webhook_secret=secret,
            window=seconds("PUSH_WINDOW", base.window),
            preview=preview == "preview",
            max_age=seconds("PUSH_MAX_AGE", base.max_age),
            retry_base=seconds("PUSH_RETRY_BASE", base.retry_base),
            retry_max=seconds("PUSH_RETRY_MAX", base.retry_max),
            poll=seconds("PUSH_POLL", base.poll),
            lease=seconds("PUSH_LEASE", base.lease),
        )
