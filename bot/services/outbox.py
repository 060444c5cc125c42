"""Outbox rows: written with the state change that causes them, claimed and settled by the worker.

Rows that share a `key` (one deployment's Slack message and its thread) are sent strictly in
id order: a row is claimable only when no earlier row of its key is still pending.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from bot.store.tables import OutboxMessage

PENDING = "pending"
SENT = "sent"
DEAD = "dead"

# Kinds of rows, each sent by its own handler in bot.outbox.
SLACK_MESSAGE = "slack.release_message"  # post or edit the deployment's release message
SLACK_THREAD = "slack.thread_reply"  # one progress line in the message's thread
ASSESS = "deployment.assess"  # fetch the commits, score the risk
RESOLVE_SHA = "deployment.resolve_sha"  # fetch a full sha the webhook did not carry
DEPLOY = "deployer.execute"  # tell the real pipeline a decision, or start a deploy
SLACK_ANNOUNCE = "slack.announcement"  # a line in the channel itself, linked to the message
PAGER_CHANGE = "pager.change"  # a PagerDuty change event (deploy, rollback, break-glass)
PAGER = "pager.alert"  # page on-call (trigger) or close the alert (resolve)

LEASE = timedelta(seconds=60)


def enqueue(
    session: Session, *, key: str, kind: str, payload: dict[str, Any], now: datetime
) -> OutboxMessage:
    row = OutboxMessage(
        key=key,
        kind=kind,
        payload=payload,
        status=PENDING,
        created_at=now,
        next_attempt_at=now,
    )
    session.add(row)
    return row


@dataclass(frozen=True)
class Claimed:
    id: int
    key: str
    kind: str
    payload: dict[str, Any]
    attempts: int
    created_at: datetime


def claim_due(session: Session, *, now: datetime, limit: int = 50) -> list[Claimed]:
    """Lease the first due row of each key; a row leased by another worker is skipped."""
    earlier = sa.orm.aliased(OutboxMessage)
    blocked = (
        sa.select(col(earlier.id))
        .where(col(earlier.key) == col(OutboxMessage.key))
        .where(col(earlier.id) < col(OutboxMessage.id))
        .where(col(earlier.status) == PENDING)
        .exists()
    )
    query = (
        select(OutboxMessage)
        .where(OutboxMessage.status == PENDING)
        .where(OutboxMessage.next_attempt_at <= now)
        .where(
            sa.or_(
                col(OutboxMessage.claimed_until).is_(None),
                col(OutboxMessage.claimed_until) < now,
            )
        )
        .where(~blocked)
        .order_by(col(OutboxMessage.id))
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True, of=OutboxMessage)
    claimed: list[Claimed] = []
    for row in session.exec(query).all():
        taken = session.execute(
            sa.update(OutboxMessage)
            .where(col(OutboxMessage.id) == row.id)
            .where(
                sa.or_(
                    col(OutboxMessage.claimed_until).is_(None),
                    col(OutboxMessage.claimed_until) < now,
                )
            )
            .values(claimed_until=now + LEASE)
            .execution_options(synchronize_session=False)
        )
        if taken.rowcount == 1:  # type: ignore[attr-defined]
            assert row.id is not None
            claimed.append(
                Claimed(row.id, row.key, row.kind, dict(row.payload), row.attempts, row.created_at)
            )
    return claimed


def mark_sent(session: Session, *, row_id: int, now: datetime) -> None:
    session.execute(
        sa.update(OutboxMessage)
        .where(col(OutboxMessage.id) == row_id)
        .values(status=SENT, sent_at=now, claimed_until=None, last_error=None)
        .execution_options(synchronize_session=False)
    )


def mark_retry(session: Session, *, row_id: int, next_attempt_at: datetime, error: str) -> None:
    session.execute(
        sa.update(OutboxMessage)
        .where(col(OutboxMessage.id) == row_id)
        .values(
            attempts=OutboxMessage.attempts + 1,
            next_attempt_at=next_attempt_at,
            claimed_until=None,
            last_error=error[:1000],
        )
        .execution_options(synchronize_session=False)
    )


def mark_dead(session: Session, *, row_id: int, error: str) -> None:
    session.execute(
        sa.update(OutboxMessage)
        .where(col(OutboxMessage.id) == row_id)
        .values(
            status=DEAD,
            attempts=OutboxMessage.attempts + 1,
            claimed_until=None,
            last_error=error[:1000],
        )
        .execution_options(synchronize_session=False)
    )


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
