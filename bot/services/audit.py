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
from sqlalchemy.orm import ORMExecuteState
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session, col, select

from bot.domain.audit import (
    AuditKeys,
    AuditRecord,
    ChainBreak,
    ChainWalk,
    canonical_json,
    find_break,
    format_at,
)
from bot.services import audit_chain
from bot.store import statements as sql
from bot.store.tables import AuditEvent

EXPORT_FIELDS = ("seq", "at", "actor", "action", "subject", "details", "prev_hash", "hash")

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

    The record takes its place in the chain (its seq, the hash it links to) when the
    transaction commits, after the records committed before it (`audit_chain`): it is
    dropped with the transaction, or with a savepoint it was appended in, when either is
    rolled back. Records of one transaction keep the order they were appended in.
    """
    session.info[_APPENDED] = True
    audit_chain.stage(
        # session.connection() also begins the session's pending savepoint, if any, so the
        # record is dropped when that savepoint is rolled back.
        session.connection(),
        audit_chain.Staged(
            at=format_at(at),
            actor=actor,
            action=action,
            subject=subject,
            details=canonical_json(dict(details or {})),
            key=keys_of(session).current,
        ),
    )


def head_of(session: Session) -> tuple[int, str]:
    """(seq, hash) of the chain's newest record, this transaction's appends included, (0,
    genesis) when empty; from here on this transaction holds the chain's append lock."""
    conn = session.connection()
    audit_chain.write_staged(conn)
    audit_chain.lock_chain(conn)
    return audit_chain.head(conn)


# A query of the audit trail in a transaction that appended to it sees those records too: the
# records staged so far are written first (the transaction holds the chain's lock from then).
_APPENDED = "audit_appended"  # in Session.info: this session staged records


@sa.event.listens_for(OrmSession, "do_orm_execute")
def _before_reading(state: ORMExecuteState) -> None:
    if not state.session.info.get(_APPENDED) or not state.is_select:
        return
    if any(mapper.class_ is AuditEvent for mapper in state.all_mappers):
        audit_chain.write_staged(state.session.connection())


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
