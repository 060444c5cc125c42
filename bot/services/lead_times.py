"""Each commit's lead time for changes, stored when its release first runs in production.

    lead_times.deployed(session, deployment=d, is_production=config.is_production)
    lead_times.commits_stored(session, release_id=r)      # the commit list was replaced

A release's commits get one `commit_lead_time` row each (those with an authored time): from
the commit's authored time to the `deployed_at` of the release's first deployment that ran
in a production environment (the earliest; ties by id). A later production deployment of
the release (a retry, a rollback restoring it, a second production environment) writes
nothing. When the code host's commit list arrives or is replaced after that first run,
the rows are written again from it. `commit_lead_count` keeps the rows counted per
service, environment, UTC day and lead bin; both are written in the caller's transaction.

Which environments are production is the config's (`Config.is_production`) when the
deployment runs; reports count the rows of the environments their `Production` scope
names. Deployments stored through the ORM with their run time already set (imports,
scripts), and the history the migration backfilled, have no config to ask: their
release's first run in each environment is kept, and the reading scope picks production's
(a release that ran in two production environments of one service is then counted at
both).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session

from bot.services.production import BY_NAME
from bot.store import advisory
from bot.store.tables import CommitLeadCount, CommitLeadTime, Deployment, ReleaseCommit

IsProduction = Callable[[str, str], bool]

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
DAY_US: Final = 86_400_000_000

LEADS = CommitLeadTime.__table__  # type: ignore[attr-defined]
COUNTS = CommitLeadCount.__table__  # type: ignore[attr-defined]
_DEPLOYMENT = Deployment.__table__  # type: ignore[attr-defined]
_COMMIT = ReleaseCommit.__table__  # type: ignore[attr-defined]

# Built once: a release's rows are (re)written each time one of its deployments succeeds.
_RUNS = (
    sa.select(
        _DEPLOYMENT.c.id,
        _DEPLOYMENT.c.service,
        _DEPLOYMENT.c.environment,
        _DEPLOYMENT.c.deployed_at,
    )
    .where(_DEPLOYMENT.c.release_id == sa.bindparam("release"))
    .where(_DEPLOYMENT.c.deployed_at.is_not(None))
    .order_by(_DEPLOYMENT.c.deployed_at, _DEPLOYMENT.c.id)
)
_KEPT = (
    sa.select(
        LEADS.c.environment,
        LEADS.c.deployment_id.label("id"),
        LEADS.c.service,
        LEADS.c.deployed_at,
    )
    .where(LEADS.c.release_id == sa.bindparam("release"))
    .distinct()
)
_COMMITS = (
    sa.select(_COMMIT.c.sha, _COMMIT.c.authored_us)
    .where(_COMMIT.c.release_id == sa.bindparam("release"))
    .where(_COMMIT.c.authored_us.is_not(None))
)
_DELETE = sa.delete(LEADS).where(LEADS.c.release_id == sa.bindparam("release"))


def lead_bin(lead_us: int) -> int:
    """The bin of a lead time: whole seconds below 16, then 8 bins per doubling (0, 1, ...
    15, 16 for 16-17 s, ... about 9% wide each). Never decreasing as the lead grows, which
    is all the median needs. Stored rows depend on it: the migration that backfilled them
    holds a copy, so it never changes."""
    seconds = max(lead_us, 0) // 1_000_000
    if seconds < 16:
        return seconds
    doublings = seconds.bit_length()
    top = seconds >> (doublings - 4)  # the leading 4 bits: 8..15
    return 16 + (doublings - 5) * 8 + (top - 8)


def epoch_micros(at: datetime) -> int:
    """Microseconds since 1970-01-01 UTC, exactly (a naive time is taken as UTC)."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return (at - EPOCH) // timedelta(microseconds=1)


def day_of(at: datetime) -> int:
    """The UTC day `at` falls in, as days since 1970-01-01."""
    return epoch_micros(at) // DAY_US


def deployed(session: Session, *, deployment: Deployment, is_production: IsProduction) -> int:
    """`deployment` ran: when it is its release's first run in production, write the lead
    times of the release's commits. Returns the rows written (0: not the first, or known)."""
    if deployment.deployed_at is None or deployment.id is None:
        return 0
    if not is_production(deployment.service, deployment.environment):
        return 0
    return _rewrite(session.connection(), deployment.release_id, is_production, ran=deployment.id)


def commits_stored(
    session: OrmSession, *, release_id: int, is_production: IsProduction | None = None
) -> int:
    """The release's commit list was stored or replaced: when the release has run in
    production, write its lead times again from it. Returns the rows written."""
    return _rewrite(session.connection(), release_id, is_production or BY_NAME.holds, ran=None)


def _rewrite(
    conn: Connection, release_id: int, is_production: IsProduction, *, ran: int | None
) -> int:
    """(Re)write the release's rows: from its first production run, and for every other
    environment it has rows in, from the run they were written for. With `ran`, only when
    that deployment is the first production run and its rows are not written yet."""
    # One writer at a time per release: two production runs of one release finishing at
    # once (two regions, two replicas) would each take its own run for the first.
    advisory.hold(conn, advisory.LEAD_TIMES, release_id)
    params = {"release": release_id}
    runs = conn.execute(_RUNS, params).all()
    first = next((r for r in runs if is_production(r.service, r.environment)), None)
    if ran is not None and (first is None or first.id != ran):
        return 0
    kept = {row.environment: row for row in conn.execute(_KEPT, params)}
    if ran is not None and any(row.id == ran for row in kept.values()):
        return 0
    sources: dict[str, Any] = dict(kept)
    if first is not None:
        for run in runs:  # the first production run stands for every production one
            if is_production(run.service, run.environment):
                sources.pop(run.environment, None)
        sources[first.environment] = first
    if not sources:
        return 0
    # One writer at a time recounts a day: two would each miss the other's rows.
    advisory.hold(conn, advisory.LEAD_TIMES)
    commits = conn.execute(_COMMITS, params).all()
    if not commits and not kept:  # nothing stored, nothing to store: no day's count moves
        return 0
    conn.execute(_DELETE, params)
    rows = [row for run in sources.values() for row in _rows(release_id, run, commits)]
    if rows:
        conn.execute(sa.insert(LEADS), rows)
    recount(
        conn,
        {
            (run.service, run.environment, day_of(run.deployed_at))
            for run in (*kept.values(), *sources.values())
        },
    )
    return len(rows)


def _rows(release_id: int, run: Any, commits: Iterable[Any]) -> list[dict[str, Any]]:
    """The rows of the release's commits (sha, authored_us) timed from `run`."""
    deployed_us = epoch_micros(run.deployed_at)
    rows: list[dict[str, Any]] = []
    for sha, authored_us in commits:
        lead = max(deployed_us - int(authored_us), 0)
        rows.append(
            {
                "release_id": release_id,
                "deployment_id": run.id,
                "service": run.service,
                "environment": run.environment,
                "sha": sha,
                "committed_at": EPOCH + timedelta(microseconds=int(authored_us)),
                "deployed_at": run.deployed_at,
                "lead_us": lead,
                "lead_bin": lead_bin(lead),
            }
        )
    return rows


def recount(conn: Connection, days: Iterable[tuple[str, str, int]]) -> None:
    """Count again the rows of each (service, environment, UTC day) given."""
    t = LEADS.c
    for service, environment, day in sorted(set(days)):
        start = EPOCH + timedelta(days=day)
        scope = [COUNTS.c.service == service, COUNTS.c.environment == environment]
        conn.execute(sa.delete(COUNTS).where(*scope, COUNTS.c.day == day))
        found = conn.execute(
            sa.select(t.lead_bin, sa.func.count())
            .where(t.service == service, t.environment == environment)
            .where(t.deployed_at >= start, t.deployed_at < start + timedelta(days=1))
            .group_by(t.lead_bin)
        ).all()
        if found:
            conn.execute(
                sa.insert(COUNTS),
                [
                    {
                        "service": service,
                        "environment": environment,
                        "day": day,
                        "lead_bin": int(b),
                        "commits": int(n),
                    }
                    for b, n in found
                ],
            )


# --- deployments stored through the ORM with their run time set ----------------------------
# No config says here which environment is production: the release's first run in each
# environment is kept, and the reading scope (`Production`) counts those of production.


def _orm_ran(connection: Connection, target: Deployment) -> None:
    environment = target.environment
    if target.deployed_at is not None and target.id is not None:
        _rewrite(connection, target.release_id, lambda _s, e: e == environment, ran=target.id)


@sa.event.listens_for(Deployment, "after_insert")
def _inserted_ran(_mapper: Any, connection: Connection, target: Deployment) -> None:
    _orm_ran(connection, target)


@sa.event.listens_for(Deployment, "after_update")
def _updated_ran(_mapper: Any, connection: Connection, target: Deployment) -> None:
    if sa.inspect(target).attrs.deployed_at.history.added:
        _orm_ran(connection, target)
