"""Skip verification in an emergency: from the release message's button and its reason
modal. Only an approver of the deployment's environment may (`skipping.approvers`), with a
reason; a refusal is audited and changes nothing."""

from __future__ import annotations

from sqlmodel import Session

from bot.domain.errors import DeliveryFailed
from bot.domain.gates import refusal as refusals
from bot.logs import logged_ids
from bot.services import gates, releases, skipping
from bot.usecases.context import Context
from bot.usecases.refusals import audit_refusal, unknown_person


@logged_ids("deployment_id")
async def skip_verification(
    ctx: Context, *, deployment_id: int, user_id: str, reason: str
) -> gates.Outcome:
    """Cancel the deployment's pending checks and count it as verified (see
    `bot.services.skipping`), or say why not."""
    scope = await ctx.read(lambda s: releases.scope(s, deployment_id))
    if scope is None:
        return gates.Outcome(gates.REFUSED, refusals.unknown_deployment().text)
    service, environment = scope
    try:
        memberships = await ctx.groups_of(
            user_id, skipping.approvers(ctx.config, service, environment)
        )
    except DeliveryFailed as failure:
        why = unknown_person(failure)
        await audit_refusal(
            ctx,
            user_id=user_id,
            action="release.action_refused",
            subject=f"deployment:{deployment_id}",
            details={"action": "skip_verification", "reason": why},
        )
        return gates.Outcome(gates.REFUSED, why, deployment_id=deployment_id)
    now = ctx.clock.now()

    def run(session: Session) -> gates.Outcome:
        return skipping.skip(
            session,
            now=now,
            config=ctx.config,
            deployment_id=deployment_id,
            user_id=user_id,
            memberships=memberships,
            reason=reason,
        )

    outcome = await ctx.write(run)
    ctx.wake()
    return outcome
