"""The applier's queue: stored deliveries claimed and applied in arrival order per key.

A delivery is stored pending (`ingest.insert_many`) with the service and environment it
is applied in order with (`apply_key`). `apply_due` claims the oldest pending deliveries
that are due (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite's single writer serialises
claims) and applies, per key, the run of deliveries that starts at the key's first pending
delivery: a delivery waits while an earlier one of its key is pending, retrying or being
applied by another replica, so deliveries of one service and environment are never applied
out of order or at the same time. Each is applied in a SAVEPOINT of the claim's
transaction and marked applied in it: a crash rolls both back (the delivery stays pending),
and a delivery is never applied twice.

A delivery whose application raises keeps its error and is retried after a backoff that
doubles from `RETRY_FIRST_SECONDS`; after `max_attempts` it is "failed", and the deliveries
behind it go on. `replay` puts deliveries back to pending for the applier to apply again.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from bot.config import Config
from bot.domain.ingest import Delivery
from bot.services.delivery_work import Work
from bot.services.ingest import FAILED, PENDING, apply_work
from bot.store.tables import WebhookDelivery

log = logging.getLogger(__name__)

DELIVERY = WebhookDelivery.__table__  # type: ignore[attr-defined]
EARLIER = DELIVERY.alias("earlier")
RETRY_FIRST_SECONDS = 1.0
RETRY_LONGEST_SECONDS = 300.0


@dataclass(frozen=True)
class Applied:
    """What one claim did: deliveries applied, those that failed this time, and those
    claimed but left for the next batch (it ended early)."""

    applied: int = 0
    failed: int = 0
    claimed: int = 0
    left: int = 0


@dataclass(frozen=True)
class Backlog:
    pending: int  # waiting to be applied (retrying ones included)
    retrying: int  # pending after a failed attempt
    failed: int  # given up on
    oldest_pending: datetime | None


@dataclass(frozen=True)
class DeliveryRow:
    """A delivery as `releasebot webhooks list` and the dashboard show it."""

    id: int
    provider: str
    delivery_id: str
    event: str
    received_at: datetime
    outcome: str
    detail: str | None
    deployment_id: int | None
    applied_at: datetime | None
    attempts: int
    error: str | None
    next_attempt_at: datetime | None


def apply_due(
    session: Session,
    *,
    now: datetime,
    config: Config,
    limit: int,
    max_attempts: int,
    stop: Callable[[], bool] | None = None,
) -> Applied:
    """Claim up to `limit` due deliveries and apply them, in order per key. `stop` is asked
    after each delivery: when it says yes, the batch ends there, and the deliveries it has
    not reached stay pending for the next one (`left`)."""
    rows = _claim(session, now=now, limit=limit)
    blocked: set[str] = set()
    applied = failed = 0
    left = 0
    for index, row in enumerate(rows):
        if index and stop is not None and stop():
            left = len(rows) - index
            break
        if row.apply_key in blocked:
            continue  # an earlier delivery of its key failed just now: it waits its turn
        try:
            with session.begin_nested():
                _apply_one(session, now=now, config=config, row=row)
            applied += 1
        except Exception as exc:
            failed += 1
            if not _record_failure(session, now=now, row=row, exc=exc, max_attempts=max_attempts):
                blocked.add(row.apply_key)  # retried later; given up on, the next goes on
    return Applied(applied=applied, failed=failed, claimed=len(rows), left=left)


def _claim(session: Session, *, now: datetime, limit: int) -> list[Any]:
    """The due deliveries at the head of their key, oldest first."""
    conn = session.connection()
    query = (
        sa.select(
            DELIVERY.c.id,
            DELIVERY.c.provider,
            DELIVERY.c.delivery_id,
            DELIVERY.c.event,
            DELIVERY.c.apply_key,
            DELIVERY.c.work,
            DELIVERY.c.attempts,
        )
        .where(DELIVERY.c.outcome == PENDING)
        .where(DELIVERY.c.next_attempt_at <= now)
        # Not behind an earlier delivery of its key that waits for its retry.
        .where(
            ~sa.exists()
            .where(EARLIER.c.outcome == PENDING)
            .where(EARLIER.c.apply_key == DELIVERY.c.apply_key)
            .where(EARLIER.c.id < DELIVERY.c.id)
            .where(EARLIER.c.next_attempt_at > now)
        )
        .order_by(DELIVERY.c.id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    candidates = conn.execute(query).all()
    if not candidates:
        return []
    by_key: dict[str, list[Any]] = defaultdict(list)
    for row in candidates:
        by_key[row.apply_key].append(row)
    # Each key's first pending delivery, whoever holds it: a key whose first delivery is
    # not among these (retrying later, or locked by another replica's claim) waits.
    heads: dict[str, int] = dict(
        conn.execute(
            sa.select(DELIVERY.c.apply_key, sa.func.min(DELIVERY.c.id))
            .where(DELIVERY.c.outcome == PENDING)
            .where(DELIVERY.c.apply_key.in_(list(by_key)))
            .group_by(DELIVERY.c.apply_key)
        ).all()
    )
    return [row for key, rows in by_key.items() if heads.get(key) == rows[0].id for row in rows]


def _apply_one(session: Session, *, now: datetime, config: Config, row: Any) -> None:
    conn = session.connection()
    # Marked first, so a replica applying the same delivery (its claim's lock lost) waits
    # here and then finds it applied.
    taken = conn.execute(_TAKE, {"row_id": row.id}).rowcount
    if taken != 1:
        raise _AlreadyApplied(row.id)
    delivery = Delivery(row.provider, row.delivery_id, row.event, b"")
    result = apply_work(
        session, now=now, config=config, delivery=delivery, work=Work.from_dict(row.work)
    )
    conn.execute(
        _RECORD,
        {
            "row_id": row.id,
            "outcome": result.status,
            "detail": (result.detail or "")[:500] or None,
            "deployment_id": result.deployment_id,
            "applied_at": now,
        },
    )


# The two statements each delivery applied runs, built once.
_TAKE = (
    sa.update(DELIVERY)
    .where(DELIVERY.c.id == sa.bindparam("row_id"))
    .where(DELIVERY.c.outcome == PENDING)
    .values(outcome="applying", attempts=DELIVERY.c.attempts + 1)
)
_RECORD = (
    sa.update(DELIVERY)
    .where(DELIVERY.c.id == sa.bindparam("row_id"))
    .values(
        outcome=sa.bindparam("outcome"),
        detail=sa.bindparam("detail"),
        deployment_id=sa.bindparam("deployment_id"),
        applied_at=sa.bindparam("applied_at", type_=DELIVERY.c.applied_at.type),
        error=None,
        next_attempt_at=None,
    )
)


class _AlreadyApplied(Exception):
    def __init__(self, row_id: int) -> None:
        super().__init__(f"delivery {row_id} was applied by another replica")


def _record_failure(
    session: Session, *, now: datetime, row: Any, exc: Exception, max_attempts: int
) -> bool:
    """Keep the error and schedule the retry; True when the delivery is given up on."""
    if isinstance(exc, _AlreadyApplied):
        return True  # nothing of this key waits on it
    attempts = row.attempts + 1
    error = f"{type(exc).__name__}: {exc}"[:1000]
    given_up = attempts >= max_attempts
    wait = min(RETRY_FIRST_SECONDS * 2 ** (attempts - 1), RETRY_LONGEST_SECONDS)
    log.warning(
        "delivery %s (%s) failed to apply, attempt %d%s: %s",
        row.delivery_id,
        row.provider,
        attempts,
        ", given up" if given_up else f", retrying in {wait:.0f} s",
        error,
        exc_info=exc,
    )
    session.connection().execute(
        sa.update(DELIVERY)
        .where(DELIVERY.c.id == row.id)
        .where(DELIVERY.c.outcome == PENDING)
        .values(
            outcome=FAILED if given_up else PENDING,
            attempts=attempts,
            error=error,
            next_attempt_at=None if given_up else now + timedelta(seconds=wait),
        )
    )
    return bool(given_up)


_NEWEST = sa.select(sa.func.max(DELIVERY.c.id))


def newest(session: Session) -> int:
    """The id of the newest delivery stored, by any replica (0: none yet)."""
    return int(session.connection().execute(_NEWEST).scalar() or 0)


def backlog(session: Session) -> Backlog:
    """How many deliveries wait to be applied, retry, or were given up on."""
    conn = session.connection()
    tried = DELIVERY.c.attempts > sa.literal_column("0")  # the same text in both clauses
    counts = conn.execute(
        sa.select(
            DELIVERY.c.outcome,
            tried,
            sa.func.count(),
            sa.func.min(DELIVERY.c.received_at),
        )
        .where(DELIVERY.c.outcome.in_([PENDING, FAILED]))
        .group_by(DELIVERY.c.outcome, tried)
    ).all()
    pending = sum(n for outcome, _, n, _ in counts if outcome == PENDING)
    retrying = sum(n for outcome, tried, n, _ in counts if outcome == PENDING and tried)
    failed = sum(n for outcome, _, n, _ in counts if outcome == FAILED)
    oldest = [at for outcome, _, _, at in counts if outcome == PENDING and at is not None]
    return Backlog(pending, retrying, failed, min(oldest) if oldest else None)


def deliveries(
    session: Session,
    *,
    failed: bool = False,
    since: datetime | None = None,
    ids: Sequence[int] = (),
    limit: int = 100,
) -> list[DeliveryRow]:
    """Stored deliveries, newest first: the failed and retrying ones, those received since
    a time, or the ones named."""
    query = sa.select(*[DELIVERY.c[name] for name in DeliveryRow.__dataclass_fields__])
    if failed:
        query = query.where(
            sa.or_(
                DELIVERY.c.outcome == FAILED,
                sa.and_(DELIVERY.c.outcome == PENDING, DELIVERY.c.error.is_not(None)),
            )
        )
    if since is not None:
        query = query.where(DELIVERY.c.received_at >= since)
    if ids:
        query = query.where(DELIVERY.c.id.in_(list(ids)))
    rows = session.connection().execute(query.order_by(DELIVERY.c.id.desc()).limit(limit))
    return [DeliveryRow(**row._asdict()) for row in rows]


def replay(session: Session, *, row_ids: Sequence[int]) -> list[int]:
    """Put these deliveries back to pending, to be applied again; returns those that were
    (a delivery with nothing stored to apply, a ping or an untracked event, is left)."""
    if not row_ids:
        return []
    conn = session.connection()
    ready = [
        row_id
        for (row_id,) in conn.execute(
            sa.select(DELIVERY.c.id)
            .where(DELIVERY.c.id.in_(list(row_ids)))
            .where(DELIVERY.c.work.is_not(None))
            .where(DELIVERY.c.apply_key.is_not(None))
            .order_by(DELIVERY.c.id)
        )
    ]
    if ready:
        conn.execute(
            sa.update(DELIVERY)
            .where(DELIVERY.c.id.in_(ready))
            # Due at once, whatever the clock of the process that replays says.
            .values(outcome=PENDING, attempts=0, error=None, next_attempt_at=DELIVERY.c.received_at)
        )
    return ready
