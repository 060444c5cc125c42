"""Append-only rows (outbox rows) written together at the end of a unit of work.

A webhook delivery queues several outbox rows; inside `deferred_inserts(session)` each of
these INSERTs is held back and, when the block ends normally, every held-back row of one
statement is written in a single executemany, in the order the rows were added (so ids come
out as if each had been inserted at once). Nothing inside the block may read those rows
back. When the block raises, the held-back rows are dropped with the rest of the caller's
transaction, which is rolled back. (Audit records are held back until the transaction
commits in any case: `bot.services.audit_chain`.)

Outside such a block (the default) the helpers insert at once, as before.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

_KEY = "deferred_inserts"


@contextmanager
def deferred_inserts(session: Session) -> Iterator[None]:
    """Hold back `insert(...)` calls on this session until the block ends, then write them."""
    if session.info.get(_KEY) is not None:  # an outer block writes them
        yield
        return
    pending: dict[sa.Insert, list[dict[str, Any]]] = {}
    session.info[_KEY] = pending
    try:
        yield
        flush(session)
    finally:
        session.info.pop(_KEY, None)


def insert(session: Session, statement: sa.Insert, rows: list[dict[str, Any]]) -> None:
    """Insert `rows` with `statement` now, or at the end of the enclosing deferred block."""
    pending: dict[sa.Insert, list[dict[str, Any]]] | None = session.info.get(_KEY)
    if pending is None:
        session.connection().execute(statement, rows)
    else:
        pending.setdefault(statement, []).extend(rows)


def flush(session: Session) -> None:
    """Write what the enclosing deferred block holds back so far (nothing outside one)."""
    pending: dict[sa.Insert, list[dict[str, Any]]] | None = session.info.get(_KEY)
    if not pending:
        return
    conn = session.connection()
    for statement, rows in pending.items():
        conn.execute(statement, rows)
    pending.clear()
