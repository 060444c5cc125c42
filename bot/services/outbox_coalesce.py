"""What a backlog of one release message's rows can share, decided when a row is queued.

While the worker is behind (a burst of deliveries, Slack rate-limiting a channel), a
deployment's state changes queue faster than they are sent. Two kinds of row can then be
absorbed by one already waiting, pending, unclaimed and never attempted:

- an edit of the release message, when an edit is already waiting for it: the waiting one
  is rendered when it is sent, from the state this transaction commits;
- a thread line, when the newest waiting row of its message (edits aside) is a line: the
  new line is appended to it, and the two go out as one reply (at most `MAX_LINES` lines),
  in the order they were queued, still after every row queued before them.

A row a worker has claimed, or tried once, is never added to: it may already have read
what it shows, or be in Slack already. On PostgreSQL the waiting row is locked until this
transaction ends, so a worker's claim (SKIP LOCKED) cannot take it and render the state
from before this commit. Within one transaction rows are not merged with each other: a
message sent as soon as it is queued looks as it always has.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from bot.domain import messages
from bot.domain.messages import Message
from bot.store import statements as sql
from bot.store.db import innermost_transaction

EDIT = messages.ReleaseMessageUpdate.KIND
LINE = messages.TemplateLine.KIND
MAX_LINES = 10  # lines in one reply at most: a long backlog still reads as a thread

_OUTBOX = sql.OUTBOX
_WAITING = (
    (_OUTBOX.c.status == sql.OUTBOX_PENDING)
    & _OUTBOX.c.claimed_until.is_(None)
    & _OUTBOX.c.attempted_at.is_(None)
)
_EDIT_WAITING = (
    sa.select(_OUTBOX.c.id)
    .where(_OUTBOX.c.key == sa.bindparam("key"))
    .where(_OUTBOX.c.kind == EDIT)
    .where(_WAITING)
    .limit(1)
)
# The newest pending row of a message other than an edit, and whether it is still waiting.
_NEWEST_ROW = (
    sa.select(_OUTBOX.c.id, _OUTBOX.c.kind, _OUTBOX.c.payload, _WAITING.label("waiting"))
    .where(_OUTBOX.c.key == sa.bindparam("key"))
    .where(_OUTBOX.c.kind != EDIT)
    .where(_OUTBOX.c.status == sql.OUTBOX_PENDING)
    .order_by(_OUTBOX.c.id.desc())
    .limit(1)
)
_SET_PAYLOAD = (
    sa.update(_OUTBOX)
    .where(_OUTBOX.c.id == sa.bindparam("row_id"))
    .values(payload=sa.bindparam("new_payload", type_=_OUTBOX.c.payload.type))
)
_STATE = "outbox_coalescing"


@dataclass
class _Seen:
    """What this transaction knows of its messages' waiting rows (valid while the
    transaction, or savepoint, it was learnt in is the innermost one)."""

    transaction: object
    edits: set[str] = field(default_factory=set)  # an edit queued or found waiting
    # Per message, the waiting line this transaction appends to (None: its lines get rows
    # of their own, since a row of this transaction comes after that line).
    lines: dict[str, tuple[int, dict[str, Any]] | None] = field(default_factory=dict)


def absorbed(session: Session, message: Message) -> bool:
    """Whether `message` needs no row of its own: an edit is already waiting for its
    release message, or it is a thread line now appended to a waiting one."""
    conn = session.connection()  # begins the transaction, so it is the innermost one
    seen = _seen(session)
    key = message.key
    if message.KIND == EDIT:
        if key in seen.edits:
            return True
        seen.edits.add(key)
        return conn.execute(_locking(conn, _EDIT_WAITING), {"key": key}).first() is not None
    if message.KIND != LINE:
        seen.lines[key] = None  # a line queued later must follow this row
        return False
    if key not in seen.lines:
        seen.lines[key] = _waiting_line(conn, key)
    target = seen.lines[key]
    if target is None or len(target[1].get(messages.MORE_LINES, ())) + 1 >= MAX_LINES:
        seen.lines[key] = None
        return False
    row_id, payload = target
    payload = messages.with_line(payload, message.to_payload())
    conn.execute(_SET_PAYLOAD, {"row_id": row_id, "new_payload": payload})
    seen.lines[key] = (row_id, payload)
    return True


def _waiting_line(conn: sa.Connection, key: str) -> tuple[int, dict[str, Any]] | None:
    row = conn.execute(_locking(conn, _NEWEST_ROW), {"key": key}).first()
    if row is None or row.kind != LINE or not row.waiting:
        return None
    return row.id, dict(row.payload)


def _locking(conn: sa.Connection, query: sa.Select[Any]) -> sa.Select[Any]:
    return query.with_for_update() if conn.dialect.name == "postgresql" else query


def _seen(session: Session) -> _Seen:
    innermost = innermost_transaction(session)
    seen: _Seen | None = session.info.get(_STATE)
    if seen is None or seen.transaction is not innermost:
        seen = _Seen(innermost)
        session.info[_STATE] = seen
    return seen
