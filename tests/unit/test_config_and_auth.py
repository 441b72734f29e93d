from __future__ import annotations

import json
import random
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from hubbub.auth import TokenVerifier, mint_token
from hubbub.clock import iso_ms, parse_iso_ms
from hubbub.config import ConfigError, Settings
from hubbub.errors import Unauthorized
from tests.support import SECRET, forged, raw_token


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


async def test_token_round_trip_and_claims() -> None:
    verifier = TokenVerifier(Settings(jwt_secret="k" * 32))
    identity = await verifier.verify(mint_token("k" * 32, "ann", name="Ann", ttl=60))
    assert (identity.user_id, identity.name) == ("ann", "Ann")
    assert identity.expires_at > time.time()
    assert verifier.check(mint_token("k" * 32, "ann", name="Ann", ttl=60)) == identity
    with pytest.raises(Unauthorized, match="expired"):
        await verifier.verify(mint_token("k" * 32, "ann", ttl=-10))
    with pytest.raises(Unauthorized, match="name"):
        await verifier.verify(jwt.encode({"sub": "a", "exp": time.time() + 9, "name": 5}, "k" * 32))
    with pytest.raises(Unauthorized, match="sub"):
        await verifier.verify(jwt.encode({"sub": "a" * 129, "exp": time.time() + 9}, "k" * 32))


def test_iso_timestamps() -> None:
    assert iso_ms(0) == "1970-01-01T00:00:00.000Z"
    assert iso_ms(1_700_000_000_123) == "2023-11-14T22:13:20.123Z"
    rng = random.Random(5)
    # Up to the last millisecond of year 9999, and twice each (the cached second).
    for ms in [rng.randrange(253_402_300_800_000) for _ in range(2000)] * 2:
        reference = datetime.fromtimestamp(ms / 1000, tz=UTC)
        assert iso_ms(ms) == reference.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
        assert parse_iso_ms(iso_ms(ms)) == ms


# Tokens of every kind, hostile ones included -------------------------------

KEY = "k" * 32
# A day ahead: tests may run long after this module is imported.
SOON = int(time.time()) + 86_400
TIME = re.compile(r"\b\d{10}\b")


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def public_key_verifier(key: Any, **settings: Any) -> TokenVerifier:
    return public_key_verifier_of(pem(key), **settings)


def public_key_verifier_of(text: str, **settings: Any) -> TokenVerifier:
    return TokenVerifier(Settings.from_env({"HUBBUB_JWT_PUBLIC_KEY": text}, **settings))


@pytest.mark.parametrize("family", ["rsa", "ec", "ed25519"])
async def test_a_header_naming_an_algorithm_the_key_cannot_verify_is_unauthorized(
    family: str,
) -> None:
    key: Any = {
        "rsa": rsa_key,
        "ec": lambda: ec.generate_private_key(ec.SECP256R1()),
        "ed25519": ed25519.Ed25519PrivateKey.generate,
    }[family]()
    verifier = public_key_verifier(key, jwt_algorithms=("HS256", "RS256", "ES256", "EdDSA"))
    own = {"rsa": "RS256", "ec": "ES256", "ed25519": "EdDSA"}[family]
    good = jwt.encode({"sub": "u", "exp": SOON}, key, own)
    assert (await verifier.verify(good)).user_id == "u"
    for alg in ("RS256", "PS256", "ES256", "ES384", "EdDSA", "HS256", "none", "RSA-OAEP"):
        with pytest.raises(Unauthorized):
            await verifier.verify(forged(alg))
    for bad in (forged(["RS256"]), forged(None), forged({}), forged(own, kid=7)):
        with pytest.raises(Unauthorized):
            await verifier.verify(bad)


@pytest.mark.parametrize(
    "payload",
    [
        '{"sub":"u","exp":1' + "0" * 400 + "}",
        '{"sub":"u","exp":1e400}',
        '{"sub":"u","exp":-1e400}',
        '{"sub":"u","exp":NaN}',
        '{"sub":"u","exp":Infinity}',
        '{"sub":"u","exp":253402300800}',
        f'{{"sub":"u","exp":"{SOON}"}}',
        '{"sub":"u","exp":true}',
        '{"sub":"u","exp":null}',
        '{"sub":"u","exp":[1]}',
        f'{{"sub":"u","exp":{SOON},"iat":"{SOON - 9}"}}',
        f'{{"sub":"u","exp":{SOON},"iat":1e400}}',
        f'{{"sub":"u","exp":{SOON},"nbf":"0"}}',
        f'{{"sub":"u","exp":{SOON},"nbf":NaN}}',
        f'{{"sub":"u","exp":{SOON},"nbf":{SOON - 60}}}',  # not valid for almost a day
        '{"sub":"u\\u0000v","exp":' + str(SOON) + "}",
        '{"sub":"\\u0000","exp":' + str(SOON) + "}",
        '{"sub":"u","name":"Ann\\u0000","exp":' + str(SOON) + "}",
        '{"sub":"u","exp":' + str(SOON) + "," + '"x":' + "[" * 5000 + "]" * 5000 + "}",
    ],
    # Named without the times in them: each test worker imports this module
    # at its own second, and the workers must collect the same tests.
    ids=lambda payload: TIME.sub("T", payload)[:80],
)
async def test_claims_that_are_not_what_they_must_be_are_unauthorized(payload: str) -> None:
    verifier = TokenVerifier(Settings(jwt_secret=SECRET))
    with pytest.raises(Unauthorized):
        await verifier.verify(raw_token(payload))


async def test_time_claims_may_be_fractional_and_iat_or_a_near_nbf_may_lie_ahead() -> None:
    verifier = TokenVerifier(Settings(jwt_secret=SECRET))
    now = time.time()
    for payload in (
        f'{{"sub":"u","exp":{now + 30.5}}}',
        f'{{"sub":"u","exp":{SOON},"iat":{now + 300},"nbf":{now + 30}}}',
    ):
        assert (await verifier.verify(raw_token(payload))).user_id == "u"
    expiring = await verifier.verify(raw_token(f'{{"sub":"u","exp":{now + 30.5}}}'))
    assert expiring.expires_at == now + 30.5


async def test_an_audience_is_checked_only_when_one_is_configured() -> None:
    claims = {"sub": "u", "exp": SOON, "aud": "https://api.example.com", "iss": "https://idp/"}
    anything = TokenVerifier(Settings(jwt_secret=KEY))
    assert (await anything.verify(jwt.encode(claims, KEY))).user_id == "u"
    both = {"aud": ["other", "https://api.example.com"]}
    assert (await anything.verify(jwt.encode({**claims, **both}, KEY))).user_id == "u"

    strict = TokenVerifier(
        Settings.from_env(
            {
                "HUBBUB_JWT_SECRET": KEY,
                "HUBBUB_JWT_AUDIENCE": "https://api.example.com, second",
                "HUBBUB_JWT_ISSUER": "https://idp/",
            }
        )
    )
    assert (await strict.verify(jwt.encode(claims, KEY))).user_id == "u"
    assert (await strict.verify(jwt.encode({**claims, "aud": ["x", "second"]}, KEY))).user_id
    refused = [
        ({**claims, "aud": "https://api.example.com.evil"}, "audience"),
        ({**claims, "aud": []}, "aud"),
        ({k: v for k, v in claims.items() if k != "aud"}, "aud"),
        ({**claims, "iss": "https://idp/evil"}, "issuer"),
        ({k: v for k, v in claims.items() if k != "iss"}, "iss"),
    ]
    for bad, why in refused:
        with pytest.raises(Unauthorized, match=why):
            await strict.verify(jwt.encode(bad, KEY))
    with pytest.raises(Unauthorized, match="iss"):
        await strict.verify(raw_token(json.dumps({**claims, "iss": 5}), KEY))


async def test_the_user_and_name_claims_can_be_named() -> None:
    def verifier(user: str, name: str) -> TokenVerifier:
        env = {"HUBBUB_JWT_SECRET": KEY, "HUBBUB_JWT_USER_CLAIM": user}
        return TokenVerifier(Settings.from_env({**env, "HUBBUB_JWT_NAME_CLAIM": name}))

    base = {"sub": "f81d4fae", "exp": SOON}
    keycloak = verifier("preferred_username", "name")
    who = await keycloak.verify(jwt.encode({**base, "preferred_username": "ann", "name": "A"}, KEY))
    assert (who.user_id, who.name) == ("ann", "A")
    with pytest.raises(Unauthorized, match="preferred_username"):
        await keycloak.verify(jwt.encode(base, KEY))
    cognito = verifier("sub", "cognito:username")
    who = await cognito.verify(jwt.encode({**base, "cognito:username": "ann"}, KEY))
    assert (who.user_id, who.name) == ("f81d4fae", "ann")
    supabase = verifier("sub", "user_metadata.full_name")
    meta = {"user_metadata": {"full_name": "Ann Lee"}}
    who = await supabase.verify(jwt.encode({**base, **meta}, KEY))
    assert (who.user_id, who.name) == ("f81d4fae", "Ann Lee")
    assert (await supabase.verify(jwt.encode({**base, "user_metadata": 3}, KEY))).name is None
    with pytest.raises(Unauthorized, match="NUL"):
        await supabase.verify(jwt.encode({**base, "user_metadata": {"full_name": "\0"}}, KEY))
    namespaced = verifier("https://example.com/uid", "https://example.com/name")
    claims = {**base, "https://example.com/uid": "u1", "https://example.com/name": "N"}
    who = await namespaced.verify(jwt.encode(claims, KEY))
    assert (who.user_id, who.name) == ("u1", "N")


def test_identity_provider_settings_from_the_environment() -> None:
    s = Settings.from_env(
        {
            "HUBBUB_JWKS_URL": "https://idp.example.com/.well-known/jwks.json",
            "HUBBUB_JWT_AUDIENCE": "a,b,a",
            "HUBBUB_JWT_ISSUER": "https://idp.example.com/",
            "HUBBUB_JWT_USER_CLAIM": "user_id",
            "HUBBUB_JWT_NAME_CLAIM": "preferred_username",
        }
    )
    assert s.jwks_url == "https://idp.example.com/.well-known/jwks.json"
    assert (s.jwt_audience, s.jwt_issuer) == (("a", "b"), ("https://idp.example.com/",))
    assert (s.jwt_user_claim, s.jwt_name_claim) == ("user_id", "preferred_username")
    assert s.jwt_algorithms == ("HS256", "RS256", "ES256")
    plain = Settings.from_env({})
    assert (plain.jwt_audience, plain.jwt_issuer, plain.jwt_user_claim) == ((), (), "sub")
    production = {"HUBBUB_ENV": "production", "HUBBUB_JWKS_URL": "https://idp/jwks"}
    assert Settings.from_env(production).with_secret().jwt_secret is None


@pytest.mark.parametrize(
    "env",
    [
        {"HUBBUB_JWT_ALGORITHMS": "none"},
        {"HUBBUB_JWT_ALGORITHMS": "HS256,rs256"},
        {"HUBBUB_JWKS_URL": "ftp://idp/jwks"},
        {"HUBBUB_JWKS_URL": "idp.example.com/jwks"},
        {"HUBBUB_JWKS_URL": "http://idp/jwks", "HUBBUB_ENV": "production"},
        {"HUBBUB_JWKS_URL": "https://idp/jwks", "HUBBUB_JWT_PUBLIC_KEY": "-----BEGIN x"},
    ],
)
def test_bad_token_settings_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        Settings.from_env(env)


def test_a_public_key_that_is_not_one_or_fits_no_algorithm_is_refused() -> None:
    with pytest.raises(ConfigError, match="PEM"):
        public_key_verifier_of("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    with pytest.raises(ConfigError, match="fits"):
        public_key_verifier(rsa_key(), jwt_algorithms=("HS256", "ES256"))
