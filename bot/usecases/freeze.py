"""Freeze and unfreeze an environment from Slack: release managers only, stored and audited
(refusals too)."""

from __future__ import annotations

from datetime import timedelta

from bot.services import freezes
from bot.services.freezes import ALL, MAX_DURATION
from bot.usecases.context import Context

__all__ = ["ALL", "MAX_DURATION", "freeze", "unfreeze"]


async def freeze(
    ctx: Context, *, user_id: str, environment: str, duration: timedelta, reason: str
) -> freezes.FreezeOutcome:
    """`/release freeze <env|all> <duration> <reason>`."""
    memberships = await ctx.groups_of(user_id, ctx.config.slack.release_managers)
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
    memberships = await ctx.groups_of(user_id, ctx.config.slack.release_managers)
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
