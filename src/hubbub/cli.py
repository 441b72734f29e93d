"""The ``hubbub`` command: ``run`` the server, mint a dev ``token``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hubbub import __version__
from hubbub.auth import mint_token
from hubbub.config import ConfigError, Settings


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
        data_dir=Path(args.data_dir) if getattr(args, "data_dir", None) else None,
        database_url=getattr(args, "database_url", None),
    )


def cmd_run(args: argparse.Namespace) -> int:
    from hubbub.server import run

    run(_settings(args).with_secret())
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from hubbub import migrations

    settings = _settings(args)
    url = settings.database_url if settings.postgres else f"sqlite:///{settings.sqlite_path}"
    if not settings.postgres:
        settings.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
    migrations.upgrade(url)
    print(f"hubbub: {'PostgreSQL' if settings.postgres else settings.sqlite_path} is up to date")
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    settings = _settings(args).with_secret()
    if not settings.jwt_secret:
        raise ConfigError("hubbub token needs HUBBUB_JWT_SECRET (the server uses a public key)")
    print(mint_token(settings.jwt_secret, args.user, name=args.name, ttl=args.ttl))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hubbub", description="A real-time chat server.")
    p.add_argument("--version", action="version", version=f"hubbub {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="serve WebSocket and REST on one port")
    run.add_argument("--host", help="bind address (HUBBUB_HOST, default 127.0.0.1)")
    run.add_argument("--port", type=int, help="port (HUBBUB_PORT, default 8000)")
    run.add_argument("--data-dir", help="data directory (HUBBUB_DATA_DIR, default ./data)")
    run.add_argument(
        "--database-url", help="sqlite:///PATH or postgresql://... (HUBBUB_DATABASE_URL)"
    )
    run.set_defaults(func=cmd_run)

    migrate = sub.add_parser("migrate", help="bring the database schema up to date")
    migrate.add_argument("--data-dir", help="data directory (HUBBUB_DATA_DIR)")
    migrate.add_argument("--database-url", help="sqlite:///PATH or postgresql://...")
    migrate.set_defaults(func=cmd_migrate)

    token = sub.add_parser("token", help="print a signed token for local testing")
    token.add_argument("user", help="user id (the token's sub claim)")
    token.add_argument("--name", help="display name (the name claim)")
    token.add_argument("--ttl", type=float, default=24 * 3600, help="seconds (default 86400)")
    token.add_argument("--data-dir", help="data directory holding the dev secret")
    token.set_defaults(func=cmd_token)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"hubbub: {exc}", file=sys.stderr)
        return 2
