"""Read models for the web dashboard: plain dataclasses, read in one place, never written.

    with db.read() as session:
        page = overview(session, config)                 # GET /
        found = deployment_page(session, 7)              # GET /deployments/7 (None: 404)
        log = audit_page(session, limit=50, before_seq=None)
        dora = dora_series(session, now=clock.now())     # production, weekly, 90 days

Nothing here formats HTML: the handlers render these with autoescaping templates.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from bot.config import Config
from bot.domain import gates as rules
from bot.domain.baseline import Chart, chart
from bot.domain.ingest import NamedRelease
from bot.services import applier, outbox, slo

# The audit log and DORA pages are read by their own modules, named here with the others.
from bot.services.dashboard_audit import AuditPage as AuditPage
from bot.services.dashboard_audit import TimelineEntry as TimelineEntry
from bot.services.dashboard_audit import audit_page as audit_page
from bot.services.dashboard_audit import timeline as _timeline
from bot.services.dashboard_dora import BUCKETS as BUCKETS
from bot.services.dashboard_dora import DoraSeries as DoraSeries
from bot.services.dashboard_dora import dora_series as dora_series
from bot.store.tables import (
    LOCK_ALL,
    Approval,
    Check,
    CheckRun,
    Deployment,
    EnvironmentLock,
    Gate,
    Release,
)

RECENT_PER_ENVIRONMENT = 5


# --- overview --------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeploymentRow(NamedRelease):
    id: int
    release_id: int
    service: str
    environment: str
    sha: str
    version: str | None
    state: str
    attempt: int
    risk_level: str | None
    risk_score: int | None
    deployer: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class EnvironmentSummary:
    name: str
    gated: bool
    deployments: list[DeploymentRow]  # newest first
    lock: str | None = None  # "locked by U1: reason" while the environment is locked
    lock_everything: bool = False  # promotion and approvals refused, not only automatic

    @property
    def latest(self) -> DeploymentRow | None:
        return self.deployments[0] if self.deployments else None


@dataclass(frozen=True)
class ServiceSummary:
    name: str
    repo: str
    environments: list[EnvironmentSummary]


@dataclass(frozen=True)
class PendingGate(NamedRelease):
    gate_id: int
    deployment_id: int
    service: str
    environment: str
    sha: str
    version: str | None
    progress: str | None
    created_at: datetime
    expires_at: datetime | None


@dataclass(frozen=True)
class Overview:
    services: list[ServiceSummary]
    pending_gates: list[PendingGate]
    outbox_pending: int
    outbox_dead: int
    # Webhook deliveries that failed to apply: given up on, or retrying; the newest few.
    deliveries_failed: int = 0
    deliveries_retrying: int = 0
    failed_deliveries: list[applier.DeliveryRow] = field(default_factory=list)


def overview(
    session: Session, config: Config, *, per_environment: int = RECENT_PER_ENVIRONMENT
) -> Overview:
    """Each configured service and environment with its latest deployments, newest first."""
    services: list[ServiceSummary] = []
    locks = {
        (lock.service, lock.environment): lock for lock in session.exec(select(EnvironmentLock))
    }
    for name, service in config.services.items():
        environments = [
            EnvironmentSummary(
                name=env.name,
                gated=env.gate is not None,
                deployments=_latest(session, name, env.name, per_environment),
                **_lock(locks.get((name, env.name))),
            )
            for env in service.environments
        ]
        services.append(ServiceSummary(name=name, repo=service.repo, environments=environments))
    backlog = outbox.backlog(session)
    stored = applier.backlog(session)
    return Overview(
        services=services,
        pending_gates=_pending_gates(session),
        outbox_pending=backlog.pending,
        outbox_dead=backlog.dead,
        deliveries_failed=stored.failed,
        deliveries_retrying=stored.retrying,
        failed_deliveries=applier.deliveries(session, failed=True, limit=5)
        if stored.failed or stored.retrying
        else [],
    )


def _lock(lock: EnvironmentLock | None) -> dict[str, Any]:
    if lock is None:
        return {}
    return {
        "lock": f"locked by {lock.locked_by}: {lock.reason}",
        "lock_everything": lock.holds == LOCK_ALL,
    }


def _latest(session: Session, service: str, environment: str, limit: int) -> list[DeploymentRow]:
    found = session.exec(
        select(Deployment, Release.version)
        .join(Release, col(Release.id) == col(Deployment.release_id))
        .where(Deployment.service == service)
        .where(Deployment.environment == environment)
        .order_by(col(Deployment.created_at).desc(), col(Deployment.id).desc())
        .limit(max(limit, 1))
    ).all()
    return [_row(deployment, version) for deployment, version in found]


def _row(deployment: Deployment, version: str | None) -> DeploymentRow:
    assert deployment.id is not None
    level, score = _risk(deployment.risk)
    return DeploymentRow(
        id=deployment.id,
        release_id=deployment.release_id,
        service=deployment.service,
        environment=deployment.environment,
        sha=deployment.sha,
        version=deployment.version or version,
        state=deployment.state,
        attempt=deployment.attempt,
        risk_level=level,
        risk_score=score,
        deployer=deployment.deployer,
        created_at=deployment.created_at,
        updated_at=deployment.updated_at,
    )


def _risk(risk: Mapping[str, Any] | None) -> tuple[str | None, int | None]:
    if not risk:
        return None, None
    level = risk.get("level")
    score = risk.get("score")
    return (
        str(level) if isinstance(level, str) else None,
        int(score) if isinstance(score, int | float) and not isinstance(score, bool) else None,
    )


def _pending_gates(session: Session, limit: int = 50) -> list[PendingGate]:
    found = session.exec(
        select(Gate, Deployment, Release.version)
        .join(Deployment, col(Deployment.id) == col(Gate.deployment_id))
        .join(Release, col(Release.id) == col(Deployment.release_id))
        .where(Gate.status == "pending")
        .order_by(col(Gate.created_at), col(Gate.id))
        .limit(limit)
    ).all()
    pending: list[PendingGate] = []
    for gate, deployment, version in found:
        assert gate.id is not None
        pending.append(
            PendingGate(
                gate_id=gate.id,
                deployment_id=gate.deployment_id,
                service=deployment.service,
                environment=deployment.environment,
                sha=gate.sha,
                version=deployment.version or version,
                progress=gate.progress,
                created_at=gate.created_at,
                expires_at=gate.expires_at,
            )
        )
    return pending


# --- one deployment --------------------------------------------------------------------------


@dataclass(frozen=True)
class ApprovalRow:
    user_id: str
    decision: str
    reason: str | None
    at: datetime


@dataclass(frozen=True)
class GateView:
    id: int
    status: str
    sha: str
    requirement: str | None  # "1 from S0RELMGRS and 1 from S0SREGRPS (distinct people)"
    requested_by: str | None
    progress: str | None
    created_at: datetime
    expires_at: datetime | None
    decided_at: datetime | None
    decided_by: str | None
    reason: str | None
    break_glass: dict[str, Any] | None
    approvals: list[ApprovalRow]


@dataclass(frozen=True)
class CheckRunRow:
    id: int
    due_at: datetime
    status: str
    finished_at: datetime | None
    summary: str | None
    chart: Chart | None = None  # a baseline check's two windows


@dataclass(frozen=True)
class CheckView:
    id: int
    name: str
    kind: str
    runs: list[CheckRunRow]

    @property
    def passed(self) -> int:
        return sum(1 for run in self.runs if run.status == "passed")

    @property
    def failed(self) -> int:
        return sum(1 for run in self.runs if run.status == "failed")


@dataclass(frozen=True)
class CommitRow:
    sha: str
    message: str  # the first line
    author: str | None
    authored_at: str | None
    url: str | None

    @property
    def short_sha(self) -> str:
        return self.sha[:7]


@dataclass(frozen=True)
class DeploymentPage:
    deployment: DeploymentRow
    ref: str | None
    source: str
    ci_url: str | None
    description: str | None
    deployed_at: datetime | None
    finished_at: datetime | None
    rollback_to: str | None
    assessment_note: str | None
    risk_factors: list[dict[str, Any]]  # [{name, points, reason}], most points first
    base_sha: str | None
    commits: list[CommitRow]
    commits_total: int
    diff: dict[str, Any] | None
    gates: list[GateView]
    checks: list[CheckView]
    timeline: list[TimelineEntry]
    siblings: list[DeploymentRow]  # every deployment of the same release, oldest first
    budget: str | None = None  # the service's error budget as last measured (with an slo)


def deployment_page(
    session: Session,
    deployment_id: int,
    *,
    commits_shown: int = 50,
    config: Config | None = None,
) -> DeploymentPage | None:
    """Everything the deployment page shows, or None when there is no such deployment."""
    deployment = session.get(Deployment, deployment_id)
    if deployment is None or deployment.id is None:
        return None
    release = session.get(Release, deployment.release_id)
    version = release.version if release is not None else None
    gates = list(
        session.exec(
            select(Gate).where(Gate.deployment_id == deployment.id).order_by(col(Gate.id))
        ).all()
    )
    gate_ids = [g.id for g in gates if g.id is not None]
    approvals: dict[int, list[ApprovalRow]] = {}
    if gate_ids:
        for approval in session.exec(
            select(Approval)
            .where(col(Approval.gate_id).in_(gate_ids))
            .order_by(col(Approval.created_at), col(Approval.id))
        ).all():
            approvals.setdefault(approval.gate_id, []).append(
                ApprovalRow(
                    user_id=approval.user_id,
                    decision=approval.decision,
                    reason=approval.reason,
                    at=approval.created_at,
                )
            )
    stored_commits = (release.commits if release is not None else None) or []
    diff = release.diff if release is not None else None
    total = (diff or {}).get("total_commits")
    siblings = session.exec(
        select(Deployment)
        .where(Deployment.release_id == deployment.release_id)
        .order_by(col(Deployment.created_at), col(Deployment.id))
    ).all()
    risk = deployment.risk or {}
    factors = [f for f in risk.get("factors") or [] if isinstance(f, Mapping)]
    return DeploymentPage(
        deployment=_row(deployment, version),
        ref=deployment.ref or (release.ref if release is not None else None),
        source=deployment.source,
        ci_url=deployment.ci_url,
        description=deployment.description,
        deployed_at=deployment.deployed_at,
        finished_at=deployment.finished_at,
        rollback_to=deployment.rollback_to,
        assessment_note=deployment.assessment_note,
        risk_factors=[
            {"name": f.get("name"), "points": f.get("points"), "reason": f.get("reason")}
            for f in factors
        ],
        base_sha=release.base_sha if release is not None else None,
        commits=[_commit(c) for c in stored_commits[: max(commits_shown, 0)]],
        commits_total=int(total) if isinstance(total, int) else len(stored_commits),
        diff=diff,
        gates=[_gate_view(g, approvals.get(g.id or 0, [])) for g in gates],
        checks=_checks(session, deployment.id),
        timeline=_timeline(
            session, [f"deployment:{deployment.id}", *(f"gate:{i}" for i in gate_ids)]
        ),
        siblings=[_row(s, version) for s in siblings],
        budget=slo.latest_line(session, config, deployment.service) if config else None,
    )


def release_of(session: Session, deployment_id: int) -> int | None:
    """The release a deployment belongs to (its evidence pack is the release's)."""
    deployment = session.get(Deployment, deployment_id)
    return deployment.release_id if deployment is not None else None


def _commit(stored: Mapping[str, Any]) -> CommitRow:
    message = str(stored.get("message") or "")
    author = stored.get("author") or stored.get("author_login")
    authored = stored.get("authored_at")
    url = stored.get("url")
    return CommitRow(
        sha=str(stored.get("sha") or ""),
        message=message.strip().splitlines()[0] if message.strip() else "",
        author=str(author) if author else None,
        authored_at=str(authored) if authored else None,
        url=str(url) if isinstance(url, str) and url.startswith(("https://", "http://")) else None,
    )


def _gate_view(gate: Gate, approvals: list[ApprovalRow]) -> GateView:
    assert gate.id is not None
    return GateView(
        id=gate.id,
        status=gate.status,
        sha=gate.sha,
        requirement=_requirement(gate.requirement),
        requested_by=gate.requested_by,
        progress=gate.progress,
        created_at=gate.created_at,
        expires_at=gate.expires_at,
        decided_at=gate.decided_at,
        decided_by=gate.decided_by,
        reason=gate.reason,
        break_glass=dict(gate.break_glass) if gate.break_glass else None,
        approvals=approvals,
    )


def _requirement(stored: Mapping[str, Any] | None) -> str | None:
    if not stored:
        return None
    try:
        return rules.Requirement.from_dict(stored).describe()
    except (ValueError, TypeError, KeyError):
        return None


def _checks(session: Session, deployment_id: int) -> list[CheckView]:
    runs: dict[int, list[CheckRunRow]] = {}
    for run in session.exec(
        select(CheckRun)
        .where(CheckRun.deployment_id == deployment_id)
        .order_by(col(CheckRun.due_at), col(CheckRun.id))
    ).all():
        assert run.id is not None
        summary = (run.result or {}).get("summary")
        runs.setdefault(run.check_id, []).append(
            CheckRunRow(
                id=run.id,
                due_at=run.due_at,
                status=run.status,
                finished_at=run.finished_at,
                summary=str(summary) if summary is not None else None,
                chart=chart((run.result or {}).get("evidence") or {}),
            )
        )
    checks = session.exec(
        select(Check).where(Check.deployment_id == deployment_id).order_by(col(Check.id))
    ).all()
    return [
        CheckView(id=c.id, name=c.name, kind=c.kind, runs=runs.get(c.id, []))
        for c in checks
        if c.id is not None
    ]
