"""Requests to the real pipeline (through a deployer) and what came back from it.

A call the deployer gave up on is audited (`deployer.failed`) and told in the thread; when
it carried the gate's decision the gate remembers the refusal, and when it was a rollback
the deployment leaves `rolling_back` for `rollback_failed` (the bad version still runs).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from bot.config import Config
from bot.domain import gates as rules
from bot.domain import states
from bot.domain.ingest import is_version_key, revision_label
from bot.domain.messages import PagerChange, ReleaseMessageUpdate, TemplateLine
from bot.ports import DeployRequest, DeployResult
from bot.services import audit, outbox
from bot.services.transitions import transition
from bot.store.tables import Deployment, Gate, Release

# What a gate remembers when the pipeline refused the decision carried to it.
REFUSED = "pipeline_refused"


def request_for(
    session: Session, *, config: Config, payload: dict[str, Any]
) -> DeployRequest | None:
    deployment = session.get(Deployment, int(payload["deployment_id"]))
    if deployment is None:
        return None
    release = session.get(Release, deployment.release_id)
    service = config.services.get(deployment.service)
    env = service.environment(deployment.environment) if service else None
    kind = str(payload["kind"])
    target: dict[str, Any] = {}
    if env is not None and env.deploy is not None and env.deploy.kind == kind:
        target = env.deploy.target.model_dump(mode="json")
        if kind == "gitlab_deployment_approval" and env.track and env.track.gitlab_environment:
            target["environment"] = env.track.gitlab_environment  # GitLab's own name for it
    sha = str(payload.get("sha") or deployment.sha)
    version = deployment.version or (release.version if release else None)
    if is_version_key(sha):
        # A release named by its version only: the pipeline knows it by that version (a
        # Helm chart version, an image tag), which is its revision too.
        version = version if sha == deployment.sha and version else revision_label(sha)
        sha = version
    return DeployRequest(
        kind=kind,
        action=str(payload["action"]),
        service=deployment.service,
        repo=service.repo_path if service else "",
        environment=deployment.environment,
        sha=sha,
        request_id=str(payload["request_id"]),
        version=version,
        reason=payload.get("reason"),
        actor=payload.get("actor"),
        target=target,
        context=dict(payload.get("context") or {}),
    )


def record_result(
    session: Session, *, now: datetime, payload: dict[str, Any], result: DeployResult
) -> None:
    deployment_id = int(payload["deployment_id"])
    audit.append(
        session,
        at=now,
        actor="releasebot",
        action="deployer.called",
        subject=f"deployment:{deployment_id}",
        details={
            "kind": payload["kind"],
            "action": payload["action"],
            "request_id": payload["request_id"],
            "detail": result.detail,
            "url": result.url,
        },
    )
    _thread(
        session,
        now=now,
        deployment_id=deployment_id,
        payload=payload,
        detail=result.detail,
        url=result.url,
        failed=False,
    )


def record_failure(session: Session, *, now: datetime, payload: dict[str, Any], error: str) -> None:
    deployment_id = int(payload["deployment_id"])
    audit.append(
        session,
        at=now,
        actor="releasebot",
        action="deployer.failed",
        subject=f"deployment:{deployment_id}",
        details={
            "kind": payload["kind"],
            "action": payload["action"],
            "request_id": payload["request_id"],
            "error": error,
        },
    )
    _thread(
        session,
        now=now,
        deployment_id=deployment_id,
        payload=payload,
        detail=error,
        url=None,
        failed=True,
    )
    if _rollback_failed(
        session, now=now, deployment_id=deployment_id, payload=payload, error=error
    ):
        return  # the state change edits the message
    if _mark_refused(session, deployment_id=deployment_id, payload=payload, error=error):
        outbox.enqueue(session, ReleaseMessageUpdate(deployment_id), now=now)


def _rollback_failed(
    session: Session, *, now: datetime, deployment_id: int, payload: dict[str, Any], error: str
) -> bool:
    """The rollback the deployment waits on will not happen: the pipeline refused it, or it
    could not be sent. The deployment moves to `rollback_failed` (so the message stops
    showing it rolling back and offers Roll back again), the environment's lock stays, and
    on-call's timeline hears of it. Returns whether it moved."""
    if payload["action"] != "rollback":
        return False
    deployment = session.get(Deployment, deployment_id)
    if deployment is None or deployment.state != states.ROLLING_BACK:
        return False
    target = str(payload.get("sha") or deployment.rollback_to or "")
    if deployment.rollback_to and target != deployment.rollback_to:
        return False  # a rollback to another version is under way
    why = f"rollback to {revision_label(target)} failed: {error}"
    transition(
        session,
        deployment=deployment,
        target=states.ROLLBACK_FAILED,
        now=now,
        actor="releasebot",
        source="deployer",
        note=why,
        extra={"kind": payload["kind"], "request_id": payload["request_id"]},
    )
    summary = f"{deployment.service} {deployment.environment}: {why}"
    outbox.enqueue(session, PagerChange(deployment_id, "rollback", summary[:1000]), now=now)
    return True


def _mark_refused(
    session: Session, *, deployment_id: int, payload: dict[str, Any], error: str
) -> bool:
    """When the failed call carried the decision of the deployment's gate (the deployer
    answered 422, the protection-rule callback expired), remember on the gate that the
    pipeline refused it, so the release message does not show it as taken. Returns whether
    the gate was marked."""
    gate = session.exec(
        select(Gate).where(col(Gate.deployment_id) == deployment_id).order_by(col(Gate.id).desc())
    ).first()
    if gate is None or gate.decide_via != payload["kind"]:
        return False
    if gate.status == rules.APPROVED:
        carried = str(gate.context.get("on_approve", "approve"))
    elif gate.status == rules.REJECTED:
        carried = "reject"
    else:
        return False
    if payload["action"] != carried:
        return False
    gate.context = {**gate.context, REFUSED: error[:500]}
    session.add(gate)
    return True


def _thread(
    session: Session,
    *,
    now: datetime,
    deployment_id: int,
    payload: dict[str, Any],
    detail: str,
    url: str | None,
    failed: bool,
) -> None:
    line = TemplateLine(
        deployment_id,
        "deployer_result.txt.j2",
        {
            "kind": payload["kind"],
            "action": payload["action"],
            "detail": detail,
            "url": url,
            "failed": failed,
        },
    )
    outbox.enqueue(session, line, now=now)
