"""DORA metrics from the stored history: per service and overall, over the last N days.

    rows = report(session, now=now)                 # 7, 30 and 90 days, overall then services
    one = metrics(session, now=now, days=30, service="checkout")
    print(table_text([r for r in rows if r.days == 30], year=2024))

What is counted (the window is `(now - days, now]`; "production" is the environment named
`production`):

- A production deployment is in the window when it ran there in the window (`deployed_at`),
  or when it failed before ever running there (failed, or rolled back while in progress:
  no `deployed_at`) and was created in the window. `deployments` counts both; deployment
  frequency is `deployments / days`.
- `failures`: those whose state is failed, verification_failed, rolling_back or rolled_back.
  Change failure rate = failures / deployments.
- Lead time for changes: for each release whose first production deployment ran in the
  window, each of its commits' `authored_at` to that deployment's `deployed_at` (a version
  deployed again, as a rollback does, is not counted again). Median, in hours.
- Failed deployment recovery time: `recovery_seconds` of the first `incident.resolved`
  audit record of each production deployment, resolved in the window; and, for failures in
  the window that have no incident record at all, the time from when the failure began (the
  deployment's `deployed_at` when it ran, else its `finished_at`) to when the next
  production deployment of the service (the first created after it that then ran and was
  not itself a failure: a rollback's restore, a retry, a fix) ran.
  Median, in hours. A rolled-back deployment's `finished_at` is when the rollback finished,
  so the failure is taken to begin when the bad version went live instead.

Counts are SQL aggregates. The lead time joins each release's first production deployment
to its `release_commit` rows (written with the commit list by `assessment.store_comparison`;
the times are integer microseconds) and the database returns the lead times as JSON arrays
of integers, one per service and segment; Python sorts them and takes the medians.
`report` reads the history once for its longest window and cuts the shorter ones from it;
`metrics` of every service together reads the lead times pooled, not service by service.

Cost (bench/dora.py, 100,000 deployments over 90 days, 756,795 commits): counts and
recovery are a few SQL aggregates and one correlated lookup per unexplained failure (about
40-150 ms together at 90 days). The lead time stays linear in the commits of the window's
releases (741,283 at 90 days): every one is joined, subtracted, sent and sorted, about
0.3-0.4 s in the database and 0.2 s to sort at 90 days, so 7 days meets the 200 ms target
on both backends and 30 and 90 days do not. Meeting it there needs the lead times stored
ready-made, ordered, when a release first succeeds in production (see bench/dora.py
--lead-table), which is a write in bot.services.transitions, not here.
"""

from __future__ import annotations

import json
import re
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import chain
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.orm import aliased
from sqlmodel import Session, col

from bot.domain import states
from bot.domain.audit import format_at
from bot.domain.dora import (
    DEFAULT_YEAR,
    MAX_DAYS,
    METRIC_LABELS,
    Classification,
    DoraMetrics,
    classify,
    format_hours,
    format_per_day,
    format_rate,
    median_of_sorted,
    table,
)
from bot.domain.messages import Digest
from bot.services import outbox
from bot.store import statements as sql
from bot.store.tables import AuditEvent, Deployment, OutboxMessage

PRODUCTION: Final = "production"
FAILURE_STATES: Final = (
    states.FAILED,
    states.VERIFICATION_FAILED,
    states.ROLLING_BACK,
    states.ROLLED_BACK,
)
INCIDENT_OPENED: Final = "incident.opened"
INCIDENT_RESOLVED: Final = "incident.resolved"
WINDOWS: Final = (7, 30, 90)

# The weekly digest is an outbox row of its own kind, sent by bot.outbox to `channel`.
DIGEST_KIND: Final = "slack.digest"
DIGEST_KEY: Final = "digest"
DIGEST_ONCE_PER: Final = timedelta(hours=12)  # replicas: the first queues it, others skip
DIGEST_LOCK: Final = 7_200_313  # PostgreSQL advisory lock id (audit uses 7_200_312)

_SUBJECT = re.compile(r"deployment:(\d+)")
_ID_CHUNK = 5000  # ids per IN list: SQLite takes 32766 parameters, PostgreSQL 65535


# --- what is read from the database ------------------------------------------------------


@dataclass
class _History:
    """Everything the metrics of one service or all need, read once for the longest window.

    Samples carry the segment they fall in: segment i holds what is in window i but not in
    the shorter window i - 1 (windows ascending), so window i is segments 0..i.
    """

    windows: tuple[int, ...]
    counts: dict[str, list[list[int]]] = field(default_factory=dict)  # [window][deploys, fails]
    leads: dict[str, list[list[float]]] = field(default_factory=dict)  # [segment] -> seconds
    recoveries: dict[str, list[list[float]]] = field(default_factory=dict)  # [segment] -> s
    # Every service's lead times together, when only the overall figure is wanted.
    pooled_leads: list[list[float]] | None = None

    def services(self) -> set[str]:
        return set(self.counts) | set(self.leads) | set(self.recoveries)

    def segments(self, samples: dict[str, list[list[float]]], name: str) -> list[list[float]]:
        if name not in samples:
            samples[name] = [[] for _ in self.windows]
        return samples[name]


def _starts(now: datetime, windows: Sequence[int]) -> list[datetime]:
    return [now - timedelta(days=days) for days in windows]


def _segment(at: datetime, starts: Sequence[datetime]) -> int | None:
    """The shortest window `at` falls in (its index), None when before the longest."""
    for i, start in enumerate(starts):
        if at > start:
            return i
    return None


def _in_production(service: str | None) -> list[sa.ColumnElement[bool]]:
    where = [col(Deployment.environment) == PRODUCTION]
    if service is not None:
        where.append(col(Deployment.service) == service)
    return where


def _read_counts(
    session: Session,
    history: _History,
    *,
    now: datetime,
    starts: Sequence[datetime],
    service: str | None,
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
            .where(*_in_production(service), *extra)
            .where(moment > starts[-1], moment <= now)
            .group_by(col(Deployment.service))
        )
        for row in session.execute(query):
            counts = history.counts.setdefault(row[0], [[0, 0] for _ in starts])
            for i in range(len(starts)):
                counts[i][0] += int(row[1 + 2 * i] or 0)
                counts[i][1] += int(row[2 + 2 * i] or 0)


def _read_lead_times(
    session: Session,
    history: _History,
    *,
    now: datetime,
    starts: Sequence[datetime],
    service: str | None,
    each_service: bool = False,
) -> None:
    """Each commit's lead time, for releases whose first production deployment is in range.

    `service`: that service's. Otherwise every service's, pooled (`history.pooled_leads`),
    or with `each_service` under each service's name.

    The first production deployment of each release that ran in range, joined to the
    release's `release_commit` rows: the database subtracts (integer microseconds) and
    returns one JSON array per segment, picked out with FILTER, so only integers are
    rendered and parsed. Per service, PostgreSQL groups the commits (a hash aggregate);
    SQLite would sort them all for a GROUP BY (about 0.5 s at 90 days of 100,000
    deployments), so there each service is one query: those `_read_counts` found, since a
    release first deployed in range has a production deployment that ran in range.
    """
    if service is None and not each_service:
        query = _lead_query(session, now=now, starts=starts, scope="all")
        pooled = session.execute(query).one()
        history.pooled_leads = [_seconds(micros) for micros in pooled]
        return
    if service is None and session.get_bind().dialect.name != "sqlite":
        query = _lead_query(session, now=now, starts=starts, scope="each")
        for name, *arrays in session.execute(query):
            _keep_leads(history, name, arrays)
        return
    query = _lead_query(session, now=now, starts=starts, scope="one")
    for name in [service] if service is not None else sorted(history.counts):
        _keep_leads(history, name, session.execute(query, {"service": name}).one())


def _keep_leads(history: _History, name: str, found: Sequence[list[int] | None]) -> None:
    for index, micros in enumerate(found):
        if micros:
            history.segments(history.leads, name)[index].extend(_seconds(micros))


def _seconds(micros: list[int] | None) -> list[float]:
    # An int below 2**53 converts to float exactly and the division rounds once, so each
    # value is exactly timedelta.total_seconds() of the same two times.
    return [us / 1e6 for us in micros] if micros else []


def _lead_query(
    session: Session, *, now: datetime, starts: Sequence[datetime], scope: str
) -> sa.Select[Any]:
    """SELECT one JSON array of lead times (microseconds) per segment (see _History), of
    every service ("all"), of the service bound as :service ("one"), or per service
    ("each": the service name first, one row each)."""
    earlier = aliased(Deployment)
    deployed_before = (
        sa.select(sa.literal(1))
        .where(col(earlier.release_id) == col(Deployment.release_id))
        .where(col(earlier.environment) == PRODUCTION)
        .where(col(earlier.deployed_at) < col(Deployment.deployed_at))
        .exists()
    )
    dialect = session.get_bind().dialect
    first_at = sa.func.min(col(Deployment.deployed_at))
    where = [col(Deployment.environment) == PRODUCTION]
    if scope == "one":
        where.append(col(Deployment.service) == sa.bindparam("service"))
    first = (
        sa.select(
            col(Deployment.release_id).label("release_id"),
            col(Deployment.service).label("service"),
            first_at.label("deployed_at"),
            _micros(dialect, first_at).label("deployed_us"),
        )
        .where(*where)
        .where(col(Deployment.deployed_at) > starts[-1], col(Deployment.deployed_at) <= now)
        .where(~deployed_before)
        # Two production deployments of a release that ran at the same moment: once.
        .group_by(col(Deployment.release_id), col(Deployment.service))
        .subquery("first_production")
    )
    commit = sql.RELEASE_COMMIT
    lead = first.c.deployed_us - commit.c.authored_us
    gather = sa.func.json_group_array if dialect.name == "sqlite" else sa.func.json_agg
    arrays: list[Any] = []
    for i in range(len(starts)):
        array: Any = gather(lead, type_=sa.JSON)
        if len(starts) > 1:
            after = first.c.deployed_at > starts[i]
            array = array.filter(
                after if i == 0 else sa.and_(after, first.c.deployed_at <= starts[i - 1])
            )
        arrays.append(array)
    query = (
        sa.select(*arrays)
        .select_from(first.join(commit, commit.c.release_id == first.c.release_id))
        .where(commit.c.authored_us.is_not(None))
    )
    if scope == "each":
        query = query.with_only_columns(first.c.service, *arrays).group_by(first.c.service)
    return query


def _micros(dialect: sa.Dialect, at: sa.ColumnElement[Any]) -> sa.ColumnElement[int]:
    """Microseconds since the epoch of a UTCDateTime, exactly, as `release_commit` keeps
    commit times. On SQLite the column is the text 'YYYY-MM-DD HH:MM:SS.ffffff' (naive UTC,
    microseconds always written): julianday() would keep milliseconds only, and
    unixepoch() (SQLite 3.38) is twice as fast as strftime('%s')."""
    if dialect.name != "sqlite":
        return sa.cast(sa.extract("epoch", at) * 1_000_000, sa.BigInteger)
    if getattr(dialect.dbapi, "sqlite_version_info", (0,)) >= (3, 38):
        seconds: sa.ColumnElement[Any] = sa.func.unixepoch(at)
    else:
        seconds = sa.cast(sa.func.strftime("%s", at), sa.Integer)
    return seconds * 1_000_000 + sa.cast(sa.func.substr(at, 21, 6), sa.Integer)


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


def _read_recoveries(
    session: Session,
    history: _History,
    *,
    now: datetime,
    starts: Sequence[datetime],
    service: str | None,
) -> None:
    # 1. Incidents resolved in range: the first resolution of each deployment only (a
    # version verified again resolves its rolled-back predecessor again). The first of each
    # is found with a GROUP BY over the subjects resolved in range; a correlated "no earlier
    # resolution" subquery instead lets SQLite walk the action index by seq (quadratic:
    # 3.4 s at 100,000 deployments).
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
        matched = _SUBJECT.fullmatch(subject)
        if matched is None:
            continue
        try:
            body = json.loads(details)
            seconds = body.get("recovery_seconds")
        except (ValueError, AttributeError):
            continue
        if isinstance(seconds, int | float) and not isinstance(seconds, bool) and seconds >= 0:
            deployment_id = int(matched.group(1))
            scope = _scope_from_key(body.get("dedup_key"), deployment_id)
            resolved.append((deployment_id, datetime.fromisoformat(at), float(seconds), scope))
    scopes = _deployment_scopes(
        session, (deployment_id for deployment_id, _, _, scope in resolved if scope is None)
    )
    for deployment_id, at, seconds, scope in resolved:
        name, environment = scope or scopes.get(deployment_id, ("", ""))
        if environment != PRODUCTION or (service is not None and name != service):
            continue
        segment = _segment(at, starts)
        if segment is not None:
            history.segments(history.recoveries, name)[segment].append(seconds)

    # 2. Failures in range with no incident record at all: to the next good deployment.
    began = sa.func.coalesce(
        col(Deployment.deployed_at), col(Deployment.finished_at), col(Deployment.updated_at)
    )
    moment = sa.func.coalesce(col(Deployment.deployed_at), col(Deployment.created_at))
    nxt = aliased(Deployment)
    # The first deployment created after the failed one (a rollback's restore, a retry or a
    # fix) that then ran and was no failure: walked in created_at order on the
    # (service, environment, created_at) index, stopping at the first match. Its deployed_at
    # is compared through COALESCE(x, x) on purpose: a planner offered a deployed_at range
    # (an index on deployed_at) takes it and sorts the rest of the service's history for
    # every failure (measured: 40 s on PostgreSQL, 26 s on SQLite at 100,000 deployments).
    ran_at = sa.func.coalesce(col(nxt.deployed_at), col(nxt.deployed_at))
    next_good = (
        sa.select(col(nxt.deployed_at))
        .where(col(nxt.service) == col(Deployment.service))
        .where(col(nxt.environment) == PRODUCTION)
        .where(col(nxt.created_at) > col(Deployment.created_at))
        .where(ran_at > began, ran_at <= now)
        .where(col(nxt.state).not_in(FAILURE_STATES))
        .order_by(col(nxt.created_at))
        .limit(1)
        .scalar_subquery()
    )
    has_incident = (
        sa.select(sa.literal(1))
        .where(col(AuditEvent.action).in_((INCIDENT_OPENED, INCIDENT_RESOLVED)))
        .where(
            col(AuditEvent.subject)
            == sa.literal("deployment:") + sa.cast(col(Deployment.id), sa.String)
        )
        .exists()
    )
    in_range = sa.or_(
        sa.and_(col(Deployment.deployed_at) > starts[-1], col(Deployment.deployed_at) <= now),
        sa.and_(
            col(Deployment.deployed_at).is_(None),
            col(Deployment.created_at) > starts[-1],
            col(Deployment.created_at) <= now,
        ),
    )
    fallback = (
        sa.select(col(Deployment.service), moment, began, next_good)
        .where(*_in_production(service))
        .where(col(Deployment.state).in_(FAILURE_STATES))
        .where(in_range)
        .where(~has_incident)
    )
    for name, at, start, recovered in session.execute(fallback):
        if recovered is None or start is None:
            continue
        segment = _segment(at, starts)
        if segment is not None:
            seconds = (recovered - start).total_seconds()
            history.segments(history.recoveries, name)[segment].append(max(0.0, seconds))


def _no_jit(session: Session) -> None:
    """The correlated subqueries are cheap but estimated dear, and PostgreSQL's JIT would
    spend far longer compiling them (about 0.6 s) than running them (a few ms). For the
    current transaction only."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.text("SET LOCAL jit = off"))


def _read(
    session: Session,
    *,
    now: datetime,
    windows: Sequence[int],
    service: str | None,
    each_service: bool,
) -> _History:
    """`each_service`: every service's figures are wanted, not only the overall ones."""
    history = _History(windows=tuple(windows))
    starts = _starts(now, windows)
    _no_jit(session)
    _read_counts(session, history, now=now, starts=starts, service=service)  # leads need them
    _read_lead_times(
        session, history, now=now, starts=starts, service=service, each_service=each_service
    )
    _read_recoveries(session, history, now=now, starts=starts, service=service)
    return history


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
    history: _History, names: Sequence[str | None]
) -> dict[tuple[str | None, int], DoraMetrics]:
    windows = history.windows
    sorted_leads: dict[str, list[list[float]]] = {
        name: list(_cumulative(segments)) for name, segments in history.leads.items()
    }
    sorted_recoveries: dict[str, list[list[float]]] = {
        name: list(_cumulative(segments)) for name, segments in history.recoveries.items()
    }
    pooled = None if history.pooled_leads is None else list(_cumulative(history.pooled_leads))
    empty: list[list[float]] = [[] for _ in windows]
    results: dict[tuple[str | None, int], DoraMetrics] = {}
    for name in names:
        members = sorted(history.services()) if name is None else [name]
        for i, days in enumerate(windows):
            deployments = sum(history.counts[m][i][0] for m in members if m in history.counts)
            failures = sum(history.counts[m][i][1] for m in members if m in history.counts)
            if name is None and pooled is not None:
                leads = pooled[i]
            else:
                leads = _union(sorted_leads.get(m, empty)[i] for m in members)
            recoveries = _union(sorted_recoveries.get(m, empty)[i] for m in members)
            results[(name, days)] = DoraMetrics(
                service=name,
                days=days,
                deployments=deployments,
                deploys_per_day=deployments / days,
                lead_time_median_hours=_hours(median_of_sorted(leads)),
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
) -> list[DoraMetrics]:
    """The metrics per window (in the order given): overall first, then each service.

    `service`: that service's rows only (no overall). `services`: the services to list (the
    configured ones, say), each shown even when quiet; by default every service with
    history in the longest window. The overall row counts every service either way.
    """
    wanted = sorted(set(windows))
    if not wanted:
        return []
    for days in wanted:
        _check_days(days)
    history = _read(session, now=now, windows=wanted, service=service, each_service=service is None)
    if service is not None:
        names: list[str | None] = [service]
    else:
        listed = sorted(set(services) if services is not None else history.services())
        names = [None, *listed]
    figures = _figures(history, names)
    return [figures[(name, days)] for days in windows for name in names]


def metrics(
    session: Session, *, now: datetime, days: int, service: str | None = None
) -> DoraMetrics:
    """The four metrics of `service` (None: every service together) over the last `days`."""
    _check_days(days)
    history = _read(session, now=now, windows=[days], service=service, each_service=False)
    return _figures(history, [service])[(service, days)]


# --- presenting them ---------------------------------------------------------------------

COLUMNS: Final = ("service", "deploys", "per day", "lead time", "CFR", "recovery", "cluster")


def table_rows(rows: Sequence[DoraMetrics], *, year: int = DEFAULT_YEAR) -> list[tuple[str, ...]]:
    """One tuple of display strings per row, in COLUMNS order."""
    out: list[tuple[str, ...]] = []
    for row in rows:
        verdict = classify(row, year=year)
        out.append(
            (
                row.service or "overall",
                str(row.deployments),
                format_per_day(row.deploys_per_day),
                format_hours(row.lead_time_median_hours),
                format_rate(row.change_failure_rate)
                + (f" ({row.failures})" if row.deployments else ""),
                format_hours(row.recovery_median_hours)
                + (f" ({row.recoveries})" if row.recoveries else ""),
                verdict.cluster or "-",
            )
        )
    return out


def table_text(rows: Sequence[DoraMetrics], *, year: int = DEFAULT_YEAR) -> str:
    """A fixed-width table: a header, a rule and one line per row."""
    lines = [COLUMNS, *table_rows(rows, year=year)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(COLUMNS))]

    def render(line: Sequence[str]) -> str:
        first = line[0].ljust(widths[0])
        rest = [cell.rjust(widths[i + 1]) for i, cell in enumerate(line[1:])]
        return "  ".join([first, *rest]).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([render(lines[0]), rule, *(render(line) for line in lines[1:])])


def heading(rows: Sequence[DoraMetrics], *, now: datetime, year: int = DEFAULT_YEAR) -> str:
    days = rows[0].days if rows else 0
    scope = f" for {rows[0].service}" if len(rows) == 1 and rows[0].service else ""
    return (
        f"DORA metrics{scope}, last {days} days to {now.astimezone(UTC):%Y-%m-%d %H:%M} UTC "
        f"(clusters: DORA {year} report)"
    )


def legend(year: int = DEFAULT_YEAR) -> str:
    return (
        "Production only. per day: deployments per day; lead time: median commit to "
        "production; CFR: failed, failed verification or rolled back (count); recovery: "
        f"median failed-deployment recovery time (count); cluster: the lowest of the four "
        f"by the DORA {year} table, unknown figures left out."
    )


@dataclass(frozen=True)
class MetricsMessage:
    """A Slack message: `text` (notifications, plain clients) and Block Kit `blocks`."""

    text: str
    blocks: list[dict[str, Any]]


def message(
    rows: Sequence[DoraMetrics],
    *,
    now: datetime,
    year: int = DEFAULT_YEAR,
    title: str | None = None,
) -> MetricsMessage:
    """The rows of one window as a Slack message (for `/release metrics` and the digest)."""
    head = title or heading(rows, now=now, year=year)
    body = table_text(rows, year=year)
    overall = next((r for r in rows if r.service is None), rows[0] if rows else None)
    summary = ""
    if overall is not None:
        verdict: Classification = classify(overall, year=year)
        who = "Overall" if overall.service is None else overall.service
        summary = (
            f"{who}: {overall.deployments} production deployments, lead time "
            f"{format_hours(overall.lead_time_median_hours)}, CFR "
            f"{format_rate(overall.change_failure_rate)}, recovery "
            f"{format_hours(overall.recovery_median_hours)}: "
            f"{verdict.cluster or 'not enough data'} ({year} clusters)."
        )
    text = "\n".join(part for part in (head, summary, "```\n" + body + "\n```") if part)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": head[:150]}},
    ]
    if summary:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": summary}})
    for chunk in _chunks(body.splitlines(), limit=2900):
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": "```\n" + chunk + "\n```"}}
        )
    source = table(year).source
    blocks.append(
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": f"{legend(year)} Source: {source}"[:2000]}],
        }
    )
    return MetricsMessage(text=text, blocks=blocks)


def _chunks(lines: Sequence[str], *, limit: int) -> Iterator[str]:
    """Lines joined into pieces of at most `limit` characters (Slack's section limit)."""
    piece: list[str] = []
    size = 0
    for line in lines:
        if piece and size + len(line) + 1 > limit:
            yield "\n".join(piece)
            piece, size = [], 0
        piece.append(line[:limit])
        size += len(line) + 1
    if piece:
        yield "\n".join(piece)


def digest(
    session: Session,
    *,
    now: datetime,
    services: Iterable[str] | None = None,
    days: int = 7,
    year: int = DEFAULT_YEAR,
) -> MetricsMessage:
    """The weekly digest: the last `days` (7) days, overall and per service."""
    rows = report(session, now=now, windows=(days,), services=services)
    return message(
        rows,
        now=now,
        year=year,
        title=f"Weekly DORA digest: last {days} days to {now.astimezone(UTC):%Y-%m-%d} "
        f"(DORA {year} clusters)",
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
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": DIGEST_LOCK})
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
