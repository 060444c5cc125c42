"""Refusals a use case makes before its transaction: a person Slack's directory cannot vouch
for is refused with a clear answer, and the refusal is audited.

    click = Click(user_id, deployment_id, action="flag.action_refused", details={"flag": flag})
    found = await approver(ctx, click, principals)
    if isinstance(found, gates.Outcome):
        return found  # Slack's directory failed: refused, and audited
    ... found.person, found.group_members ...

`approver` looks up who clicked a button on a release message (e-mail, user groups) so the
gate rules can weigh the click; `among` says whether they are one of a list of principals.
Either answers the refusal (`Click.refuse`) instead when the directory cannot tell.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime

from bot.domain.errors import DeliveryFailed
from bot.domain.gates import Person
from bot.domain.gates import refusal as refusals
from bot.services import audit, gates
from bot.usecases.context import Context

log = logging.getLogger(__name__)


def unknown_person(failure: DeliveryFailed) -> str:
    """What to tell someone whose click cannot be checked because Slack's directory failed,
    and what to do about it."""
    return refusals.unknown_person(failure.reason, retryable=failure.retryable).text


async def audit_refusal(
    ctx: Context, *, user_id: str, action: str, subject: str, details: dict[str, str]
) -> None:
    """Record a refusal the use case made before its own transaction (so none ran)."""
    log.warning("refused %s on %s by %s: %s", action, subject, user_id, details["reason"])
    now: datetime = ctx.clock.now()
    await ctx.write(
        lambda s: audit.append(
            s, at=now, actor=user_id, action=action, subject=subject, details=details
        )
    )


@dataclass(frozen=True)
class Click:
    """A click on a button of a deployment's release message: who clicked, and how a
    refusal of it is audited (the audit action, and what it names besides the reason)."""

    user_id: str
    deployment_id: int
    action: str
    details: dict[str, str]

    async def refuse(self, ctx: Context, reason: str) -> gates.Outcome:
        """Audit the refusal and answer it to the person who clicked."""
        await audit_refusal(
            ctx,
            user_id=self.user_id,
            action=self.action,
            subject=f"deployment:{self.deployment_id}",
            details={**self.details, "reason": reason},
        )
        return gates.Outcome(gates.REFUSED, reason, deployment_id=self.deployment_id)


@dataclass(frozen=True)
class Approver:
    """Who clicked, as the gate rules know them (their e-mail mapped to identities), the
    members of each user group among the gate's principals, and which of `groups_among`
    (see `approver`) they are in."""

    person: Person
    group_members: dict[str, frozenset[str]]
    groups: frozenset[str]


async def approver(
    ctx: Context, click: Click, principals: Iterable[str], *, groups_among: Iterable[str] = ()
) -> Approver | gates.Outcome:
    """Who clicked, looked up in Slack's directory; or the audited refusal when the
    directory cannot tell."""
    try:
        group_members = await ctx.members_of(principals)
        user = await ctx.directory.user(click.user_id)
        groups = await ctx.groups_of(click.user_id, groups_among)
    except DeliveryFailed as failure:
        return await click.refuse(ctx, unknown_person(failure))
    person = Person.from_config(click.user_id, user.email, ctx.config.identities)
    return Approver(person, group_members, groups)


async def among(ctx: Context, click: Click, principals: Collection[str]) -> bool | gates.Outcome:
    """Whether who clicked is one of `principals`, by user id or user group; or the audited
    refusal when Slack's directory cannot tell."""
    try:
        groups = await ctx.groups_of(click.user_id, principals)
    except DeliveryFailed as failure:
        return await click.refuse(ctx, unknown_person(failure))
    return click.user_id in principals or bool(groups)
