"""DORA metrics: what is read from the database, once, for the longest window asked.

`read_history` fills a `History` with three reads, each a few SQL statements: deployment
and failure counts (`read_counts`), the median lead times from the stored commit lead
times (`read_lead_times`, by `bot.services.dora_leads`) and the recovery times of failed
deployments (`read_recoveries`). What each counts is described
in `bot.services.dora`, which turns the history into the figures.

Which deployments are production's is a `bot.services.production.Production` scope.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.orm import aliased
from sqlmodel import Session, col

from bot.domain import states
from bot.domain.audit import format_at
from bot.services.dora_leads import read_medians
from bot.services.production import BY_NAME, Production
from bot.store.tables import AuditEvent, Deployment

FAILURE_STATES: Final = (
    states.FAILED,
    states.VERIFICATION_FAILED,
    states.ROLLING_BACK,
    states.ROLLED_BACK,
    states.ROLLBACK_FAILED,
)
INCIDENT_OPENED: Final = "incident.opened"
INCIDENT_RESOLVED: Final = "incident.resolved"

_SUBJECT = re.compile(r"deployment:(\d+)")
_ID_CHUNK = 5000  # ids per IN list: SQLite takes 32766 parameters, PostgreSQL 65535


@dataclass
class History:
    """Everything the metrics of one service or all need, read once for the longest window.

    Samples carry the segment they fall in: segment i holds what is in window i but not in
    the shorter window i - 1 (windows ascending), so window i is segments 0..i.
    """

    windows: tuple[int, ...]
    counts: dict[str, list[list[int]]] = field(default_factory=dict)  # [window][deploys, fails]
    recoveries: dict[str, list[list[float]]] = field(default_factory=dict)  # [segment] -> s
    # The median lead time in seconds per (service, None: every service; window index).
    lead_medians: dict[tuple[str | None, int], float | None] = field(default_factory=dict)

    def services(self) -> set[str]:
        named = {name for name, _ in self.lead_medians if name is not None}
        return set(self.counts) | named | set(self.recoveries)

    def segments(self, samples: dict[str, list[list[float]]], name: str) -> list[list[float]]:
        if name not in samples:
            samples[name] = [[] for _ in self.windows]
        return samples[name]


def window_starts(now: datetime, windows: Sequence[int]) -> list[datetime]:
    return [now - timedelta(days=days) for days in windows]


def _segment(at: datetime, starts: Sequence[datetime]) -> int | None:
    """The shortest window `at` falls in (its index), None when before the longest."""
    for i, start in enumerate(starts):
        if at > start:
            return i
    return None


def _in_production(production: Production, service: str | None) -> list[sa.ColumnElement[bool]]:
    if service is None:
        return production.where(col(Deployment.service), col(Deployment.environment))
    where = production.where_service(service, col(Deployment.environment))
    where.append(col(Deployment.service) == service)
    return where


def read_counts(
    session: Session,
    history: History,
    *,
    now: datetime,
    starts: Sequence[datetime],
    service: str | None,
    production: Production = BY_NAME,
) -> None:
    """Deployments and failures per service and window, as SQL aggregates.

    Two queries: deployments that ran in production (by `deployed_at`), and failures that
    never ran there (by `created_at`), so each can use its own index.
    """
    failed = col(Deployment.state).in_(FAILURE_STATES)
    for moment, extra in (
        (col(Deployment.deployed_at), []),
        (col(Deployment.created_at), [col(Deployment.deployed_at).is_(None), failed]),
    ):
        columns: list[Any] = [col(Deployment.service)]
        for start in starts:
            columns.append(sa.func.sum(sa.case((moment > start, 1), else_=0)))
            columns.append(sa.func.sum(sa.case((sa.and_(moment > start, failed), 1), else_=0)))
        query = (
            sa.select(*columns)
            .where(*_in_production(production, service), *extra)
            .where(moment > starts[-1], moment <= now)
            .group_by(col(Deployment.service))
        )
        for row in session.execute(query):
            counts = history.counts.setdefault(row[0], [[0, 0] for _ in starts])
            for i in range(len(starts)):
                counts[i][0] += int(row[1 + 2 * i] or 0)
                counts[i][1] += int(row[2 + 2 * i] or 0)


def read_lead_times(
    session: Session,
    history: History,
    *,
    now: datetime,
    starts: Sequence[datetime],
    service: str | None,
    production: Production = BY_NAME,
    each_service: bool = False,
) -> None:
    """The median lead time of each window, from the stored commit lead times
    (`bot.services.dora_leads`): of `service`, or of every service together and, with
    `each_service`, of each one."""
    found = read_medians(
        session,
        now=now,
        starts=starts,
        service=service,
        each_service=each_service,
        production=production,
    )
    history.lead_medians.update(found)


def _scope_from_key(key: Any, deployment_id: int) -> tuple[str, str] | None:
    """(service, environment) from an incident's dedup key, as `verification.incident_key`
    writes it: releasebot/<service>/<environment>/<deployment id>. Names hold no '/'.
    None when the key is missing or is not that deployment's: then the row is looked up."""
    if not isinstance(key, str):
        return None
    parts = key.split("/")
    if len(parts) != 4 or parts[0] != "releasebot" or parts[3] != str(deployment_id):
        return None
    return parts[1], parts[2]


def _deployment_scopes(session: Session, ids: Iterable[int]) -> dict[int, tuple[str, str]]:
    """id -> (service, environment) of the given deployments."""
    wanted = sorted(set(ids))
    found: dict[int, tuple[str, str]] = {}
    for i in range(0, len(wanted), _ID_CHUNK):
        chunk = wanted[i : i + _ID_CHUNK]
        query = sa.select(
            col(Deployment.id), col(Deployment.service), col(Deployment.environment)
        ).where(col(Deployment.id).in_(chunk))
        for deployment_id, name, environment in session.execute(query):
            found[deployment_id] = (name, environment)
    return found


def read_recoveries(
    session: Session,
    history: History,
    *,
    now: datetime,
    starts: Sequence[datetime],
    service: str | None,
    production: Production = BY_NAME,
) -> None:
    """Recovery times of production failures in range: from incident records where there
    are any, else from the failure to the next good deployment."""
    resolved = _resolved_incidents(session, now=now, starts=starts)
    scopes = _deployment_scopes(
        session, (deployment_id for deployment_id, _, _, scope in resolved if scope is None)
    )
    for deployment_id, at, seconds, scope in resolved:
        name, environment = scope or scopes.get(deployment_id, ("", ""))
        if not production.holds(name, environment) or (service is not None and name != service):
            continue
        segment = _segment(at, starts)
        if segment is not None:
            history.segments(history.recoveries, name)[segment].append(seconds)
    _read_unexplained_failures(
        session, history, now=now, starts=starts, service=service, production=production
    )


def _resolved_incidents(
    session: Session, *, now: datetime, starts: Sequence[datetime]
) -> list[tuple[int, datetime, float, tuple[str, str] | None]]:
    """(deployment id, resolved at, recovery seconds, (service, environment) when the
    dedup key tells) of the incidents resolved in range: the first resolution of each
    deployment only (a version verified again resolves its rolled-back predecessor again).

    The first of each is found with a GROUP BY over the subjects resolved in range; a
    correlated "no earlier resolution" subquery instead lets SQLite walk the action index
    by seq (quadratic: 3.4 s at 100,000 deployments).
    """
    resolved_in_range = sa.and_(
        col(AuditEvent.action) == INCIDENT_RESOLVED,
        col(AuditEvent.at) > format_at(starts[-1]),
        col(AuditEvent.at) <= format_at(now),
    )
    query = (
        sa.select(col(AuditEvent.seq), col(AuditEvent.subject))
        .add_columns(col(AuditEvent.at), col(AuditEvent.details))
        .where(resolved_in_range)
        .order_by(col(AuditEvent.seq))
    )
    rows = list(session.execute(query))
    every = aliased(AuditEvent)
    firsts = set(
        session.execute(
            sa.select(sa.func.min(col(every.seq)))
            .where(col(every.action) == INCIDENT_RESOLVED)
            .where(
                col(every.subject).in_(sa.select(col(AuditEvent.subject)).where(resolved_in_range))
            )
            .group_by(col(every.subject))
        ).scalars()
    )
    first = {subject: (at, details) for seq, subject, at, details in rows if seq in firsts}
    resolved: list[tuple[int, datetime, float, tuple[str, str] | None]] = []
    for subject, (at, details) in first.items():
        found = _resolution(subject, at, details)
        if found is not None:
            resolved.append(found)
    return resolved


def _resolution(
    subject: str, at: str, details: str
) -> tuple[int, datetime, float, tuple[str, str] | None] | None:
    """One `incident.resolved` record read, or None when it has no usable recovery time."""
    matched = _SUBJECT.fullmatch(subject)
    if matched is None:
        return None
    try:
        body = json.loads(details)
        seconds = body.get("recovery_seconds")
    except (ValueError, AttributeError):
        return None
    usable = isinstance(seconds, int | float) and not isinstance(seconds, bool) and seconds >= 0
    if not usable:
        return None
    deployment_id = int(matched.group(1))
    scope = _scope_from_key(body.get("dedup_key"), deployment_id)
    return deployment_id, datetime.fromisoformat(at), float(seconds), scope


def _next_good_deployment(began: sa.ColumnElement[Any], now: datetime) -> Any:
    """The deployed_at of the first deployment of the service to the same (production)
    environment created after the failed one (a rollback's restore, a retry or a fix) that
    then ran and was no failure.

    Walked in created_at order on the (service, environment, created_at) index, stopping at
    the first match. Its deployed_at is compared through COALESCE(x, x) on purpose: a
    planner offered a deployed_at range (an index on deployed_at) takes it and sorts the
    rest of the service's history for every failure (measured: 40 s on PostgreSQL, 26 s on
    SQLite at 100,000 deployments).
    """
    nxt = aliased(Deployment)
    ran_at = sa.func.coalesce(col(nxt.deployed_at), col(nxt.deployed_at))
    return (
        sa.select(col(nxt.deployed_at))
        .where(col(nxt.service) == col(Deployment.service))
        .where(col(nxt.environment) == col(Deployment.environment))
        .where(col(nxt.created_at) > col(Deployment.created_at))
        .where(ran_at > began, ran_at <= now)
        .where(col(nxt.state).not_in(FAILURE_STATES))
        .order_by(col(nxt.created_at))
        .limit(1)
        .scalar_subquery()
    )


def _read_unexplained_failures(
    session: Session,
    history: History,
    *,
    now: datetime,
    starts: Sequence[datetime],
    service: str | None,
    production: Production,
) -> None:
    """Failures in range with no incident record at all: to the next good deployment."""
    began = sa.func.coalesce(
        col(Deployment.deployed_at), col(Deployment.finished_at), col(Deployment.updated_at)
    )
    moment = sa.func.coalesce(col(Deployment.deployed_at), col(Deployment.created_at))
    has_incident = (
        sa.select(sa.literal(1))
        .where(col(AuditEvent.action).in_((INCIDENT_OPENED, INCIDENT_RESOLVED)))
        .where(
            col(AuditEvent.subject)
            == sa.literal("deployment:") + sa.cast(col(Deployment.id), sa.String)
        )
        .exists()
    )
    # Two reads, each on its own index range: failures that ran in range (by deployed_at),
    # then failures that never ran, created in range (deployed_at IS NULL). One OR of the
    # two walks every production deployment instead.
    for in_range in (
        [col(Deployment.deployed_at) > starts[-1], col(Deployment.deployed_at) <= now],
        [
            col(Deployment.deployed_at).is_(None),
            col(Deployment.created_at) > starts[-1],
            col(Deployment.created_at) <= now,
        ],
    ):
        fallback = (
            sa.select(col(Deployment.service), moment, began, _next_good_deployment(began, now))
            .where(*_in_production(production, service))
            .where(col(Deployment.state).in_(FAILURE_STATES))
            .where(*in_range)
            .where(~has_incident)
        )
        for name, at, start, recovered in session.execute(fallback):
            if recovered is None or start is None:
                continue
            segment = _segment(at, starts)
            if segment is not None:
                seconds = (recovered - start).total_seconds()
                history.segments(history.recoveries, name)[segment].append(max(0.0, seconds))


def no_jit(session: Session) -> None:
    """The correlated subqueries are cheap but estimated dear, and PostgreSQL's JIT would
    spend far longer compiling them (about 0.6 s) than running them (a few ms). For the
    current transaction only."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.text("SET LOCAL jit = off"))


def read_history(
    session: Session,
    *,
    now: datetime,
    windows: Sequence[int],
    service: str | None,
    each_service: bool,
    production: Production | None = None,
) -> History:
    """`each_service`: every service's figures are wanted, not only the overall ones.
    `production`: which deployments count (default: every environment named production)."""
    history = History(windows=tuple(windows))
    starts = window_starts(now, windows)
    scope = production if production is not None else BY_NAME
    no_jit(session)
    read_counts(session, history, now=now, starts=starts, service=service, production=scope)
    read_lead_times(
        session,
        history,
        now=now,
        starts=starts,
        service=service,
        production=scope,
        each_service=each_service,
    )
    read_recoveries(session, history, now=now, starts=starts, service=service, production=scope)
    return history
