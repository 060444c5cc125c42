"""Release-health metrics beside DORA: per service and overall, over the last N days.

    rows = report(session, now=now, days=30, services=["checkout", "ledger"])
    rows[0].verification_pass_rate          # overall first, then each service

Five reads, one SQL statement each, on indexed columns; the window is `(now - days, now]`
and "production" is a `bot.services.production.Production` scope, as for DORA:

- Verification pass rate: production deployments that ran in the window (`deployed_at`)
  and whose verification ended: verified passes; verification_failed, and rolled back
  (rolling_back, rolled_back, rollback_failed) after verification began (a
  `verification.planned` audit record), do not. A deployment whose environment has no
  checks (it stays `succeeded`) or that is still verifying is not counted.
- Staging verified to production: for each release whose first production deployment ran
  in the window, from the last verification of the release outside production (a verified
  deployment's `finished_at`) before its first production deployment was created, to that
  creation. Median; releases never verified before production are left out.
- Rollbacks: production deployments rolled back (rolling_back, rolled_back,
  rollback_failed), counted as DORA counts deployments (ran in the window, or never ran
  and created in it); per week, and as a share of the production deployments.
- Pipeline success rate: CI outcomes in every environment: succeeded (the deployment ran,
  `deployed_at` in the window) / (succeeded + failed: never ran and ended failed or rolled
  back, created in the window).
- SLO compliance: of the known `slo.measured` measurements taken in the window, the share
  with error budget left (remaining > 0). None (n/a) when none was taken.

Cost (bench/dora.py, 100,000 deployments over 90 days): see the "seed metrics" line.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.orm import aliased
from sqlmodel import Session, col

from bot.domain import states
from bot.domain.audit import format_at
from bot.domain.dora import MAX_DAYS, median_of_sorted
from bot.domain.seed_metrics import SeedMetrics
from bot.services.production import BY_NAME, Production
from bot.store.tables import AuditEvent, Deployment

ROLLED_BACK: Final = (states.ROLLING_BACK, states.ROLLED_BACK, states.ROLLBACK_FAILED)
PIPELINE_FAILED: Final = (states.FAILED, *ROLLED_BACK)
VERIFICATION_PLANNED: Final = "verification.planned"
SLO_MEASURED: Final = "slo.measured"

Counts = dict[str, list[int]]


def _scope(production: Production, service: str | None, table: Any = Deployment) -> list[Any]:
    if service is None:
        return production.where(col(table.service), col(table.environment))
    return [
        *production.where_service(service, col(table.environment)),
        col(table.service) == service,
    ]


def _ran(start: datetime, now: datetime) -> list[Any]:
    return [col(Deployment.deployed_at) > start, col(Deployment.deployed_at) <= now]


def verifications(
    session: Session, *, start: datetime, now: datetime, service: str | None, production: Production
) -> Counts:
    """service -> [verified, verifications ended]."""
    planned = (
        sa.select(sa.literal(1))
        .where(col(AuditEvent.action) == VERIFICATION_PLANNED)
        .where(
            col(AuditEvent.subject)
            == sa.literal("deployment:") + sa.cast(col(Deployment.id), sa.String)
        )
        .exists()
    )
    state = col(Deployment.state)
    ended = sa.or_(
        state.in_((states.VERIFIED, states.VERIFICATION_FAILED)),
        sa.and_(state.in_(ROLLED_BACK), planned),
    )
    query = (
        sa.select(
            col(Deployment.service),
            sa.func.sum(sa.case((state == states.VERIFIED, 1), else_=0)),
            sa.func.count(),
        )
        .where(*_scope(production, service), *_ran(start, now), ended)
        .group_by(col(Deployment.service))
    )
    return {name: [int(passed or 0), int(total)] for name, passed, total in session.execute(query)}


def promotion_waits(
    session: Session, *, start: datetime, now: datetime, service: str | None, production: Production
) -> dict[str, list[float]]:
    """service -> the seconds each release waited from its verification outside production
    to its first production deployment, sorted."""
    earlier = aliased(Deployment)
    first_ran = ~(
        sa.select(sa.literal(1))
        .where(col(earlier.release_id) == col(Deployment.release_id))
        .where(*_scope(production, None, earlier))
        .where(col(earlier.deployed_at) < col(Deployment.deployed_at))
        .exists()
    )
    attempt = aliased(Deployment)
    started = (
        sa.select(sa.func.min(col(attempt.created_at)))
        .where(col(attempt.release_id) == col(Deployment.release_id))
        .where(*_scope(production, None, attempt))
        .correlate(Deployment)  # also from inside `verified`, two levels down
        .scalar_subquery()
    )
    staging = aliased(Deployment)
    verified = (
        sa.select(sa.func.max(col(staging.finished_at)))
        .where(col(staging.release_id) == col(Deployment.release_id))
        # COALESCE(x, x): the state index would walk every verified deployment per row;
        # the release's own few deployments are found on the release index instead.
        .where(sa.func.coalesce(col(staging.state), col(staging.state)) == states.VERIFIED)
        .where(sa.not_(sa.and_(*_scope(production, None, staging))))
        .where(col(staging.finished_at) <= started)
        .scalar_subquery()
    )
    query = sa.select(col(Deployment.service), started, verified).where(
        *_scope(production, service), *_ran(start, now), first_ran
    )
    waits: dict[str, list[float]] = defaultdict(list)
    for name, began, staged in session.execute(query):
        if began is not None and staged is not None:
            waits[name].append(max(0.0, (began - staged).total_seconds()))
    for values in waits.values():
        values.sort()
    return waits


def rollbacks(
    session: Session, *, start: datetime, now: datetime, service: str | None, production: Production
) -> Counts:
    """service -> [rolled back, production deployments], as DORA counts deployments."""
    rolled = sa.case((col(Deployment.state).in_(ROLLED_BACK), 1), else_=0)
    never_ran = [
        col(Deployment.deployed_at).is_(None),
        col(Deployment.state).in_(PIPELINE_FAILED),
        col(Deployment.created_at) > start,
        col(Deployment.created_at) <= now,
    ]
    parts = [
        sa.select(col(Deployment.service).label("service"), rolled.label("rolled")).where(
            *_scope(production, service), *where
        )
        for where in (_ran(start, now), never_ran)
    ]
    both = sa.union_all(*parts).subquery()
    query = sa.select(both.c.service, sa.func.sum(both.c.rolled), sa.func.count()).group_by(
        both.c.service
    )
    return {name: [int(rolled or 0), int(total)] for name, rolled, total in session.execute(query)}


def _environments() -> Any:
    """Every environment name in the history, one index seek each (a loose index scan)."""
    found = sa.select(sa.func.min(col(Deployment.environment)).label("name")).cte(
        "environments", recursive=True
    )
    later = aliased(Deployment)
    following = (
        sa.select(sa.func.min(col(later.environment)))
        .where(col(later.environment) > found.c.name)
        .scalar_subquery()
    )
    found = found.union_all(sa.select(following).where(found.c.name.is_not(None)))
    return sa.select(found.c.name).where(found.c.name.is_not(None))


def pipelines(session: Session, *, start: datetime, now: datetime, service: str | None) -> Counts:
    """service -> [succeeded, failed] CI outcomes in every environment."""
    names = _environments()
    only = [col(Deployment.service) == service] if service is not None else []
    failed: list[Any] = [
        col(Deployment.deployed_at).is_(None),
        col(Deployment.state).in_(PIPELINE_FAILED),
        col(Deployment.created_at) > start,
        col(Deployment.created_at) <= now,
    ]
    parts: list[Any] = [
        sa.select(col(Deployment.service).label("service"), sa.literal(ok).label("ok")).where(
            col(Deployment.environment).in_(names), *only, *where
        )
        for ok, where in ((1, _ran(start, now)), (0, failed))
    ]
    both = sa.union_all(*parts).subquery()
    query = sa.select(both.c.service, sa.func.sum(both.c.ok), sa.func.count()).group_by(
        both.c.service
    )
    return {
        name: [int(ok or 0), int(total) - int(ok or 0)]
        for name, ok, total in session.execute(query)
    }


def slo_measurements(
    session: Session, *, start: datetime, now: datetime, service: str | None
) -> Counts:
    """service -> [measurements with budget left, known measurements]."""
    query = (
        sa.select(col(AuditEvent.subject), col(AuditEvent.details))
        .where(col(AuditEvent.action) == SLO_MEASURED)
        .where(col(AuditEvent.at) > format_at(start), col(AuditEvent.at) <= format_at(now))
    )
    if service is not None:
        query = query.where(col(AuditEvent.subject) == f"slo:{service}")
    found: Counts = {}
    for subject, details in session.execute(query):
        try:
            body = json.loads(details)
        except ValueError:
            continue
        remaining = body.get("remaining") if isinstance(body, dict) else None
        if not body.get("known") or not isinstance(remaining, int | float):
            continue
        counts = found.setdefault(subject.removeprefix("slo:"), [0, 0])
        counts[0] += 1 if remaining > 0 else 0
        counts[1] += 1
    return found


def report(
    session: Session,
    *,
    now: datetime,
    days: int,
    service: str | None = None,
    services: Iterable[str] | None = None,
    production: Production | None = None,
) -> list[SeedMetrics]:
    """The five metrics: overall first, then each service (`services`, or every service
    with history in the window); with `service`, that service's row only."""
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"days must be between 1 and {MAX_DAYS}, not {days}")
    scope = production if production is not None else BY_NAME
    start = now - timedelta(days=days)
    verified = verifications(session, start=start, now=now, service=service, production=scope)
    waits = promotion_waits(session, start=start, now=now, service=service, production=scope)
    rolled = rollbacks(session, start=start, now=now, service=service, production=scope)
    runs = pipelines(session, start=start, now=now, service=service)
    slos = slo_measurements(session, start=start, now=now, service=service)
    if service is not None:
        names: list[str | None] = [service]
    else:
        seen = set(verified) | set(waits) | set(rolled) | set(runs) | set(slos)
        names = [None, *sorted(set(services) if services is not None else seen)]
    every = sorted(set(verified) | set(waits) | set(rolled) | set(runs) | set(slos))
    return [
        _row(name, days, [name] if name is not None else every, verified, waits, rolled, runs, slos)
        for name in names
    ]


def _sum(counts: Counts, members: Sequence[str], index: int) -> int:
    return sum(counts[m][index] for m in members if m in counts)


def _row(
    name: str | None,
    days: int,
    members: Sequence[str],
    verified: Counts,
    waits: dict[str, list[float]],
    rolled: Counts,
    runs: Counts,
    slos: Counts,
) -> SeedMetrics:
    pooled = sorted(w for m in members for w in waits.get(m, []))
    return SeedMetrics(
        service=name,
        days=days,
        verified=_sum(verified, members, 0),
        verifications=_sum(verified, members, 1),
        promotion_median_seconds=median_of_sorted(pooled),
        promotions=len(pooled),
        rollbacks=_sum(rolled, members, 0),
        deployments=_sum(rolled, members, 1),
        pipeline_succeeded=_sum(runs, members, 0),
        pipeline_failed=_sum(runs, members, 1),
        slo_met=_sum(slos, members, 0),
        slo_measured=_sum(slos, members, 1),
    )
