"""The limits' settings (``HUBBUB_SEND_RATE`` ...); README lists them with their defaults."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from hubbub.limits.base import Rate


class QuotaError(ValueError):
    """A limit setting that cannot be used; the message names it."""


@dataclass(frozen=True)
class Quotas:
    """Limits per user and per client address. A rate or count of 0 is no limit."""

    send_rate: float = 10.0
    """Messages per second a user sends, over all its connections and REST."""
    send_burst: int = 30
    send_rate_server: float = 0.0
    """Messages per second sent with the API key (as the server or for users); 0: no limit."""
    send_burst_server: int = 0
    """0: three seconds' worth of ``send_rate_server``."""
    max_connections_per_user: int = 20
    connect_rate_per_ip: float = 20.0
    """New sessions per second per client address."""
    connect_burst_per_ip: int = 50
    client_ip_header: str | None = None
    """The header a trusted proxy puts the client address in (the right-most value)."""

    @property
    def send(self) -> Rate:
        return Rate(self.send_rate, self.send_burst)

    @property
    def send_server(self) -> Rate:
        burst = self.send_burst_server or max(1, int(self.send_rate_server * 3))
        return Rate(self.send_rate_server, burst)

    @property
    def connect(self) -> Rate:
        return Rate(self.connect_rate_per_ip, self.connect_burst_per_ip)

    @classmethod
    def off(cls) -> Quotas:
        """No limit at all."""
        return cls(0, 0, 0, 0, 0, 0, 0)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Quotas:
        base = cls()

        def number(name: str, default: float) -> float:
            raw = env.get(f"HUBBUB_{name}", "").strip()
            if not raw:
                return default
            try:
                value = float(raw)
            except ValueError:
                raise QuotaError(f"HUBBUB_{name}={raw!r} is not a number") from None
            if not value >= 0 or value == float("inf"):
                raise QuotaError(f"HUBBUB_{name} must be 0 (no limit) or more")
            return value

        header = env.get("HUBBUB_CLIENT_IP_HEADER", "").strip()
        return cls(
            send_rate=number("SEND_RATE", base.send_rate),
            send_burst=int(number("SEND_BURST", base.send_burst)),
            send_rate_server=number("SEND_RATE_SERVER", base.send_rate_server),
            send_burst_server=int(number("SEND_BURST_SERVER", base.send_burst_server)),
            max_connections_per_user=int(
                number("MAX_CONNECTIONS_PER_USER", base.max_connections_per_user)
            ),
            connect_rate_per_ip=number("CONNECT_RATE_PER_IP", base.connect_rate_per_ip),
            connect_burst_per_ip=int(number("CONNECT_BURST_PER_IP", base.connect_burst_per_ip)),
            client_ip_header=header or None,
        )
