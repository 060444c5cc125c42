"""Read models for messages: everything a release message shows, read in one place."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from bot.config import Config
from bot.domain import states
from bot.services import freezes, verification
from bot.store.tables import Deployment, EnvironmentLock, Gate, Release, ReleaseMessage


@dataclass(frozen=True)
class ReleaseView:
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
    break_glass_available: bool = False
    verification: dict[str, Any] | None = None  # total, passed, failed names, pending
    promote_to: str | None = None  # the next environment, when the release may go there
    can_roll_back: bool = False
    lock: str | None = None  # why automatic promotion into this environment is stopped

    @property
    def short_sha(self) -> str:
        return self.sha[:7]


def release_view(
    session: Session, deployment_id: int, *, config: Config | None = None
) -> ReleaseView | None:
    deployment = session.get(Deployment, deployment_id)
    if deployment is None or deployment.id is None:
        return None
    release = session.get(Release, deployment.release_id)
    message = session.get(ReleaseMessage, deployment.id)
    return ReleaseView(
        deployment_id=deployment.id,
        service=deployment.service,
        environment=deployment.environment,
        sha=deployment.sha,
        version=release.version if release else None,
        ref=release.ref if release else None,
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
        freeze=_freeze(session, config, deployment) if config else None,
        verification=verification.progress(session, deployment.id),
        **_gate(session, deployment.id),
        **_actions(session, config, deployment),
    )


def _gate(session: Session, deployment_id: int) -> dict[str, Any]:
    gate = session.exec(
        select(Gate).where(Gate.deployment_id == deployment_id).order_by(col(Gate.id).desc())
    ).first()
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
    }


PROMOTABLE = frozenset({states.SUCCEEDED, states.VERIFIED})
ROLLBACKABLE = frozenset(
    {states.SUCCEEDED, states.VERIFYING, states.VERIFIED, states.VERIFICATION_FAILED, states.FAILED}
)


def next_environment(config: Config, service: str, environment: str) -> str | None:
    """Where a release goes after `environment`: `auto_promote_to`, else the next listed."""
    svc = config.services.get(service)
    if svc is None:
        return None
    names = [env.name for env in svc.environments]
    env = svc.environment(environment)
    if env is not None and env.auto_promote_to:
        return env.auto_promote_to
    index = names.index(environment) if environment in names else -1
    return names[index + 1] if 0 <= index < len(names) - 1 else None


def _actions(session: Session, config: Config | None, deployment: Deployment) -> dict[str, Any]:
    if config is None:
        return {}
    svc = config.services.get(deployment.service)
    env = svc.environment(deployment.environment) if svc else None
    lock = session.get(EnvironmentLock, (deployment.service, deployment.environment))
    return {
        "promote_to": next_environment(config, deployment.service, deployment.environment)
        if deployment.state in PROMOTABLE
        else None,
        "can_roll_back": deployment.state in ROLLBACKABLE
        and env is not None
        and env.deploy is not None,
        "lock": lock.reason if lock else None,
        "break_glass_available": config.break_glass is not None,
    }


def _freeze(session: Session, config: Config, deployment: Deployment) -> str | None:
    for freeze in freezes.active(session, config=config, now=deployment.updated_at):
        if freeze.covers(deployment.environment) and freeze.active_at(deployment.updated_at):
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
