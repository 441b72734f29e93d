"""Configuration from the environment (``HUBBUB_*``); CLI flags may override.

Every setting is listed, with its default, in README.md.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hubbub.limits.settings import QuotaError, Quotas
from hubbub.push.settings import PushSettings, PushSettingsError

UPLOAD_TYPES = (
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "application/pdf",
    "text/plain",
    "application/zip",
    "audio/mpeg",
    "audio/ogg",
    "video/mp4",
)


class ConfigError(Exception):
    """The configuration cannot be used; the message says what to change."""


JWT_ALGORITHMS = (
    "HS256",
    "HS384",
    "HS512",
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "ES256K",
    "EdDSA",
)
"""What ``HUBBUB_JWT_ALGORITHMS`` may list (never ``none``)."""


def listed(raw: str | None) -> tuple[str, ...]:
    """A comma-separated setting as its values, in order, without blanks and repeats."""
    return tuple(dict.fromkeys(v.strip() for v in (raw or "").split(",") if v.strip()))


def jwks_address(url: str, production: bool) -> str:
    """``HUBBUB_JWKS_URL``: https (plain http only outside production mode)."""
    url = url.strip()
    if not re.match(r"^https?://[^/?#\s]+", url):
        raise ConfigError(f"HUBBUB_JWKS_URL: {url!r} is not an http(s) URL")
    if production and not url.startswith("https://"):
        raise ConfigError("HUBBUB_JWKS_URL must be https:// in production mode")
    return url


_ORIGIN = re.compile(r"^https?://[^/?#\s]+$")


def normal_origin(origin: str) -> str:
    """An origin as browsers send it: lower case, no default port, no trailing slash."""
    origin = origin.strip().rstrip("/").lower()
    for scheme, port in (("http://", ":80"), ("https://", ":443")):
        if origin.startswith(scheme) and origin.endswith(port):
            return origin[: -len(port)]
    return origin


def cors_origins(raw: str, production: bool) -> tuple[str, ...]:
    """``HUBBUB_CORS_ORIGINS``: origins as a browser sends them (scheme://host[:port])."""
    origins = tuple(dict.fromkeys(normal_origin(o) for o in raw.split(",") if o.strip()))
    for origin in origins:
        if origin == "*":
            if production:
                raise ConfigError("HUBBUB_CORS_ORIGINS=* is for dev mode only: list the origins")
        elif not _ORIGIN.match(origin):
            raise ConfigError(
                f"HUBBUB_CORS_ORIGINS: {origin!r} is not an origin such as https://app.example.com"
            )
    return origins


@dataclass(frozen=True)
class Limits:
    """Limits a client should know; the WebSocket ``hello`` frame announces them."""

    max_frame_bytes: int = 64 * 1024
    """A WebSocket message larger than this is refused with ``too_large``."""
    max_body_chars: int = 4000
    max_group_members: int = 10_000
    outbound_buffer_bytes: int = 4 * 1024 * 1024
    """Bytes queued for one connection before it is closed as too slow (4409)."""
    resume_limit: int = 1000
    """Events replayed per conversation by ``resume``; more means too far behind."""
    page_max: int = 100
    page_default: int = 50
    resume_window: float = 1.0
    """Seconds live events are held after connect, waiting for a ``resume``."""
    pending_commands: int = 256
    """Commands queued per connection before the server stops reading from it."""


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    env: str = "dev"
    data_dir: Path = Path("data")
    database_url: str = ""
    redis_url: str | None = None
    redis_prefix: str = "hubbub:"
    # Routing between processes (docs/operations.md, "Routing between processes").
    routing: str = "interest"
    """``interest``: a process receives the events its users need; ``broadcast``: all."""
    routing_shards: int = 1024
    """Conversation channels (and user channels) the events are spread over."""
    routing_linger: float = 30.0
    """Seconds a channel no longer needed stays subscribed."""
    auto_migrate: bool = True
    jwt_secret: str | None = None
    jwt_public_key: str | None = None
    jwt_algorithms: tuple[str, ...] = ("HS256",)
    jwks_url: str | None = None
    """An identity provider's key set (JWKS), fetched and refreshed as keys rotate."""
    jwt_audience: tuple[str, ...] = ()
    """Accepted ``aud`` values; empty: ``aud`` is not checked."""
    jwt_issuer: tuple[str, ...] = ()
    """Accepted ``iss`` values; empty: ``iss`` is not checked."""
    jwt_user_claim: str = "sub"
    jwt_name_claim: str = "name"
    heartbeat_interval: float = 30.0
    heartbeat_timeout: float = 10.0
    presence_grace: float = 5.0
    presence_ttl: float = 15.0
    presence_fanout_max: int = 100
    """Groups of more members than this announce no presence to every member."""
    presence_watch_max: int = 500
    """Users one connection may subscribe to with the ``presence`` command."""
    sqlite_synchronous: str = "NORMAL"
    read_budget: float = 5.0
    """Seconds one read (history, search, the conversation list) may take; then 413."""
    api_key: str | None = None
    upload_max_bytes: int = 10 * 1024 * 1024
    upload_types: tuple[str, ...] = UPLOAD_TYPES
    log_level: str = "info"
    log_format: str = "text"
    """``text`` (one line per record, as before) or ``json`` (one object per line)."""
    metrics_token: str | None = None
    """When set, ``GET /metrics`` needs ``Authorization: Bearer`` with it."""
    cors_origins: tuple[str, ...] = ()
    """Web origins allowed to call the API and open WebSockets; ``*`` (dev only) any."""
    limits: Limits = field(default_factory=Limits)
    push: PushSettings = field(default_factory=PushSettings)
    """Push notifications to offline users (``hubbub.push``, docs/push.md)."""
    quotas: Quotas = field(default_factory=Quotas)
    """Send rate and connections per user, connect rate per address (``hubbub.limits``)."""

    @property
    def production(self) -> bool:
        return self.env == "production"

    @property
    def postgres(self) -> bool:
        return self.database_url.startswith(("postgresql://", "postgres://"))

    @property
    def sqlite_path(self) -> Path:
        url = self.database_url or f"sqlite:///{self.data_dir / 'hubbub.db'}"
        if not url.startswith("sqlite:///"):
            raise ConfigError(
                f"HUBBUB_DATABASE_URL {url!r}: use sqlite:///PATH or postgresql://..."
            )
        return Path(url.removeprefix("sqlite:///"))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        env = os.environ if environ is None else environ

        def get(name: str, default: str | None = None) -> str | None:
            value = env.get(f"HUBBUB_{name}")
            return value if value not in (None, "") else default

        def number(name: str, default: float, kind: type = float) -> Any:
            raw = get(name)
            if raw is None:
                return default
            try:
                value = kind(raw)
            except ValueError:
                raise ConfigError(f"HUBBUB_{name}={raw!r} is not a number") from None
            if value <= 0:
                raise ConfigError(f"HUBBUB_{name} must be positive")
            return value

        base = Limits()
        limits = Limits(
            max_frame_bytes=number("MAX_FRAME_BYTES", base.max_frame_bytes, int),
            max_body_chars=number("MAX_BODY_CHARS", base.max_body_chars, int),
            max_group_members=number("MAX_GROUP_MEMBERS", base.max_group_members, int),
            outbound_buffer_bytes=number("OUTBOUND_BUFFER_BYTES", base.outbound_buffer_bytes, int),
            resume_limit=number("RESUME_LIMIT", base.resume_limit, int),
            resume_window=number("RESUME_WINDOW", base.resume_window),
        )
        algorithms = tuple(a.strip() for a in (get("JWT_ALGORITHMS") or "").split(",") if a.strip())
        public_key = get("JWT_PUBLIC_KEY")
        if public_key and not public_key.lstrip().startswith("-----"):
            try:
                public_key = Path(public_key).read_text()
            except OSError as exc:
                raise ConfigError(f"HUBBUB_JWT_PUBLIC_KEY: cannot read {exc.filename}") from None
        jwks_url = get("JWKS_URL")
        if not algorithms:
            algorithms = ("HS256", "RS256", "ES256") if public_key or jwks_url else ("HS256",)
        unknown = [a for a in algorithms if a not in JWT_ALGORITHMS]
        if unknown:
            raise ConfigError(
                f"HUBBUB_JWT_ALGORITHMS: {', '.join(unknown)} not among {', '.join(JWT_ALGORITHMS)}"
            )
        env_name = (get("ENV", "dev") or "dev").lower()
        if jwks_url is not None:
            jwks_url = jwks_address(jwks_url, production=env_name == "production")
        if public_key and jwks_url:
            raise ConfigError("set HUBBUB_JWT_PUBLIC_KEY or HUBBUB_JWKS_URL, not both")
        origins = cors_origins(get("CORS_ORIGINS") or "", production=env_name == "production")
        synchronous = (get("SQLITE_SYNCHRONOUS") or "NORMAL").upper()
        if synchronous not in ("NORMAL", "FULL"):
            raise ConfigError("HUBBUB_SQLITE_SYNCHRONOUS must be NORMAL or FULL")
        routing = (get("ROUTING") or "interest").lower()
        if routing not in ("interest", "broadcast"):
            raise ConfigError("HUBBUB_ROUTING must be interest or broadcast")
        log_format = (get("LOG_FORMAT") or "text").lower()
        if log_format not in ("text", "json"):
            raise ConfigError("HUBBUB_LOG_FORMAT must be text or json")
        try:
            quotas = Quotas.from_env(env)
            push = PushSettings.from_env(env)
        except (QuotaError, PushSettingsError) as exc:
            raise ConfigError(str(exc)) from None
        settings = cls(
            host=get("HOST", "127.0.0.1") or "127.0.0.1",
            port=number("PORT", 8000, int),
            env=env_name,
            data_dir=Path(get("DATA_DIR", "data") or "data"),
            database_url=get("DATABASE_URL", "") or "",
            redis_url=get("REDIS_URL"),
            redis_prefix=get("REDIS_PREFIX", "hubbub:") or "hubbub:",
            routing=routing,
            routing_shards=number("ROUTING_SHARDS", 1024, int),
            routing_linger=number("ROUTING_LINGER", 30.0),
            auto_migrate=(get("AUTO_MIGRATE", "1") or "1").lower()
            not in ("0", "false", "no", "off"),
            jwt_secret=get("JWT_SECRET"),
            jwt_public_key=public_key,
            jwt_algorithms=algorithms,
            jwks_url=jwks_url,
            jwt_audience=listed(get("JWT_AUDIENCE")),
            jwt_issuer=listed(get("JWT_ISSUER")),
            jwt_user_claim=(get("JWT_USER_CLAIM") or "sub").strip(),
            jwt_name_claim=(get("JWT_NAME_CLAIM") or "name").strip(),
            heartbeat_interval=number("HEARTBEAT_INTERVAL", 30.0),
            heartbeat_timeout=number("HEARTBEAT_TIMEOUT", 10.0),
            presence_grace=number("PRESENCE_GRACE", 5.0),
            presence_ttl=number("PRESENCE_TTL", 15.0),
            presence_fanout_max=number("PRESENCE_FANOUT_MAX", 100, int),
            presence_watch_max=number("PRESENCE_WATCH_MAX", 500, int),
            sqlite_synchronous=synchronous,
            read_budget=number("READ_BUDGET", 5.0),
            api_key=get("API_KEY"),
            upload_max_bytes=number("UPLOAD_MAX_BYTES", 10 * 1024 * 1024, int),
            upload_types=tuple(
                t.strip().lower() for t in (get("UPLOAD_TYPES") or "").split(",") if t.strip()
            )
            or UPLOAD_TYPES,
            log_level=(get("LOG_LEVEL", "info") or "info").lower(),
            log_format=log_format,
            metrics_token=get("METRICS_TOKEN"),
            cors_origins=origins,
            limits=limits,
            push=push,
            quotas=quotas,
        )
        return replace(settings, **{k: v for k, v in overrides.items() if v is not None})

    def with_secret(self) -> Settings:
        """Return settings whose token secret is decided.

        Production must be given a secret or a public key. In dev mode a secret
        is generated once and kept in the data directory, so that the server and
        ``hubbub token`` agree.
        """
        if self.jwt_secret or self.jwt_public_key or self.jwks_url:
            return self
        if self.production:
            raise ConfigError(
                "HUBBUB_ENV=production requires HUBBUB_JWT_SECRET, HUBBUB_JWT_PUBLIC_KEY"
                " or HUBBUB_JWKS_URL"
            )
        path = self.data_dir / "dev-jwt-secret"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            secret = path.read_text().strip()
        else:
            secret = secrets.token_urlsafe(32)
            with os.fdopen(fd, "w") as f:
                f.write(secret + "\n")
        return replace(self, jwt_secret=secret)
