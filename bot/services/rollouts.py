"""Progressive delivery with Argo Rollouts: where a canary stands, Promote and Abort.

An Argo CD notification that lists a Rollout progressing or paused queues a
`RolloutRefresh`: the Argo CD sender reads the Rollout's live manifest and `observed`
records where it stands (audit `rollout.observed` on `deployment:<id>`), which the release
message shows ("canary 2/5, paused") with Promote and Abort.

Promote is decided by the environment's gate rules (`gates.decision_refusal`: an approver of
its gate, the self-approval ban, unknown people, a freeze unless a break-glass window is
open); one approver's click is enough, since the deploy itself already passed the gate's
quorum. Without a gate, release managers promote. Abort is like a rollback: no quorum, no
freeze, but only the gate's approvers, release managers and on-call, with a reason. Either
queues a `RolloutAction`; Argo CD's answer is audited (`rollout.action_done` with the
receipt, or `rollout.action_failed` with the reason, shown on the message).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from bot.config import Config
from bot.domain import gates
from bot.domain import rollouts as rules
from bot.domain.events import DeployEvent
from bot.domain.gates import refusal as refusals
from bot.domain.messages import ReleaseMessageUpdate
from bot.services import audit, freeze_gates, freezes, outbox
from bot.services.gate_reads import memberships_from
from bot.services.gates import APPROVED, REFUSED, Outcome
from bot.services.people import release_people
from bot.store.tables import AuditEvent, Deployment

OBSERVED = "rollout.observed"
REQUESTED = "rollout.action_requested"
DONE = "rollout.action_done"
FAILED = "rollout.action_failed"
REFUSED_ACTION = "rollout.action_refused"
_SHOWN = (OBSERVED, REQUESTED, DONE, FAILED)


def _subject(deployment_id: int) -> str:
    return f"deployment:{deployment_id}"


# --- what Argo CD reported -------------------------------------------------------------------


def observe(session: Session, *, now: datetime, deployment: Deployment, event: DeployEvent) -> bool:
    """An Argo CD event that lists Rollouts: read the live state of one still moving, or
    record that they all settled. Whether it did either."""
    listed = event.extra.get("rollouts")
    app = event.target.app
    if not listed or not app or deployment.id is None:
        return False
    found = [r for r in json.loads(listed) if isinstance(r, dict)]
    for item in found:
        if item.get("health") in rules.ACTIVE_HEALTH:
            ref = rules.RolloutRef(app, item["name"], item["namespace"], item["version"])
            outbox.enqueue(session, rules.RolloutRefresh(deployment.id, ref), now=now)
            return True
    if found and latest(session, [deployment.id]).get(deployment.id) is not None:
        item = found[0]
        ref = rules.RolloutRef(app, item["name"], item["namespace"], item["version"])
        settled = rules.RolloutStatus("canary", None, None, False, False, str(item["health"]))
        observed(session, now=now, deployment_id=deployment.id, rollout=ref, status=settled)
        return True
    return False


def observed(
    session: Session,
    *,
    now: datetime,
    deployment_id: int,
    rollout: rules.RolloutRef,
    status: rules.RolloutStatus,
) -> None:
    """Where the Rollout stands, as its live manifest says; the message shows it."""
    audit.append(
        session,
        at=now,
        actor="argocd",
        action=OBSERVED,
        subject=_subject(deployment_id),
        details={"rollout": rollout.to_payload(), **status.to_details()},
    )
    outbox.enqueue(session, ReleaseMessageUpdate(deployment_id), now=now)


def answered(
    session: Session,
    *,
    now: datetime,
    action: rules.RolloutAction,
    receipt: Mapping[str, Any] | None = None,
    reason: str | None = None,
) -> None:
    """Argo CD's answer to an action: the receipt (then the Rollout is read again), or why
    it refused."""
    details: dict[str, Any] = {"rollout": action.rollout.to_payload(), "action": action.action}
    if reason is not None:
        details["reason"] = reason[:500]
    else:
        details["receipt"] = dict(receipt or {})
    audit.append(
        session,
        at=now,
        actor=action.actor,
        action=FAILED if reason is not None else DONE,
        subject=_subject(action.deployment_id),
        details=details,
    )
    if reason is None:
        refresh = rules.RolloutRefresh(action.deployment_id, action.rollout)
        outbox.enqueue(session, refresh, now=now)
    outbox.enqueue(session, ReleaseMessageUpdate(action.deployment_id), now=now)


# --- reads -----------------------------------------------------------------------------------


def latest(session: Session, deployment_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """Each deployment's Rollout as last observed, with the last action asked or answered
    since: `{rollout, status, action, action_event, reason}` (None: no Rollout seen)."""
    ids = list(deployment_ids)
    found: dict[int, dict[str, Any]] = {}
    if not ids:
        return found
    events = session.exec(
        select(AuditEvent)
        .where(col(AuditEvent.subject).in_([_subject(i) for i in ids]))
        .where(col(AuditEvent.action).in_(_SHOWN))
        .order_by(col(AuditEvent.seq).desc())
    ).all()
    for event in events:
        deployment_id = int(event.subject.split(":", 1)[1])
        details = json.loads(event.details)
        entry = found.setdefault(deployment_id, {"action_event": None})
        if event.action == OBSERVED:
            if "status" not in entry:
                entry["rollout"] = rules.RolloutRef.from_payload(details["rollout"])
                entry["status"] = rules.RolloutStatus.from_details(details)
        elif entry["action_event"] is None and "status" not in entry:
            entry.update(action_event=event.action, action=details.get("action"))
            entry["reason"] = details.get("reason")
    return {k: v for k, v in found.items() if "status" in v}


def views(session: Session, deployments: Iterable[Deployment]) -> dict[int, dict[str, Any]]:
    """What each release message shows of its Rollout: `{name, where, active, asked,
    refused}` (`where` like "canary 2/5, paused")."""
    ids = [d.id for d in deployments if d.id is not None]
    shown: dict[int, dict[str, Any]] = {}
    for deployment_id, entry in latest(session, ids).items():
        status: rules.RolloutStatus = entry["status"]
        event = entry["action_event"]
        shown[deployment_id] = {
            "name": entry["rollout"].name,
            "where": rules.describe(status),
            "active": status.active and event != REQUESTED,
            "asked": entry.get("action") if event == REQUESTED else None,
            "refused": entry.get("reason") if event == FAILED else None,
        }
    return shown


def principals(config: Config, service: str, environment: str) -> tuple[str, ...]:
    """Who may Promote without a gate (release managers), or Abort (the gate's approvers,
    release managers and on-call)."""
    found = config.services.get(service)
    env = found.environment(environment) if found is not None else None
    gate = env.gate if env is not None else None
    approvers = [p for rule in gate.require for p in rule.approvers] if gate is not None else []
    managers = list(config.slack.release_managers)
    return tuple(dict.fromkeys([*approvers, *managers, *config.slack.oncall]))


def has_gate(config: Config, service: str, environment: str) -> bool:
    found = config.services.get(service)
    env = found.environment(environment) if found is not None else None
    return env is not None and env.gate is not None


# --- Promote and Abort -----------------------------------------------------------------------


def _active(session: Session, deployment_id: int) -> dict[str, Any] | gates.Refusal:
    entry = latest(session, [deployment_id]).get(deployment_id)
    if entry is None or not entry["status"].active:
        return gates.Refusal("this release has no Rollout waiting", "")
    if entry["action_event"] == REQUESTED:
        return gates.Refusal(
            f"{entry.get('action')} was already asked of Argo CD", "wait for its answer"
        )
    return entry


def promote(
    session: Session,
    *,
    now: datetime,
    config: Config,
    deployment_id: int,
    person: gates.Person,
    group_members: Mapping[str, frozenset[str]],
    allowed: bool,
    action: str,
) -> Outcome:
    """Promote the Rollout a step (`resume`) or to the end (`promote-full`), if the
    environment's gate rules let this person approve (or, without a gate, `allowed`)."""
    # Locked first (PostgreSQL): a second click meanwhile finds this one's request.
    deployment = session.get(Deployment, deployment_id, with_for_update=True)
    if deployment is None:
        return Outcome(REFUSED, refusals.unknown_deployment().text)
    entry = _active(session, deployment_id)
    if isinstance(entry, gates.Refusal):
        return _refused(session, now, person.user_id, deployment_id, action, entry)
    refusal = _gate_refusal(session, now, config, deployment, person, group_members, allowed)
    if refusal is not None:
        return _refused(session, now, person.user_id, deployment_id, action, refusal)
    return _ask(session, now, deployment_id, entry["rollout"], action, person.user_id, None)


def _gate_refusal(
    session: Session,
    now: datetime,
    config: Config,
    deployment: Deployment,
    person: gates.Person,
    group_members: Mapping[str, frozenset[str]],
    allowed: bool,
) -> gates.Refusal | None:
    service = config.services[deployment.service]
    env = service.environment(deployment.environment)
    if env is None or env.gate is None:
        if allowed:
            return None
        managers = list(config.slack.release_managers)
        return refusals.not_allowed(managers, action="promote", subject=deployment.service)
    policy = env.gate
    requirement = gates.requirement_for(policy, None)
    if requirement.seats > 1:
        # A canary step is passed by one click: a gate that asks for more than one approval
        # cannot be met that way, so the click is refused rather than the quorum skipped.
        return gates.Refusal(
            f"the {deployment.environment} gate needs {requirement.describe(gates.slack_mention)}"
            ", and a canary step is promoted by one person",
            "let the Rollout run its own steps, or Abort it; a gate of one approval lets an "
            "approver promote a step from here",
        )
    return gates.decision_refusal(
        decision="approve",
        gate_status=gates.PENDING,
        requirement=requirement,
        forbid_self_approval=policy.forbid_self_approval,
        person=person,
        people=release_people(session, deployment),
        approvals=[],
        memberships=memberships_from(group_members, {person.user_id}),
        environment=deployment.environment,
        freezes=freezes.active(session, config=config, now=now),
        at=now,
        break_glass_until=freeze_gates.window_until(
            session,
            now=now,
            config=config,
            service=deployment.service,
            environment=deployment.environment,
        ),
        mention=gates.slack_mention,
        production=service.is_production(deployment.environment),
        allow_unknown_people=policy.unknown_people == "allow",
    )


def abort(
    session: Session,
    *,
    now: datetime,
    config: Config,
    deployment_id: int,
    user_id: str,
    allowed: bool,
    reason: str,
) -> Outcome:
    """Abort the Rollout (traffic back to the stable version), if the person may."""
    deployment = session.get(Deployment, deployment_id, with_for_update=True)  # as `promote`
    if deployment is None:
        return Outcome(REFUSED, refusals.unknown_deployment().text)
    entry = _active(session, deployment_id)
    if isinstance(entry, gates.Refusal):
        return _refused(session, now, user_id, deployment_id, rules.ABORT_ACTION, entry)
    if not allowed:
        who = principals(config, deployment.service, deployment.environment)
        refusal = refusals.not_allowed(
            who, action="abort the Rollout of", subject=deployment.service
        )
        return _refused(session, now, user_id, deployment_id, rules.ABORT_ACTION, refusal)
    return _ask(session, now, deployment_id, entry["rollout"], rules.ABORT_ACTION, user_id, reason)


def _ask(
    session: Session,
    now: datetime,
    deployment_id: int,
    rollout: rules.RolloutRef,
    action: str,
    user_id: str,
    reason: str | None,
) -> Outcome:
    details: dict[str, Any] = {"rollout": rollout.to_payload(), "action": action}
    if reason is not None:
        details["reason"] = reason[:1000]
    audit.append(
        session,
        at=now,
        actor=user_id,
        action=REQUESTED,
        subject=_subject(deployment_id),
        details=details,
    )
    message = rules.RolloutAction(deployment_id, rollout, action, user_id)
    outbox.enqueue(session, message, now=now)
    outbox.enqueue(session, ReleaseMessageUpdate(deployment_id), now=now)
    told = f"Argo CD is asked to {action} the Rollout {rollout.name} ({rollout.app})"
    return Outcome(APPROVED, told, deployment_id=deployment_id)


def _refused(
    session: Session,
    now: datetime,
    user_id: str,
    deployment_id: int,
    action: str,
    refusal: gates.Refusal,
) -> Outcome:
    """The refusal, audited (nothing else changes)."""
    audit.append(
        session,
        at=now,
        actor=user_id,
        action=REFUSED_ACTION,
        subject=_subject(deployment_id),
        details={"action": action, "reason": refusal.text},
    )
    return Outcome(REFUSED, refusal.text, deployment_id=deployment_id)
