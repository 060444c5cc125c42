"""Release a feature flag a step further, or pull its kill switch (buttons on the release
message of a verified deploy).

"Release <flag> N%" is an approval of the flag's next step, decided by the same rules as a
deploy gate (`bot.services.flags`): who clicked is looked up in Slack's directory (e-mail,
user groups) first. "Kill switch" asks no quorum and passes freezes, like a rollback, but
only the release's approvers and on-call may pull it. "Reject" closes a step waiting for
approvals, with a reason, under the rules of a deploy gate's rejection. "Re-request" asks
again for a step that was rejected or expired, as a deploy gate's Re-request does (release
managers, the service's owners and the release's approvers may). A refusal is audited
either way, and so is a Release click in an environment locked with `/release lock`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from datetime import datetime
from typing import Any

from sqlmodel import Session

from bot.config import Config
from bot.domain.flags import FlagChange
from bot.domain.gates import refusal as refusals
from bot.logs import logged_ids
from bot.ports import Clock
from bot.services import flag_checks, flag_reject, flag_rerequest, flags, gates, releases
from bot.store.db import Database
from bot.usecases.context import Context
from bot.usecases.refusals import Click, among, approver

REFUSED_ACTION = "flag.action_refused"


@logged_ids("deployment_id")
async def release_flag(
    ctx: Context, *, deployment_id: int, flag: str, user_id: str, step_id: int | None = None
) -> gates.Outcome:
    """One approval of the flag's next step; the step goes out when its quorum is met.
    `step_id`: the step the button showed, when it shows one asked for again."""
    scope = await _scope(ctx, deployment_id)
    if isinstance(scope, gates.Outcome):
        return scope
    service, environment = scope
    click = _click(user_id, deployment_id, flag)
    locked = await ctx.read(
        lambda s: releases.lock_refusal(s, service=service, environment=environment)
    )
    if locked is not None:
        return await click.refuse(ctx, locked)
    return await _decide(
        ctx,
        click,
        service,
        lambda s, now, step: flags.release_step(
            s, now=now, config=ctx.config, click=step, step_id=step_id
        ),
    )


@logged_ids("deployment_id")
async def reject_flag(
    ctx: Context,
    *,
    deployment_id: int,
    flag: str,
    user_id: str,
    reason: str,
    step_id: int | None = None,
) -> gates.Outcome:
    """Reject the flag's pending step (`step_id`, carried by the Reject button), with a
    reason: only someone who may approve it may (who clicked is looked up in Slack's
    directory first, as for an approval)."""
    scope = await _scope(ctx, deployment_id)
    if isinstance(scope, gates.Outcome):
        return scope
    return await _decide(
        ctx,
        _click(user_id, deployment_id, flag),
        scope[0],
        lambda s, now, step: flag_reject.reject_step(
            s, now=now, config=ctx.config, click=step, reason=reason, step_id=step_id
        ),
    )


@logged_ids("deployment_id")
async def rerequest_flag(
    ctx: Context, *, deployment_id: int, flag: str, step_id: int, user_id: str
) -> gates.Outcome:
    """Ask again for the flag's step that was rejected or expired (`step_id`, carried by the
    Re-request button): a fresh step to the same percentage, waiting for its approvals.
    Only the release managers, the service's owners and the release's approvers may."""
    click = _click(user_id, deployment_id, flag)
    allowed = await _among(ctx, click, flags.rerequest_principals)
    if isinstance(allowed, gates.Outcome):
        return allowed
    now = ctx.clock.now()
    return await _write(
        ctx,
        lambda s: flag_rerequest.rerequest_step(
            s,
            now=now,
            config=ctx.config,
            deployment_id=deployment_id,
            flag=flag,
            step_id=step_id,
            actor=user_id,
            allowed=allowed,
        ),
    )


@logged_ids("deployment_id")
async def kill_switch(
    ctx: Context, *, deployment_id: int, flag: str, user_id: str
) -> gates.Outcome:
    """Turn the flag off at once, if the person is an approver of the release or on-call."""
    allowed = await _among(ctx, _click(user_id, deployment_id, flag), flags.kill_principals)
    if isinstance(allowed, gates.Outcome):
        return allowed
    now = ctx.clock.now()
    return await _write(
        ctx,
        lambda s: flags.kill(
            s,
            now=now,
            config=ctx.config,
            deployment_id=deployment_id,
            flag=flag,
            user_id=user_id,
            allowed=allowed,
        ),
    )


async def _scope(ctx: Context, deployment_id: int) -> tuple[str, str] | gates.Outcome:
    """(service, environment) of the deployment whose message was clicked, or the refusal."""
    scope = await ctx.read(lambda s: releases.scope(s, deployment_id))
    if scope is None:
        return gates.Outcome(gates.REFUSED, refusals.unknown_deployment().text)
    return scope


async def _decide(
    ctx: Context,
    click: Click,
    service: str,
    decide: Callable[[Session, datetime, flags.StepClick], gates.Outcome],
) -> gates.Outcome:
    """Who clicked, looked up in Slack's directory against the release's approvers, then
    their decision on the flag's step (`decide`) in one transaction."""
    clicked = await approver(ctx, click, flags.release_approvers(ctx.config, service))
    if isinstance(clicked, gates.Outcome):
        return clicked
    step = flags.StepClick(
        click.deployment_id, click.details["flag"], clicked.person, clicked.group_members
    )
    now = ctx.clock.now()
    return await _write(ctx, lambda s: decide(s, now, step))


async def _among(
    ctx: Context, click: Click, principals_of: Callable[[Config, str], Collection[str]]
) -> bool | gates.Outcome:
    """Whether who clicked is among the principals of the deployment's service
    (`principals_of`), or the refusal (an unknown deployment, Slack's directory down)."""
    scope = await _scope(ctx, click.deployment_id)
    if isinstance(scope, gates.Outcome):
        return scope
    return await among(ctx, click, principals_of(ctx.config, scope[0]))


async def _write(ctx: Context, work: Callable[[Session], gates.Outcome]) -> gates.Outcome:
    """Run the click's work in one transaction, then wake the outbox worker."""
    outcome = await ctx.write(work)
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
