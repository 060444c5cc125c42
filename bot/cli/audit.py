"""`releasebot audit export|verify|evidence`: the audit trail and a release's evidence pack."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sqlmodel import Session

from bot.cli.common import EXIT_ERROR, EXIT_FAIL, EXIT_OK, config_or_report, say, settings_for, warn
from bot.domain import checkpoints
from bot.domain.audit import format_at
from bot.domain.checkpoints import Problem
from bot.domain.signing import SigningKeyError, load_public_key
from bot.services import audit
from bot.settings import Settings, SettingsError
from bot.store.db import Database, make_engine

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


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
    audit_cmd.add_argument(
        "--checkpoints",
        type=Path,
        help="verify: a checkpoint file (JSON Lines) the chain must still match",
    )
    audit_cmd.add_argument(
        "--public-key",
        type=Path,
        help="verify: the PEM public key checkpoints are signed with (default: the public "
        "half of RELEASEBOT_SIGNING_KEY)",
    )
    audit_cmd.add_argument("--config", help="config file (default: $RELEASEBOT_CONFIG)")
    audit_cmd.set_defaults(func=cmd_audit)


def cmd_audit(args: argparse.Namespace) -> int:
    if args.action == "evidence":
        return _audit_evidence(args)
    if args.action == "verify":
        return _audit_verify(args)
    db = Database(make_engine(settings_for(args).database_url))
    try:
        with db.read() as session:
            return _audit_export(session, args)
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


def _audit_verify(args: argparse.Namespace) -> int:
    """Walk the chain with every audit key, then hold it against the checkpoint file."""
    settings = settings_for(args)
    try:
        keys = settings.audit_keyring()
        public_key = _public_key(args.public_key, settings)
    except (SettingsError, SigningKeyError, OSError) as exc:
        warn(str(exc))
        return EXIT_ERROR
    entries: list[checkpoints.Entry] = []
    problems: list[Problem] = []
    if args.checkpoints is not None:
        try:
            text = args.checkpoints.read_text(encoding="utf-8")
        except OSError as exc:
            warn(f"--checkpoints {args.checkpoints}: cannot read it: {exc.strerror}")
            return EXIT_ERROR
        entries, problems = checkpoints.read_lines(text)
        if public_key is not None:
            problems += checkpoints.check_signatures(entries, public_key)
    db = Database(make_engine(settings.database_url))
    try:
        with db.read() as session:
            seqs = frozenset(int(entry.doc["seq"]) for entry in entries)
            result = audit.verify(session, keys, keep=seqs)
    finally:
        db.dispose()
    walk = result.walk
    verified_to = walk.head_seq if result.broken is not None else result.last_seq
    problems += checkpoints.check_against_chain(
        entries, last_seq=result.last_seq, hashes=walk.hashes, verified_to=verified_to
    )
    if result.broken is not None:
        problems.append(Problem(result.broken.seq, result.broken.reason))
    return _report(args, problems, result, entries, signed=public_key is not None)


def _report(
    args: argparse.Namespace,
    problems: list[Problem],
    result: audit.Verification,
    entries: list[checkpoints.Entry],
    *,
    signed: bool,
) -> int:
    walk = result.walk
    if problems:
        first = min((p for p in problems if p.seq > 0), key=lambda p: p.seq, default=None)
        if first is not None:
            warn(f"audit chain broken at record {first.seq}: {first.reason}")
        else:
            warn(f"checkpoint file {args.checkpoints} is not a checkpoint file:")
        for problem in sorted(problems, key=lambda p: p.seq):
            if problem is not first:
                warn(f"  also: {problem.reason}")
        return EXIT_FAIL
    say(f"audit chain intact: {walk.checked} records verified")
    if walk.key_ids:
        say(f"keyed with: {', '.join(walk.key_ids)} ({walk.unkeyed} records before any key)")
    if walk.unkeyed:
        say(
            f"warning: {walk.unkeyed} records carry no audit key: anyone with database access "
            "could rewrite them and the whole chain after them without this check noticing. "
            "Set RELEASEBOT_AUDIT_KEY and keep checkpoints outside the database (docs/audit.md)."
        )
    if args.checkpoints is not None:
        say(f"checkpoints: {len(entries)} in {args.checkpoints} match the chain")
        if not signed:
            say(
                "warning: checkpoint signatures were not checked (pass --public-key or set "
                "RELEASEBOT_SIGNING_KEY): a forged checkpoint file would pass"
            )
    return EXIT_OK


def _public_key(path: Path | None, settings: Settings) -> Ed25519PublicKey | None:
    if path is not None:
        return load_public_key(path.read_bytes(), source=str(path))
    signer = settings.signer()
    return signer.public_key if signer is not None else None


def _audit_evidence(args: argparse.Namespace) -> int:
    """`audit evidence <release-id>`: the release's evidence pack as indented JSON, signed
    when RELEASEBOT_SIGNING_KEY is set."""
    from datetime import UTC

    from bot.services.evidence import evidence_pack

    if args.release_id is None:
        warn("audit evidence needs a release id: releasebot audit evidence <release-id>")
        return EXIT_ERROR
    settings = settings_for(args)
    try:
        signer = settings.signer()
        keys = settings.audit_keyring()
    except SettingsError as exc:
        warn(str(exc))
        return EXIT_ERROR
    config = config_or_report(settings)
    if config is None:
        return EXIT_FAIL
    db = Database(make_engine(settings.database_url))
    audit.use_keys(db.engine, keys)  # the pack verifies the chain it quotes
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
    if signer is not None:
        pack = signer.sign(pack)
    say(json.dumps(pack, indent=2, ensure_ascii=False))
    return EXIT_OK
