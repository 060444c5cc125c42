"""The `releasebot` command line: each subcommand builds Settings and calls one service."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from bot import migrate
from bot.config import config_json_schema, load_config
from bot.domain.errors import ConfigError
from bot.services import audit
from bot.settings import Settings, load_settings
from bot.store.db import Database, make_engine

EXIT_OK, EXIT_FAIL, EXIT_ERROR = 0, 1, 2


def _settings(args: argparse.Namespace) -> Settings:
    environ = dict(os.environ)
    if getattr(args, "config", None):
        environ["RELEASEBOT_CONFIG"] = str(args.config)
    return load_settings(environ)


def _print(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def _error(text: str) -> None:
    sys.stderr.write(text if text.endswith("\n") else text + "\n")


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from bot.app import create_app

    settings = _settings(args)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        app = create_app(settings)
    except ConfigError as exc:
        _error(f"{settings.config_path}: invalid configuration")
        for problem in exc.problems:
            _error(f"  {problem}")
        return EXIT_FAIL
    uvicorn.run(
        app, host=args.host, port=args.port, log_level=settings.log_level.lower(), access_log=False
    )
    return EXIT_OK


def cmd_db(args: argparse.Namespace) -> int:
    engine = make_engine(_settings(args).database_url)
    try:
        if args.action == "upgrade":
            migrate.upgrade(engine)
            _print(f"database at {migrate.current(engine)} (head)")
        else:
            current, head = migrate.current(engine), migrate.head()
            state = "current" if current == head else f"behind head {head}"
            _print(f"{current or 'empty'} ({state})")
            return EXIT_OK if current == head else EXIT_FAIL
    finally:
        engine.dispose()
    return EXIT_OK


def cmd_config(args: argparse.Namespace) -> int:
    if args.action == "schema":
        _print(json.dumps(config_json_schema(), indent=2))
        return EXIT_OK
    path = Path(args.path) if args.path else _settings(args).config_path
    try:
        config = load_config(path)
    except ConfigError as exc:
        _error(f"{path}: {len(exc.problems)} problem(s)")
        for problem in exc.problems:
            _error(f"  {problem}")
        return EXIT_FAIL
    envs = sum(len(s.environments) for s in config.services.values())
    _print(f"{path}: OK ({len(config.services)} services, {envs} environments)")
    return EXIT_OK


def _audit_evidence(args: argparse.Namespace) -> int:
    """`audit evidence <release-id>`: the release's evidence pack as indented JSON."""
    from datetime import UTC

    from bot.services.evidence import evidence_pack

    if args.release_id is None:
        _error("audit evidence needs a release id: releasebot audit evidence <release-id>")
        return EXIT_ERROR
    settings = _settings(args)
    try:
        config = load_config(settings.config_path)
    except ConfigError as exc:
        _error(f"{settings.config_path}: invalid configuration")
        for problem in exc.problems:
            _error(f"  {problem}")
        return EXIT_FAIL
    db = Database(make_engine(settings.database_url))
    try:
        with db.read() as session:
            pack = evidence_pack(
                session,
                release_id=args.release_id,
                config=config,
                generated_at=datetime.now(UTC),
            )
    except LookupError as exc:
        _error(str(exc.args[0]) if exc.args else str(exc))
        return EXIT_FAIL
    finally:
        db.dispose()
    _print(json.dumps(pack, indent=2, ensure_ascii=False))
    return EXIT_OK


def cmd_audit(args: argparse.Namespace) -> int:
    if args.action == "evidence":
        return _audit_evidence(args)
    db = Database(make_engine(_settings(args).database_url))
    try:
        with db.read() as session:
            if args.action == "export":
                try:
                    since = datetime.fromisoformat(args.since) if args.since else None
                except ValueError:
                    _error(f"--since {args.since!r} is not an ISO 8601 time (2026-11-01T00:00Z)")
                    return EXIT_ERROR
                _print(audit.export(session, fmt=args.format, since=since))
                return EXIT_OK
            checked, broken = audit.verify_chain(session)
        if broken is not None:
            _error(f"audit chain broken at record {broken.seq}: {broken.reason}")
            return EXIT_FAIL
        _print(f"audit chain intact: {checked} records verified")
        return EXIT_OK
    finally:
        db.dispose()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="releasebot", description="Slack release bot for continuous deployment."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the bot (applies migrations first)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--config", help="config file (default: $RELEASEBOT_CONFIG)")
    serve.set_defaults(func=cmd_serve)

    db = sub.add_parser("db", help="database migrations")
    db.add_argument("action", choices=["upgrade", "current"])
    db.set_defaults(func=cmd_db)

    config = sub.add_parser("config", help="validate the config or print its JSON Schema")
    config.add_argument("action", choices=["check", "schema"])
    config.add_argument("path", nargs="?", help="config file (default: $RELEASEBOT_CONFIG)")
    config.set_defaults(func=cmd_config)

    audit_cmd = sub.add_parser(
        "audit", help="export or verify the audit trail, or print a release's evidence pack"
    )
    audit_cmd.add_argument("action", choices=["export", "verify", "evidence"])
    audit_cmd.add_argument(
        "release_id", nargs="?", type=int, help="release id (for evidence: its evidence pack)"
    )
    audit_cmd.add_argument("--format", choices=["json", "csv"], default="json")
    audit_cmd.add_argument("--since", help="ISO 8601 time; export records from then on")
    audit_cmd.add_argument("--config", help="config file (default: $RELEASEBOT_CONFIG)")
    audit_cmd.set_defaults(func=cmd_audit)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return EXIT_FAIL


if __name__ == "__main__":
    raise SystemExit(main())
