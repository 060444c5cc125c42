"""Re-request: an expired gate asked for again, as a fresh gate for the same sha.

The release goes through a new attempt of its deployment (a new release message, risk
assessment and gate, exactly as when it was first promoted), carrying the expired gate's
deployer and context, so approving it starts the deploy the first gate would have started.
It is refused, with the reason, when the gate is not expired, when its pipeline cannot be
asked again (`cannot_ask_again`), when the environment no longer has a gate, or when
something newer was released there since: a newer version, or this one asked for again.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, select

from bot.config import Config
from bot.domain import gates as rules
from bot.domain import states
from bot.domain.events import DeployEvent, DeployTarget, GateRequest
from bot.domain.gates import refusal as refusals
from bot.domain.gates.timing import cannot_ask_again
from bot.domain.ingest import revision_label
from bot.services import audit, deployments
from bot.services.gate_reads import environment_at, pending_gate
from bot.services.gates import REFUSED, Outcome
from bot.store.tables import Deployment, Gate, Release

REREQUESTED = "rerequested"
SOURCE_EVENT = "releasebot.rerequest"


def target(session: Session, gate_id: int) -> tuple[str, str, int] | None:
    """(service, environment, deployment id) of a gate, or None when there is no such gate."""
    gate = session.get(Gate, gate_id)
    deployment = session.get(Deployment, gate.deployment_id) if gate is not None else None
    if deployment is None or deployment.id is None:
        return None
    return deployment.service, deployment.environment, deployment.id


def refusal(
    session: Session, *, config: Config, gate: Gate, deployment: Deployment
) -> refusals.Refusal | None:
    """Why this gate cannot be asked for again now and what would let it, or None when it
    can."""
    if gate.status != rules.EXPIRED:
        return refusals.not_expired(gate.status)
    cannot = cannot_ask_again(gate.decide_via, gate.context)
    if cannot is not None:
        return refusals.Refusal(*cannot)
    env = environment_at(config, deployment.service, deployment.environment)
    if env is None or env.gate is None:
        return refusals.no_gate_any_more(deployment.service, deployment.environment)
    newer = session.exec(
        select(Deployment)
        .where(Deployment.service == deployment.service)
        .where(Deployment.environment == deployment.environment)
        .where(col(Deployment.created_at) >= deployment.created_at)
        .where(col(Deployment.id) != deployment.id)
        .order_by(col(Deployment.created_at).desc(), col(Deployment.id).desc())
        .limit(1)
    ).first()
    if newer is None:
        return None
    state = newer.state.replace("_", " ")
    if newer.sha == deployment.sha:
        return refusals.asked_again_already(deployment.sha, deployment.environment, newer.id, state)
    again = (
        refusals.cmd(
            f"/release promote {deployment.service} "
            f"{revision_label(deployment.sha, deployment.version)} to "
            f"{deployment.environment}"
        )
        if gate.context.get("on_approve")
        else "run its pipeline again"
    )
    return refusals.superseded_since(
        deployment.sha,
        newer.sha,
        newer.id,
        state,
        environment=deployment.environment,
        again=again,
    )


def rerequest(
    session: Session, *, now: datetime, config: Config, gate_id: int, actor: str
) -> Outcome:
    """Open a fresh gate for the expired gate's release, or refuse with the reason (audited
    either way)."""
    gate = session.get(Gate, gate_id)
    if gate is None:
        return Outcome(REFUSED, refusals.unknown_gate().text, gate_id)
    deployment = session.get(Deployment, gate.deployment_id)
    assert deployment is not None and deployment.id is not None
    refused = refusal(session, config=config, gate=gate, deployment=deployment)
    if refused is not None:
        why = refused.text
        audit.append(
            session,
            at=now,
            actor=actor,
            action="gate.rerequest_refused",
            subject=f"gate:{gate_id}",
            details={"reason": why},
        )
        return Outcome(REFUSED, why, gate_id, deployment.id)
    release = session.get(Release, deployment.release_id)
    event = DeployEvent(
        target=DeployTarget(
            provider="releasebot", service=deployment.service, environment=deployment.environment
        ),
        sha=deployment.sha,
        status=states.PENDING,
        source_event=SOURCE_EVENT,
        external_id=f"rerequest:{gate_id}",
        version=deployment.version or (release.version if release else None),
        ref=deployment.ref or (release.ref if release else None),
        actor=actor,
        description=f"re-requested after gate #{gate_id} expired",
        gate=GateRequest(decide_via=gate.decide_via, context=dict(gate.context)),
    )
    created, _ = deployments.apply_event(
        session,
        now=now,
        service=deployment.service,
        environment=deployment.environment,
        event=event,
        config=config,
    )
    assert created is not None and created.id is not None
    fresh = pending_gate(session, created.id)
    fresh_id = fresh.id if fresh is not None else None
    audit.append(
        session,
        at=now,
        actor=actor,
        action="gate.rerequested",
        subject=f"gate:{gate_id}",
        details={"deployment": created.id, "gate": fresh_id, "sha": deployment.sha},
    )
    return Outcome(
        REREQUESTED,
        f"asked again: {revision_label(deployment.sha, deployment.version)} to "
        f"{deployment.environment} waits for approval "
        f"(gate #{fresh_id})",
        fresh_id,
        created.id,
    )
