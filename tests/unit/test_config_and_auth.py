from __future__ import annotations

import time
from pathlib import Path

import jwt
import pytest

from hubbub.auth import TokenVerifier, mint_token
from hubbub.clock import iso_ms
from hubbub.config import ConfigError, Settings
from hubbub.errors import Unauthorized


def test_defaults_match_the_documented_contract() -> None:
    s = Settings.from_env({})
    assert (s.host, s.port, s.env, s.heartbeat_interval) == ("127.0.0.1", 8000, "dev", 30.0)
    assert s.sqlite_path == Path("data/hubbub.db")


def test_environment_overrides() -> None:
    s = Settings.from_env(
        {
            "HUBBUB_PORT": "9001",
            "HUBBUB_DATABASE_URL": "sqlite:////tmp/x.db",
            "HUBBUB_MAX_BODY_CHARS": "10",
            "HUBBUB_HEARTBEAT_INTERVAL": "1.5",
        },
        host="0.0.0.0",
    )
    assert (s.port, s.host, s.limits.max_body_chars) == (9001, "0.0.0.0", 10)
    assert s.sqlite_path == Path("/tmp/x.db") and s.heartbeat_interval == 1.5


@pytest.mark.parametrize(
    "env",
    [{"HUBBUB_PORT": "x"}, {"HUBBUB_PORT": "-1"}, {"HUBBUB_SQLITE_SYNCHRONOUS": "OFF"}],
)
def test_bad_settings_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        Settings.from_env(env)


def test_unsupported_database_url_is_refused() -> None:
    with pytest.raises(ConfigError, match="sqlite"):
        _ = Settings.from_env({"HUBBUB_DATABASE_URL": "mysql://x"}).sqlite_path


def test_dev_secret_is_generated_once(tmp_path: Path) -> None:
    s = Settings.from_env({"HUBBUB_DATA_DIR": str(tmp_path)})
    first = s.with_secret().jwt_secret
    assert first and first == s.with_secret().jwt_secret
    assert (tmp_path / "dev-jwt-secret").stat().st_mode & 0o777 == 0o600


def test_production_needs_a_secret(tmp_path: Path) -> None:
    s = Settings.from_env({"HUBBUB_DATA_DIR": str(tmp_path), "HUBBUB_ENV": "production"})
    with pytest.raises(ConfigError):
        s.with_secret()
    given = Settings.from_env({"HUBBUB_ENV": "production", "HUBBUB_JWT_SECRET": "s" * 32})
    assert given.with_secret().jwt_secret == "s" * 32


def test_token_round_trip_and_claims() -> None:
    verifier = TokenVerifier(Settings(jwt_secret="k" * 32))
    identity = verifier.verify(mint_token("k" * 32, "ann", name="Ann", ttl=60))
    assert (identity.user_id, identity.name) == ("ann", "Ann")
    assert identity.expires_at > time.time()
    with pytest.raises(Unauthorized, match="expired"):
        verifier.verify(mint_token("k" * 32, "ann", ttl=-10))
    with pytest.raises(Unauthorized, match="name"):
        verifier.verify(jwt.encode({"sub": "a", "exp": time.time() + 9, "name": 5}, "k" * 32))
    with pytest.raises(Unauthorized, match="sub"):
        verifier.verify(jwt.encode({"sub": "a" * 129, "exp": time.time() + 9}, "k" * 32))


def test_iso_timestamps() -> None:
    assert iso_ms(0) == "1970-01-01T00:00:00.000Z"
    assert iso_ms(1_700_000_000_123) == "2023-11-14T22:13:20.123Z"
