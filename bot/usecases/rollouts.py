"""Promote or abort an Argo Rollouts canary from its release message.

Promote is an approval under the environment's gate rules (`bot.services.rollouts`): who
clicked is looked up in Slack's directory (e-mail, user groups) first, and a click in an
environment locked with `/release lock` is refused. Abort asks a reason, no quorum, and
passes freezes, like a rollback, for the gate's approvers, release managers and on-call.
A refusal is audited either way. `RolloutLedger` is what the Argo CD sender records once
Argo CD answered.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bot.config import Config
from bot.domain import rollouts as rules
from bot.domain.gates import refusal as refusals
from bot.logs import logged_ids
from bot.ports import Clock
from bot.services import gates, releases, rollouts
from bot.store.db import Database
from bot.usecases.context import Context
from bot.usecases.refusals import Click, among, approver

PROMOTE_ACTION = "resume"  # on from the pause, to the next step
PROMOTE_FULL_ACTION = "promote-full"  # every remaining step skipped: all traffic at once


@logged_ids("deployment_id")
async def promote_rollout(
    ctx: Context, *, deployment_id: int, user_id: str, fully: bool = False
) -> gates.Outcome:
    """Let the Rollout go on from its pause (`resume`), or `fully` to its end at once
    (`promote-full`), if the gate rules let this person."""
    action = PROMOTE_FULL_ACTION if fully else PROMOTE_ACTION
    scope = await ctx.read(lambda s: releases.scope(s, deployment_id))
    if scope is None:
        return gates.Outcome(gates.REFUSED, refusals.unknown_deployment().text)
    service, environment = scope
    click = _click(user_id, deployment_id, action)
    locked = await ctx.read(
        lambda s: releases.lock_refusal(s, service=service, environment=environment)
    )
    if locked is not None:
        return await click.refuse(ctx, locked)
    principals = rollouts.principals(ctx.config, service, environment)
    clicked = await approver(ctx, click, principals, groups_among=ctx.config.slack.release_managers)
    if isinstance(clicked, gates.Outcome):
        return clicked
    allowed = user_id in ctx.config.slack.release_managers or bool(clicked.groups)
    now = ctx.clock.now()
    outcome = await ctx.write(
        lambda s: rollouts.promote(
            s,
            now=now,
            config=ctx.config,
            deployment_id=deployment_id,
            person=clicked.person,
            group_members=clicked.group_members,
            allowed=allowed,
            action=action,
        )
    )
    ctx.wake()
    return outcome


@logged_ids("deployment_id")
async def abort_rollout(
    ctx: Context, *, deployment_id: int, user_id: str, reason: str
) -> gates.Outcome:
    """Abort the Rollout at once (Argo Rollouts sends traffic back to the stable version)."""
    scope = await ctx.read(lambda s: releases.scope(s, deployment_id))
    if scope is None:
        return gates.Outcome(gates.REFUSED, refusals.unknown_deployment().text)
    if not reason.strip():
        refusal = refusals.reason_required("abort a Rollout").text
        return gates.Outcome(gates.REFUSED, refusal, deployment_id=deployment_id)
    principals = rollouts.principals(ctx.config, *scope)
    allowed = await among(ctx, _click(user_id, deployment_id, rules.ABORT_ACTION), principals)
    if isinstance(allowed, gates.Outcome):
        return allowed
    now = ctx.clock.now()
    outcome = await ctx.write(
        lambda s: rollouts.abort(
            s,
            now=now,
            config=ctx.config,
            deployment_id=deployment_id,
            user_id=user_id,
            allowed=allowed,
            reason=reason.strip(),
        )
    )
    ctx.wake()
    return outcome


def _click(user_id: str, deployment_id: int, action: str) -> Click:
    """A click on Promote or Abort: a refusal of it names the Rollout action."""
    return Click(user_id, deployment_id, rollouts.REFUSED_ACTION, {"action": action})


class RolloutLedger:
    """What the Argo CD rollout sender (`integrations.argocd.rollouts`) records: where a
    Rollout stands, and Argo CD's answer to an action; each in its own transaction."""

    def __init__(self, db: Database, clock: Clock, config: Config) -> None:
        self._db = db
        self._clock = clock
        self._config = config

    async def observed(self, refresh: rules.RolloutRefresh, status: rules.RolloutStatus) -> None:
        now = self._clock.now()
        await asyncio.to_thread(
            self._db.write,
            lambda s: rollouts.observed(
                s,
                now=now,
                deployment_id=refresh.deployment_id,
                rollout=refresh.rollout,
                status=status,
            ),
        )

    async def answered(
        self,
        action: rules.RolloutAction,
        receipt: dict[str, Any] | None = None,
        reason: str | None = None,
    ) -> None:
        now = self._clock.now()
        await asyncio.to_thread(
            self._db.write,
            lambda s: rollouts.answered(s, now=now, action=action, receipt=receipt, reason=reason),
        )
