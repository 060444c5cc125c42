"""Release a feature flag a step further, or pull its kill switch (buttons on the release
message of a verified deploy).

"Release <flag> N%" is an approval of the flag's next step, decided by the same rules as a
deploy gate (`bot.services.flags`): who clicked is looked up in Slack's directory (e-mail,
user groups) first. "Kill switch" asks no quorum and passes freezes, like a rollback, but
only the release's approvers and on-call may pull it. "Reject" closes a step waiting for
approvals, with a reason, under the rules of a deploy gate's rejection. A refusal is
audited either way, and so is a Release click in an environment locked with `/release lock`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bot.config import Config
from bot.domain.flags import FlagChange
from bot.domain.gates import refusal as refusals
from bot.logs import logged_ids
from bot.ports import Clock
from bot.services import flag_checks, flag_reject, flags, gates, releases
from bot.store.db import Database
from bot.usecases.context import Context
from bot.usecases.refusals import Click, among, approver

REFUSED_ACTION = "flag.action_refused"


@logged_ids("deployment_id")
async def release_flag(
    ctx: Context, *, deployment_id: int, flag: str, user_id: str
) -> gates.Outcome:
    """One approval of the flag's next step; the step goes out when its quorum is met."""
    scope = await ctx.read(lambda s: releases.scope(s, deployment_id))
    if scope is None:
        return gates.Outcome(gates.REFUSED, refusals.unknown_deployment().text)
    service, environment = scope
    click = _click(user_id, deployment_id, flag)
    locked = await ctx.read(
        lambda s: releases.lock_refusal(s, service=service, environment=environment)
    )
    if locked is not None:
        return await click.refuse(ctx, locked)
    found = ctx.config.services.get(service)
    release = found.release if found is not None else None
    principals = [p for rule in release.require for p in rule.approvers] if release else []
    clicked = await approver(ctx, click, principals)
    if isinstance(clicked, gates.Outcome):
        return clicked
    now = ctx.clock.now()
    outcome = await ctx.write(
        lambda s: flags.release_step(
            s,
            now=now,
            config=ctx.config,
            deployment_id=deployment_id,
            flag=flag,
            person=clicked.person,
            group_members=clicked.group_members,
        )
    )
    ctx.wake()
    return outcome


@logged_ids("deployment_id")
async def reject_flag(
    ctx: Context, *, deployment_id: int, flag: str, user_id: str, reason: str
) -> gates.Outcome:
    """Reject the flag's pending step, with a reason: only someone who may approve it may
    (who clicked is looked up in Slack's directory first, as for an approval)."""
    scope = await ctx.read(lambda s: releases.scope(s, deployment_id))
    if scope is None:
        return gates.Outcome(gates.REFUSED, refusals.unknown_deployment().text)
    found = ctx.config.services.get(scope[0])
    release = found.release if found is not None else None
    principals = [p for rule in release.require for p in rule.approvers] if release else []
    clicked = await approver(ctx, _click(user_id, deployment_id, flag), principals)
    if isinstance(clicked, gates.Outcome):
        return clicked
    now = ctx.clock.now()
    outcome = await ctx.write(
        lambda s: flag_reject.reject_step(
            s,
            now=now,
            config=ctx.config,
            deployment_id=deployment_id,
            flag=flag,
            person=clicked.person,
            group_members=clicked.group_members,
            reason=reason,
        )
    )
    ctx.wake()
    return outcome


@logged_ids("deployment_id")
async def kill_switch(
    ctx: Context, *, deployment_id: int, flag: str, user_id: str
) -> gates.Outcome:
    """Turn the flag off at once, if the person is an approver of the release or on-call."""
    scope = await ctx.read(lambda s: releases.scope(s, deployment_id))
    if scope is None:
        return gates.Outcome(gates.REFUSED, refusals.unknown_deployment().text)
    principals = flags.kill_principals(ctx.config, scope[0])
    allowed = await among(ctx, _click(user_id, deployment_id, flag), principals)
    if isinstance(allowed, gates.Outcome):
        return allowed
    now = ctx.clock.now()
    outcome = await ctx.write(
        lambda s: flags.kill(
            s,
            now=now,
            config=ctx.config,
            deployment_id=deployment_id,
            flag=flag,
            user_id=user_id,
            allowed=allowed,
        )
    )
    ctx.wake()
    return outcome


def _click(user_id: str, deployment_id: int, flag: str) -> Click:
    """A click on one of the flag's buttons: a refusal of it names the flag."""
    return Click(user_id, deployment_id, REFUSED_ACTION, {"flag": flag})


class FlagLedger:
    """What the flag senders (`integrations.flags`) record once a platform answered: the
    receipt and the checks after the step, or why the change was given up on; each in
    its own transaction."""

    def __init__(self, db: Database, clock: Clock, config: Config) -> None:
        self._db = db
        self._clock = clock
        self._config = config

    async def delivered(self, change: FlagChange, receipt: dict[str, Any]) -> None:
        now = self._clock.now()
        await asyncio.to_thread(
            self._db.write,
            lambda s: flag_checks.delivered(
                s, now=now, config=self._config, change=change, receipt=receipt
            ),
        )

    async def undelivered(self, change: FlagChange, reason: str) -> None:
        now = self._clock.now()
        await asyncio.to_thread(
            self._db.write,
            lambda s: flag_checks.undelivered(
                s, now=now, config=self._config, change=change, reason=reason
            ),
        )
