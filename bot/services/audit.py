"""Appending to, exporting and verifying the hash-chained audit log.

The keys a database's chain is written under are bound to its engine once, when the app
starts (`use_keys`); every `append` on a session of that engine then writes keyed records.
"""

from __future__ import annotations

import csv
import io
import json
import weakref
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session, col, select

from bot.domain.audit import (
    GENESIS_HASH,
    AuditKeys,
    AuditRecord,
    ChainBreak,
    ChainWalk,
    canonical_json,
    find_break,
    format_at,
    record_hash,
)
from bot.store import deferred
from bot.store import statements as sql
from bot.store.db import innermost_transaction
from bot.store.tables import AuditEvent

CHAIN_LOCK = 7_200_312  # PostgreSQL advisory lock id: one appender at a time
EXPORT_FIELDS = ("seq", "at", "actor", "action", "subject", "details", "prev_hash", "hash")


# The append path runs several times per webhook delivery: `sql.AUDIT_CHAIN_HEAD` and
# `sql.INSERT_AUDIT_EVENT` are built once and run on the session's connection, not as ORM
# objects: nothing reads the new row back through the ORM. Inside
# `deferred.deferred_inserts` (a webhook delivery) the INSERTs are written together.
_LOCK = sa.text("SELECT pg_advisory_xact_lock(:key)")
_KEYS: weakref.WeakKeyDictionary[Engine, AuditKeys] = weakref.WeakKeyDictionary()
_UNKEYED = AuditKeys()


def use_keys(engine: Engine, keys: AuditKeys) -> None:
    """Write this database's new records under `keys.current` (None: unkeyed, as before)."""
    _KEYS[engine] = keys


def engine_of(session: Session) -> Engine:
    bind = session.get_bind()
    return bind.engine if isinstance(bind, Connection) else bind


def keys_of(session: Session) -> AuditKeys:
    """The keys bound to the session's database (none bound: unkeyed)."""
    return _KEYS.get(engine_of(session), _UNKEYED)


def append(
    session: Session,
    *,
    at: datetime,
    actor: str,
    action: str,
    subject: str,
    details: Mapping[str, Any] | None = None,
) -> None:
    """Add one record at the end of the chain, inside the caller's transaction.

    On PostgreSQL, writers queue on a transaction-scoped advisory lock, so replicas append
    one after another; should two writers still race for the same `seq` they collide on
    the primary key and the loser's whole transaction is retried by `Database.write`, so
    the chain never forks.
    """
    head = head_of(session)
    seq, prev_hash = head[0] + 1, head[1]
    stamp = format_at(at)
    body = json.loads(canonical_json(dict(details or {})))
    key = keys_of(session).current
    digest = record_hash(
        prev_hash=prev_hash,
        seq=seq,
        at=stamp,
        actor=actor,
        action=action,
        subject=subject,
        details=body,
        key=key,
    )
    deferred.insert(
        session,
        sql.INSERT_AUDIT_EVENT,
        [
            {
                "seq": seq,
                "at": stamp,
                "actor": actor,
                "action": action,
                "subject": subject,
                "details": canonical_json(body),
                "prev_hash": prev_hash,
                "hash": digest,
                "key_id": key.key_id if key is not None else None,
            }
        ],
    )
    session.info[_HEAD] = (innermost_transaction(session), seq, digest)


def head_of(session: Session) -> tuple[int, str]:
    """(seq, hash) of the chain's newest record, (0, genesis) when empty, as this
    transaction sees it; from here on this transaction holds the chain's append lock."""
    head = _cached_head(session)
    if head is not None:
        return head
    conn = session.connection()
    deferred.flush(session)  # records held back in this session come before the head
    if conn.dialect.name == "postgresql":
        conn.execute(_LOCK, {"key": CHAIN_LOCK})
    last = conn.execute(sql.AUDIT_CHAIN_HEAD).first()
    return (0, GENESIS_HASH) if last is None else (last.seq, last.hash)


# The chain head this session appended last, so the next append in the same transaction
# skips the lookup (a delivery appends several records). It is used only while the
# innermost transaction (or savepoint) that wrote it is still the current one: until then
# this transaction holds the write lock (SQLite: BEGIN IMMEDIATE; PostgreSQL: the advisory
# lock, taken in that same transaction or savepoint), so no other writer can have appended.
# In any other transaction, or once a savepoint began or ended, the head is read again.
_HEAD = "audit_chain_head"


def _cached_head(session: Session) -> tuple[int, str] | None:
    cached = session.info.get(_HEAD)
    if cached is None or cached[0] is not innermost_transaction(session):
        return None
    return cached[1], cached[2]


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
        key_id=event.key_id,
    )


def iter_events(session: Session, *, since: datetime | None = None) -> Iterator[AuditEvent]:
    query = select(AuditEvent).order_by(col(AuditEvent.seq))
    if since is not None:
        query = query.where(col(AuditEvent.at) >= format_at(since))
    yield from session.exec(query.execution_options(yield_per=1000))


@dataclass(frozen=True)
class Verification:
    """A walk of the whole chain: what it saw, the first break, the newest stored record."""

    walk: ChainWalk
    broken: ChainBreak | None
    last_seq: int


def verify_chain(session: Session) -> tuple[int, ChainBreak | None]:
    """(records checked, first break or None), walking the whole chain with the bound keys."""
    result = verify(session)
    return result.walk.checked, result.broken


def verify(
    session: Session,
    keys: AuditKeys | None = None,
    *,
    keep: frozenset[int] = frozenset(),
) -> Verification:
    """Walk the whole chain from its start with `keys` (default: the bound ones), keeping
    the stored hashes of the records in `keep` (the checkpointed ones)."""
    walk = ChainWalk()
    last_seq = 0

    def records() -> Generator[AuditRecord]:
        nonlocal last_seq
        for event in iter_events(session):
            last_seq = event.seq
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
                    event.key_id,
                )

    known = (keys if keys is not None else keys_of(session)).known
    stream = records()
    try:
        broken = find_break(stream, known, walk=walk, keep=keep)
    finally:
        stream.close()
    if broken is not None:
        last = session.connection().execute(sql.AUDIT_CHAIN_HEAD).first()
        last_seq = 0 if last is None else int(last.seq)
    return Verification(walk, broken, last_seq)


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
