"""Gates and the clock: remind the approvers (once, or every `remind_every`), escalate to a
second group with a direct message to each approver who has not voted, expire what nobody
decided in time.

The scheduler sweeps every 30 seconds. Each step locks the gate first (its row version is
bumped), so a sweep racing a click ends in one consistent outcome. A reminder is due while
`remind_at` is past and no reminder went out since (`reminded_at`); a repeating one then
moves `remind_at` on. An escalation happens once per gate, recorded as `gate.escalated` in
the audit trail.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from sqlmodel import Session, select

from bot.config import Config, GatePolicy
from bot.config.types import format_duration
from bot.domain import gates as rules
from bot.domain import states
from bot.domain.gates.timing import GateTimes, reminder_due
from bot.domain.ingest import revision_label
from bot.domain.messages import TemplateLine
from bot.services import freeze_gates, gate_rows, outbox
from bot.services.gate_close import close_gate, lock_gate
from bot.services.gate_reads import environment_at
from bot.store import statements as sql
from bot.store.tables import Deployment, Gate, row_id

ESCALATED = "gate.escalated"


def sweep(
    session: Session,
    *,
    now: datetime,
    config: Config,
    group_members: Mapping[str, frozenset[str]] | None = None,
) -> int:
    """Remind, escalate or expire each pending gate that is due; how many steps were taken.

    `group_members` resolves the user groups among the approvers of gates due for
    escalation (`escalation_principals`); None leaves escalations for a later sweep (the
    directory could not be read). Gates held only by a freeze that has ended are approved
    first (`freeze_gates.release_held`).
    """
    acted = freeze_gates.release_held(session, now=now, config=config)
    for gate in session.exec(select(Gate).where(Gate.status == rules.PENDING)).all():
        deployment = session.get(Deployment, gate.deployment_id)
        if deployment is None or gate.expires_at is None:
            continue
        if now >= gate.expires_at:
            lock_gate(session, gate)
            close_gate(
                session,
                now=now,
                gate=gate,
                deployment=deployment,
                status=rules.EXPIRED,
                actor="releasebot",
                reason="nobody decided in time",
                target_state=states.EXPIRED,
            )
            acted += 1
            continue
        policy = _policy(config, deployment)
        if reminder_due(gate.remind_at, gate.reminded_at, now):
            _remind(session, now=now, gate=gate, deployment=deployment, policy=policy)
            acted += 1
        if group_members is not None and _escalation_due(session, gate, policy, now):
            assert policy is not None
            _escalate(
                session,
                now=now,
                config=config,
                gate=gate,
                deployment=deployment,
                policy=policy,
                group_members=group_members,
            )
            acted += 1
    return acted


def escalation_principals(session: Session, *, now: datetime, config: Config) -> frozenset[str]:
    """The approvers (users and groups) of every pending gate due for escalation now."""
    found: set[str] = set()
    for gate in session.exec(select(Gate).where(Gate.status == rules.PENDING)).all():
        deployment = session.get(Deployment, gate.deployment_id)
        if deployment is None or gate.expires_at is None or now >= gate.expires_at:
            continue
        policy = _policy(config, deployment)
        if _escalation_due(session, gate, policy, now):
            assert policy is not None
            found.update(_approvers(gate, policy))
    return frozenset(found)


def _policy(config: Config, deployment: Deployment) -> GatePolicy | None:
    env = environment_at(config, deployment.service, deployment.environment)
    return env.gate if env is not None else None


def _approvers(gate: Gate, policy: GatePolicy) -> tuple[str, ...]:
    """Who the gate waits for: its current requirement's principals, else the policy's."""
    if gate.requirement:
        return rules.Requirement.from_dict(gate.requirement).principals()
    return tuple(dict.fromkeys(p for rule in policy.require for p in rule.approvers))


def _remind(
    session: Session,
    *,
    now: datetime,
    gate: Gate,
    deployment: Deployment,
    policy: GatePolicy | None,
) -> None:
    """A thread line mentioning the approvers; a repeating reminder is scheduled again."""
    assert gate.remind_at is not None and gate.expires_at is not None
    lock_gate(session, gate)
    every = policy.remind_every if policy is not None else None
    following = gate_rows.reminder_sent(session, gate, now=now, every=every)
    principals = (
        rules.Requirement.from_dict(gate.requirement).principals() if gate.requirement else ()
    )
    reminder = TemplateLine(
        row_id(deployment),
        "gate_reminder.txt.j2",
        {
            "approvers": list(principals),
            "expires_at": gate.expires_at.isoformat(),
            "progress": gate.progress,
        },
    )
    outbox.enqueue(session, reminder, now=now)
    gate_rows.audit_reminder(
        session,
        now=now,
        action="gate.reminded",
        subject=f"gate:{gate.id}",
        details={"approvers": list(principals)},
        following=following,
    )


def _escalation_due(session: Session, gate: Gate, policy: GatePolicy | None, now: datetime) -> bool:
    if policy is None or policy.escalate_after is None:
        return False
    escalate_at = GateTimes.from_gate(policy, gate.created_at).escalate_at
    if escalate_at is None or now < escalate_at:
        return False
    return not gate_rows.escalated(session, subject=f"gate:{gate.id}", action=ESCALATED)


def _escalate(
    session: Session,
    *,
    now: datetime,
    config: Config,
    gate: Gate,
    deployment: Deployment,
    policy: GatePolicy,
    group_members: Mapping[str, frozenset[str]],
) -> None:
    """Mention the escalation group in the thread, and ask each approver who has not voted
    in a direct message."""
    assert gate.id is not None and gate.expires_at is not None
    lock_gate(session, gate)
    escalate_to = list(policy.escalate_to or config.slack.oncall)
    voted = {user for user, _ in session.connection().execute(sql.GATE_VOTES, {"gate_id": gate.id})}
    asked = sorted(people(_approvers(gate, policy), group_members) - voted)
    waited = format_duration(now - gate.created_at)
    fields = {
        "escalate_to": escalate_to,
        "waited": waited,
        "expires_at": gate.expires_at.isoformat(),
        "progress": gate.progress,
    }
    channel = config.channel_for(deployment.service)
    asking = (
        f":rotating_light: {deployment.service} "
        f"{revision_label(deployment.sha, deployment.version)} → "
        f"{deployment.environment} has waited {waited} for your approval in {channel}. "
        f"It expires at {gate.expires_at:%Y-%m-%d %H:%M} UTC."
    )
    gate_rows.queue_escalation(
        session,
        now=now,
        line=(row_id(deployment), "gate_escalation.txt.j2", fields),
        mentioning="escalate_to",
        on_call=not policy.escalate_to,
        asked=asked,
        asking=asking,
        action=ESCALATED,
        subject=f"gate:{gate.id}",
        details={"escalate_to": escalate_to},
    )


def people(principals: Iterable[str], group_members: Mapping[str, frozenset[str]]) -> set[str]:
    """The users among `principals`, with the members of its groups."""
    found: set[str] = set()
    for principal in principals:
        if principal.startswith("S"):
            found.update(group_members.get(principal, frozenset()))
        else:
            found.add(principal)
    return found
