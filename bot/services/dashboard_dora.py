"""The dashboard's DORA page: deploys, failed deploys and median lead time per UTC day or
week, for production (or one environment) over a window of days, and the release-health
metrics (`bot.services.seed_metrics`) of the same days, overall and per service."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session, col

from bot.domain import states
from bot.domain.seed_metrics import SEED_LABELS, SeedMetrics, seed_cells
from bot.services import seed_metrics
from bot.services.production import PRODUCTION, Production
from bot.store.tables import CommitLeadTime, Deployment

BUCKETS = ("day", "week")
FAILED_STATES = frozenset(
    {
        states.FAILED,
        states.VERIFICATION_FAILED,
        states.ROLLING_BACK,
        states.ROLLED_BACK,
        states.ROLLBACK_FAILED,
    }
)


@dataclass(frozen=True)
class DoraBucket:
    start: datetime
    end: datetime
    deploys: int
    failed: int  # deployments in the bucket that failed, failed verification or rolled back
    lead_time_median: float | None  # seconds from commit authored to deployed, median
    commits: int  # commits with an authored time behind that median


@dataclass(frozen=True)
class DoraSeries:
    environment: str
    bucket: str
    since: datetime
    until: datetime
    buckets: list[DoraBucket]
    deploys: int
    failed: int
    lead_time_median: float | None
    per_week: float = field(default=0.0)
    health: tuple[SeedMetrics, ...] = ()  # overall first, then each service with history

    @property
    def change_failure_rate(self) -> float | None:
        return self.failed / self.deploys if self.deploys else None

    @property
    def health_labels(self) -> tuple[str, ...]:
        return SEED_LABELS

    @property
    def health_rows(self) -> list[tuple[str, tuple[str, ...]]]:
        """(service or "overall", display strings in `health_labels` order) per row."""
        return [(row.service or "overall", seed_cells(row)) for row in self.health]


def dora_series(
    session: Session,
    *,
    now: datetime,
    days: int = 90,
    bucket: str = "week",
    environment: str = PRODUCTION,
    production: Production | None = None,
) -> DoraSeries:
    """Deploys and median lead time per bucket (UTC weeks from Monday, or UTC days).

    A deploy is a deployment into `environment` with `deployed_at` in the window; with
    `production` (the config's, `Production.of(config)`), into any production environment,
    and the series is named `environment` ("production"). Lead time is each commit's stored
    lead time (`commit_lead_time`: from `authored_at` to its release's first production
    deploy), in the bucket of that deploy; a release deployed again adds a deploy but no
    lead times.
    """
    if bucket not in BUCKETS:
        raise ValueError(f"bucket must be one of {', '.join(BUCKETS)}, not {bucket!r}")
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    now = now.astimezone(UTC)
    step = timedelta(days=1) if bucket == "day" else timedelta(weeks=1)
    first = _bucket_start(now - timedelta(days=max(days, 1) - 1), bucket)
    starts: list[datetime] = []
    cursor = first
    while cursor <= now:
        starts.append(cursor)
        cursor += step
    window = _Window(first, step, len(starts))
    scope = production if production is not None else Production.named(environment)
    deploys, failed = _count_deploys(session, window, now, scope)
    leads = _lead_times(session, window, now, scope)
    everything = [lead for found in leads for lead in found]
    total = sum(deploys)
    weeks = max((now - first).total_seconds() / timedelta(weeks=1).total_seconds(), 1 / 7)
    health = seed_metrics.report(session, now=now, days=max(days, 1), production=scope)
    return DoraSeries(
        environment=environment,
        bucket=bucket,
        since=first,
        until=now,
        buckets=[
            DoraBucket(
                start=start,
                end=start + step,
                deploys=deploys[i],
                failed=failed[i],
                lead_time_median=statistics.median(leads[i]) if leads[i] else None,
                commits=len(leads[i]),
            )
            for i, start in enumerate(starts)
        ],
        deploys=total,
        failed=sum(failed),
        lead_time_median=statistics.median(everything) if everything else None,
        per_week=total / weeks,
        health=tuple(health),
    )


@dataclass(frozen=True)
class _Window:
    """The series' buckets: `count` of them, `step` long, the first starting at `first`."""

    first: datetime
    step: timedelta
    count: int


def _count_deploys(
    session: Session, window: _Window, now: datetime, scope: Production
) -> tuple[list[int], list[int]]:
    """Deploys and failed deploys per bucket."""
    rows = session.execute(
        sa.select(col(Deployment.deployed_at), col(Deployment.state))
        .where(*scope.where(col(Deployment.service), col(Deployment.environment)))
        .where(col(Deployment.deployed_at).is_not(None))
        .where(col(Deployment.deployed_at) >= window.first)
        .where(col(Deployment.deployed_at) <= now)
        .order_by(col(Deployment.deployed_at))
    ).all()
    deploys = [0] * window.count
    failed = [0] * window.count
    for deployed_at, state in rows:
        index = _index(deployed_at, window.first, window.step, window.count)
        if index is None:
            continue
        deploys[index] += 1
        if state in FAILED_STATES:
            failed[index] += 1
    return deploys, failed


def _lead_times(
    session: Session, window: _Window, now: datetime, scope: Production
) -> list[list[float]]:
    """Per bucket, the stored lead times (seconds) of the commits first deployed in it."""
    leads: list[list[float]] = [[] for _ in range(window.count)]
    rows = session.execute(
        sa.select(col(CommitLeadTime.deployed_at), col(CommitLeadTime.lead_us))
        .where(*scope.where(col(CommitLeadTime.service), col(CommitLeadTime.environment)))
        .where(col(CommitLeadTime.deployed_at) >= window.first)
        .where(col(CommitLeadTime.deployed_at) <= now)
    )
    for deployed_at, lead_us in rows:
        index = _index(deployed_at, window.first, window.step, window.count)
        if index is not None:
            leads[index].append(lead_us / 1_000_000)
    return leads


def _bucket_start(at: datetime, bucket: str) -> datetime:
    day = at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day if bucket == "day" else day - timedelta(days=day.weekday())


def _index(at: datetime, first: datetime, step: timedelta, count: int) -> int | None:
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    index = int((at - first) // step)
    return index if 0 <= index < count else None
