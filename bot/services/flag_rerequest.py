"""Re-request: a flag step that was rejected or expired asked for again on the same
deployment (the Re-request button beside the closed step), as a fresh step to the same
percentage with a new expiry, waiting for its approvals from the start.

Who may: as for a deploy gate's Re-request, the release managers, the service's owners and
the release's approvers (`flags.rerequest_principals`, checked by the caller). As on a deploy
gate, asking again is not held by a freeze or a lock: the fresh step opens, and its approvals
are refused while they hold. The button carries the closed step's id: a second click, or a
click after the flag moved on, is refused, and so is a Release click from before (its button
carries no id: `flag_gates.stale_click`). The closed step is locked by its row version first,
so two racing clicks open one step.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from bot.config import Config
from bot.domain import flags as rules
from bot.domain import gates
from bot.services import audit, flag_checks, flag_gates
from bot.services.flags import (
    history,
    open_step,
    refused,
    rerequest_principals,
    target,
)
from bot.services.gate_rerequest import REREQUESTED
from bot.services.gates import Outcome
from bot.store.tables import FlagStep, row_id


def rerequest_step(
    session: Session,
    *,
    now: datetime,
    config: Config,
    deployment_id: int,
    flag: str,
    step_id: int,
    actor: str,
    allowed: bool,
) -> Outcome:
    """Open a fresh step for the closed step `step_id` of the flag, or refuse with the reason
    (audited either way). `allowed`: the person may re-request (checked by the caller)."""
    found = target(session, config, deployment_id, flag)
    if isinstance(found, gates.Refusal):
        return refused(session, now, actor, f"deployment:{deployment_id}", flag, found)
    deployment, service, release, settings = found
    subject = f"flag_step:{step_id}"
    if not allowed:
        principals = rerequest_principals(config, deployment.service)
        refusal = rules.rerequest_not_allowed(flag, principals, gates.slack_mention)
        return refused(session, now, actor, subject, flag, refusal)
    steps = history(session, deployment.service, deployment.environment, flag)
    closed = next((s for s in steps if s.id == step_id and s.deployment_id == deployment_id), None)
    why = _refusal(flag, steps, closed)
    if why is not None:
        percent = closed.percent if closed is not None else None
        return refused(session, now, actor, subject, flag, why, percent)
    assert closed is not None
    flag_checks.lock_step(session, closed)
    policy = release.policy()
    requirement = gates.requirement_for(policy, None)
    fresh = open_step(
        session, now, deployment, settings, len(steps) + 1, closed.percent, requirement
    )
    fresh.requested_by = actor
    flag_gates.schedule(fresh, policy)
    session.add(fresh)
    session.flush()
    audit.append(
        session,
        at=now,
        actor=actor,
        action="flag.step_rerequested",
        subject=subject,
        details={
            "flag": flag,
            "percent": closed.percent,
            "was": closed.status,
            "step": row_id(fresh),
            "deployment_id": deployment_id,
        },
    )
    assert fresh.expires_at is not None
    until = f"{fresh.expires_at:%Y-%m-%d %H:%M} UTC"
    what = f"the step of {flag} to {closed.percent}%"
    flag_checks.tell(
        session,
        now=now,
        deployment_id=deployment_id,
        icon=":repeat:",
        text=f"{what} was {closed.status} and is asked for again: it waits for approval "
        f"until {until}. Asked",
        by=actor,
        mention=requirement.principals(),
    )
    return Outcome(
        REREQUESTED,
        f"asked again: {what} waits for approval until {until}",
        deployment_id=deployment_id,
    )


def _refusal(flag: str, steps: list[FlagStep], closed: FlagStep | None) -> gates.Refusal | None:
    """Why the step the button carries cannot be asked for again, or None."""
    if closed is None:
        return rules.stale_button(flag)
    if closed is not steps[-1]:
        return rules.already_asked_again(flag, closed.percent)
    if closed.kind != rules.ROLLOUT or closed.status not in rules.CLOSED_UNDECIDED:
        return rules.not_rerequestable(flag, closed.percent, closed.status)
    return None
