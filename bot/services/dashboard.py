"""Read models for the web dashboard: plain dataclasses, read in one place, never written.

    with db.read() as session:
        page = overview(session, config)                 # GET /
        found = deployment_page(session, 7)              # GET /deployments/7 (None: 404)
        log = audit_page(session, limit=50, before_seq=None)
        dora = dora_series(session, now=clock.now())     # production, weekly, 90 days

Nothing here formats HTML: the handlers render these with autoescaping templates.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from bot.config import Config
from bot.domain import gates as rules
from bot.domain import states
from bot.services import audit, outbox
from bot.services.assessment import epoch_micros
from bot.store.tables import (
    Approval,
    AuditEvent,
    Check,
    CheckRun,
    Deployment,
    Gate,
    Release,
    ReleaseCommit,
)

PRODUCTION = "production"
RECENT_PER_ENVIRONMENT = 5
DETAIL_VALUE_MAX = 160
BUCKETS = ("day", "week")
FAILED_STATES = frozenset(
    {states.FAILED, states.VERIFICATION_FAILED, states.ROLLING_BACK, states.ROLLED_BACK}
)


# --- overview --------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeploymentRow:
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

    @property
    def short_sha(self) -> str:
        return self.sha[:7]


@dataclass(frozen=True)
class EnvironmentSummary:
    name: str
    gated: bool
    deployments: list[DeploymentRow]  # newest first

    @property
    def latest(self) -> DeploymentRow | None:
        return self.deployments[0] if self.deployments else None


@dataclass(frozen=True)
class ServiceSummary:
    name: str
    repo: str
    environments: list[EnvironmentSummary]


@dataclass(frozen=True)
class PendingGate:
    gate_id: int
    deployment_id: int
    service: str
    environment: str
    sha: str
    version: str | None
    progress: str | None
    created_at: datetime
    expires_at: datetime | None

    @property
    def short_sha(self) -> str:
        return self.sha[:7]


@dataclass(frozen=True)
class Overview:
    services: list[ServiceSummary]
    pending_gates: list[PendingGate]
    outbox_pending: int
    outbox_dead: int


def overview(
    session: Session, config: Config, *, per_environment: int = RECENT_PER_ENVIRONMENT
) -> Overview:
    """Each configured service and environment with its latest deployments, newest first."""
    services: list[ServiceSummary] = []
    for name, service in config.services.items():
        environments = [
            EnvironmentSummary(
                name=env.name,
                gated=env.gate is not None,
                deployments=_latest(session, name, env.name, per_environment),
            )
            for env in service.environments
        ]
        services.append(ServiceSummary(name=name, repo=service.repo, environments=environments))
    backlog = outbox.backlog(session)
    return Overview(
        services=services,
        pending_gates=_pending_gates(session),
        outbox_pending=backlog.pending,
        outbox_dead=backlog.dead,
    )


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
        version=version,
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
                version=version,
                progress=gate.progress,
                created_at=gate.created_at,
                expires_at=gate.expires_at,
            )
        )
    return pending


# --- one deployment --------------------------------------------------------------------------


@dataclass(frozen=True)
class TimelineEntry:
    seq: int
    at: str  # as the chain wrote it (UTC ISO 8601 with a Z)
    actor: str
    action: str
    subject: str
    details: list[tuple[str, str]]  # (key, short value), in key order


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


def deployment_page(
    session: Session, deployment_id: int, *, commits_shown: int = 50
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
        ref=release.ref if release is not None else None,
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


def _timeline(session: Session, subjects: Sequence[str]) -> list[TimelineEntry]:
    events = session.exec(
        select(AuditEvent)
        .where(col(AuditEvent.subject).in_(list(subjects)))
        .order_by(col(AuditEvent.seq))
    ).all()
    return [_entry(event) for event in events]


def _entry(event: AuditEvent) -> TimelineEntry:
    return TimelineEntry(
        seq=event.seq,
        at=event.at,
        actor=event.actor,
        action=event.action,
        subject=event.subject,
        details=summarise(event.details),
    )


def summarise(details: str, *, limit: int = DETAIL_VALUE_MAX) -> list[tuple[str, str]]:
    """An audit record's details as (key, one-line value) pairs, long values cut short."""
    try:
        data = json.loads(details)
    except (json.JSONDecodeError, TypeError):
        return [("details", _cut(str(details), limit))]
    if not isinstance(data, dict):
        return [("details", _cut(_compact(data), limit))]
    return [(str(key), _cut(_compact(data[key]), limit)) for key in sorted(data)]


def _compact(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return "—"
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(", ", ": "))


def _cut(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


# --- audit log -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainStatus:
    verified: bool
    records_checked: int
    broken_seq: int | None
    reason: str | None


@dataclass(frozen=True)
class AuditRow:
    seq: int
    at: str
    actor: str
    action: str
    subject: str
    details: list[tuple[str, str]]
    hash: str
    deployment_id: int | None  # the deployment the subject is about, for a link


@dataclass(frozen=True)
class AuditPage:
    records: list[AuditRow]  # newest first
    chain: ChainStatus
    total: int
    older_than: int | None  # `before_seq` for the next (older) page, None on the last
    newer_than: int | None  # `before_seq` for the previous (newer) page, None on the first


def chain_status(session: Session) -> ChainStatus:
    checked, broken = audit.verify_chain(session)
    return ChainStatus(
        verified=broken is None,
        records_checked=checked,
        broken_seq=broken.seq if broken is not None else None,
        reason=broken.reason if broken is not None else None,
    )


def audit_page(session: Session, *, limit: int = 50, before_seq: int | None = None) -> AuditPage:
    """Records newest first, `limit` per page, older than `before_seq` when given."""
    limit = max(1, min(limit, 500))
    query = select(AuditEvent).order_by(col(AuditEvent.seq).desc()).limit(limit + 1)
    if before_seq is not None:
        query = query.where(col(AuditEvent.seq) < before_seq)
    events = list(session.exec(query).all())
    more = len(events) > limit
    events = events[:limit]
    newer_than: int | None = None
    if before_seq is not None and events:
        newer = session.exec(
            select(AuditEvent.seq)
            .where(col(AuditEvent.seq) > events[0].seq)
            .order_by(col(AuditEvent.seq))
            .limit(limit)
        ).all()
        newer_than = (max(newer) + 1) if newer else None
    gate_ids = {
        int(rest)
        for e in events
        for kind, _, rest in [e.subject.partition(":")]
        if kind == "gate" and rest.isdigit()
    }
    gate_deployments: dict[int, int] = {}
    if gate_ids:
        for gate_id, deployment_id in session.exec(
            select(Gate.id, Gate.deployment_id).where(col(Gate.id).in_(sorted(gate_ids)))
        ).all():
            if gate_id is not None:
                gate_deployments[gate_id] = deployment_id
    return AuditPage(
        records=[
            AuditRow(
                seq=e.seq,
                at=e.at,
                actor=e.actor,
                action=e.action,
                subject=e.subject,
                details=summarise(e.details),
                hash=e.hash,
                deployment_id=_subject_deployment(e.subject, gate_deployments),
            )
            for e in events
        ],
        chain=chain_status(session),
        total=audit.count(session),
        older_than=events[-1].seq if more and events else None,
        newer_than=newer_than,
    )


def _subject_deployment(subject: str, gates: Mapping[int, int]) -> int | None:
    kind, _, rest = subject.partition(":")
    if not rest.isdigit():
        return None
    if kind == "deployment":
        return int(rest)
    if kind == "gate":
        return gates.get(int(rest))
    return None


# --- DORA ------------------------------------------------------------------------------------


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

    @property
    def change_failure_rate(self) -> float | None:
        return self.failed / self.deploys if self.deploys else None


def dora_series(
    session: Session,
    *,
    now: datetime,
    days: int = 90,
    bucket: str = "week",
    environment: str = PRODUCTION,
) -> DoraSeries:
    """Deploys and median lead time per bucket (UTC weeks from Monday, or UTC days).

    A deploy is a deployment into `environment` with `deployed_at` in the window. Lead time
    is measured once per release (its first deploy in the window): from each of its commits'
    `authored_at` to that deploy; a release deployed again adds a deploy but no lead times.
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

    rows = session.execute(
        sa.select(
            col(Deployment.release_id),
            col(Deployment.deployed_at),
            col(Deployment.state),
        )
        .where(col(Deployment.environment) == environment)
        .where(col(Deployment.deployed_at).is_not(None))
        .where(col(Deployment.deployed_at) >= first)
        .where(col(Deployment.deployed_at) <= now)
        .order_by(col(Deployment.deployed_at))
    ).all()
    deploys = [0] * len(starts)
    failed = [0] * len(starts)
    first_deploy: dict[int, tuple[int, datetime]] = {}
    for release_id, deployed_at, state in rows:
        index = _index(deployed_at, first, step, len(starts))
        if index is None:
            continue
        deploys[index] += 1
        if state in FAILED_STATES:
            failed[index] += 1
        first_deploy.setdefault(release_id, (index, deployed_at))

    leads: list[list[float]] = [[] for _ in starts]
    for release_id, authored_us in _commit_times(session, first_deploy):
        index, deployed_at = first_deploy[release_id]
        deployed_us = epoch_micros(deployed_at)
        if deployed_us is not None:
            leads[index].append(max(deployed_us - authored_us, 0) / 1_000_000)

    everything = [lead for found in leads for lead in found]
    total = sum(deploys)
    weeks = max((now - first).total_seconds() / timedelta(weeks=1).total_seconds(), 1 / 7)
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
    )


def _bucket_start(at: datetime, bucket: str) -> datetime:
    day = at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day if bucket == "day" else day - timedelta(days=day.weekday())


def _index(at: datetime, first: datetime, step: timedelta, count: int) -> int | None:
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    index = int((at - first) // step)
    return index if 0 <= index < count else None


def _commit_times(
    session: Session, releases: Iterable[int], chunk: int = 500
) -> Iterable[tuple[int, int]]:
    """(release id, authored time in epoch microseconds) of the releases' commits with a time
    (the `release_commit` rows the DORA metrics read too)."""
    ids = sorted(releases)
    for offset in range(0, len(ids), chunk):
        part = ids[offset : offset + chunk]
        rows = session.execute(
            sa.select(col(ReleaseCommit.release_id), col(ReleaseCommit.authored_us))
            .where(col(ReleaseCommit.release_id).in_(part))
            .where(col(ReleaseCommit.authored_us).is_not(None))
        ).all()
        yield from ((int(release_id), int(authored_us)) for release_id, authored_us in rows)
