"""DORA metrics from the stored history: per service and overall, over the last N days.

    rows = report(session, now=now)                 # 7, 30 and 90 days, overall then services
    one = metrics(session, now=now, days=30, service="checkout")
    print(table_text([r for r in rows if r.days == 30], year=2024))

What is counted (the window is `(now - days, now]`; "production" is each service's
production environments, `Production.of(config)` as `Config.is_production` says: an
environment's `production` key, by default the last environment of the service; without a
config, and for a service the config no longer lists, the environment named `production`):

- A production deployment is in the window when it ran there in the window (`deployed_at`),
  or when it failed before ever running there (failed, or rolled back while in progress:
  no `deployed_at`) and was created in the window. `deployments` counts both; deployment
  frequency is `deployments / days`.
- `failures`: those whose state is failed, verification_failed, rolling_back, rolled_back
  or rollback_failed (rolled back, though the pipeline refused the rollback).
  Change failure rate = failures / deployments.
- Lead time for changes: for each release whose first production deployment ran in the
  window, each of its commits' `authored_at` to that deployment's `deployed_at` (a version
  deployed again, as a rollback does, is not counted again). Median, in hours. Each
  commit's lead time is stored when its release first runs in production
  (`bot.services.lead_times`, table `commit_lead_time`); the median is read from those rows.
- Failed deployment recovery time: `recovery_seconds` of the first `incident.resolved`
  audit record of each production deployment, resolved in the window; and, for failures in
  the window that have no incident record at all, the time from when the failure began (the
  deployment's `deployed_at` when it ran, else its `finished_at`) to when the next
  production deployment of the service (the first created after it that then ran and was
  not itself a failure: a rollback's restore, a retry, a fix) ran.
  Median, in hours. A rolled-back deployment's `finished_at` is when the rollback finished,
  so the failure is taken to begin when the bad version went live instead.

Counts are SQL aggregates. The median lead time is exact and never sorts the window: the
window's commits are counted per lead bin (whole UTC days from `commit_lead_count`, the two
partial days from the rows), and the database walks only the median's bin, in lead order
(`bot.services.dora_leads`). `report` reads the history once for its longest window and cuts
the shorter ones from it; `metrics` of every service together reads the pooled median only.

Cost (bench/dora.py, 100,000 deployments over 90 days, 741,283 commit lead times in the
window), SQLite on a quiet machine: at 90 days counts ~45 ms, lead time ~30 ms, recovery
~90 ms, `metrics()` ~170 ms and `report()` ~190 ms; 7 and 30 days well under that (see
bench/README.md). Before the lead times were stored, the 90-day lead time alone took
0.5-0.9 s (every commit joined, sent and sorted per report).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from itertools import chain
from typing import Final

import sqlalchemy as sa
from sqlmodel import Session, col

from bot.blocks.dora import MetricsMessage as MetricsMessage
from bot.blocks.dora import heading as heading
from bot.blocks.dora import legend as legend
from bot.blocks.dora import message as message
from bot.blocks.dora import seed_legend as seed_legend
from bot.blocks.dora import seed_table_text as seed_table_text
from bot.blocks.dora import table_text as table_text
from bot.domain.dora import (
    DEFAULT_YEAR,
    MAX_DAYS,
    METRIC_LABELS,
    DoraMetrics,
    classify,
    median_of_sorted,
)
from bot.domain.messages import Digest
from bot.services import outbox, seed_metrics
from bot.services.dora_history import FAILURE_STATES as FAILURE_STATES
from bot.services.dora_history import History, read_history
from bot.services.production import PRODUCTION as PRODUCTION
from bot.services.production import Production as Production
from bot.store import advisory
from bot.store.tables import OutboxMessage

WINDOWS: Final = (7, 30, 90)

# The weekly digest is an outbox row of its own kind, sent by bot.outbox_worker to `channel`.
DIGEST_KIND: Final = "slack.digest"
DIGEST_KEY: Final = "digest"
DIGEST_ONCE_PER: Final = timedelta(hours=12)  # replicas: the first queues it, others skip

# --- from the history to the figures -----------------------------------------------------


def _cumulative(segments: list[list[float]]) -> Iterator[list[float]]:
    """Window by window, every sample in it, sorted (segments sorted once, then merged).

    A negative sample (a commit authored after its deployment: clock skew) counts as 0.
    """
    merged: list[float] = []
    for segment in segments:
        segment.sort()
        negative = bisect_left(segment, 0.0)
        segment[:negative] = [0.0] * negative
        merged = sorted(merged + segment) if merged else list(segment)
        yield merged


def _hours(seconds: float | None) -> float | None:
    return None if seconds is None else seconds / 3600


def _figures(
    history: History, names: Sequence[str | None]
) -> dict[tuple[str | None, int], DoraMetrics]:
    windows = history.windows
    sorted_recoveries: dict[str, list[list[float]]] = {
        name: list(_cumulative(segments)) for name, segments in history.recoveries.items()
    }
    empty: list[list[float]] = [[] for _ in windows]
    results: dict[tuple[str | None, int], DoraMetrics] = {}
    for name in names:
        members = sorted(history.services()) if name is None else [name]
        for i, days in enumerate(windows):
            deployments = sum(history.counts[m][i][0] for m in members if m in history.counts)
            failures = sum(history.counts[m][i][1] for m in members if m in history.counts)
            recoveries = _union(sorted_recoveries.get(m, empty)[i] for m in members)
            results[(name, days)] = DoraMetrics(
                service=name,
                days=days,
                deployments=deployments,
                deploys_per_day=deployments / days,
                lead_time_median_hours=_hours(history.lead_medians.get((name, i))),
                change_failure_rate=failures / deployments if deployments else None,
                recovery_median_hours=_hours(median_of_sorted(recoveries)),
                failures=failures,
                recoveries=len(recoveries),
            )
    return results


def _union(sorted_lists: Iterable[list[float]]) -> list[float]:
    lists = [values for values in sorted_lists if values]
    if len(lists) == 1:
        return lists[0]
    # Timsort merges the sorted runs in about linear time; joined in C, not a generator.
    merged = list(chain.from_iterable(lists))
    merged.sort()
    return merged


def _check_days(days: int) -> None:
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"days must be between 1 and {MAX_DAYS}, not {days}")


def report(
    session: Session,
    *,
    now: datetime,
    service: str | None = None,
    windows: Sequence[int] = WINDOWS,
    services: Iterable[str] | None = None,
    production: Production | None = None,
) -> list[DoraMetrics]:
    """The metrics per window (in the order given): overall first, then each service.

    `service`: that service's rows only (no overall). `services`: the services to list (the
    configured ones, say), each shown even when quiet; by default every service with
    history in the longest window. The overall row counts every service either way.
    `production`: which deployments count (default: every environment named production).
    """
    wanted = sorted(set(windows))
    if not wanted:
        return []
    for days in wanted:
        _check_days(days)
    history = read_history(
        session,
        now=now,
        windows=wanted,
        service=service,
        each_service=service is None,
        production=production,
    )
    if service is not None:
        names: list[str | None] = [service]
    else:
        listed = sorted(set(services) if services is not None else history.services())
        names = [None, *listed]
    figures = _figures(history, names)
    return [figures[(name, days)] for days in windows for name in names]


def metrics(
    session: Session,
    *,
    now: datetime,
    days: int,
    service: str | None = None,
    production: Production | None = None,
) -> DoraMetrics:
    """The four metrics of `service` (None: every service together) over the last `days`."""
    _check_days(days)
    history = read_history(
        session, now=now, windows=[days], service=service, each_service=False, production=production
    )
    return _figures(history, [service])[(service, days)]


def digest(
    session: Session,
    *,
    now: datetime,
    services: Iterable[str] | None = None,
    days: int = 7,
    year: int = DEFAULT_YEAR,
    production: Production | None = None,
) -> MetricsMessage:
    """The weekly digest: the last `days` (7) days, overall and per service, with the
    release-health metrics (`bot.services.seed_metrics`) of the same days."""
    listed = list(services) if services is not None else None
    rows = report(session, now=now, windows=(days,), services=listed, production=production)
    seed = seed_metrics.report(session, now=now, days=days, services=listed, production=production)
    return message(
        rows,
        now=now,
        year=year,
        title=f"Weekly DORA digest: last {days} days to {now.astimezone(UTC):%Y-%m-%d} "
        f"(DORA {year} clusters)",
        seed=seed,
    )


def enqueue_digest(
    session: Session,
    *,
    now: datetime,
    channel: str,
    digest_message: MetricsMessage,
    once_per: timedelta = DIGEST_ONCE_PER,
) -> bool:
    """Queue the digest for Slack unless one was queued less than `once_per` ago.

    Every replica runs the cron job; the first to get here queues the week's digest and the
    others find it (on PostgreSQL they queue on an advisory lock first). False: not queued.
    """
    advisory.hold(session.connection(), advisory.DORA_DIGEST)
    recent = session.execute(
        sa.select(col(OutboxMessage.id))
        .where(col(OutboxMessage.kind) == DIGEST_KIND)
        .where(col(OutboxMessage.created_at) > now - once_per)
        .limit(1)
    ).first()
    if recent is not None:
        return False
    digest = Digest(channel, digest_message.text, digest_message.blocks)
    outbox.enqueue(session, digest, now=now)
    return True


def verdict_line(row: DoraMetrics, *, year: int = DEFAULT_YEAR) -> str:
    """`overall: high by the DORA 2024 table (deployment frequency elite, ...)`."""
    verdict = classify(row, year=year)
    parts = ", ".join(
        f"{METRIC_LABELS[metric]} {cluster or '-'}"
        for metric, cluster in verdict.per_metric.items()
    )
    return (
        f"{row.service or 'overall'}: {verdict.cluster or 'no cluster (nothing measured)'} "
        f"by the DORA {year} table ({parts})"
    )
