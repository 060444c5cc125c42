"""Which deploy events are marked on the service's dashboards, and the receipts of the marks.

A service with a `markers:` block gets, for every environment:

| what happened                 | Grafana                      | Datadog event   | New Relic  |
|-------------------------------|------------------------------|-----------------|------------|
| a deploy started              | annotation opened (a region) |                 |            |
| the deploy succeeded / failed | region closed (`timeEnd`)    | success / error | succeeded  |
| a rollback was started        | annotation                   | warning         |            |
| break-glass was confirmed     | annotation                   | warning         |            |
| verification failed           | annotation                   | error           |            |

A rollback shows in New Relic as the deployment of the restored version, when it lands.
Each mark is an outbox row (`DeployMarker`), so it is retried like every other side effect;
once sent, `marker.delivered` is audited with the platform's id for it (the Grafana
annotation id is read back from it to close the region), and a mark given up on is
audited as `marker.failed` with the reason. No secret is ever part of either.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from sqlmodel import Session, col, select

from bot.config import Config
from bot.domain import states
from bot.domain.ingest import is_version_key, revision_label
from bot.domain.messages import DeployMarker
from bot.services import audit, outbox
from bot.store.tables import AuditEvent, Deployment, row_id

DELIVERED = "marker.delivered"
FAILED = "marker.failed"
ACTOR = "releasebot"

# Which platforms hear of each event (Grafana also of a deploy's start).
_POINT_PLATFORMS = ("grafana", "datadog")
_END_PLATFORMS = ("grafana", "datadog", "newrelic")


def deploy_progress(
    session: Session,
    *,
    now: datetime,
    config: Config,
    deployment: Deployment,
    moved_to: Sequence[str],
) -> None:
    """A CI event moved the deployment: open the Grafana region when it started, close it
    and tell Datadog and New Relic when it finished."""
    if not moved_to:
        return
    state = deployment.state
    if state == states.IN_PROGRESS:
        _enqueue(session, now, config, deployment, "deploy", "start", ("grafana",), now, None)
    elif state in (states.SUCCEEDED, states.FAILED) and state == moved_to[-1]:
        outcome = "succeeded" if state == states.SUCCEEDED else "failed"
        platforms = _END_PLATFORMS if outcome == "succeeded" else _POINT_PLATFORMS
        _enqueue(
            session,
            now,
            config,
            deployment,
            "deploy",
            "end",
            platforms,
            deployment.created_at,
            now,
            outcome=outcome,
        )


def rollback(
    session: Session,
    *,
    now: datetime,
    config: Config,
    deployment: Deployment,
    target: str,
    why: str,
) -> None:
    """A rollback of the deployment was started."""
    text = f"Rolling back to {_revision(target)}: {why}"
    _enqueue(
        session,
        now,
        config,
        deployment,
        "rollback",
        "point",
        _POINT_PLATFORMS,
        now,
        None,
        text=text,
    )


def break_glass(
    session: Session, *, now: datetime, config: Config, deployment: Deployment, reason: str
) -> None:
    """Break-glass let the deployment past its gate."""
    text = f"Break-glass: {reason}"
    _enqueue(
        session,
        now,
        config,
        deployment,
        "break_glass",
        "point",
        _POINT_PLATFORMS,
        now,
        None,
        text=text,
    )


def verification_failed(
    session: Session, *, now: datetime, config: Config, deployment: Deployment, check: str
) -> None:
    """A post-deploy check failed the deployment's verification."""
    text = f"Verification failed: {check}"
    _enqueue(
        session,
        now,
        config,
        deployment,
        "verification_failed",
        "point",
        _POINT_PLATFORMS,
        now,
        None,
        text=text,
    )


def _revision(key: str, version: str | None = None) -> str:
    """What a marker names as the version: 12 characters of the sha, or the version of a
    release reported without one (never the `v:` of its key)."""
    return revision_label(key, version) if is_version_key(key) else key[:12]


_TITLES = {
    "deploy": "Deploy",
    "rollback": "Rollback",
    "break_glass": "Break-glass",
    "verification_failed": "Verification failed",
}


def _enqueue(
    session: Session,
    now: datetime,
    config: Config,
    deployment: Deployment,
    event: str,
    phase: str,
    platforms: Sequence[str],
    started: datetime,
    ended: datetime | None,
    *,
    outcome: str = "",
    text: str | None = None,
) -> None:
    service = config.services.get(deployment.service)
    markers = service.markers if service is not None else None
    if markers is None:
        return
    version = _revision(deployment.sha, deployment.version)
    title = f"{_TITLES[event]}: {deployment.service} {version} to {deployment.environment}"
    if outcome:
        title += f" ({outcome})"
    named = version if is_version_key(deployment.sha) else deployment.sha
    body = text or (deployment.description or f"{deployment.service} {named}")
    batch = [
        DeployMarker(
            deployment_id=row_id(deployment),
            platform=platform,
            event=event,
            phase=phase,
            service=deployment.service,
            environment=deployment.environment,
            version=version,
            title=title,
            text=body[:1000],
            started_at=started.isoformat(),
            ended_at=ended.isoformat() if ended is not None else None,
            outcome=outcome,
        )
        for platform in markers.platforms()
        if platform in platforms
    ]
    if batch:
        outbox.enqueue_many(session, batch, now=now)


def delivered(session: Session, *, now: datetime, marker: DeployMarker, remote_id: str) -> None:
    """The receipt of a mark: audited with the platform's id for it."""
    audit.append(
        session,
        at=now,
        actor=ACTOR,
        action=DELIVERED,
        subject=f"deployment:{marker.deployment_id}",
        details={**_what(marker), "id": remote_id},
    )


def failed(session: Session, *, now: datetime, marker: DeployMarker, reason: str) -> None:
    """A mark given up on (a refused key, a bad request): audited with the reason."""
    audit.append(
        session,
        at=now,
        actor=ACTOR,
        action=FAILED,
        subject=f"deployment:{marker.deployment_id}",
        details={**_what(marker), "reason": reason[:500]},
    )


def opened_region(session: Session, *, deployment_id: int, platform: str) -> str | None:
    """The id of the deploy region opened for this deployment on `platform`, if one was."""
    rows = session.exec(
        select(AuditEvent.details)
        .where(AuditEvent.subject == f"deployment:{deployment_id}")
        .where(AuditEvent.action == DELIVERED)
        .order_by(col(AuditEvent.seq))
    ).all()
    for details in rows:
        found = json.loads(details)
        if (found.get("platform"), found.get("event"), found.get("phase")) == (
            platform,
            "deploy",
            "start",
        ):
            return str(found["id"])
    return None


def _what(marker: DeployMarker) -> dict[str, str]:
    return {"platform": marker.platform, "event": marker.event, "phase": marker.phase}
