"""Freeze and unfreeze an environment from Slack: release managers only, stored and audited
(refusals too)."""

from __future__ import annotations

from datetime import timedelta

from bot.domain.errors import DeliveryFailed
from bot.services import freezes
from bot.services.freezes import ALL, MAX_DURATION
from bot.usecases.context import Context
from bot.usecases.refusals import audit_refusal, unknown_person

__all__ = ["ALL", "MAX_DURATION", "freeze", "unfreeze"]


async def freeze(
    ctx: Context, *, user_id: str, environment: str, duration: timedelta, reason: str
) -> freezes.FreezeOutcome:
    """`/release freeze <env|all> <duration> <reason>`."""
    memberships = await _memberships(ctx, user_id=user_id, environment=environment, what="freeze")
    if isinstance(memberships, freezes.FreezeOutcome):
        return memberships
    now = ctx.clock.now()
    return await ctx.write(
        lambda s: freezes.freeze(
            s,
            now=now,
            config=ctx.config,
            environment=environment,
            duration=duration,
            reason=reason,
            actor=user_id,
            memberships=memberships,
        )
    )


async def unfreeze(ctx: Context, *, user_id: str, environment: str) -> freezes.FreezeOutcome:
    """`/release unfreeze <env|all>`: lift the freezes started from Slack there."""
    memberships = await _memberships(ctx, user_id=user_id, environment=environment, what="unfreeze")
    if isinstance(memberships, freezes.FreezeOutcome):
        return memberships
    now = ctx.clock.now()
    return await ctx.write(
        lambda s: freezes.unfreeze(
            s,
            now=now,
            config=ctx.config,
            environment=environment,
            actor=user_id,
            memberships=memberships,
        )
    )


async def _memberships(
    ctx: Context, *, user_id: str, environment: str, what: str
) -> frozenset[str] | freezes.FreezeOutcome:
    """The person's user groups among the release managers; or, when Slack's directory
    cannot vouch for them, the refusal (audited as `freeze.refused`)."""
    try:
        return await ctx.groups_of(user_id, ctx.config.slack.release_managers)
    except DeliveryFailed as failure:
        reason = unknown_person(failure)
        await audit_refusal(
            ctx,
            user_id=user_id,
            action="freeze.refused",
            subject=f"environment:{environment}",
            details={"command": what, "reason": reason},
        )
        return freezes.FreezeOutcome(freezes.REFUSED, reason, environment)
