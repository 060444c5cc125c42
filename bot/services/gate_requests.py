"""Approval gates asked for by any CI job over HTTP (`POST /api/v1/gates`), and their status.

A job names the release by service, environment and version, and by the commit sha when it
knows it. The request becomes an ordinary `DeployEvent` (provider "generic", status pending,
`GateRequest(decide_via=None)`: the pipeline polls for the decision), so the release gets its
Slack message, its risk assessment and its gate exactly as a webhook-reported one does.

Decisions taken here:
- No sha: the release is named only by its version; its key in the `sha` columns is
  `"v:" + version` (at most 64 characters). There is then no commit comparison to make, so
  the risk assessment says the commit list is unavailable and scores what it still knows.
- The environment has no gate: nothing is opened and nothing waits; the answer is
  "approved" at once (no gate id) with the reason, and an audit record notes the request.
  A CI job that asks should not be blocked by an environment that asks nobody.
- Unless a freeze covers it: then the request is held like any other change, in a gate that
  only break-glass or the end of the freeze lets through (`freeze_gates`). The answer is
  that pending gate, its progress naming the freeze, its reason, when it ends and what lets
  the release through; `releasebot gate request --wait` polls it to the decision, and the
  gate sweep approves it when the freeze ends. A 409 would leave the team no gate to break
  glass on and every CI job its own retry loop.
- Asking again during a freeze for a release whose gate was approved before (or whose
  break-glass window has closed) is refused: `FrozenConflict` (409) naming the freeze.
- Asking again for the same release while its gate is pending, or after it was approved,
  answers with that gate (`created=False`), so a retried CI step is idempotent. After a
  rejection, an expiry, a supersession or a finished deploy (failed, rolled back, ...) it is
  a new request: a new deployment attempt with a fresh gate.
- A release that is already past its gate without one (it is deploying or deployed) cannot
  be gated any more: `GateConflict`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from bot.config import Config, Environment
from bot.domain import gates as rules
from bot.domain import states
from bot.domain.errors import Conflict, InvalidRequest
from bot.domain.events import DeployEvent, DeployTarget, GateRequest
from bot.services import audit, freeze_gates, gates
from bot.services.deployments import apply_event
from bot.services.people import VERSION_KEY_PREFIX as VERSION_KEY_PREFIX
from bot.store.tables import Approval, Deployment, Gate, Release

SOURCE_EVENT = "api.gate_request"
KEY_MAX = 64  # the width of the sha columns
SHA_RE = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
FINAL_STATUSES = frozenset({rules.APPROVED, rules.REJECTED, rules.EXPIRED, rules.SUPERSEDED})
_REUSABLE = frozenset({rules.PENDING, rules.APPROVED})


class GateConflict(Conflict):
    """The release cannot be gated in the state it is in (answered 409)."""


class FrozenConflict(GateConflict):
    """A freeze holds the environment and nothing lets this release through now (409)."""


@dataclass(frozen=True)
class GateRequestResult:
    gate_id: int | None  # None when the environment has no gate
    deployment_id: int | None
    status: str  # pending | approved | rejected | expired | superseded
    created: bool
    note: str | None = None


def release_key(version: str, sha: str | None) -> str:
    """What the `sha` columns hold for this release: the commit sha, else `v:<version>`."""
    if sha is not None:
        normalized = sha.strip().lower()
        if not SHA_RE.match(normalized):
            raise InvalidRequest("sha must be a full commit sha (40 hex characters)")
        return normalized
    return (VERSION_KEY_PREFIX + version)[:KEY_MAX]


def target_environment(config: Config, service: str, environment: str) -> Environment:
    """The configured environment, or a ValueError naming what is unknown and what exists."""
    svc = config.services.get(service)
    if svc is None:
        known = ", ".join(sorted(config.services)) or "(none)"
        raise InvalidRequest(f"unknown service {service!r}; configured: {known}")
    env = svc.environment(environment)
    if env is None:
        known = ", ".join(e.name for e in svc.environments) or "(none)"
        raise InvalidRequest(
            f"unknown environment {environment!r} of service {service!r}; configured: {known}"
        )
    return env


def request_gate(
    session: Session,
    *,
    now: datetime,
    config: Config,
    service: str,
    environment: str,
    version: str,
    sha: str | None,
    requested_by: str | None,
    url: str | None,
) -> GateRequestResult:
    """Open (or find) the gate a CI job waits on before deploying `version`."""
    env = target_environment(config, service, environment)
    version = version.strip()
    if not version:
        raise InvalidRequest("version must not be empty")
    key = release_key(version, sha)
    hold = freeze_gates.hold_for(
        session, now=now, config=config, service=service, environment=environment
    )
    if env.gate is None and hold is None:
        note = f"{environment} of {service} has no gate configured: nothing to wait for"
        audit.append(
            session,
            at=now,
            actor=requested_by or "api",
            action="gate.not_required",
            subject=f"service:{service}",
            details={"environment": environment, "version": version, "sha": sha},
        )
        return GateRequestResult(None, None, rules.APPROVED, created=False, note=note)

    external_id: str | None = None
    existing = _latest_deployment(session, service=service, environment=environment, key=key)
    if existing is not None:
        assert existing.id is not None
        if existing.state in states.FINISHED:
            # A new attempt: apply_event starts one when the external id differs.
            external_id = f"gate-request:{existing.attempt + 1}"
        else:
            gate = gates.latest_gate(session, existing.id)
            if gate is not None and gate.status in _REUSABLE:
                assert gate.id is not None
                if gate.status == rules.APPROVED and hold is not None:
                    raise FrozenConflict(f"gate #{gate.id} was approved, but {hold.refusal()}")
                return GateRequestResult(gate.id, existing.id, gate.status, created=False)
            if existing.state != states.PENDING:
                raise GateConflict(
                    f"{service} {version} is already {existing.state} in {environment}: "
                    "a gate is asked for before the deploy; ask again once it has finished "
                    "(a new attempt gets its own gate), or for a new version"
                )

    event = DeployEvent(
        target=DeployTarget(provider="generic", service=service, environment=environment),
        sha=key,
        status=states.PENDING,
        source_event=SOURCE_EVENT,
        external_id=external_id,
        version=version,
        url=url,
        actor=requested_by,
        gate=GateRequest(decide_via=None),
    )
    deployment, _ = apply_event(
        session, now=now, service=service, environment=environment, event=event, config=config
    )
    assert deployment is not None and deployment.id is not None
    gate = gates.pending_gate(session, deployment.id) or gates.latest_gate(session, deployment.id)
    assert gate is not None and gate.id is not None, "a gated or frozen environment opens one"
    return GateRequestResult(gate.id, deployment.id, gate.status, created=True)


def _latest_deployment(
    session: Session, *, service: str, environment: str, key: str
) -> Deployment | None:
    return session.exec(
        select(Deployment)
        .where(Deployment.service == service)
        .where(Deployment.environment == environment)
        .where(Deployment.sha == key)
        .order_by(col(Deployment.attempt).desc())
        .limit(1)
    ).first()


# --- reading ---------------------------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def gate_status(session: Session, gate_id: int) -> dict[str, Any] | None:
    """What a polling pipeline needs to know about one gate; None when there is no such gate."""
    gate = session.get(Gate, gate_id)
    if gate is None:
        return None
    deployment = session.get(Deployment, gate.deployment_id)
    assert deployment is not None
    release = session.get(Release, deployment.release_id)
    approvals = session.exec(
        select(Approval).where(Approval.gate_id == gate_id).order_by(col(Approval.id))
    ).all()
    sha = None if gate.sha.startswith(VERSION_KEY_PREFIX) else gate.sha
    return {
        "id": gate.id,
        "status": gate.status,
        "final": gate.status in FINAL_STATUSES,
        "service": deployment.service,
        "environment": deployment.environment,
        "version": deployment.version or (release.version if release is not None else None),
        "sha": sha,
        "deployment_id": deployment.id,
        "requested_by": gate.requested_by,
        "created_at": _iso(gate.created_at),
        "expires_at": _iso(gate.expires_at),
        "decided_at": _iso(gate.decided_at),
        "decided_by": gate.decided_by,
        "reason": gate.reason,
        "progress": gate.progress,
        "approvals": [
            {
                "user": a.user_id,
                "decision": a.decision,
                "at": _iso(a.created_at),
                "reason": a.reason,
            }
            for a in approvals
        ],
    }


def ungated_status(
    *, service: str, environment: str, version: str, sha: str | None, note: str | None
) -> dict[str, Any]:
    """The answer for an environment without a gate: approved, with no gate behind it."""
    return {
        "id": None,
        "status": rules.APPROVED,
        "final": True,
        "service": service,
        "environment": environment,
        "version": version.strip(),
        "sha": sha.strip().lower() if sha else None,
        "deployment_id": None,
        "requested_by": None,
        "created_at": None,
        "expires_at": None,
        "decided_at": None,
        "decided_by": None,
        "reason": note,
        "progress": None,
        "approvals": [],
    }
