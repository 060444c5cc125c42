"""Decide a gate: one person's approve or reject, and break-glass (ask, then confirm).

Who clicked is looked up in Slack's directory (their e-mail, their user groups). When the
directory cannot say (`users.info` answers `user_not_found` for someone from another
workspace, or Slack does not answer at all), the click is refused with that reason, the
refusal is audited, and the gate stays exactly as it was. So is an approval (or a
break-glass confirmation) in an environment locked with `/release lock`: the answer names
the lock's reason and who placed it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.domain.errors import DeliveryFailed
from bot.domain.gates import Person
from bot.domain.gates import refusal as refusals
from bot.logs import logged_ids
from bot.services import break_glass, gates, releases
from bot.usecases.context import Context
from bot.usecases.refusals import audit_refusal, unknown_person

GATE_SCOPES_KEPT = 256


@dataclass
class GateScopes:
    """(service, environment) of the gates clicked lately: it never changes for a gate (nor
    are gates deleted), and a burst of clicks on one message would read it each time."""

    kept: int = GATE_SCOPES_KEPT
    _scopes: dict[int, tuple[str, str]] = field(default_factory=dict, repr=False)

    async def of(self, ctx: Context, gate_id: int) -> tuple[str, str] | None:
        found = self._scopes.get(gate_id)
        if found is None:
            found = await ctx.read(lambda s: gates.scope(s, gate_id))
            if found is None:
                return None
            if len(self._scopes) >= self.kept:
                del self._scopes[next(iter(self._scopes))]  # the oldest
            self._scopes[gate_id] = found
        return found


@logged_ids("gate_id")
async def decide_gate(
    ctx: Context,
    scopes: GateScopes,
    *,
    gate_id: int,
    user_id: str,
    decision: str,
    reason: str | None = None,
) -> gates.Outcome:
    """Who the person is (Slack e-mail, identities, groups), then one transaction."""
    found = await scopes.of(ctx, gate_id)
    if found is None:
        return gates.Outcome(gates.REFUSED, refusals.unknown_gate().text, gate_id)
    service, environment = found
    if decision == "approve":
        locked = await _locked(ctx, gate_id, service, environment, user_id, decision)
        if locked is not None:
            return locked
    try:
        group_members = await ctx.members_of(
            gates.gate_principals(ctx.config, service, environment)
        )
        user = await ctx.directory.user(user_id)
    except DeliveryFailed as failure:
        refusal = unknown_person(failure)
        await audit_refusal(
            ctx,
            user_id=user_id,
            action="gate.decision_refused",
            subject=f"gate:{gate_id}",
            details={"decision": decision, "reason": refusal},
        )
        return gates.Outcome(gates.REFUSED, refusal, gate_id)
    person = Person.from_config(user_id, user.email, ctx.config.identities)
    now = ctx.clock.now()
    outcome = await ctx.write(
        lambda s: gates.decide(
            s,
            now=now,
            config=ctx.config,
            gate_id=gate_id,
            person=person,
            group_members=group_members,
            decision=decision,
            reason=reason,
        )
    )
    ctx.wake()
    return outcome


@logged_ids("gate_id")
async def request_break_glass(
    ctx: Context, *, gate_id: int, user_id: str, reason: str | None = None
) -> gates.Outcome:
    """Ask to pass a gate or a freeze with a reason; a second person has to confirm."""
    now = ctx.clock.now()
    outcome = await ctx.write(
        lambda s: break_glass.request(
            s, now=now, config=ctx.config, gate_id=gate_id, user_id=user_id, reason=reason or ""
        )
    )
    ctx.wake()
    return outcome


@logged_ids("gate_id")
async def confirm_break_glass(ctx: Context, *, gate_id: int, user_id: str) -> gates.Outcome:
    """Confirm someone else's break-glass request (break-glass approvers only)."""
    found = await ctx.read(lambda s: gates.scope(s, gate_id))
    if found is not None:
        locked = await _locked(ctx, gate_id, *found, user_id, "break_glass")
        if locked is not None:
            return locked
    approvers = ctx.config.break_glass.approvers if ctx.config.break_glass else ()
    try:
        members = await ctx.members_of(approvers)
        user = await ctx.directory.user(user_id)
    except DeliveryFailed as failure:
        refusal = unknown_person(failure)
        await audit_refusal(
            ctx,
            user_id=user_id,
            action="gate.break_glass_refused",
            subject=f"gate:{gate_id}",
            details={"reason": refusal},
        )
        return gates.Outcome(gates.REFUSED, refusal, gate_id)
    now = ctx.clock.now()
    outcome = await ctx.write(
        lambda s: break_glass.confirm(
            s,
            now=now,
            config=ctx.config,
            gate_id=gate_id,
            user_id=user_id,
            group_members=members,
            person=Person.from_config(user_id, user.email, ctx.config.identities),
        )
    )
    ctx.wake()
    return outcome


async def _locked(
    ctx: Context, gate_id: int, service: str, environment: str, user_id: str, decision: str
) -> gates.Outcome | None:
    """The refusal (audited) when the gate's environment is locked, else None."""
    refusal = await ctx.read(
        lambda s: releases.lock_refusal(s, service=service, environment=environment)
    )
    if refusal is None:
        return None
    await audit_refusal(
        ctx,
        user_id=user_id,
        action="gate.decision_refused",
        subject=f"gate:{gate_id}",
        details={"decision": decision, "reason": refusal},
    )
    return gates.Outcome(gates.REFUSED, refusal, gate_id)
