"""Appending to, exporting and verifying the hash-chained audit log."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from bot.domain.audit import (
    GENESIS_HASH,
    AuditRecord,
    ChainBreak,
    canonical_json,
    find_break,
    format_at,
    record_hash,
)
from bot.store.tables import AuditEvent

CHAIN_LOCK = 7_200_312  # PostgreSQL advisory lock id: one appender at a time
EXPORT_FIELDS = ("seq", "at", "actor", "action", "subject", "details", "prev_hash", "hash")


def append(
    session: Session,
    *,
    at: datetime,
    actor: str,
    action: str,
    subject: str,
    details: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Add one record at the end of the chain, inside the caller's transaction.

    On PostgreSQL, writers queue on a transaction-scoped advisory lock, so replicas append
    one after another; should two writers still race for the same `seq` they collide on
    the primary key and the loser's whole transaction is retried by `Database.write`, so
    the chain never forks.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": CHAIN_LOCK})
    last = session.exec(select(AuditEvent).order_by(col(AuditEvent.seq).desc()).limit(1)).first()
    seq = 1 if last is None else last.seq + 1
    prev_hash = GENESIS_HASH if last is None else last.hash
    stamp = format_at(at)
    body = json.loads(canonical_json(dict(details or {})))
    event = AuditEvent(
        seq=seq,
        at=stamp,
        actor=actor,
        action=action,
        subject=subject,
        details=canonical_json(body),
        prev_hash=prev_hash,
        hash=record_hash(
            prev_hash=prev_hash,
            seq=seq,
            at=stamp,
            actor=actor,
            action=action,
            subject=subject,
            details=body,
        ),
    )
    session.add(event)
    session.flush()
    return event


def to_record(event: AuditEvent) -> AuditRecord:
    return AuditRecord(
        seq=event.seq,
        at=event.at,
        actor=event.actor,
        action=event.action,
        subject=event.subject,
        details=json.loads(event.details),
        prev_hash=event.prev_hash,
        hash=event.hash,
    )


def iter_events(session: Session, *, since: datetime | None = None) -> Iterator[AuditEvent]:
    query = select(AuditEvent).order_by(col(AuditEvent.seq))
    if since is not None:
        query = query.where(col(AuditEvent.at) >= format_at(since))
    yield from session.exec(query.execution_options(yield_per=1000))


def verify_chain(session: Session) -> tuple[int, ChainBreak | None]:
    """(records checked, first break or None), walking the whole chain from its start."""
    count = 0

    def records() -> Iterator[AuditRecord]:
        nonlocal count
        for event in iter_events(session):
            count += 1
            try:
                yield to_record(event)
            except json.JSONDecodeError:
                yield AuditRecord(
                    event.seq,
                    event.at,
                    event.actor,
                    event.action,
                    event.subject,
                    {"unreadable": event.details},
                    event.prev_hash,
                    "",
                )

    broken = find_break(records())
    return count, broken


def export(session: Session, *, fmt: str, since: datetime | None = None) -> str:
    rows = [to_record(event) for event in iter_events(session, since=since)]
    if fmt == "json":
        return json.dumps(
            [
                {
                    "seq": r.seq,
                    "at": r.at,
                    "actor": r.actor,
                    "action": r.action,
                    "subject": r.subject,
                    "details": dict(r.details),
                    "prev_hash": r.prev_hash,
                    "hash": r.hash,
                }
                for r in rows
            ],
            indent=2,
            ensure_ascii=False,
        )
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(EXPORT_FIELDS)
        for r in rows:
            writer.writerow(
                [
                    r.seq,
                    r.at,
                    r.actor,
                    r.action,
                    r.subject,
                    canonical_json(dict(r.details)),
                    r.prev_hash,
                    r.hash,
                ]
            )
        return buffer.getvalue()
    raise ValueError(f"unknown export format {fmt!r}: use json or csv")


def count(session: Session) -> int:
    return int(session.exec(select(sa.func.count()).select_from(AuditEvent)).one())
