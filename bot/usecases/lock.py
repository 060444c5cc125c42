"""Lock and unlock a service's environments from Slack: release managers and the service's
owners only, stored and audited (refusals too); and the locks in force, for App Home."""

from __future__ import annotations

from bot.domain.errors import DeliveryFailed
from bot.services import locks
from bot.services.locks import LockInForce, LockOutcome
from bot.usecases.context import Context
from bot.usecases.refusals import audit_refusal, unknown_person

__all__ = ["LockInForce", "LockOutcome", "lock", "locks_in_force", "unlock"]


async def lock(
    ctx: Context, *, user_id: str, service: str, environment: str | None, reason: str
) -> LockOutcome:
    """`/release lock <service> [env] -- reason` (no env: every environment of the service)."""
    memberships = await _memberships(ctx, user_id=user_id, service=service, what="lock")
    if isinstance(memberships, LockOutcome):
        return memberships
    now = ctx.clock.now()
    outcome = await ctx.write(
        lambda s: locks.place(
            s,
            now=now,
            config=ctx.config,
            service=service,
            environment=environment,
            reason=reason,
            actor=user_id,
            memberships=memberships,
        )
    )
    ctx.wake()
    return outcome


async def unlock(
    ctx: Context, *, user_id: str, service: str, environment: str | None
) -> LockOutcome:
    """`/release unlock <service> [env]` (no env: every locked environment of the service)."""
    memberships = await _memberships(ctx, user_id=user_id, service=service, what="unlock")
    if isinstance(memberships, LockOutcome):
        return memberships
    now = ctx.clock.now()
    outcome = await ctx.write(
        lambda s: locks.lift(
            s,
            now=now,
            config=ctx.config,
            service=service,
            environment=environment,
            actor=user_id,
            memberships=memberships,
        )
    )
    ctx.wake()
    return outcome


async def locks_in_force(ctx: Context) -> list[LockInForce]:
    """Every locked environment now, oldest lock first."""
    return await ctx.read(locks.in_force)


async def _memberships(
    ctx: Context, *, user_id: str, service: str, what: str
) -> frozenset[str] | LockOutcome:
    """The person's user groups among those who may lock; or, when Slack's directory cannot
    vouch for them, the refusal (audited)."""
    try:
        return await ctx.groups_of(user_id, locks.lockers(ctx.config, service))
    except DeliveryFailed as failure:
        reason = unknown_person(failure)
        await audit_refusal(
            ctx,
            user_id=user_id,
            action="environment.lock_refused",
            subject=f"service:{service}",
            details={"action": what, "reason": reason},
        )
        return LockOutcome(locks.REFUSED, reason, service)
