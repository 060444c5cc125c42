"""Outbox rows: written with the state change that causes them, claimed and settled by the worker.

Rows that share a `key` (one deployment's Slack message and its thread) are sent strictly in
id order: a row is claimable only when no earlier row of its key is still pending.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col

from bot.domain import messages
from bot.domain.messages import Message
from bot.services import outbox_coalesce
from bot.store import deferred
from bot.store import statements as sql
from bot.store.tables import OutboxMessage

PENDING = sql.OUTBOX_PENDING
SENT = "sent"
DEAD = "dead"

# Kinds of rows, each sent by its own handler in bot.outbox_worker (models in bot.domain.messages).
SLACK_MESSAGE = messages.ReleaseMessageUpdate.KIND  # post or edit the deployment's release message
SLACK_THREAD = messages.TemplateLine.KIND  # one progress line in the message's thread
ASSESS = messages.Assess.KIND  # fetch the commits, score the risk
RESOLVE_SHA = messages.ResolveSha.KIND  # fetch a full sha the webhook did not carry
DEPLOY = messages.DeployerCall.KIND  # tell the real pipeline a decision, or start a deploy
SLACK_ANNOUNCE = messages.Announcement.KIND  # a line in the channel itself
PAGER_CHANGE = messages.PagerChange.KIND  # a PagerDuty change event (deploy, rollback, ...)
PAGER = messages.PagerAlert.KIND  # page on-call (trigger) or close the alert (resolve)
DIGEST = messages.Digest.KIND  # the weekly DORA digest

LEASE = timedelta(seconds=60)
MAX_BACKOFF = 300.0  # seconds: the longest wait between two tries of a failing row


_OUTBOX = sql.OUTBOX


def enqueue(session: Session, message: Message, *, now: datetime) -> None:
    enqueue_many(session, [message], now=now)


def enqueue_many(session: Session, batch: Sequence[Message], *, now: datetime) -> None:
    """Queue the messages in this order, in one statement (inside
    `deferred.deferred_inserts`, together with the block's other rows when it ends).

    While the worker is behind, an edit of a release message already waiting is not
    queued again, and a thread line joins the line waiting before it (`outbox_coalesce`)."""
    batch = [message for message in batch if not outbox_coalesce.absorbed(session, message)]
    if not batch:
        return
    deferred.insert(
        session,
        sql.INSERT_OUTBOX,
        [
            {
                "key": message.key,
                "kind": message.KIND,
                "payload": message.to_payload(),
                "status": PENDING,
                "attempts": 0,
                "created_at": now,
                "next_attempt_at": now,
                "claimed_until": None,
                "sent_at": None,
                "last_error": None,
            }
            for message in batch
        ],
    )


@dataclass(frozen=True)
class Claimed:
    id: int
    key: str
    kind: str
    payload: dict[str, Any]
    attempts: int
    created_at: datetime
    lease_token: str | None = None  # the claim holding this row (None: unfenced, as of old)

    def log_ids(self) -> dict[str, object]:
        """The ids this row's log lines carry (a sha lookup names the provider's deployment,
        not ours)."""
        deployment = self.payload.get("deployment_id") if self.kind != RESOLVE_SHA else None
        return {
            "outbox_id": self.id,
            "deployment_id": deployment,
            "gate_id": self.payload.get("gate_id"),
        }


def new_lease_token() -> str:
    """A fresh name for one claim: the rows it takes carry it until they are settled."""
    return uuid.uuid4().hex


def claim_due(
    session: Session,
    *,
    now: datetime,
    limit: int = 50,
    per_key: int | None = None,
    max_keys: int | None = None,
    token: str | None = None,
    lease: timedelta = LEASE,
) -> list[Claimed]:
    """Lease up to `limit` due rows, in id order; within a key only a run of rows from its
    first pending one, so a row is never sent before an earlier pending row of its key.

    The pending rows are read in id order and each key is followed until its first row
    that is not due or is leased (by another worker, or by this one: its rows in flight),
    or for at most `per_key` rows: that row and every later row of the key wait. So a
    claim takes many keys (messages) rather than a long run of one; at most `max_keys`.
    On PostgreSQL the rows are then locked with SKIP LOCKED; a row another replica is
    claiming at the same moment is skipped, and so are the later rows of its key. The
    claimed rows carry `token` until they are settled or given back.
    """
    candidates = _candidates(session, now=now, limit=limit, per_key=per_key, max_keys=max_keys)
    if not candidates:
        return []
    conn = session.connection()
    query = (
        sa.select(
            _OUTBOX.c.id,
            _OUTBOX.c.key,
            _OUTBOX.c.kind,
            _OUTBOX.c.payload,
            _OUTBOX.c.attempts,
            _OUTBOX.c.created_at,
        )
        .where(_OUTBOX.c.id.in_([row_id for row_id, _ in candidates]))
        .where(_OUTBOX.c.status == PENDING)
        .where(_OUTBOX.c.next_attempt_at <= now)  # a retry scheduled meanwhile waits
        .where(sa.or_(_OUTBOX.c.claimed_until.is_(None), _OUTBOX.c.claimed_until < now))
        .order_by(_OUTBOX.c.id)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    lockable = {row.id: row for row in conn.execute(query)}
    claimed: list[Claimed] = []
    lost: set[str] = set()  # keys with a row another worker took (or settled) first
    for row_id, key in candidates:
        if key in lost:
            continue
        taken = lockable.get(row_id)
        if taken is None:  # the rest of this key waits for that row
            lost.add(key)
            continue
        claimed.append(
            Claimed(
                taken.id,
                taken.key,
                taken.kind,
                dict(taken.payload),
                taken.attempts,
                taken.created_at,
                token,
            )
        )
    if claimed:
        conn.execute(
            sa.update(_OUTBOX)
            .where(_OUTBOX.c.id.in_([c.id for c in claimed]))
            .values(claimed_until=now + lease, lease_token=token)
        )
    return claimed


def _candidates(
    session: Session, *, now: datetime, limit: int, per_key: int | None, max_keys: int | None
) -> list[tuple[int, str]]:
    """(id, key) of the rows a claim may take, in id order (see `claim_due`)."""
    conn = session.connection()
    candidates: list[tuple[int, str]] = []
    blocked: set[str] = set()
    taken: dict[str, int] = {}
    after = 0
    while len(candidates) < limit:
        page = conn.execute(sql.PENDING_OUTBOX_PAGE, {"after": after}).all()
        for row in page:
            if row.key in blocked:
                continue
            due = row.next_attempt_at <= now
            free = row.claimed_until is None or row.claimed_until < now
            room = row.key in taken or max_keys is None or len(taken) < max_keys
            if due and free and room and (per_key is None or taken.get(row.key, 0) < per_key):
                candidates.append((row.id, row.key))
                taken[row.key] = taken.get(row.key, 0) + 1
                if len(candidates) == limit:
                    break
            else:
                blocked.add(row.key)
        if len(page) < sql.OUTBOX_PAGE:
            break
        after = page[-1].id
    return candidates


@dataclass(frozen=True)
class Attempt:
    """A row about to be sent, still held by its claim. `in_doubt_since`: when an earlier
    attempt whose outcome is unknown first went out (None: nothing can have been sent)."""

    in_doubt_since: datetime | None


def begin_attempts(
    session: Session,
    *,
    row_ids: list[int],
    token: str | None,
    now: datetime,
    lease: timedelta = LEASE,
) -> dict[int, Attempt]:
    """For rows of one claim about to be sent: check that the claim `token` still holds
    each, extend its lease and note that a call is going out (keeping the time of an
    earlier attempt still in doubt). Returns the rows still held, each with its Attempt;
    a row left out was lost (another worker claimed it, or it was settled): send nothing."""
    if not row_ids:
        return {}
    conn = session.connection()
    held = _held(row_ids, token)
    found = sa.select(_OUTBOX.c.id, _OUTBOX.c.attempted_at).where(held)
    if conn.dialect.name == "postgresql":
        found = found.with_for_update()  # no other claim may take them before the update
    attempts = {row.id: Attempt(in_doubt_since=row.attempted_at) for row in conn.execute(found)}
    if attempts:
        conn.execute(
            sa.update(_OUTBOX)
            .where(_held(list(attempts), token))
            .values(
                attempted_at=sa.func.coalesce(_OUTBOX.c.attempted_at, _went_out(now)),
                claimed_until=now + lease,
            )
        )
    return attempts


def _went_out(now: datetime) -> sa.BindParameter[datetime]:
    return sa.bindparam("went_out", now, type_=_OUTBOX.c.attempted_at.type)


def renew(
    session: Session, *, row_ids: list[int], token: str, now: datetime, lease: timedelta = LEASE
) -> set[int]:
    """Extend the lease of the rows `token` still holds; returns those it no longer holds."""
    if not row_ids:
        return set()
    conn = session.connection()
    held = _held(row_ids, token)
    conn.execute(sa.update(_OUTBOX).where(held).values(claimed_until=now + lease))
    still = {row_id for (row_id,) in conn.execute(sa.select(_OUTBOX.c.id).where(held))}
    return set(row_ids) - still


def _held(row_ids: int | list[int], token: str | None) -> sa.ColumnElement[bool]:
    """The row (or rows), pending and (with a token) still held by that claim."""
    named = _OUTBOX.c.id.in_(row_ids) if isinstance(row_ids, list) else _OUTBOX.c.id == row_ids
    clause = named & (_OUTBOX.c.status == PENDING)
    if token is not None:
        clause = clause & (_OUTBOX.c.lease_token == token)
    return clause


# What marking a row sent sets besides `sent_at`: no claim left on it, nothing in doubt.
_SENT_VALUES: dict[str, Any] = {
    "status": SENT,
    "claimed_until": None,
    "lease_token": None,
    "attempted_at": None,
    "last_error": None,
}


def retry_delay(attempts: int, retry_after: float | None, *, jitter: float) -> float:
    """Seconds until a failed row is tried again: what the API asked for (Retry-After), else
    an exponential backoff up to MAX_BACKOFF; `jitter` in [0, 1) spreads the retries."""
    if retry_after is not None:
        return retry_after + jitter  # the API asks for at least this long
    return min(MAX_BACKOFF, 2.0 ** min(attempts, 16)) * (0.5 + jitter)


def settle(session: Session, *, sent: list[int], untried: list[int], now: datetime) -> None:
    """Mark a batch's sent rows sent, and give back the leases of rows never tried (a row
    settled meanwhile, sent, retried or dead, keeps what it has)."""
    if sent:
        mark_sent_many(session, row_ids=sent, now=now)
    if untried:
        release(session, row_ids=untried)


def mark_sent_many(
    session: Session, *, row_ids: list[int], now: datetime, token: str | None = None
) -> set[int]:
    """Mark rows sent; with `token`, only those that claim still holds. Returns the rows
    marked (a row left out was taken over by another worker, or settled already)."""
    clause = _held(row_ids, token) if token is not None else _OUTBOX.c.id.in_(row_ids)
    marked = session.connection().execute(
        sa.update(_OUTBOX).where(clause).values(sent_at=now, **_SENT_VALUES).returning(_OUTBOX.c.id)
    )
    return set(marked.scalars())


def release(session: Session, *, row_ids: list[int], token: str | None = None) -> None:
    """Give back leases of claimed rows that were not tried (an earlier row of their key
    failed, or the worker is stopping), so they wait only for that row, not for the lease
    to run out. With `token`, only rows that claim still holds."""
    session.connection().execute(
        sa.update(_OUTBOX).where(_held(row_ids, token)).values(claimed_until=None, lease_token=None)
    )


def later_message_updates(session: Session, *, keys: list[str]) -> dict[str, int]:
    """Per key, the id of its newest pending release-message row (for skipping stale edits)."""
    if not keys:
        return {}
    rows = session.connection().execute(
        sa.select(_OUTBOX.c.key, sa.func.max(_OUTBOX.c.id))
        .where(_OUTBOX.c.key.in_(keys))
        .where(_OUTBOX.c.kind == SLACK_MESSAGE)
        .where(_OUTBOX.c.status == PENDING)
        .group_by(_OUTBOX.c.key)
    )
    return {key: int(newest) for key, newest in rows}


KEEP = object()  # mark_retry: leave attempted_at as it is


def mark_retry(
    session: Session,
    *,
    row_id: int,
    next_attempt_at: datetime,
    error: str,
    token: str | None = None,
    count_attempt: bool = True,
    attempted_at: datetime | None | object = KEEP,
) -> bool:
    """Schedule the row again at `next_attempt_at` and give back its lease.

    `count_attempt=False` for a rate limit: Slack did nothing and said when to come back,
    so the row's backoff does not grow. `attempted_at` restores the time of an earlier
    attempt in doubt (or None) when this one surely sent nothing; left out, it is kept.
    False (nothing changed) when `token` no longer holds the row."""
    values: dict[str, Any] = {
        "next_attempt_at": next_attempt_at,
        "claimed_until": None,
        "lease_token": None,
        "last_error": error[:1000],
    }
    if count_attempt:
        values["attempts"] = _OUTBOX.c.attempts + 1
    if attempted_at is not KEEP:
        values["attempted_at"] = attempted_at
    result = session.connection().execute(
        sa.update(_OUTBOX).where(_held(row_id, token)).values(**values)
    )
    return bool(result.rowcount)


def mark_dead(session: Session, *, row_id: int, error: str, token: str | None = None) -> bool:
    """Give up on the row (shown in /readyz and /metrics); False when `token` lost it."""
    result = session.connection().execute(
        sa.update(_OUTBOX)
        .where(_held(row_id, token))
        .values(
            status=DEAD,
            attempts=_OUTBOX.c.attempts + 1,
            claimed_until=None,
            lease_token=None,
            last_error=error[:1000],
        )
    )
    return bool(result.rowcount)


@dataclass(frozen=True)
class Backlog:
    pending: int
    dead: int
    oldest_pending: datetime | None


def backlog(session: Session) -> Backlog:
    pending, oldest = session.execute(
        sa.select(sa.func.count(), sa.func.min(col(OutboxMessage.created_at))).where(
            col(OutboxMessage.status) == PENDING
        )
    ).one()
    dead = session.execute(
        sa.select(sa.func.count()).where(col(OutboxMessage.status) == DEAD)
    ).scalar_one()
    return Backlog(int(pending), int(dead), oldest)
