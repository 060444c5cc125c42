"""Read models for messages: everything a release message shows, read in one place."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from bot.config import Config, ScheduledFreeze
from bot.domain import states
from bot.domain.gates import EXPIRED
from bot.domain.gates.timing import rerequest_refusal
from bot.domain.ingest import NamedRelease
from bot.domain.promotion import PROMOTABLE, ROLLBACKABLE, next_environment
from bot.services import flags, freezes, pipeline, rollouts, slo, verification
from bot.store.tables import (
    LOCK_ALL,
    AuditEvent,
    Check,
    CheckRun,
    Deployment,
    EnvironmentLock,
    Gate,
    Release,
    ReleaseMessage,
)


@dataclass(frozen=True)
class ReleaseView(NamedRelease):
    deployment_id: int
    service: str
    environment: str
    sha: str
    version: str | None
    ref: str | None
    state: str
    attempt: int
    deployer: str | None
    ci_url: str | None
    description: str | None
    created_at: datetime
    updated_at: datetime
    commits: list[dict[str, Any]] | None  # None: not assessed yet
    risk: dict[str, Any] | None  # None: not assessed yet
    channel: str | None  # where the message lives, once posted
    ts: str | None
    diff: dict[str, Any] | None = None  # additions, deletions, files, truncated, url
    assessment_note: str | None = None  # why the commit list is unavailable
    freeze: str | None = None  # the active change freeze for this environment, if any
    gate_id: int | None = None
    gate_status: str | None = None  # pending | approved | rejected | expired | superseded
    gate_progress: str | None = None  # "1 of 2 approvals: waiting for ..." (ids, not mentions)
    gate_expires_at: datetime | None = None
    gate_decided_by: str | None = None
    gate_reason: str | None = None
    gate_break_glass: dict[str, Any] | None = None  # requested_by, reason, confirmed_by, ...
    gate_can_rerequest: bool = False  # expired, and its pipeline can be asked again
    gate_refused: str | None = None  # the pipeline refused the decision taken here, and why
    break_glass_available: bool = False
    verification: dict[str, Any] | None = None  # total, passed, failed names, pending
    promote_to: str | None = None  # the next environment, when the release may go there
    can_roll_back: bool = False
    lock: str | None = None  # why automatic promotion into this environment is stopped
    lock_by: str | None = None  # who locked it
    lock_everything: bool = False  # `/release lock`: promotion and approvals refused too
    rollback_to: str | None = None  # the sha a rollback restores (or was to restore)
    rollback_error: str | None = None  # why the pipeline did not roll back (rollback_failed)
    budget: str | None = None  # the service's error budget as last measured (with an slo)
    flags: tuple[dict[str, Any], ...] = ()  # the `release:` flags offered (`flags.views`)
    rollout: dict[str, Any] | None = None  # its Argo Rollout, as last read (`rollouts.views`)


def release_view(
    session: Session, deployment_id: int, *, config: Config | None = None
) -> ReleaseView | None:
    return release_views(session, [deployment_id], config=config).get(deployment_id)


def _newest_gates(session: Session, ids: list[int]) -> dict[int, Gate]:
    """The newest gate of each deployment."""
    gates: dict[int, Gate] = {}
    for gate in session.exec(
        select(Gate).where(col(Gate.deployment_id).in_(ids)).order_by(col(Gate.id))
    ):
        gates[gate.deployment_id] = gate
    return gates


def release_views(
    session: Session, deployment_ids: Iterable[int], *, config: Config | None = None
) -> dict[int, ReleaseView]:
    """The views of several deployments (missing ones left out), read in a few queries for
    all of them: the outbox worker renders a batch of rows at a time."""
    ids = sorted(set(deployment_ids))
    if not ids:
        return {}
    deployments = session.exec(select(Deployment).where(col(Deployment.id).in_(ids))).all()
    release_ids = sorted({d.release_id for d in deployments})
    releases = {
        r.id: r for r in session.exec(select(Release).where(col(Release.id).in_(release_ids)))
    }
    messages = {
        m.deployment_id: m
        for m in session.exec(
            select(ReleaseMessage).where(col(ReleaseMessage.deployment_id).in_(ids))
        )
    }
    gates = _newest_gates(session, ids)
    progress = _verification_progress(session, ids)
    refused = _rollback_errors(
        session, [d.id for d in deployments if d.state == states.ROLLBACK_FAILED and d.id]
    )
    # The freezes in force when each deployment last changed, read once for all of them.
    frozen = (
        freezes.active_at_each(session, config=config, moments=(d.updated_at for d in deployments))
        if config is not None
        else {}
    )
    locks: dict[tuple[str, str], EnvironmentLock | None] = {}
    offered = flags.views(session, config, deployments)
    canaries = rollouts.views(session, deployments)
    views: dict[int, ReleaseView] = {}
    budgets = (
        {name: slo.latest_line(session, config, name) for name in {d.service for d in deployments}}
        if config is not None
        else {}
    )
    for deployment in deployments:
        assert deployment.id is not None
        release = releases.get(deployment.release_id)
        message = messages.get(deployment.id)
        scope = (deployment.service, deployment.environment)
        if config is not None and scope not in locks:
            locks[scope] = session.get(EnvironmentLock, scope)
        views[deployment.id] = ReleaseView(
            deployment_id=deployment.id,
            service=deployment.service,
            environment=deployment.environment,
            sha=deployment.sha,
            version=deployment.version or (release.version if release else None),
            ref=deployment.ref or (release.ref if release else None),
            state=deployment.state,
            attempt=deployment.attempt,
            deployer=deployment.deployer,
            ci_url=deployment.ci_url,
            description=deployment.description,
            created_at=deployment.created_at,
            updated_at=deployment.updated_at,
            commits=release.commits if release else None,
            risk=deployment.risk,
            channel=message.channel if message else None,
            ts=message.ts if message else None,
            diff=release.diff if release else None,
            assessment_note=deployment.assessment_note,
            freeze=_freeze(frozen[deployment.updated_at], deployment, config) if config else None,
            verification=progress.get(deployment.id),
            rollback_to=deployment.rollback_to,
            rollback_error=refused.get(deployment.id),
            budget=budgets.get(deployment.service),
            flags=tuple(offered.get(deployment.id, ())),
            rollout=canaries.get(deployment.id),
            **_gate(gates.get(deployment.id)),
            **_actions(config, deployment, locks.get(scope)),
        )
    return views


def _verification_progress(session: Session, ids: list[int]) -> dict[int, dict[str, Any]]:
    """`verification.progress` for several deployments at once (same figures; a deployment
    without check runs is left out, as progress answers None for it)."""
    runs: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for deployment_id, status, name in session.exec(
        select(CheckRun.deployment_id, CheckRun.status, Check.name)
        .join(Check, col(Check.id) == col(CheckRun.check_id))
        .where(col(CheckRun.deployment_id).in_(ids))
    ):
        runs[deployment_id].append((status, name))
    skipped = verification.skipped_of(session, ids)
    return {
        deployment_id: {
            "total": len(rows),
            "passed": sum(1 for status, _ in rows if status == verification.PASSED),
            "failed": sorted({name for status, name in rows if status == verification.FAILED}),
            "pending": sum(
                1 for status, _ in rows if status in (verification.PENDING, verification.RUNNING)
            ),
            "cancelled": sum(1 for status, _ in rows if status == verification.CANCELLED),
            "skipped": skipped.get(deployment_id),
        }
        for deployment_id, rows in runs.items()
    }


def _rollback_errors(session: Session, ids: list[int]) -> dict[int, str]:
    """What the deployer answered when it gave up on each deployment's last rollback (the
    newest `deployer.failed` record of a rollback), for deployments in rollback_failed."""
    if not ids:
        return {}
    found: dict[int, str] = {}
    for subject, details in session.exec(
        select(AuditEvent.subject, AuditEvent.details)
        .where(col(AuditEvent.subject).in_([f"deployment:{i}" for i in ids]))
        .where(AuditEvent.action == "deployer.failed")
        .order_by(col(AuditEvent.seq))
    ):
        record = json.loads(details)
        if record.get("action") == "rollback":
            found[int(subject.split(":", 1)[1])] = str(record.get("error") or "")
    return found


def _gate(gate: Gate | None) -> dict[str, Any]:
    if gate is None:
        return {}
    return {
        "gate_id": gate.id,
        "gate_status": gate.status,
        "gate_progress": gate.progress,
        "gate_expires_at": gate.expires_at,
        "gate_decided_by": gate.decided_by,
        "gate_reason": gate.reason,
        "gate_break_glass": gate.break_glass,
        "gate_can_rerequest": gate.status == EXPIRED
        and rerequest_refusal(gate.decide_via, gate.context) is None,
        "gate_refused": _refused(gate),
    }


def _refused(gate: Gate) -> str | None:
    refused = gate.context.get(pipeline.REFUSED)
    return str(refused) if refused else None


def _actions(
    config: Config | None, deployment: Deployment, lock: EnvironmentLock | None
) -> dict[str, Any]:
    if config is None:
        return {}
    svc = config.services.get(deployment.service)
    env = svc.environment(deployment.environment) if svc else None
    return {
        "promote_to": next_environment(svc, deployment.environment)
        if deployment.state in PROMOTABLE
        else None,
        "can_roll_back": deployment.state in ROLLBACKABLE
        and env is not None
        and env.deploy is not None,
        "lock": lock.reason if lock else None,
        "lock_by": lock.locked_by if lock else None,
        "lock_everything": lock is not None and lock.holds == LOCK_ALL,
        "break_glass_available": config.break_glass is not None,
    }


def _freeze(active: list[ScheduledFreeze], deployment: Deployment, config: Config) -> str | None:
    production = config.is_production(deployment.service, deployment.environment)
    for freeze in active:
        if freeze.covers(deployment.environment, production) and freeze.active_at(
            deployment.updated_at
        ):
            return f"{freeze.reason} (until {freeze.end.isoformat(timespec='minutes')})"
    return None


def save_message(
    session: Session, *, deployment_id: int, channel: str, ts: str, now: datetime
) -> None:
    """Remember where the release message is, so every later change edits it in place."""
    existing = session.get(ReleaseMessage, deployment_id)
    if existing is None:
        session.add(
            ReleaseMessage(deployment_id=deployment_id, channel=channel, ts=ts, posted_at=now)
        )
    else:
        existing.channel = channel
        existing.ts = ts
