"""`releasebot audit export|verify|evidence`: the audit trail and a release's evidence pack."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime

from sqlmodel import Session

from bot.cli.common import EXIT_ERROR, EXIT_FAIL, EXIT_OK, config_or_report, say, settings_for, warn
from bot.domain.audit import format_at
from bot.services import audit
from bot.store.db import Database, make_engine


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit_cmd = commands.add_parser(
        "audit", help="export or verify the audit trail, or print a release's evidence pack"
    )
    audit_cmd.add_argument("action", choices=["export", "verify", "evidence"])
    audit_cmd.add_argument(
        "release_id", nargs="?", type=int, help="release id (for evidence: its evidence pack)"
    )
    audit_cmd.add_argument("--format", choices=["json", "jsonl", "csv"], default="json")
    audit_cmd.add_argument("--since", help="ISO 8601 time; export records from then on")
    audit_cmd.add_argument("--until", help="ISO 8601 time; export records before then")
    audit_cmd.add_argument("--config", help="config file (default: $RELEASEBOT_CONFIG)")
    audit_cmd.set_defaults(func=cmd_audit)


def cmd_audit(args: argparse.Namespace) -> int:
    if args.action == "evidence":
        return _audit_evidence(args)
    db = Database(make_engine(settings_for(args).database_url))
    try:
        with db.read() as session:
            if args.action == "export":
                return _audit_export(session, args)
            checked, broken = audit.verify_chain(session)
        if broken is not None:
            warn(f"audit chain broken at record {broken.seq}: {broken.reason}")
            return EXIT_FAIL
        say(f"audit chain intact: {checked} records verified")
        return EXIT_OK
    finally:
        db.dispose()


def _audit_export(session: Session, args: argparse.Namespace) -> int:
    """`audit export`: the records streamed to stdout as they are read (see audit_export)."""
    from bot.services.audit_export import export_chunks

    bounds: dict[str, datetime | None] = {}
    for name in ("since", "until"):
        value = getattr(args, name)
        try:
            bounds[name] = datetime.fromisoformat(value) if value else None
        except ValueError:
            warn(f"--{name} {value!r} is not an ISO 8601 time (2026-11-01T00:00Z)")
            return EXIT_ERROR
    since, until = bounds["since"], bounds["until"]
    if since is not None and until is not None and format_at(since) >= format_at(until):
        warn(f"--since {args.since!r} is not before --until {args.until!r}: nothing to export")
        return EXIT_ERROR
    for chunk in export_chunks(session, fmt=args.format, since=since, until=until):
        sys.stdout.write(chunk)
    sys.stdout.flush()
    return EXIT_OK


def _audit_evidence(args: argparse.Namespace) -> int:
    """`audit evidence <release-id>`: the release's evidence pack as indented JSON."""
    from datetime import UTC

    from bot.services.evidence import evidence_pack

    if args.release_id is None:
        warn("audit evidence needs a release id: releasebot audit evidence <release-id>")
        return EXIT_ERROR
    settings = settings_for(args)
    config = config_or_report(settings)
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
        warn(str(exc.args[0]) if exc.args else str(exc))
        return EXIT_FAIL
    finally:
        db.dispose()
    say(json.dumps(pack, indent=2, ensure_ascii=False))
    return EXIT_OK
