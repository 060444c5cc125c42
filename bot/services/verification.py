"""Verifying a deploy after it lands: plan the checks, claim the due ones, record results, act.

Check runs are rows with a due time, so a restart loses none; a worker *claims* a due run
with a conditional UPDATE (on PostgreSQL behind `FOR UPDATE SKIP LOCKED`) before running it,
so replicas sharing one database never run the same check twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from bot.config import Config
from bot.domain import states
from bot.domain.ingest import revision_label
from bot.domain.messages import OncallLine, PagerAlert, ReleaseMessageUpdate, TemplateLine
from bot.ports import CheckResult
from bot.services import audit, incidents, outbox
from bot.services.incidents import incident_key
from bot.services.transitions import lock_environment, transition
from bot.store import statements as sql
from bot.store.tables import Check, CheckRun, Deployment

PENDING = "pending"
RUNNING = "running"
PASSED = "passed"
FAILED = "failed"
CANCELLED = "cancelled"
LEASE = timedelta(minutes=2)

# Built once: planning runs on every successful deploy (inside the webhook's transaction).
# Checks and runs are written with Core INSERTs (`sql.INSERT_CHECKS`, `sql.INSERT_CHECK_RUN`):
# building and flushing ORM objects for a handful of rows costs several times the INSERTs.
_VERIFYING_OTHERS = (
    select(Deployment)
    .where(col(Deployment.service) == sa.bindparam("service"))
    .where(col(Deployment.environment) == sa.bindparam("environment"))
    .where(col(Deployment.id) != sa.bindparam("id"))
    .where(col(Deployment.state) == states.VERIFYING)
)
# The SET clause comes from the parameters each call passes (column names).
_CANCEL = (
    sa.update(sql.CHECK_RUN)
    .where(sql.CHECK_RUN.c.deployment_id == sa.bindparam("where_deployment_id"))
    .where(sql.CHECK_RUN.c.status.in_((PENDING, RUNNING)))
)


@dataclass(frozen=True)
class ClaimedRun:
    id: int
    deployment_id: int
    name: str
    kind: str
    spec: dict[str, Any]
    due_at: datetime


def plan(session: Session, *, now: datetime, config: Config, deployment: Deployment) -> int:
    """One run per check and `at` offset, due from now; the deployment starts verifying."""
    env = config.services[deployment.service].environment(deployment.environment)
    if env is None or not env.verify:
        return 0
    assert deployment.id is not None
    lock_environment(session, service=deployment.service, environment=deployment.environment)
    cancel_older(session, now=now, newer=deployment)
    conn = session.connection()
    count = 0
    last = timedelta(0)
    check_ids = conn.execute(
        sql.INSERT_CHECKS,
        [
            {
                "deployment_id": deployment.id,
                "name": check.name,
                "kind": check.kind,
                "spec": check.spec_at(now),
            }
            for check in env.verify
        ],
    ).scalars()
    runs: list[dict[str, Any]] = []
    for check, check_id in zip(env.verify, check_ids, strict=True):
        for offset in check.at:
            runs.append(
                {
                    "check_id": check_id,
                    "deployment_id": deployment.id,
                    "due_at": now + offset,
                    "status": PENDING,
                    "claimed_by": None,
                    "claimed_until": None,
                    "finished_at": None,
                    "result": None,
                }
            )
            count += 1
            last = max(last, offset)
    if runs:
        conn.execute(sql.INSERT_CHECK_RUN, runs)
    audit.append(
        session,
        at=now,
        actor="releasebot",
        action="verification.planned",
        subject=f"deployment:{deployment.id}",
        details={
            "runs": count,
            "checks": [c.name for c in env.verify],
            "last_due": (now + last).isoformat(),
        },
    )
    transition(
        session,
        deployment=deployment,
        target=states.VERIFYING,
        now=now,
        actor="releasebot",
        source="verification",
        note=f"{count} checks planned over {_span(last)}",
    )
    return count


def _span(offset: timedelta) -> str:
    minutes = int(offset.total_seconds() // 60)
    return f"{minutes} min" if minutes else f"{int(offset.total_seconds())} s"


def cancel_older(session: Session, *, now: datetime, newer: Deployment) -> None:
    """A newer deployment (or a rollback) makes the older one's pending checks moot."""
    older = session.exec(
        _VERIFYING_OTHERS,
        params={"service": newer.service, "environment": newer.environment, "id": newer.id},
    ).all()
    for deployment in older:
        cancel(
            session,
            now=now,
            deployment=deployment,
            reason=f"{revision_label(newer.sha, newer.version)} was deployed before verification "
            "finished",
        )
        transition(
            session,
            deployment=deployment,
            target=states.SUPERSEDED,
            now=now,
            actor="releasebot",
            source="verification",
            note=f"superseded by {revision_label(newer.sha, newer.version)}",
        )


def cancel(session: Session, *, now: datetime, deployment: Deployment, reason: str) -> int:
    session.flush()  # runs added through the ORM are cancelled too (as an ORM update would)
    result = session.connection().execute(
        _CANCEL,
        {
            "where_deployment_id": deployment.id,
            "status": CANCELLED,
            "finished_at": now,
            "result": {"summary": reason},
        },
    )
    cancelled = int(result.rowcount)
    if cancelled:
        audit.append(
            session,
            at=now,
            actor="releasebot",
            action="verification.cancelled",
            subject=f"deployment:{deployment.id}",
            details={"runs": cancelled, "reason": reason},
        )
    return cancelled


def claim_due(
    session: Session, *, now: datetime, worker: str, limit: int = 100
) -> list[ClaimedRun]:
    """Take due runs (and runs whose worker died mid-lease) for this worker only."""
    claimable = sa.or_(
        col(CheckRun.status) == PENDING,
        sa.and_(col(CheckRun.status) == RUNNING, col(CheckRun.claimed_until) < now),
    )
    query = (
        select(CheckRun.id)
        .where(claimable)
        .where(col(CheckRun.due_at) <= now)
        .order_by(col(CheckRun.due_at))
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    claimed: list[ClaimedRun] = []
    for run_id in session.exec(query).all():
        assert run_id is not None
        taken = session.execute(
            sa.update(CheckRun)
            .where(col(CheckRun.id) == run_id)
            .where(claimable)
            .values(status=RUNNING, claimed_by=worker[:100], claimed_until=now + LEASE)
            .execution_options(synchronize_session=False)
        )
        if taken.rowcount != 1:  # type: ignore[attr-defined]
            continue
        run = session.get(CheckRun, run_id)
        check = session.get(Check, run.check_id) if run else None
        if run is None or check is None:
            continue
        claimed.append(
            ClaimedRun(
                run_id, run.deployment_id, check.name, check.kind, dict(check.spec), run.due_at
            )
        )
    return claimed


def release(session: Session, *, run_ids: list[int], worker: str) -> None:
    """Give back runs this worker claimed but will not finish (it is shutting down): pending
    again at once, for another replica; a run already recorded keeps its result."""
    session.execute(
        sa.update(CheckRun)
        .where(col(CheckRun.id).in_(run_ids))
        .where(col(CheckRun.status) == RUNNING)
        .where(col(CheckRun.claimed_by) == worker[:100])
        .values(status=PENDING, claimed_by=None, claimed_until=None)
        .execution_options(synchronize_session=False)
    )


@dataclass(frozen=True)
class Recorded:
    """One stored check result: `verdict` is set when it ended the deployment's verification
    (verified or verification_failed), for `bot.services.reactions` to follow up."""

    status: str  # ignored | passed | failed
    deployment: Deployment | None = None
    verdict: str | None = None
    check: str = ""


IGNORED = Recorded("ignored")


def record(
    session: Session, *, now: datetime, config: Config, run_id: int, result: CheckResult
) -> Recorded:
    """Store one result and move the deployment on: verified, failed, or still verifying."""
    run = session.get(CheckRun, run_id)
    if run is None:
        return IGNORED
    # The deployment's row is locked (PostgreSQL) before the run is read again and its
    # runs are counted: two results recorded at once are then counted one after the other
    # (the second sees the first), and a run cancelled or recorded meanwhile is left alone.
    deployment = session.get(Deployment, run.deployment_id, with_for_update=True)
    session.refresh(run)
    if run.status != RUNNING:
        return IGNORED  # cancelled while it ran, or recorded already
    check = session.get(Check, run.check_id)
    assert check is not None and deployment is not None and deployment.id is not None
    run.status = PASSED if result.passed else FAILED
    run.finished_at = now
    run.claimed_until = None
    run.result = {
        "passed": result.passed,
        "summary": result.summary[:500],
        "evidence": result.evidence,
    }
    session.add(run)
    session.flush()
    audit.append(
        session,
        at=now,
        actor="releasebot",
        action="check.passed" if result.passed else "check.failed",
        subject=f"deployment:{deployment.id}",
        details={
            "check": check.name,
            "run": run_id,
            "summary": result.summary[:500],
            "evidence": result.evidence,
        },
    )
    line = TemplateLine(
        deployment.id,
        "check_result.txt.j2",
        {"check": check.name, "passed": result.passed, "summary": result.summary[:500]}
        | _link_of(result),
    )
    outbox.enqueue(session, line, now=now)
    if deployment.state != states.VERIFYING:
        return Recorded(run.status, deployment, check=check.name)
    if not result.passed:
        failed(
            session,
            now=now,
            config=config,
            deployment=deployment,
            check=check.name,
            summary=result.summary,
        )
        return Recorded(FAILED, deployment, states.VERIFICATION_FAILED, check.name)
    remaining = session.exec(
        select(sa.func.count())
        .select_from(CheckRun)
        .where(col(CheckRun.deployment_id) == deployment.id)
        .where(col(CheckRun.status).in_((PENDING, RUNNING)))
    ).one()
    if remaining == 0:
        transition(
            session,
            deployment=deployment,
            target=states.VERIFIED,
            now=now,
            actor="releasebot",
            source="verification",
            note="every check passed",
        )
        incidents.resolve_after(session, now=now, deployment=deployment)
        return Recorded(PASSED, deployment, states.VERIFIED, check.name)
    else:
        outbox.enqueue(session, ReleaseMessageUpdate(deployment.id), now=now)
    return Recorded(PASSED, deployment, check=check.name)


def failed(
    session: Session,
    *,
    now: datetime,
    config: Config,
    deployment: Deployment,
    check: str,
    summary: str,
) -> None:
    """The first failure ends verification: tell on-call and page (the rollback policy is
    applied by `bot.services.reactions`)."""
    assert deployment.id is not None
    cancel(session, now=now, deployment=deployment, reason=f"{check} failed")
    transition(
        session,
        deployment=deployment,
        target=states.VERIFICATION_FAILED,
        now=now,
        actor="releasebot",
        source="verification",
        note=f"{check}: {summary}"[:500],
    )
    service = config.services[deployment.service]
    env = service.environment(deployment.environment)
    # Whoever is on call when the line is sent (PagerDuty), else this group.
    oncall = list(config.slack.oncall)
    line = OncallLine(
        deployment.id,
        "verification_failed.txt.j2",
        {
            "oncall": oncall,
            "oncall_field": "oncall",
            "check": check,
            "summary": summary[:500],
            "policy": env.on_verification_failure if env else "notify",
        },
    )
    outbox.enqueue(session, line, now=now)
    page = PagerAlert(
        deployment_id=deployment.id,
        action="trigger",
        dedup_key=incident_key(deployment),
        summary=f"{deployment.service} {deployment.environment}: "
        f"verification failed after deploying "
        f"{revision_label(deployment.sha, deployment.version)}: "
        f"{check}: {summary}"[:1000],
        severity="critical"
        if config.is_production(deployment.service, deployment.environment)
        else "error",
    )
    outbox.enqueue(session, page, now=now)
    audit.append(
        session,
        at=now,
        actor="releasebot",
        action="incident.opened",
        subject=f"deployment:{deployment.id}",
        details={"dedup_key": incident_key(deployment), "check": check},
    )


def progress(session: Session, deployment_id: int) -> dict[str, Any] | None:
    """{"total", "passed", "failed": [names], "pending"} for the release message."""
    rows = session.exec(
        select(CheckRun.status, Check.name)
        .join(Check, col(Check.id) == col(CheckRun.check_id))
        .where(CheckRun.deployment_id == deployment_id)
    ).all()
    if not rows:
        return None
    return {
        "total": len(rows),
        "passed": sum(1 for status, _ in rows if status == PASSED),
        "failed": sorted({name for status, name in rows if status == FAILED}),
        "pending": sum(1 for status, _ in rows if status in (PENDING, RUNNING)),
        "cancelled": sum(1 for status, _ in rows if status == CANCELLED),
        "skipped": skipped_of(session, [deployment_id]).get(deployment_id),
    }


def skipped_of(session: Session, ids: list[int]) -> dict[int, dict[str, str]]:
    """{"by", "reason"} of each deployment among `ids` whose verification someone skipped
    (see `bot.services.skipping`): its cancelled runs keep who and why."""
    found: dict[int, dict[str, str]] = {}
    for deployment_id, result in session.exec(
        select(CheckRun.deployment_id, CheckRun.result)
        .where(col(CheckRun.deployment_id).in_(ids))
        .where(CheckRun.status == CANCELLED)
    ):
        if isinstance(result, dict) and result.get("skipped_by"):
            found[deployment_id] = {
                "by": str(result["skipped_by"]),
                "reason": str(result.get("reason") or ""),
            }
    return found


def _link_of(result: CheckResult) -> dict[str, str]:
    """The query link a runner gave (Prometheus, Datadog, New Relic), for the thread line."""
    link = result.evidence.get("link")
    found = {"link": link} if isinstance(link, str) and link else {}
    if "samples" in result.evidence:  # a baseline check: its chart is on the dashboard
        found["chart"] = "yes"
    return found
