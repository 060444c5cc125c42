"""The median lead time for changes of each window, exactly, from the stored lead times.

    medians = read_medians(session, now=now, starts=starts, service=None, each_service=True,
                           production=scope)        # {(service or None, window index): s}

The rows are `commit_lead_time` (`bot.services.lead_times` writes them when a release first
runs in production). A window `(start, now]` is counted by lead bin: its whole UTC days
from `commit_lead_count`, the partial days at its two ends from the rows (an index range
each). The median's rank then names its bin and its place in it, and the database sorts
only that bin's rows of the window (`ORDER BY lead_us LIMIT .. OFFSET ..` on an index led
by the bin): a few percent of the window's commits, never all of them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col

from bot.domain.dora import median_of_sorted
from bot.services.lead_times import COUNTS, EPOCH, LEADS, day_of
from bot.services.production import Production
from bot.store.tables import CommitLeadCount, CommitLeadTime

Key = tuple[str | None, int]  # (service, or None for every service together; window index)


def _scope(
    model: type[CommitLeadTime | CommitLeadCount], production: Production, service: str | None
) -> list[sa.ColumnElement[bool]]:
    if service is None:
        return production.where(col(model.service), col(model.environment))
    where = production.where_service(service, col(model.environment))
    return [*where, col(model.service) == service]


def _count_rows(
    session: Session,
    where: list[sa.ColumnElement[bool]],
    low: sa.ColumnElement[bool],
    high: sa.ColumnElement[bool],
) -> list[Any]:
    t = LEADS.c
    return list(
        session.execute(
            sa.select(t.service, t.lead_bin, sa.func.count())
            .where(*where, low, high)
            .group_by(t.service, t.lead_bin)
        )
    )


def _histograms(
    session: Session,
    *,
    now: datetime,
    starts: Sequence[datetime],
    service: str | None,
    production: Production,
) -> dict[Key, Counter[int]]:
    """Commits per lead bin of each window (index into `starts`), per service and pooled."""
    hist: dict[Key, Counter[int]] = {}

    def add(name: str, window: int, found: Any, count: int) -> None:
        for key in ((name, window), (None, window)):
            hist.setdefault(key, Counter())[int(found)] += count

    t = LEADS.c
    where = _scope(CommitLeadTime, production, service)
    last_full = day_of(now) - 1  # whole days end at or before now
    firsts = [day_of(start) + 1 for start in starts]  # whole days start after the start
    tail_start = EPOCH + timedelta(days=last_full + 1)
    if firsts[-1] <= last_full:
        c = COUNTS.c
        for i, first in enumerate(firsts):
            if first > last_full:
                continue
            query = (
                sa.select(c.service, c.lead_bin, sa.func.sum(c.commits))
                .where(*_scope(CommitLeadCount, production, service))
                .where(c.day >= first, c.day <= last_full)
                .group_by(c.service, c.lead_bin)
            )
            for name, found, count in session.execute(query):
                add(name, i, found, int(count))
        tail = _count_rows(session, where, t.deployed_at >= tail_start, t.deployed_at <= now)
    else:
        tail = []
    for i, start in enumerate(starts):
        if firsts[i] <= last_full:
            head_end = EPOCH + timedelta(days=firsts[i])
            rows = _count_rows(session, where, t.deployed_at > start, t.deployed_at < head_end)
            rows += tail
        else:  # no whole day inside: the window's rows are counted one by one
            rows = _count_rows(session, where, t.deployed_at > start, t.deployed_at <= now)
        for name, found, count in rows:
            add(name, i, found, int(count))
    return hist


def _ranked(
    session: Session,
    where: list[sa.ColumnElement[bool]],
    counts: Counter[int],
    ranks: Sequence[int],
) -> list[int]:
    """The lead times (microseconds) at the given ranks (0-based, ascending) of the rows
    `where` selects, whose per-bin counts are `counts`."""
    found: list[int] = []
    for rank in ranks:
        below = 0
        for lead_bin in sorted(counts):
            if rank < below + counts[lead_bin]:
                query = (
                    sa.select(LEADS.c.lead_us)
                    .where(*where, LEADS.c.lead_bin == lead_bin)
                    .order_by(LEADS.c.lead_us)
                    .offset(rank - below)
                    .limit(1)
                )
                found.append(int(session.execute(query).scalar_one()))
                break
            below += counts[lead_bin]
    return found


def read_medians(
    session: Session,
    *,
    now: datetime,
    starts: Sequence[datetime],
    service: str | None,
    each_service: bool,
    production: Production,
) -> dict[Key, float | None]:
    """The median lead time in seconds of each window (index into `starts`): of `service`,
    or of every service together (None) and, with `each_service`, of each one."""
    hist = _histograms(session, now=now, starts=starts, service=service, production=production)
    medians: dict[Key, float | None] = {}
    t = LEADS.c
    for (name, i), counts in sorted(hist.items(), key=lambda kv: (kv[0][0] or "", kv[0][1])):
        if service is None and name is not None and not each_service:
            continue
        if service is not None and name is None:
            continue
        n = sum(counts.values())
        ranks = [n // 2] if n % 2 else [n // 2 - 1, n // 2]
        where = [
            *_scope(CommitLeadTime, production, name),
            t.deployed_at > starts[i],
            t.deployed_at <= now,
        ]
        leads = _ranked(session, where, counts, ranks)
        medians[(name, i)] = median_of_sorted([us / 1e6 for us in leads])
    return medians
