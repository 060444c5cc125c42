"""A flag step's gate and the clock: when it expires, reminds and escalates (the deploy
gate's timing rules, `bot.domain.gates.timing`, over the `release:` block's
`expires_after`, `remind_after`, `remind_every` and `escalate_after`), the sweep that
reminds, escalates and expires, and the close of a step rejected or expired.

A closed step changes nothing on the flag platform: it is marked, audited
(`flag.step_rejected`, `flag.step_expired`, with the subject `flag_step:<id>`), told in the
release thread, and the release message is edited to show it. The scheduler's
`gates.sweep` job sweeps flag steps with the deploy gates; each step is locked by its row
version first, so a sweep racing a click ends in one consistent outcome.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from sqlmodel import Session, col, select

from bot.config import Config, GatePolicy
from bot.config.flags import ReleaseFlags
from bot.config.types import format_duration
from bot.domain import flags as rules
from bot.domain import gates
from bot.domain.gates.timing import GateTimes, reminder_due
from bot.domain.messages import TemplateLine
from bot.services import audit, flag_checks, gate_rows, gate_sweep, outbox
from bot.store.tables import FlagApproval, FlagStep, row_id

NOBODY_DECIDED = "nobody decided in time"
ESCALATED = "flag.escalated"


def schedule(step: FlagStep, policy: GatePolicy) -> None:
    """A newly opened step's expiry and first reminder, as a deploy gate's would be."""
    times = GateTimes.from_gate(policy, step.created_at)
    step.expires_at = times.expires_at
    step.remind_at = times.remind_at


def expired(step: FlagStep, now: datetime) -> bool:
    """The pending step is past its time (the sweep may not have closed it yet)."""
    return step.status == rules.PENDING and step.expires_at is not None and now >= step.expires_at


def lock_open(session: Session, *, now: datetime, step: FlagStep) -> gates.Refusal | None:
    """Lock the pending `step` for a decision; a step past its time (the sweep has not closed
    it yet) is expired here instead, and why it can no longer be decided is answered."""
    flag_checks.lock_step(session, step)
    if not expired(step, now):
        return None
    expire(session, now=now, step=step)
    return closed_refusal(step)


def closed_refusal(step: FlagStep) -> gates.Refusal:
    """Why the rejected or expired `step` can no longer be approved, and what to do."""
    return rules.step_closed(
        step.flag,
        step.percent,
        step.status,
        by=step.decided_by,
        reason=step.reason,
        expired_at=step.expires_at,
        mention=gates.slack_mention,
    )


def stale_click(
    flag: str,
    steps: Sequence[FlagStep],
    pending: FlagStep | None,
    step_id: int | None,
    *,
    rerequested: bool,
) -> gates.Refusal | None:
    """Why a Release or Reject click is from an older state of the message, or None. A step
    asked for again (`rerequested`) is decided only by the buttons showing it, which carry
    its id; a button from before (no id, or another step's) is refused, so a late click on
    the closed step's button never counts for the fresh one."""
    if step_id is None:
        if pending is not None and rerequested:
            return rules.asked_again(flag, pending.percent)
        return None
    if pending is not None:
        if pending.id == step_id:
            return None
        return rules.asked_again(flag, pending.percent) if rerequested else rules.stale_button(flag)
    clicked = next((s for s in steps if s.id == step_id), None)
    if clicked is not None and clicked.status in rules.CLOSED_UNDECIDED:
        return closed_refusal(clicked)
    return rules.stale_button(flag)


def not_offered(steps: Sequence[FlagStep], flag: str, state: rules.FlagState) -> gates.Refusal:
    """Why no step of the flag is offered now: the last one's gate closed, or the flag's
    state says why (`rules.not_offered`)."""
    if steps and steps[-1].status in rules.CLOSED_UNDECIDED:
        return closed_refusal(steps[-1])
    return rules.not_offered(flag, state)


def close(
    session: Session, *, now: datetime, step: FlagStep, status: str, actor: str, reason: str
) -> None:
    """Close the locked, pending `step` as rejected or expired: audited, told in the release
    thread, the message edited. The flag is not changed."""
    gate_rows.record_decision(session, step, now=now, status=status, actor=actor, reason=reason)
    audit.append(
        session,
        at=now,
        actor=actor,
        action=f"flag.step_{status}",
        subject=f"flag_step:{row_id(step)}",
        details={
            "flag": step.flag,
            "percent": step.percent,
            "deployment_id": step.deployment_id,
            "reason": reason,
            "requirement": step.requirement,
        },
    )
    what = f"The step of {step.flag} to {step.percent}%"
    if status == rules.REJECTED:
        text = f"{what} was rejected ({reason}); the flag is unchanged. Decided"
        icon, by = ":no_entry:", actor
    else:
        text = f"{what} expired: {reason}; the flag is unchanged"
        icon, by = ":alarm_clock:", None
    flag_checks.tell(
        session, now=now, deployment_id=step.deployment_id, icon=icon, text=text, by=by
    )


def expire(session: Session, *, now: datetime, step: FlagStep) -> None:
    """Close the locked `step` as expired."""
    close(
        session, now=now, step=step, status=rules.EXPIRED, actor="releasebot", reason=NOBODY_DECIDED
    )


def sweep(
    session: Session,
    *,
    now: datetime,
    config: Config,
    group_members: Mapping[str, frozenset[str]] | None = None,
) -> int:
    """Remind, escalate or expire each pending flag step that is due; how many steps were
    taken. `group_members` resolves the user groups among the approvers of steps due for
    escalation (`escalation_principals`); None leaves escalations for a later sweep."""
    acted = 0
    for step in _pending(session):
        assert step.expires_at is not None
        if now >= step.expires_at:
            flag_checks.lock_step(session, step)
            expire(session, now=now, step=step)
            acted += 1
            continue
        if reminder_due(step.remind_at, step.reminded_at, now):
            _remind(session, now=now, config=config, step=step)
            acted += 1
        release = _escalating(session, config, step, now)
        if group_members is not None and release is not None:
            _escalate(
                session,
                now=now,
                config=config,
                step=step,
                release=release,
                group_members=group_members,
            )
            acted += 1
    return acted


def escalation_principals(session: Session, *, now: datetime, config: Config) -> frozenset[str]:
    """The approvers (users and groups) of every pending flag step due for escalation."""
    found: set[str] = set()
    for step in _pending(session):
        if not expired(step, now) and _escalating(session, config, step, now) is not None:
            found.update(_approvers(step))
    return frozenset(found)


def _pending(session: Session) -> Sequence[FlagStep]:
    return session.exec(
        select(FlagStep)
        .where(FlagStep.status == rules.PENDING)
        .where(col(FlagStep.expires_at).is_not(None))
        .order_by(col(FlagStep.id))
    ).all()


def _approvers(step: FlagStep) -> list[str]:
    return list(gates.Requirement.from_dict(step.requirement).principals())


def _escalating(
    session: Session, config: Config, step: FlagStep, now: datetime
) -> ReleaseFlags | None:
    """The release settings of a step due for escalation now (its `escalate_after` has
    passed since it opened and it was not escalated yet), else None."""
    service = config.services.get(step.service)
    release = service.release if service is not None else None
    if release is None or release.escalate_after is None:
        return None
    if now < step.created_at + release.escalate_after:
        return None
    done = gate_rows.escalated(session, subject=f"flag_step:{row_id(step)}", action=ESCALATED)
    return None if done else release


def _escalate(
    session: Session,
    *,
    now: datetime,
    config: Config,
    step: FlagStep,
    release: ReleaseFlags,
    group_members: Mapping[str, frozenset[str]],
) -> None:
    """Mention the escalation group in the thread (whoever is on call when the line is
    sent, without `escalate_to`), and ask each approver who has not voted in a direct
    message."""
    assert step.expires_at is not None
    flag_checks.lock_step(session, step)
    escalate_to = list(release.escalate_to or config.slack.oncall)
    voted = set(
        session.exec(select(FlagApproval.user_id).where(FlagApproval.step_id == row_id(step)))
    )
    asked = sorted(gate_sweep.people(_approvers(step), group_members) - voted)
    waited = format_duration(now - step.created_at)
    what = f"the step of {step.flag} to {step.percent}%"
    expires = f"It expires at {step.expires_at:%Y-%m-%d %H:%M} UTC."
    text = (
        f"{what} has waited {waited} for approval; the approvers who have not voted were "
        f"sent a direct message. {expires}"
    )
    fields = {"icon": ":rotating_light:", "text": text, "by": None, "mention": escalate_to}
    channel = config.channel_for(step.service)
    asking = (
        f":rotating_light: {what} ({step.service} in {step.environment}) has waited {waited} "
        f"for your approval in {channel}. {expires}"
    )
    gate_rows.queue_escalation(
        session,
        now=now,
        line=(step.deployment_id, flag_checks.TEMPLATE, fields),
        mentioning="mention",
        on_call=not release.escalate_to,
        asked=asked,
        asking=asking,
        action=ESCALATED,
        subject=f"flag_step:{row_id(step)}",
        details={"flag": step.flag, "percent": step.percent, "escalate_to": escalate_to},
    )


def _remind(session: Session, *, now: datetime, config: Config, step: FlagStep) -> None:
    """A thread line mentioning the step's approvers; a repeating reminder is scheduled
    again (`remind_every`), never at or after expiry."""
    assert step.remind_at is not None and step.expires_at is not None
    flag_checks.lock_step(session, step)
    service = config.services.get(step.service)
    every = service.release.remind_every if service and service.release else None
    following = gate_rows.reminder_sent(session, step, now=now, every=every)
    approvers = _approvers(step)
    waited = format_duration(now - step.created_at)
    text = (
        f"the step of {step.flag} to {step.percent}% has waited {waited} for approval. "
        f"It expires at {step.expires_at:%Y-%m-%d %H:%M} UTC."
    )
    fields = {"icon": ":bell:", "text": text, "by": None, "mention": approvers}
    line = TemplateLine(step.deployment_id, flag_checks.TEMPLATE, fields)
    outbox.enqueue(session, line, now=now)
    gate_rows.audit_reminder(
        session,
        now=now,
        action="flag.reminded",
        subject=f"flag_step:{row_id(step)}",
        details={"flag": step.flag, "percent": step.percent, "approvers": approvers},
        following=following,
    )
