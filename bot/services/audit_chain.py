"""Linking appended audit records into the chain when their transaction commits.

A record's place in the chain (its `seq` and the hash of the record before it) is fixed
only when its transaction commits: `audit.append` stages the record on the connection, and
just before the COMMIT every record the transaction staged is numbered, hashed after the
chain's head and written in one INSERT. On PostgreSQL the chain's advisory lock is taken
then, so concurrent writers are serialised only for that INSERT and their COMMIT, not for
the rest of their transaction (a webhook batch, a lane's group of writes, a gate decision).
On SQLite the transaction holds the database's write lock from its BEGIN anyway.

Savepoints are followed: the records staged inside a savepoint that is rolled back are
dropped with it; those of a released one stay with the enclosing transaction. A caller that
needs the head as it will be, this transaction's records included (a checkpoint), calls
`write_staged` first: that writes the staged records at once and holds the lock from there
to the COMMIT, as every append did before.

The listeners are registered on the `Engine` class, so every engine's connections stage and
write alike.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from bot.domain.audit import GENESIS_HASH, AuditKey, record_hash
from bot.store import advisory
from bot.store import statements as sql

_STAGED = "audit_staged"  # the key of the connection's `_Staged` in `Connection.info`


@dataclass(frozen=True)
class Staged:
    """An appended record, waiting for its place in the chain."""

    at: str
    actor: str
    action: str
    subject: str
    details: str  # canonical JSON, as stored
    key: AuditKey | None


@dataclass
class _Staged:
    """What one transaction staged: a list per open level, the transaction's own first and
    then one per savepoint open inside it, innermost last."""

    transaction: object
    levels: list[list[Staged]] = field(default_factory=lambda: [[]])


def stage(conn: Connection, record: Staged) -> None:
    """Keep `record` for the chain, written when the connection's transaction commits."""
    staged = _of(conn, create=True)
    assert staged is not None
    staged.levels[-1].append(record)


def write_staged(conn: Connection) -> None:
    """Write the records this transaction staged so far, now (the chain's lock, on
    PostgreSQL, is then held to the COMMIT); the transaction may go on staging."""
    staged = _of(conn, create=False)
    if staged is None:
        return
    records = [record for level in staged.levels for record in level]
    for level in staged.levels:
        level.clear()
    if records:
        _write(conn, records)


def lock_chain(conn: Connection) -> None:
    """Hold the chain's append lock until this transaction ends (PostgreSQL; SQLite's write
    transaction holds the whole database already)."""
    advisory.hold(conn, advisory.AUDIT_CHAIN)


def head(conn: Connection) -> tuple[int, str]:
    """(seq, hash) of the chain's newest stored record, (0, genesis) when it is empty."""
    last = conn.execute(sql.AUDIT_CHAIN_HEAD).first()
    return (0, GENESIS_HASH) if last is None else (int(last.seq), str(last.hash))


def _write(conn: Connection, records: list[Staged]) -> None:
    lock_chain(conn)
    seq, prev_hash = head(conn)
    rows: list[dict[str, Any]] = []
    for record in records:
        seq += 1
        digest = record_hash(
            prev_hash=prev_hash,
            seq=seq,
            at=record.at,
            actor=record.actor,
            action=record.action,
            subject=record.subject,
            details=json.loads(record.details),
            key=record.key,
        )
        rows.append(
            {
                "seq": seq,
                "at": record.at,
                "actor": record.actor,
                "action": record.action,
                "subject": record.subject,
                "details": record.details,
                "prev_hash": prev_hash,
                "hash": digest,
                "key_id": record.key.key_id if record.key is not None else None,
            }
        )
        prev_hash = digest
    conn.execute(sql.INSERT_AUDIT_EVENT, rows)


def _of(conn: Connection, *, create: bool) -> _Staged | None:
    """The staged records of the connection's current transaction (None: none staged)."""
    transaction = conn.get_transaction()
    staged: _Staged | None = conn.info.get(_STAGED)
    if staged is not None and staged.transaction is transaction:
        return staged
    if not create or transaction is None:
        return None
    staged = _Staged(transaction)
    conn.info[_STAGED] = staged
    return staged


@sa.event.listens_for(Engine, "commit")
def _on_commit(conn: Connection) -> None:
    # Runs just before the COMMIT, inside the transaction: a failure here fails the commit.
    try:
        write_staged(conn)
    finally:
        conn.info.pop(_STAGED, None)


@sa.event.listens_for(Engine, "rollback")
def _on_rollback(conn: Connection) -> None:
    conn.info.pop(_STAGED, None)


@sa.event.listens_for(Engine, "savepoint")
def _on_savepoint(conn: Connection, name: str | None) -> None:
    # Every savepoint is followed, staged records or not, so the levels match the
    # connection's savepoints whenever a record is staged later.
    staged = _of(conn, create=True)
    if staged is not None:
        staged.levels.append([])


@sa.event.listens_for(Engine, "release_savepoint")
def _on_release(conn: Connection, name: str, context: str | None) -> None:
    staged = _of(conn, create=False)
    if staged is not None and len(staged.levels) > 1:
        released = staged.levels.pop()
        staged.levels[-1].extend(released)


@sa.event.listens_for(Engine, "rollback_savepoint")
def _on_rollback_savepoint(conn: Connection, name: str, context: str | None) -> None:
    staged = _of(conn, create=False)
    if staged is not None and len(staged.levels) > 1:
        staged.levels.pop()  # its records are undone with it
