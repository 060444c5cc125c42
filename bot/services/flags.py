"""Feature flags as releases: each step a gate, the kill switch, and what the message shows.

A flag step is decided exactly as a deploy gate is: its `Requirement` comes from
`requirement_for` (the `release:` block's `require` as a gate policy), every approval is
checked by `decision_refusal` (not an approver, self-approval ban, unknown people, one vote
each, a freeze unless a break-glass window of the service in that environment is open), and
the quorum is `evaluate`'s matching. The step lives in its own `flag_step` row rather than a
`gate` row: a gate is bound to a deployment's state machine (closing one moves the
deployment), while a flag step moves a flag and leaves the deployment verified.

Every change is audited with the subject `flag_step:<id>`; the change itself is a
`FlagChange` outbox row, sent by `integrations.flags` and receipted by `flag_checks`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlmodel import Session, col, select

from bot.config import Config, Service
from bot.config.flags import Flag, ReleaseFlags
from bot.domain import flags as rules
from bot.domain import gates, states
from bot.domain.gates import refusal as refusals
from bot.domain.messages import ReleaseMessageUpdate
from bot.services import audit, flag_checks, flag_gates, freeze_gates, freezes, outbox
from bot.services.gate_reads import memberships_from
from bot.services.gates import APPROVED, RECORDED, REFUSED, Outcome
from bot.services.people import release_people
from bot.store.tables import Deployment, FlagApproval, FlagStep, row_id

# --- reads -----------------------------------------------------------------------------------


def history(session: Session, service: str, environment: str, flag: str) -> list[FlagStep]:
    """Every step of one flag in one environment, oldest first."""
    return list(
        session.exec(
            select(FlagStep)
            .where(FlagStep.service == service)
            .where(FlagStep.environment == environment)
            .where(FlagStep.flag == flag)
            .order_by(col(FlagStep.seq))
        ).all()
    )


def records(steps: Iterable[FlagStep]) -> list[rules.StepRecord]:
    return [rules.StepRecord(s.kind, s.percent, s.status, s.deployment_id) for s in steps]


def released_here(config: Config, deployment: Deployment) -> ReleaseFlags | None:
    """The `release:` block whose flags this deployment's message offers, or None."""
    service = config.services.get(deployment.service)
    if service is None or service.release is None:
        return None
    if deployment.environment != service.release_environment():
        return None
    return service.release


def views(
    session: Session, config: Config | None, deployments: Iterable[Deployment]
) -> dict[int, list[dict[str, Any]]]:
    """What each verified deployment's release message shows of its service's flags:
    `{flag, provider, serving, next_percent, pending, busy, can_kill, status, progress}`."""
    found: dict[int, list[dict[str, Any]]] = {}
    if config is None:
        return found
    for deployment in deployments:
        release = released_here(config, deployment)
        if release is None or deployment.state != states.VERIFIED or deployment.id is None:
            continue
        shown = []
        for flag in release.flags:
            steps = history(session, deployment.service, deployment.environment, flag.key)
            state = rules.flag_state(flag.steps, records(steps), deployment_id=deployment.id)
            shown.append(
                {
                    "flag": flag.key,
                    "provider": flag.provider,
                    "serving": state.serving,
                    "next_percent": state.next_percent,
                    "pending": state.pending,
                    "busy": state.busy,
                    "can_kill": state.can_kill,
                    "status": state.status,
                    "progress": steps[-1].progress if steps and state.pending else None,
                    **_last_gate(steps, deployment.id),
                }
            )
        found[deployment.id] = shown
    return found


def _last_gate(steps: list[FlagStep], deployment_id: int) -> dict[str, Any]:
    """What the message shows of the newest step's gate: when a pending one expires, who
    rejected a closed one and why (`step_percent`, `expires_at`, `decided_by`, `reason`);
    its id (`step_id`), whether it waits after being asked for again (`rerequested`: its
    Release button carries the id) and whether Re-request is offered (`can_rerequest`)."""
    last = steps[-1] if steps else None
    if last is None or last.status not in (rules.PENDING, *rules.CLOSED_UNDECIDED):
        return {}
    expires = last.expires_at.isoformat() if last.expires_at is not None else None
    taken = records(steps)
    return {
        "step_percent": last.percent,
        "expires_at": expires,
        "decided_by": last.decided_by,
        "reason": last.reason,
        "step_id": last.id,
        "rerequested": rules.rerequested(taken),
        "can_rerequest": rules.can_rerequest(taken, deployment_id=deployment_id),
    }


def release_approvers(config: Config, service: str) -> list[str]:
    """The principals of the service's `release:` block's `require` rules, in their order."""
    found = config.services.get(service)
    release = found.release if found is not None else None
    return [p for rule in release.require for p in rule.approvers] if release else []


def rerequest_principals(config: Config, service: str) -> tuple[str, ...]:
    """Who may ask again for a step that was rejected or expired, as whoever may re-request
    a deploy gate: the release managers, the service's owners, and the release's approvers."""
    found = config.services.get(service)
    owners = list(found.owners) if found is not None else []
    approvers = release_approvers(config, service)
    return tuple(dict.fromkeys([*config.slack.release_managers, *owners, *approvers]))


def kill_principals(config: Config, service: str) -> tuple[str, ...]:
    """Who may pull a flag's kill switch: the release's approvers and on-call."""
    approvers = release_approvers(config, service)
    return tuple(dict.fromkeys([*approvers, *config.slack.oncall]))


# --- releasing a step ------------------------------------------------------------------------


@dataclass(frozen=True)
class StepClick:
    """A Release or Reject click on a flag's step: on which deployment's message, which
    flag, who clicked (as the gate rules know them) and the members of the user groups
    among the release's approvers."""

    deployment_id: int
    flag: str
    person: gates.Person
    group_members: Mapping[str, frozenset[str]]


def release_step(
    session: Session, *, now: datetime, config: Config, click: StepClick, step_id: int | None = None
) -> Outcome:
    """One person's click on "Release <flag> N%": an approval of the flag's next step (its
    gate opens with the first one); when the quorum is met the change is queued. A step
    asked for again is approved only by a click carrying its id (`step_id`): a button from
    before, carrying none, is refused (`flag_gates.stale_click`)."""
    deployment_id, flag, person = click.deployment_id, click.flag, click.person
    found = target(session, config, deployment_id, flag)
    if isinstance(found, gates.Refusal):
        return refused(session, now, person.user_id, f"deployment:{deployment_id}", flag, found)
    deployment, service, release, settings = found
    steps = history(session, deployment.service, deployment.environment, flag)
    state = rules.flag_state(settings.steps, records(steps), deployment_id=row_id(deployment))
    if state.next_percent is None:
        nothing = flag_gates.not_offered(steps, flag, state)
        return refused(session, now, person.user_id, f"deployment:{deployment_id}", flag, nothing)
    step = steps[-1] if state.pending else None
    again = rules.rerequested(records(steps))
    late = flag_gates.stale_click(flag, steps, step, step_id, rerequested=again)
    if late is None and step is not None:
        late = flag_gates.lock_open(session, now=now, step=step)
    if late is not None:
        where = f"flag_step:{step.id}" if step is not None else f"deployment:{deployment_id}"
        return refused(session, now, person.user_id, where, flag, late)
    approvers = approvals_of(session, step)
    policy = release.policy()
    requirement = gates.requirement_for(policy, None)
    memberships = memberships_from(click.group_members, {*approvers, person.user_id})
    refusal = decision_refusal(
        session,
        now=now,
        config=config,
        decision="approve",
        deployment=deployment,
        service=service,
        requirement=requirement,
        person=person,
        approvers=approvers,
        memberships=memberships,
    )
    if refusal is not None:
        subject = f"flag_step:{step.id}" if step is not None else f"deployment:{deployment_id}"
        return refused(session, now, person.user_id, subject, flag, refusal, state.next_percent)
    if step is None:
        step = open_step(
            session, now, deployment, settings, len(steps) + 1, state.next_percent, requirement
        )
        step.requested_by = person.user_id
        flag_gates.schedule(step, policy)
    step_id = row_id(step)
    session.add(FlagApproval(step_id=step_id, user_id=person.user_id, created_at=now))
    audit.append(
        session,
        at=now,
        actor=person.user_id,
        action="flag.approval_recorded",
        subject=f"flag_step:{step_id}",
        details={"flag": flag, "percent": step.percent, "email": person.email},
    )
    status = gates.evaluate(requirement, [*approvers, person.user_id], memberships)
    if not status.met:
        step.progress = status.describe()
        session.add(step)
        outbox.enqueue(session, ReleaseMessageUpdate(row_id(deployment)), now=now)
        told = f"your approval is recorded: {step.progress}"
        return Outcome(RECORDED, told, deployment_id=deployment_id)
    flag_checks.send(session, now=now, step=step, actor=person.user_id, reason=status.describe())
    told = f"approved: {flag} goes to {step.percent}% on {settings.provider}"
    return Outcome(APPROVED, told, deployment_id=deployment_id)


def decision_refusal(
    session: Session,
    *,
    now: datetime,
    config: Config,
    decision: Literal["approve", "reject"],
    deployment: Deployment,
    service: Service,
    requirement: gates.Requirement,
    person: gates.Person,
    approvers: list[str],
    memberships: Mapping[str, frozenset[str]],
) -> gates.Refusal | None:
    """Why this person's approval or rejection of a pending flag step is refused, by the
    deploy gate's rules over the `release:` block's policy, or None. An approval passes a
    freeze only inside a break-glass window of the service in that environment; a
    rejection, as on a deploy gate, is never held by a freeze."""
    assert service.release is not None
    policy = service.release.policy()
    window = (
        freeze_gates.window_until(
            session,
            now=now,
            config=config,
            service=deployment.service,
            environment=deployment.environment,
        )
        if decision == "approve"
        else None
    )
    return gates.decision_refusal(
        decision=decision,
        gate_status=gates.PENDING,
        requirement=requirement,
        forbid_self_approval=policy.forbid_self_approval,
        person=person,
        people=release_people(session, deployment),
        approvals=approvers,
        memberships=memberships,
        environment=deployment.environment,
        freezes=freezes.active(session, config=config, now=now),
        at=now,
        break_glass_until=window,
        mention=gates.slack_mention,
        production=service.is_production(deployment.environment),
        allow_unknown_people=policy.unknown_people == "allow",
    )


def target(
    session: Session, config: Config, deployment_id: int, flag: str
) -> tuple[Deployment, Service, ReleaseFlags, Flag] | gates.Refusal:
    """The deployment, its service, release block and flag, or why a click on it is refused."""
    deployment = session.get(Deployment, deployment_id)
    if deployment is None:
        return refusals.unknown_deployment()
    service = config.services.get(deployment.service)
    release = service.release if service is not None else None
    settings = release.flag(flag) if release is not None else None
    if service is None or release is None or settings is None:
        known = [f.key for f in release.flags] if release is not None else []
        return rules.unknown_flag(flag, known)
    if released_here(config, deployment) is None or deployment.state != states.VERIFIED:
        return rules.not_released_here(service.release_environment(), deployment.state)
    return deployment, service, release, settings


def approvals_of(session: Session, step: FlagStep | None) -> list[str]:
    if step is None:
        return []
    return list(
        session.exec(
            select(FlagApproval.user_id)
            .where(FlagApproval.step_id == row_id(step))
            .order_by(col(FlagApproval.id))
        ).all()
    )


def open_step(
    session: Session,
    now: datetime,
    deployment: Deployment,
    settings: Flag,
    seq: int,
    percent: int,
    requirement: gates.Requirement,
) -> FlagStep:
    """A new step of the flag, pending its approvals (a racing click collides on `seq`)."""
    step = FlagStep(
        deployment_id=row_id(deployment),
        service=deployment.service,
        environment=deployment.environment,
        flag=settings.key,
        seq=seq,
        kind=rules.ROLLOUT,
        percent=percent,
        provider=settings.provider,
        status=rules.PENDING,
        requirement=requirement.to_dict(),
        created_at=now,
    )
    session.add(step)
    session.flush()
    audit.append(
        session,
        at=now,
        actor="releasebot",
        action="flag.step_opened",
        subject=f"flag_step:{row_id(step)}",
        details={
            "flag": settings.key,
            "percent": percent,
            "provider": settings.provider,
            "deployment_id": row_id(deployment),
            "requirement": requirement.to_dict(),
        },
    )
    return step


# --- the kill switch -------------------------------------------------------------------------


def kill(
    session: Session,
    *,
    now: datetime,
    config: Config,
    deployment_id: int,
    flag: str,
    user_id: str,
    allowed: bool,
) -> Outcome:
    """Turn the flag off at once: no quorum, no freeze (like a rollback). `allowed`: the
    person is an approver of the release or on-call (checked by the caller)."""
    deployment = session.get(Deployment, deployment_id)
    service = config.services.get(deployment.service) if deployment is not None else None
    release = service.release if service is not None else None
    settings = release.flag(flag) if release is not None else None
    if deployment is None or service is None or release is None or settings is None:
        known = [f.key for f in release.flags] if release is not None else []
        refusal = rules.unknown_flag(flag, known)
        return refused(session, now, user_id, f"deployment:{deployment_id}", flag, refusal)
    if not allowed:
        principals = kill_principals(config, deployment.service)
        refusal = rules.kill_not_allowed(flag, principals, gates.slack_mention)
        return refused(session, now, user_id, f"deployment:{deployment_id}", flag, refusal)
    steps = history(session, deployment.service, deployment.environment, flag)
    if rules.serving(records(steps)) == 0 and not _in_flight(steps):
        refusal = rules.nothing_to_kill(flag)
        return refused(session, now, user_id, f"deployment:{deployment_id}", flag, refusal)
    if steps:
        flag_checks.stop(session, now=now, step=steps[-1], reason="the kill switch was pulled")
    step = FlagStep(
        deployment_id=row_id(deployment),
        service=deployment.service,
        environment=deployment.environment,
        flag=flag,
        seq=len(steps) + 1,
        kind=rules.KILL,
        percent=0,
        provider=settings.provider,
        status=rules.SENDING,
        requested_by=user_id,
        decided_by=user_id,
        created_at=now,
        decided_at=now,
    )
    session.add(step)
    session.flush()
    audit.append(
        session,
        at=now,
        actor=user_id,
        action="flag.kill_switch",
        subject=f"flag_step:{row_id(step)}",
        details={"flag": flag, "provider": settings.provider, "was": rules.serving(records(steps))},
    )
    change = rules.FlagChange(
        row_id(step), row_id(deployment), deployment.service, flag, settings.provider, "off", 0
    )
    text = f"Kill switch: {flag} is being turned off on {settings.provider}, pulled"
    flag_checks.tell(
        session,
        now=now,
        deployment_id=row_id(deployment),
        icon=":octagonal_sign:",
        text=text,
        by=user_id,
    )
    outbox.enqueue(session, change, now=now)
    return Outcome(
        APPROVED, f"kill switch: {flag} is being turned off", deployment_id=deployment_id
    )


def _in_flight(steps: list[FlagStep]) -> bool:
    return bool(steps) and steps[-1].kind == rules.ROLLOUT and steps[-1].status == rules.SENDING


# --- shared ----------------------------------------------------------------------------------


def refused(
    session: Session,
    now: datetime,
    user_id: str,
    subject: str,
    flag: str,
    refusal: gates.Refusal,
    percent: int | None = None,
) -> Outcome:
    """The refusal, audited (nothing else changes)."""
    audit.append(
        session,
        at=now,
        actor=user_id,
        action="flag.action_refused",
        subject=subject,
        details={"flag": flag, "percent": percent, "reason": refusal.text},
    )
    return Outcome(REFUSED, refusal.text)
