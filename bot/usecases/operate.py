"""Promote, roll back and unlock: from a button or from `/release`, after one permission check.

Who may: release managers, the service's owners and the environment's approvers; on-call
may also roll back (`releases.operators`). A refusal is audited.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from bot.domain.errors import DeliveryFailed, UnknownAction
from bot.domain.gates import refusal as refusals
from bot.logs import logged_ids
from bot.services import gates, queries, releases
from bot.usecases.context import Context
from bot.usecases.refusals import audit_refusal, unknown_person

PROMOTE = "promote"
ROLLBACK = "rollback"
UNLOCK = "unlock"
ACTIONS = (PROMOTE, ROLLBACK, UNLOCK)


@logged_ids("deployment_id")
async def operate(
    ctx: Context,
    *,
    action: str,
    deployment_id: int,
    user_id: str,
    reason: str | None = None,
    to_sha: str | None = None,
) -> gates.Outcome:
    """`action` one deployment: promote it on, roll it back (to `to_sha`, or to the last
    good version), or unlock automatic promotion into its environment."""
    if action not in ACTIONS:
        raise UnknownAction(action)
    scope = await ctx.read(lambda s: releases.scope(s, deployment_id))
    if scope is None:
        return gates.Outcome(gates.REFUSED, refusals.unknown_deployment().text)
    service, environment = scope
    allowed = await operator_groups(
        ctx,
        action=action,
        service=service,
        environment=environment,
        deployment_id=deployment_id,
        user_id=user_id,
    )
    if isinstance(allowed, gates.Outcome):
        return allowed
    now = ctx.clock.now()

    def run(session: Session) -> gates.Outcome:
        refused = refusal(
            session,
            ctx,
            now=now,
            deployment_id=deployment_id,
            user_id=user_id,
            memberships=allowed,
            action=action,
        )
        if refused is not None:
            return refused
        if action == PROMOTE:
            return releases.promote(
                session, now=now, config=ctx.config, deployment_id=deployment_id, actor=user_id
            )
        if action == ROLLBACK:
            return releases.rollback(
                session,
                now=now,
                config=ctx.config,
                deployment_id=deployment_id,
                actor=user_id,
                reason=reason or "",
                to_sha=to_sha,
            )
        unlocked = releases.unlock(
            session, now=now, service=service, environment=environment, actor=user_id
        )
        if not unlocked:
            told = refusals.Refusal(
                f"{environment} of {service} is not locked",
                "nothing to unlock: promotion into it goes ahead",
            )
            return gates.Outcome(gates.REFUSED, told.text, deployment_id=deployment_id)
        return gates.Outcome(
            "unlocked",
            f"automatic promotion into {environment} is unlocked",
            deployment_id=deployment_id,
        )

    outcome = await ctx.write(run)
    ctx.wake()
    return outcome


async def operator_groups(
    ctx: Context,
    *,
    action: str,
    service: str,
    environment: str,
    deployment_id: int,
    user_id: str,
) -> frozenset[str] | gates.Outcome:
    """The person's user groups among those who may `action` here; or, when Slack's
    directory cannot vouch for them, the refusal (audited)."""
    try:
        return await ctx.groups_of(
            user_id, releases.operators(ctx.config, service, environment, action=action)
        )
    except DeliveryFailed as failure:
        reason = unknown_person(failure)
        await audit_refusal(
            ctx,
            user_id=user_id,
            action="release.action_refused",
            subject=f"deployment:{deployment_id}",
            details={"action": action, "reason": reason},
        )
        return gates.Outcome(gates.REFUSED, reason, deployment_id=deployment_id)


def refusal(
    session: Session,
    ctx: Context,
    *,
    now: datetime,
    deployment_id: int,
    user_id: str,
    memberships: frozenset[str],
    action: str,
    gate_id: int | None = None,
) -> gates.Outcome | None:
    """The refusal (audited) when this person may not `action` this deployment, else None."""
    reason = releases.refusal_for(
        session,
        now=now,
        config=ctx.config,
        deployment_id=deployment_id,
        user_id=user_id,
        memberships=memberships,
        action=action,
    )
    if reason is None:
        return None
    return gates.Outcome(gates.REFUSED, reason, gate_id, deployment_id)


async def promote_version(
    ctx: Context, *, user_id: str, service: str, version: str, environment: str
) -> gates.Outcome:
    """`/release promote <service> <version|latest> to <env>`: find the deployment in the
    environment before `environment`, then the same path as the Promote button."""
    found = await ctx.read(
        lambda s: queries.promote_source(
            s, config=ctx.config, service=service, version=version, target=environment
        )
    )
    if found.deployment_id is None:
        return gates.Outcome(gates.REFUSED, found.problem or "nothing to promote")
    return await operate(ctx, action=PROMOTE, deployment_id=found.deployment_id, user_id=user_id)


async def rollback_environment(
    ctx: Context,
    *,
    user_id: str,
    service: str,
    environment: str,
    to_version: str | None = None,
    reason: str,
) -> gates.Outcome:
    """`/release rollback <service> <env> [to <version>]`: the newest deployed deployment
    there is rolled back, as the Roll back button does (to the last good version, or to the
    one named, which must have run in that environment)."""
    found = await ctx.read(
        lambda s: queries.rollback_target(
            s, config=ctx.config, service=service, environment=environment, to_version=to_version
        )
    )
    if found.deployment_id is None:
        return gates.Outcome(gates.REFUSED, found.problem or "nothing to roll back")
    return await operate(
        ctx,
        action=ROLLBACK,
        deployment_id=found.deployment_id,
        user_id=user_id,
        reason=reason,
        to_sha=found.to_sha,
    )
