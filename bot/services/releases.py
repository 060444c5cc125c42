"""Promote a release to the next environment, roll an environment back, lock and unlock it.

Promotion goes through the target environment's gate exactly as any other deployment does;
during a freeze that gate holds it (an environment without a gate gets one that only
break-glass or the end of the freeze passes), and automatic promotion does not start at all.
A rollback redeploys the version last deployed successfully before, and stops automatic
promotion into that environment until someone unlocks it; a freeze with `rollbacks: blocked`
refuses it. An environment locked with `/release lock` (the same lock, holding more) refuses
every promotion into it, and its gates refuse approvals, until it is unlocked.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, select

from bot.config import Config
from bot.domain import gates as rules
from bot.domain import states
from bot.domain.events import DeployEvent, DeployTarget, GateRequest
from bot.domain.gates import refusal as refusals
from bot.domain.ingest import revision_label
from bot.domain.messages import DeployerCall, PagerChange
from bot.domain.promotion import PROMOTABLE, ROLLBACKABLE, next_environment
from bot.services import (
    audit,
    deployments,
    freeze_gates,
    gates,
    markers,
    outbox,
    slo,
    verification,
)
from bot.services.deployment_rows import deployment_rows
from bot.services.gates import Outcome
from bot.services.transitions import transition
from bot.store import statements as sql
from bot.store.tables import (
    LOCK_ALL,
    LOCK_AUTOMATIC,
    Deployment,
    EnvironmentLock,
    Release,
    row_id,
)

PROMOTED = "promoted"
ROLLING_BACK = "rolling_back"
REFUSED = gates.REFUSED
DEPLOYED = (states.SUCCEEDED, states.VERIFYING, states.VERIFIED)


# Finishing rollbacks: first `sql.ANY_ROLLING_BACK_TO` (there rarely are any), then these
# are loaded as objects only when there are.
_ROLLING_BACK_TO = select(Deployment).where(*sql.ROLLING_BACK_TO_WHERE)


def promote(
    session: Session,
    *,
    now: datetime,
    config: Config,
    deployment_id: int,
    actor: str,
    to_environment: str | None = None,
    automatic: bool = False,
) -> Outcome:
    """Send a deployed release on to its next environment (through that environment's gate)."""
    source = session.get(Deployment, deployment_id)
    if source is None:
        return Outcome(REFUSED, refusals.unknown_deployment().text)
    target, refusal = _promotion_target(config, source, to_environment)
    if refusal is None:
        refusal = lock_refusal(session, service=source.service, environment=target)
    if refusal is None and automatic:
        refusal = _automatic_refusal(session, now=now, config=config, source=source, target=target)
    if refusal is not None:
        return Outcome(REFUSED, refusal, deployment_id=deployment_id)
    active = session.exec(
        select(Deployment)
        .where(Deployment.service == source.service)
        .where(Deployment.environment == target)
        .where(Deployment.sha == source.sha)
        .where(col(Deployment.state).not_in(states.FINISHED | {states.VERIFIED}))
    ).first()
    if active is not None:
        moving = refusals.under_way(
            revision_label(source.sha, source.version), active.state, target, source.service
        )
        return Outcome(REFUSED, moving.text, deployment_id=active.id)
    env = config.services[source.service].environment(target)
    assert env is not None and env.deploy is not None
    release = session.get(Release, source.release_id)
    event = DeployEvent(
        target=DeployTarget(provider="releasebot", service=source.service, environment=target),
        sha=source.sha,
        status=states.PENDING,
        source_event="releasebot.promote",
        external_id=f"promote:{source.id}:{now.timestamp():.0f}",
        version=source.version or (release.version if release else None),
        ref=source.ref or (release.ref if release else None),
        actor=actor,
        description=f"promoted from {source.environment}",
        gate=GateRequest(decide_via=env.deploy.kind, context={"on_approve": "promote"}),
    )
    created, _ = deployments.apply_event(
        session, now=now, service=source.service, environment=target, event=event, config=config
    )
    assert created is not None
    audit.append(
        session,
        at=now,
        actor=actor,
        action="release.promoted",
        subject=f"deployment:{source.id}",
        details={"to": target, "deployment": created.id, "automatic": automatic},
    )
    told = f"promoting {revision_label(source.sha, source.version)} to {target}"
    hold = freeze_gates.hold_for(
        session, now=now, config=config, service=source.service, environment=target
    )
    if hold is not None and env.gate is not None:
        told += f", held at its gate: {hold.describe()}; approvals wait for the freeze to end"
    elif hold is not None:
        told += f", held: {hold.held()}"
    return Outcome(PROMOTED, told, deployment_id=created.id)


def _promotion_target(
    config: Config, source: Deployment, to_environment: str | None
) -> tuple[str, str | None]:
    """(the environment to promote to, why not) for a deployed release."""
    service = config.services[source.service]
    target = to_environment or next_environment(service, source.environment)
    env = service.environment(target) if target else None
    if target is None or env is None:
        path = [e.name for e in service.environments]
        return "", refusals.no_next_environment(source.service, source.environment, path).text
    if source.state not in PROMOTABLE:
        return "", refusals.not_deployed(
            "promote",
            source.state,
            service=source.service,
            environment=source.environment,
            next_environment=target,
        ).text
    if env.deploy is None:
        return target, refusals.no_deploy_section(source.service, target).text
    return target, None


def _automatic_refusal(
    session: Session, *, now: datetime, config: Config, source: Deployment, target: str
) -> str | None:
    """Why automatic promotion may not go into `target` now: a lock, a freeze, or the
    service's error budget (exhausted or unknown)."""
    lock = session.get(EnvironmentLock, (source.service, target))
    if lock is not None:
        return refusals.Refusal(
            f"automatic promotion to {target} is locked by {lock.locked_by}: {lock.reason}",
            f"unlock it ({refusals.cmd(f'/release unlock {source.service} {target}')}), "
            "or promote by hand (Promote on the release message)",
        ).text
    hold = freeze_gates.hold_for(
        session,
        now=now,
        config=config,
        service=source.service,
        environment=target,
        break_glass=False,
    )
    if hold is not None:
        return refusals.Refusal(
            f"{target} is frozen: {hold.reason} (until {rules.moment(hold.until)})",
            "promote by hand once the freeze ends, or through its gate with break-glass",
        ).text
    return slo.promotion_refusal(session, now=now, config=config, service=source.service)


def rollback(
    session: Session,
    *,
    now: datetime,
    config: Config,
    deployment_id: int,
    actor: str,
    reason: str,
    to_sha: str | None = None,
) -> Outcome:
    """Redeploy the version last deployed successfully before this one, and lock promotion."""
    current = session.get(Deployment, deployment_id)
    if current is None:
        return Outcome(REFUSED, refusals.unknown_deployment().text)
    target, refusal = _rollback_target(session, config, current, reason, to_sha)
    hold = freeze_gates.hold_for(
        session,
        now=now,
        config=config,
        service=current.service,
        environment=current.environment,
        change=rules.ROLLBACK,
    )
    if refusal is None and hold is not None:
        refusal = hold.refusal()
    if refusal is not None:
        return Outcome(REFUSED, refusal, deployment_id=deployment_id)
    env = config.services[current.service].environment(current.environment)
    assert env is not None and env.deploy is not None
    why = reason.strip()
    current.rollback_to = target
    session.add(current)
    transition(
        session,
        deployment=current,
        target=states.ROLLING_BACK,
        now=now,
        actor=actor,
        source="rollback",
        note=f"rolling back to {revision_label(target)}: {why}",
    )
    markers.rollback(session, now=now, config=config, deployment=current, target=target, why=why)
    lock(
        session,
        now=now,
        service=current.service,
        environment=current.environment,
        actor=actor,
        reason=f"rolled back by {actor}: {why}",
    )
    call = DeployerCall(
        deployment_id=row_id(current),
        kind=env.deploy.kind,
        action="rollback",
        sha=target,
        request_id=f"rb-{current.id}-rollback-{now.timestamp():.0f}",
        context={},
        actor=actor,
        reason=why,
    )
    outbox.enqueue(session, call, now=now)
    verification.cancel(session, now=now, deployment=current, reason="rolled back")
    _rollback_told(session, now=now, current=current, target=target, actor=actor, why=why)
    return Outcome(
        ROLLING_BACK,
        f"rolling {current.environment} back to {revision_label(target)}",
        deployment_id=current.id,
    )


def _rollback_target(
    session: Session, config: Config, current: Deployment, reason: str, to_sha: str | None
) -> tuple[str, str | None]:
    """(the sha to roll back to, why not)."""
    if not reason.strip():
        return "", refusals.reason_required("roll back").text
    if current.state not in ROLLBACKABLE:
        return "", refusals.not_deployed(
            "rollback",
            current.state,
            service=current.service,
            environment=current.environment,
            next_environment=None,
        ).text
    env = config.services[current.service].environment(current.environment)
    if env is None or env.deploy is None:
        return "", refusals.no_deploy_section(current.service, current.environment).text
    target = to_sha or _previous_good(session, current)
    if target is None:
        ran = versions_ran(session, current.service, current.environment, but=current.sha)
        return "", refusals.no_earlier_version(current.service, current.environment, ran).text
    return target, None


def _rollback_told(
    session: Session, *, now: datetime, current: Deployment, target: str, actor: str, why: str
) -> None:
    """On-call's timeline and the audit trail hear of the rollback."""
    change_event(
        session,
        now=now,
        deployment=current,
        what="rollback",
        summary=(
            f"Rolling {current.service} {current.environment} back to "
            f"{revision_label(target)}: {why}"
        ),
    )
    audit.append(
        session,
        at=now,
        actor=actor,
        action="release.rollback_requested",
        subject=f"deployment:{current.id}",
        details={"to": target, "reason": why},
    )


def versions_ran(
    session: Session, service: str, environment: str, *, but: str | None = None, limit: int = 5
) -> list[str]:
    """The versions (else short shas) that ran in an environment, newest first, as people
    type them in `/release rollback ... to <version>`; `but` leaves one sha out."""
    rows = deployment_rows(
        session,
        service=service,
        environments=(environment,),
        extra=[col(Deployment.deployed_at).is_not(None), col(Deployment.sha) != (but or "")],
        limit=50,
    )
    return list(dict.fromkeys(r.version or r.short_sha for r in rows))[:limit]


BAD = (
    states.FAILED,
    states.VERIFICATION_FAILED,
    states.ROLLING_BACK,
    states.ROLLED_BACK,
    states.ROLLBACK_FAILED,
)


def _previous_good(session: Session, current: Deployment) -> str | None:
    """The version that ran in this environment before, and was not itself found bad."""
    return session.exec(
        select(Deployment.sha)
        .where(Deployment.service == current.service)
        .where(Deployment.environment == current.environment)
        .where(Deployment.sha != current.sha)
        .where(col(Deployment.deployed_at).is_not(None))
        .where(col(Deployment.state).not_in(BAD))
        .where(col(Deployment.created_at) <= current.created_at)
        .order_by(col(Deployment.created_at).desc())
        .limit(1)
    ).first()


def finish_rollbacks(session: Session, *, now: datetime, deployed: Deployment) -> None:
    """The version a rollback restores has deployed: the rolled-back deployment is done."""
    params = {"service": deployed.service, "environment": deployed.environment, "sha": deployed.sha}
    session.flush()  # what an ORM query would flush first (a rollback_to set just now)
    if session.connection().execute(sql.ANY_ROLLING_BACK_TO, params).first() is None:
        return
    waiting = session.exec(_ROLLING_BACK_TO, params=params).all()
    for deployment in waiting:
        transition(
            session,
            deployment=deployment,
            target=states.ROLLED_BACK,
            now=now,
            actor="releasebot",
            source="rollback",
            note=(
                f"{revision_label(deployed.sha, deployed.version)} is back in "
                f"{deployed.environment}"
            ),
        )


AUTOMATIC = LOCK_AUTOMATIC  # a rollback's lock: automatic promotion stops
ALL_CHANGES = LOCK_ALL  # `/release lock`: every promotion and gate approval is refused


def lock(
    session: Session,
    *,
    now: datetime,
    service: str,
    environment: str,
    actor: str,
    reason: str,
    holds: str = AUTOMATIC,
) -> None:
    """Lock an environment; a lock that holds everything is never narrowed by a rollback's."""
    existing = session.get(EnvironmentLock, (service, environment))
    if existing is None:
        existing = EnvironmentLock(
            service=service,
            environment=environment,
            reason=reason[:1000],
            locked_by=actor,
            locked_at=now,
            holds=holds,
        )
    else:
        existing.reason, existing.locked_by, existing.locked_at = reason[:1000], actor, now
        if existing.holds != ALL_CHANGES:
            existing.holds = holds
    session.add(existing)
    details = {"reason": reason} if holds == AUTOMATIC else {"reason": reason, "holds": holds}
    audit.append(
        session,
        at=now,
        actor=actor,
        action="environment.locked",
        subject=f"environment:{service}/{environment}",
        details=details,
    )


def unlock(session: Session, *, now: datetime, service: str, environment: str, actor: str) -> bool:
    """Lift the lock on an environment, whoever placed it; False when there was none."""
    existing = session.get(EnvironmentLock, (service, environment))
    if existing is None:
        return False
    session.delete(existing)
    audit.append(
        session,
        at=now,
        actor=actor,
        action="environment.unlocked",
        subject=f"environment:{service}/{environment}",
        details={},
    )
    return True


def lock_refusal(session: Session, *, service: str, environment: str) -> str | None:
    """Why a promotion into, or an approval in, this environment is refused: its lock from
    `/release lock` (a rollback's lock stops automatic promotion only)."""
    found = session.get(EnvironmentLock, (service, environment))
    if found is None or found.holds != ALL_CHANGES:
        return None
    return refusals.locked(service, environment, found.locked_by, found.reason).text


def operators(config: Config, service: str, environment: str, *, action: str) -> frozenset[str]:
    """Who may promote or roll back: release managers, the service's owners and the
    environment's approvers; on-call may also roll back."""
    svc = config.services.get(service)
    found = set(config.slack.release_managers)
    if svc is not None:
        found.update(svc.owners)
    found.update(gates.gate_principals(config, service, environment))
    if action == "rollback":
        found.update(config.slack.oncall)
    return frozenset(found)


def refusal_for(
    session: Session,
    *,
    now: datetime,
    config: Config,
    deployment_id: int,
    user_id: str,
    memberships: frozenset[str],
    action: str,
) -> str | None:
    """Why this person may not `action` (promote, rollback, unlock) this deployment, or None;
    a refusal is audited."""
    deployment = session.get(Deployment, deployment_id)
    if deployment is None:
        return refusals.unknown_deployment().text
    allowed = operators(config, deployment.service, deployment.environment, action=action)
    if user_id in allowed or memberships & allowed:
        return None
    reason = refusals.not_allowed(
        allowed, action=action, subject=deployment.service, mention=rules.slack_mention
    ).text
    audit.append(
        session,
        at=now,
        actor=user_id,
        action="release.action_refused",
        subject=f"deployment:{deployment_id}",
        details={"action": action, "reason": reason},
    )
    return reason


def change_event(
    session: Session, *, now: datetime, deployment: Deployment, what: str, summary: str
) -> None:
    """A PagerDuty change event: informational, never pages (deploys, rollbacks, break-glass)."""
    outbox.enqueue(session, PagerChange(row_id(deployment), what, summary[:1000]), now=now)


def scope(session: Session, deployment_id: int) -> tuple[str, str] | None:
    """(service, environment) of a deployment."""
    deployment = session.get(Deployment, deployment_id)
    return (deployment.service, deployment.environment) if deployment else None
