"""The `releasebot` command line: each subcommand builds Settings and calls one service."""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bot import migrate
from bot.config import (
    Config,
    config_json_schema,
    format_duration,
    load_config,
    parse_duration,
)
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


def _config_or_report(settings: Settings) -> Config | None:
    """The config the settings name, or None after printing every problem with its path."""
    try:
        return load_config(settings.config_path)
    except ConfigError as exc:
        _error(f"{settings.config_path}: invalid configuration")
        for problem in exc.problems:
            _error(f"  {problem}")
        return None


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
    # What is loaded by now (modules, the config) stays for the life of the server: frozen,
    # the collector's full passes no longer walk it all (each stalled the event loop, and
    # every request waiting on it, for ~100 ms).
    gc.collect()
    gc.freeze()
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
    config = _config_or_report(settings)
    if config is None:
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


# --- metrics: DORA figures in the terminal ----------------------------------------------------


def _metrics_days(value: str) -> int:
    from bot.domain.dora import MAX_DAYS

    if not value.isdigit() or not 1 <= int(value) <= MAX_DAYS:
        raise argparse.ArgumentTypeError(f"must be a whole number of days, 1 to {MAX_DAYS}")
    return int(value)


def _metrics_at(value: str) -> datetime:
    from datetime import UTC

    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an ISO 8601 time") from None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def cmd_metrics(args: argparse.Namespace) -> int:
    """`metrics`: DORA metrics, overall and per configured service (or one), as a table."""
    from datetime import UTC

    from sqlalchemy.exc import SQLAlchemyError

    from bot.services import dora

    settings = _settings(args)
    config = _config_or_report(settings)
    if config is None:
        return EXIT_FAIL
    if args.service is not None and args.service not in config.services:
        _error(f"warning: {args.service} is not in {settings.config_path}; showing its history")
    now = args.at or datetime.now(UTC)
    services = None if args.service is not None else sorted(config.services)
    db = Database(make_engine(settings.database_url))
    try:
        with db.read() as session:
            rows = dora.report(
                session, now=now, service=args.service, windows=(args.days,), services=services
            )
    except SQLAlchemyError as exc:
        _error(f"cannot read the database: {type(exc).__name__}: {exc}".splitlines()[0])
        return EXIT_ERROR
    finally:
        db.dispose()
    _print(dora.heading(rows, now=now, year=args.year))
    _print(dora.table_text(rows, year=args.year))
    _print(dora.verdict_line(rows[0], year=args.year))
    _print(dora.legend(args.year))
    return EXIT_OK


# --- gate: ask the running bot for an approval, from any CI job ------------------------------

GATES_PATH = "/api/v1/gates"
GATE_FINAL = frozenset({"approved", "rejected", "expired", "superseded"})
DEFAULT_API_URL = "http://localhost:8000"


class GateApiError(Exception):
    """The bot refused the call, or could not be reached in time: the CLI exits 2."""


class GateApiUnavailable(GateApiError):
    """A failure that may pass (no connection, 5xx, 429): polling keeps trying."""


def _duration(value: str) -> timedelta:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_duration(value: str) -> timedelta:
    parsed = _duration(value)
    if parsed <= timedelta(0):
        raise argparse.ArgumentTypeError(f"must be more than 0, not {value!r}")
    return parsed


def _gate_call(
    client: httpx.Client, method: str, path: str, **kwargs: Any
) -> tuple[int, dict[str, Any]]:
    """One call to the gates API: (status code, JSON body), or GateApiError saying why not."""
    try:
        response = client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        raise GateApiUnavailable(f"cannot reach the bot at {client.base_url}: {exc}") from None
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {}
    code = response.status_code
    if code >= 400:
        problem = body.get("error") or response.text[:200] or response.reason_phrase
        message = f"the bot answered {code}: {problem}"
        if code >= 500 or code == 429:
            raise GateApiUnavailable(message)
        raise GateApiError(message)
    return code, body


def _gate_decision(gate: dict[str, Any]) -> str:
    """`" by U0RM1: 1 of 1 approvals"`: who decided and why, when the gate is decided."""
    if gate.get("status") not in GATE_FINAL:
        return ""
    decided_by, reason = gate.get("decided_by"), gate.get("reason")
    return (f" by {decided_by}" if decided_by else "") + (f": {reason}" if reason else "")


def _gate_line(gate: dict[str, Any]) -> str:
    line = f"gate #{gate.get('id')}: {gate.get('status')}"
    if gate.get("status") == "pending" and gate.get("progress"):
        line += f" ({gate['progress']})"
    return line + _gate_decision(gate)


def wait_for_decision(
    client: httpx.Client,
    gate_id: int,
    *,
    timeout: float,
    interval: float,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
    on_update: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Poll GET /api/v1/gates/{id} every `interval` seconds until the gate is decided.

    Returns the last status seen: a final one, or a pending one when `timeout` seconds
    passed first. Failures that may pass (the bot restarting, a 502) are retried until the
    timeout; a refusal (401, 404) raises GateApiError at once, as does a timeout with no
    answer at all. `on_update` sees each status whose state or progress changed.
    """
    deadline = monotonic() + timeout
    last: dict[str, Any] | None = None
    problem = "no answer"
    while True:
        try:
            _, gate = _gate_call(client, "GET", f"{GATES_PATH}/{gate_id}")
        except GateApiUnavailable as exc:
            problem = str(exc)
            _error(f"warning: {problem}; trying again")
        else:
            seen = (gate.get("status"), gate.get("progress"), len(gate.get("approvals") or ()))
            before = (
                (last.get("status"), last.get("progress"), len(last.get("approvals") or ()))
                if last is not None
                else None
            )
            if on_update is not None and seen != before:
                on_update(gate)
            last = gate
            if gate.get("status") in GATE_FINAL:
                return gate
        remaining = deadline - monotonic()
        if remaining <= 0:
            break
        sleep(min(interval, remaining))
    if last is None:
        raise GateApiError(f"gave up on gate {gate_id}: {problem}")
    return last


def run_gate(
    args: argparse.Namespace,
    client: httpx.Client,
    *,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> int:
    """`gate request` over `client` (its base URL and bearer token already set).

    Exit 0 approved (or, without --wait, asked for), 1 rejected, expired, superseded or
    still pending when --timeout passed, 2 on any error (unreachable, 401, 400, ...).
    """
    payload: dict[str, str] = {
        "service": args.service,
        "environment": args.env,
        "version": args.version,
    }
    requested_by = (
        args.requested_by or os.environ.get("GITHUB_ACTOR") or os.environ.get("GITLAB_USER_LOGIN")
    )
    for key, value in (("sha", args.sha), ("url", args.url), ("requested_by", requested_by)):
        if value:
            payload[key] = value
    what = f"{args.service} {args.env} {args.version}"
    try:
        code, gate = _gate_call(client, "POST", GATES_PATH, json=payload)
        gate_id = gate.get("id")
        if gate_id is None:  # the environment has no gate: nothing to wait for
            _print(f"{what}: {gate.get('status')} ({gate.get('reason') or 'no gate'})")
            return EXIT_OK if gate.get("status") == "approved" else EXIT_FAIL
        _print(f"gate #{gate_id} {'opened' if code == 201 else 'found'} for {what}")
        _print(_gate_line(gate))
        if args.wait and gate.get("status") not in GATE_FINAL:
            gate = wait_for_decision(
                client,
                int(gate_id),
                timeout=args.timeout.total_seconds(),
                interval=args.interval.total_seconds(),
                sleep=sleep,
                monotonic=monotonic,
                on_update=lambda g: _print(_gate_line(g)),
            )
    except GateApiError as exc:
        _error(f"error: {exc}")
        return EXIT_ERROR
    status = gate.get("status")
    if status == "approved":
        _print(f"approved: {what} may deploy")
        return EXIT_OK
    if status in GATE_FINAL:
        _error(f"not approved: gate #{gate_id} was {status}{_gate_decision(gate)}")
        return EXIT_FAIL
    if args.wait:
        _error(
            f"timed out after {format_duration(args.timeout)}: gate #{gate_id} is still {status}"
            + (f" ({gate['progress']})" if gate.get("progress") else "")
        )
        return EXIT_FAIL
    return EXIT_OK


def cmd_gate(args: argparse.Namespace) -> int:
    token = args.token or os.environ.get("RELEASEBOT_API_TOKEN")
    if not token:
        _error("no API token: pass --token or set RELEASEBOT_API_TOKEN")
        return EXIT_ERROR
    base_url = args.api_url or os.environ.get("RELEASEBOT_PUBLIC_URL") or DEFAULT_API_URL
    headers = {"authorization": f"Bearer {token}", "user-agent": "releasebot-cli"}
    with httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=30.0) as client:
        return run_gate(args, client)


def cmd_demo(args: argparse.Namespace) -> int:
    from bot.demo import run_demo

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    run_demo(
        host=args.host,
        port=args.port,
        database=Path(args.database),
        auto=args.auto,
        play=not args.no_story,
    )
    return EXIT_OK


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

    from bot.domain.dora import DEFAULT_YEAR, years

    metrics_cmd = sub.add_parser(
        "metrics", help="DORA metrics per service and overall, with the performance cluster"
    )
    metrics_cmd.add_argument("--service", help="one service (default: overall and each one)")
    metrics_cmd.add_argument(
        "--days", type=_metrics_days, default=30, help="the last N days (default 30)"
    )
    metrics_cmd.add_argument(
        "--year",
        type=int,
        choices=years(),
        default=DEFAULT_YEAR,
        help=f"DORA report year of the cluster thresholds (default {DEFAULT_YEAR})",
    )
    metrics_cmd.add_argument(
        "--at", type=_metrics_at, help="as of this ISO 8601 time (default: now)"
    )
    metrics_cmd.add_argument("--config", help="config file (default: $RELEASEBOT_CONFIG)")
    metrics_cmd.set_defaults(func=cmd_metrics)

    gate_cmd = sub.add_parser("gate", help="ask the bot for an approval from any CI job")
    gate_sub = gate_cmd.add_subparsers(dest="action", required=True)
    gate_request = gate_sub.add_parser(
        "request",
        help="open (or find) the gate of a release; --wait for the decision",
        description="Asks the running bot (POST /api/v1/gates) for an approval. With --wait, "
        "exits 0 approved, 1 rejected/expired/superseded/timed out, 2 on any error.",
    )
    gate_request.add_argument("--service", required=True)
    gate_request.add_argument("--env", required=True, help="environment, e.g. production")
    gate_request.add_argument("--version", required=True, help="the version to deploy")
    gate_request.add_argument("--sha", help="full commit sha (else the version names it)")
    gate_request.add_argument("--url", help="CI run link for the release message")
    gate_request.add_argument(
        "--requested-by", help="who asks (default: $GITHUB_ACTOR or $GITLAB_USER_LOGIN)"
    )
    gate_request.add_argument("--wait", action="store_true", help="wait for the decision")
    gate_request.add_argument(
        "--timeout", type=_duration, default=timedelta(hours=4), help="with --wait (4h)"
    )
    gate_request.add_argument(
        "--interval", type=_positive_duration, default=timedelta(seconds=10), help="poll (10s)"
    )
    gate_request.add_argument(
        "--api-url", help=f"the bot (default: $RELEASEBOT_PUBLIC_URL or {DEFAULT_API_URL})"
    )
    gate_request.add_argument("--token", help="API token (default: $RELEASEBOT_API_TOKEN)")
    gate_request.set_defaults(func=cmd_gate)
    demo = sub.add_parser(
        "demo", help="run the bot with the local Slack sandbox and play a release story into it"
    )
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument("--database", default="releasebot-demo.db", help="SQLite file (recreated)")
    demo.add_argument("--auto", action="store_true", help="make the story's clicks too")
    demo.add_argument("--no-story", action="store_true", help="only serve; send events yourself")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return EXIT_FAIL


if __name__ == "__main__":
    raise SystemExit(main())
