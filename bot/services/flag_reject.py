"""Rejecting a flag step that waits for approvals (the Reject button beside "Release <flag>
N%"): decided by exactly the rules a deploy gate's rejection is (`decision_refusal` with
`decision="reject"`: only someone who may approve the step may reject it, once, and, as on a
deploy gate, a rejection is allowed during a freeze and on one's own change, since stopping
a release is always safe). A reason is required. The step is closed as rejected and the flag
is left as it was (`flag_gates.close`).
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from bot.config import Config
from bot.domain import flags as rules
from bot.domain import gates
from bot.domain.gates import refusal as refusals
from bot.services import flag_gates
from bot.services.flags import (
    StepClick,
    approvals_of,
    decision_refusal,
    history,
    records,
    refused,
    target,
)
from bot.services.gate_reads import memberships_from
from bot.services.gates import REJECTED, Outcome
from bot.store.tables import row_id


def reject_step(
    session: Session,
    *,
    now: datetime,
    config: Config,
    click: StepClick,
    reason: str,
    step_id: int | None = None,
) -> Outcome:
    """One person's rejection of the flag's pending step, with their reason. A click from
    an older state of the message (another step's id, or none on a step asked for again)
    is refused, as a Release click is (`flag_gates.stale_click`): a late Reject of a closed
    step never closes the fresh one."""
    deployment_id, flag, person = click.deployment_id, click.flag, click.person
    subject = f"deployment:{deployment_id}"
    reason = reason.strip()
    if not reason:
        return refused(session, now, person.user_id, subject, flag, refusals.REASON_MISSING)
    found = target(session, config, deployment_id, flag)
    if isinstance(found, gates.Refusal):
        return refused(session, now, person.user_id, subject, flag, found)
    deployment, service, _, settings = found
    steps = history(session, deployment.service, deployment.environment, flag)
    state = rules.flag_state(settings.steps, records(steps), deployment_id=row_id(deployment))
    if not state.pending:
        last = steps[-1] if steps else None
        nothing = (
            flag_gates.closed_refusal(last)
            if last is not None and last.status in rules.CLOSED_UNDECIDED
            else rules.nothing_to_reject(flag)
        )
        return refused(session, now, person.user_id, subject, flag, nothing)
    step = steps[-1]
    subject = f"flag_step:{row_id(step)}"
    again = rules.rerequested(records(steps))
    late = flag_gates.stale_click(flag, steps, step, step_id, rerequested=again)
    if late is None:
        late = flag_gates.lock_open(session, now=now, step=step)
    if late is not None:
        return refused(session, now, person.user_id, subject, flag, late, step.percent)
    approvers = approvals_of(session, step)
    refusal = decision_refusal(
        session,
        now=now,
        config=config,
        decision="reject",
        deployment=deployment,
        service=service,
        requirement=gates.Requirement.from_dict(step.requirement),
        person=person,
        approvers=approvers,
        memberships=memberships_from(click.group_members, {*approvers, person.user_id}),
    )
    if refusal is not None:
        return refused(session, now, person.user_id, subject, flag, refusal, step.percent)
    flag_gates.close(
        session, now=now, step=step, status=rules.REJECTED, actor=person.user_id, reason=reason
    )
    told = f"rejected: {flag} stays at {state.serving}%; the step to {step.percent}% is closed"
    return Outcome(REJECTED, told, deployment_id=deployment_id)
