"""Freezes that hold for environments without a gate, and the break-glass window.

An environment without a `gate` asks nobody, so outside a freeze a pipeline waiting on it is
told to go ahead at once. During a freeze the change is held instead: a gate opens that no
approval passes (`hold: freeze` in its requirement, no expiry), so the release message shows
it frozen and the team can break glass. When the freeze ends, `release_held` (run by the
gate sweep) approves it, audited as any gate decision.

A confirmed break-glass opens a window for its service in its environment until its
`valid_until`: `hold_for` lets that service's changes through the freeze while it is open.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from bot.config import Config
from bot.domain import gates as rules
from bot.domain import states
from bot.domain.events import GateRequest
from bot.services import freezes
from bot.services.gate_close import (
    call_deployer,
    close_gate,
    lock_gate,
    record_opened,
    refresh_message,
)
from bot.services.gate_reads import environment_of
from bot.store.tables import Deployment, Gate

HOLD_KEY = "hold"
FREEZE_HOLD = "freeze"


def window_until(
    session: Session, *, now: datetime, config: Config, service: str, environment: str
) -> datetime | None:
    """When the latest break-glass window of `service` in `environment` closes (or closed),
    among those confirmed within `break_glass.valid_for` before `now`; None without one."""
    if config.break_glass is None:
        return None
    since = now - config.break_glass.valid_for - timedelta(seconds=1)
    records = session.exec(
        select(Gate.break_glass)
        .join(Deployment, col(Deployment.id) == col(Gate.deployment_id))
        .where(Deployment.service == service)
        .where(Deployment.environment == environment)
        .where(Gate.status == rules.APPROVED)
        .where(col(Gate.decided_at) >= since)
    ).all()
    return rules.break_glass_window(records)


def hold_for(
    session: Session,
    *,
    now: datetime,
    config: Config,
    service: str,
    environment: str,
    change: rules.Change = rules.FORWARD,
    break_glass: bool = True,
) -> rules.FreezeHold | None:
    """Why a change of `service` into `environment` waits for a freeze now, or None.

    With `break_glass` (every change a person asks for) an open break-glass window of the
    service in the environment lets it through; automatic promotion never uses one. A freeze
    with `production_only` holds the environment when it is production for the service
    (`Config.is_production`), whatever its name.
    """
    active = freezes.active(session, config=config, now=now)
    production = config.is_production(service, environment)
    if not any(f.covers(environment, production) for f in active):
        return None
    until = (
        window_until(session, now=now, config=config, service=service, environment=environment)
        if break_glass
        else None
    )
    return rules.freeze_hold(
        active, environment, now, change=change, window_until=until, production=production
    )


def ungated_hold(
    session: Session, *, now: datetime, config: Config, deployment: Deployment
) -> rules.FreezeHold | None:
    """What holds a forward change of the deployment's service into its environment, when
    that environment has no gate (None for a gated one: its gate holds it)."""
    env = environment_of(config, deployment)
    if env is not None and env.gate is not None:
        return None
    return hold_for(
        session,
        now=now,
        config=config,
        service=deployment.service,
        environment=deployment.environment,
    )


def window_of(
    session: Session, *, now: datetime, config: Config, deployment: Deployment
) -> datetime | None:
    """`window_until` for the deployment's service and environment."""
    return window_until(
        session,
        now=now,
        config=config,
        service=deployment.service,
        environment=deployment.environment,
    )


def go_ahead(
    session: Session, *, now: datetime, deployment: Deployment, request: GateRequest
) -> None:
    """No gate and no freeze: a pipeline waiting on the environment is told to go ahead,
    with the action a passed gate would have carried (a promotion starts its deploy)."""
    if request.decide_via is not None:
        call_deployer(
            session,
            now=now,
            deployment=deployment,
            kind=request.decide_via,
            action=str(request.context.get("on_approve", "approve")),
            context=request.context,
            actor="releasebot",
            reason=f"no gate is configured for {deployment.environment}",
        )


def is_held(gate: Gate) -> bool:
    """A gate opened only because a freeze holds an environment without a gate."""
    return bool(gate.requirement) and gate.requirement.get(HOLD_KEY) == FREEZE_HOLD


def open_held(
    session: Session,
    deployment: Deployment,
    request: GateRequest,
    requested_by: str | None,
    hold: rules.FreezeHold,
    now: datetime,
) -> Gate:
    """Hold a change into a frozen environment without a gate: a gate only break-glass, or
    the end of the freeze, lets through."""
    assert deployment.id is not None
    blocked = rules.Requirement(mode="blocked", rules=())
    gate = Gate(
        deployment_id=deployment.id,
        sha=deployment.sha,
        status=rules.PENDING,
        requirement={**blocked.to_dict(), HOLD_KEY: FREEZE_HOLD},
        decide_via=request.decide_via,
        context=dict(request.context),
        requested_by=requested_by,
        created_at=now,
        progress=hold.held()[:1000],
    )
    record_opened(
        session,
        now=now,
        gate=gate,
        deployment=deployment,
        requested_by=requested_by,
        details={"held_by_freeze": hold.reason, "frozen_until": hold.until.isoformat()},
        waits=f": {hold.describe()}",
    )
    refresh_message(session, now=now, deployment=deployment)
    return gate


def decision_refusal(
    session: Session, *, now: datetime, config: Config, deployment: Deployment
) -> str:
    """The answer to an approve or reject click on a gate held only by a freeze."""
    hold = hold_for(
        session,
        now=now,
        config=config,
        service=deployment.service,
        environment=deployment.environment,
    )
    where = f"no gate is configured for {deployment.environment}: nobody approves or rejects it"
    if hold is None:
        remedy = "the freeze is over and releasebot lets it through within a minute"
    else:
        remedy = hold.held()
    return rules.Refusal(where, remedy).text


def release_held(session: Session, *, now: datetime, config: Config) -> int:
    """Approve the gates held by a freeze that has ended, audited as `gate.approved` by
    releasebot; a gate configured since then is left to its approvers. Answers how many."""
    released = 0
    held = session.exec(
        select(Gate, Deployment)
        .join(Deployment, col(Deployment.id) == col(Gate.deployment_id))
        .where(Gate.status == rules.PENDING)
        .where(col(Gate.expires_at).is_(None))
        .order_by(col(Gate.id))
    ).all()
    for gate, deployment in held:
        if not is_held(gate):
            continue
        env = environment_of(config, deployment)
        if env is not None and env.gate is not None:
            continue
        hold = hold_for(
            session,
            now=now,
            config=config,
            service=deployment.service,
            environment=deployment.environment,
            break_glass=False,
        )
        if hold is not None:
            continue
        lock_gate(session, gate)
        close_gate(
            session,
            now=now,
            gate=gate,
            deployment=deployment,
            status=rules.APPROVED,
            actor="releasebot",
            reason=f"the freeze on {deployment.environment} is over; no gate is configured "
            "for it, so the release goes ahead",
            target_state=states.APPROVED,
        )
        released += 1
    return released
