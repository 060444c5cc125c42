"""Break-glass: an emergency path through a gate, asked for by one person with a reason
and confirmed by a second (a break-glass approver). Loud on purpose: both steps are
announced in the channel itself, and the confirmation is a change event for on-call.

A confirmation approves its gate and opens a window until `valid_until` (`valid_for` after
it): while it is open, freezes let the same service's changes into the same environment
through (`freeze_gates.window_until`); after it, they are held or refused again.

Break-glass stays open while the people behind the release are unknown (the way through a
gate that refuses approvals for that reason); its confirmation is then recorded as taken
blind, like an approval under `unknown_people: allow`: `people_unknown: true` and why in
the audit record, and the note in the confirmer's answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlmodel import Session

from bot.config import BreakGlass, Config
from bot.domain import gates as rules
from bot.domain import states
from bot.domain.gates import refusal as refusals
from bot.domain.gates.refusal import Refusal
from bot.domain.messages import Announcement, PagerChange
from bot.services import audit, markers, outbox
from bot.services.gate_close import close_gate, lock_gate, refresh_message
from bot.services.gate_reads import environment_of, memberships_from, release_people
from bot.services.gates import APPROVED, RECORDED, REFUSED, Outcome
from bot.store.tables import Deployment, Gate, row_id

TEMPLATE = "break_glass.txt.j2"


def request(
    session: Session, *, now: datetime, config: Config, gate_id: int, user_id: str, reason: str
) -> Outcome:
    """Someone asks to pass a gate in an emergency; a second person has to confirm."""
    gate = session.get(Gate, gate_id)
    if gate is None:
        return Outcome(REFUSED, refusals.unknown_gate().text, gate_id)
    lock_gate(session, gate)
    refusal = _request_refusal(config.break_glass, gate, reason)
    if refusal is not None:
        return _refuse(session, now=now, gate=gate, user_id=user_id, refusal=refusal)
    assert config.break_glass is not None
    gate.break_glass = {
        "requested_by": user_id,
        "reason": reason.strip()[:2000],
        "requested_at": now.isoformat(),
    }
    session.add(gate)
    audit.append(
        session,
        at=now,
        actor=user_id,
        action="gate.break_glass_requested",
        subject=f"gate:{gate_id}",
        details={"reason": reason.strip()},
    )
    deployment = session.get(Deployment, gate.deployment_id)
    assert deployment is not None
    fields = {
        "stage": "requested",
        "by": user_id,
        "reason": reason.strip()[:2000],
        "approvers": list(config.break_glass.approvers),
    }
    _announce(session, now=now, deployment=deployment, fields=fields)
    refresh_message(session, now=now, deployment=deployment)
    who = " or ".join(rules.slack_mention(a) for a in config.break_glass.approvers)
    return Outcome(
        RECORDED, f"break-glass requested: someone from {who} must confirm", gate_id, deployment.id
    )


def confirm(
    session: Session,
    *,
    now: datetime,
    config: Config,
    gate_id: int,
    user_id: str,
    group_members: Mapping[str, frozenset[str]],
    person: rules.Person | None = None,
) -> Outcome:
    """A break-glass approver confirms someone else's request: the gate is approved.

    Nobody who touched the change (`person`: the confirmer's e-mail and identities) may
    confirm, unless the environment's gate says `forbid_self_approval: false`."""
    gate = session.get(Gate, gate_id)
    if gate is None:
        return Outcome(REFUSED, refusals.unknown_gate().text, gate_id)
    lock_gate(session, gate)
    asked = gate.break_glass or {}
    refusal = _confirm_refusal(
        config.break_glass, gate, asked, user_id, memberships_from(group_members, {user_id}), now
    )
    deployment = session.get(Deployment, gate.deployment_id)
    assert deployment is not None
    people = release_people(session, deployment)
    if refusal is None:
        confirmer = person or rules.Person.from_config(user_id, None, config.identities)
        refusal = _touched_refusal(config, deployment, confirmer, people)
    if refusal is not None:
        return _refuse(session, now=now, gate=gate, user_id=user_id, refusal=refusal)
    assert config.break_glass is not None
    valid_until = rules.break_glass_valid_until(config.break_glass, now)
    gate.break_glass = {
        **asked,
        "confirmed_by": user_id,
        "confirmed_at": now.isoformat(),
        "valid_until": valid_until.isoformat(),
    }
    blind = _blind(config, deployment, people)
    audit.append(
        session,
        at=now,
        actor=user_id,
        action="gate.break_glass_confirmed",
        subject=f"gate:{gate_id}",
        details={
            **gate.break_glass,
            **({"people_unknown": True, "blind": blind} if blind else {}),
        },
    )
    close_gate(
        session,
        now=now,
        gate=gate,
        deployment=deployment,
        status=rules.APPROVED,
        actor=user_id,
        reason=f"break-glass: asked by {asked['requested_by']}, confirmed by {user_id}: "
        f"{asked['reason']}",
        target_state=states.APPROVED,
    )
    _announce_confirmed(
        session, now=now, deployment=deployment, asked=asked, user_id=user_id, until=valid_until
    )
    markers.break_glass(
        session, now=now, config=config, deployment=deployment, reason=str(asked["reason"])
    )
    told = (
        "break-glass confirmed: the release goes ahead; the freeze lets "
        f"{deployment.service} into {deployment.environment} until {rules.moment(valid_until)}"
    )
    return Outcome(APPROVED, told + (f"; {blind}" if blind else ""), gate_id, deployment.id)


def _request_refusal(policy: BreakGlass | None, gate: Gate, reason: str) -> Refusal | None:
    if policy is None:
        return refusals.BREAK_GLASS_UNCONFIGURED
    if gate.status != rules.PENDING:
        return refusals.break_glass_on_closed_gate(gate.status)
    if len(reason.strip()) < rules.MIN_BREAK_GLASS_REASON:
        return refusals.break_glass_reason_too_short(rules.MIN_BREAK_GLASS_REASON)
    return None


def _confirm_refusal(
    policy: BreakGlass | None,
    gate: Gate,
    asked: Mapping[str, Any],
    user_id: str,
    memberships: Mapping[str, frozenset[str]],
    now: datetime,
) -> Refusal | None:
    if gate.status != rules.PENDING:
        return refusals.break_glass_on_closed_gate(gate.status)
    if not asked.get("requested_by"):
        return refusals.break_glass_not_asked()
    if asked.get("confirmed_by"):
        return refusals.break_glass_confirmed()
    request = rules.BreakGlassRequest(
        requested_by=str(asked["requested_by"]),
        reason=str(asked["reason"]),
        requested_at=datetime.fromisoformat(str(asked["requested_at"])),
    )
    return rules.break_glass_check(
        policy, request, user_id, memberships, now, mention=rules.slack_mention
    )


def _touched_refusal(
    config: Config, deployment: Deployment, person: rules.Person, people: rules.ReleasePeople
) -> Refusal | None:
    """Why this person may not confirm break-glass on a change they touched, or None."""
    if not _ban_applies(config, deployment):
        return None
    conflict = rules.self_approval_conflict(person, people)
    if conflict is None:
        return None
    approvers = config.break_glass.approvers if config.break_glass else ()
    return refusals.break_glass_touched(conflict, approvers, rules.slack_mention)


def _ban_applies(config: Config, deployment: Deployment) -> bool:
    """Whether nobody who touched the change may pass its gate (`forbid_self_approval`; on
    unless the environment's gate turns it off)."""
    env = environment_of(config, deployment)
    return env is None or env.gate is None or env.gate.forbid_self_approval


def _blind(config: Config, deployment: Deployment, people: rules.ReleasePeople) -> str | None:
    """What the confirmation says of itself when nobody can tell who touched the change
    ("taken blind, as the people behind this change are unknown: ..."), or None."""
    return rules.blind_note(people) if _ban_applies(config, deployment) else None


def _refuse(
    session: Session, *, now: datetime, gate: Gate, user_id: str, refusal: Refusal
) -> Outcome:
    audit.append(
        session,
        at=now,
        actor=user_id,
        action="gate.break_glass_refused",
        subject=f"gate:{gate.id}",
        details={"reason": refusal.text},
    )
    assert gate.id is not None
    return Outcome(REFUSED, refusal.text, gate.id, gate.deployment_id)


def _announce_confirmed(
    session: Session,
    *,
    now: datetime,
    deployment: Deployment,
    asked: Mapping[str, Any],
    user_id: str,
    until: datetime,
) -> None:
    """The channel line, and a change event on the service's on-call timeline."""
    fields = {
        "stage": "confirmed",
        "by": asked["requested_by"],
        "confirmed_by": user_id,
        "reason": asked["reason"],
        "valid_until": until.isoformat(),
    }
    _announce(session, now=now, deployment=deployment, fields=fields)
    change = PagerChange(
        row_id(deployment),
        "break-glass",
        f"Break-glass on {deployment.service} {deployment.environment}: {asked['reason']}"[:1000],
    )
    outbox.enqueue(session, change, now=now)


def _announce(
    session: Session, *, now: datetime, deployment: Deployment, fields: dict[str, Any]
) -> None:
    """A line for the whole channel, not only the thread (break-glass is loud on purpose)."""
    outbox.enqueue(session, Announcement(row_id(deployment), TEMPLATE, fields), now=now)
