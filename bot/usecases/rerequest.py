"""Re-request an expired gate: the Re-request button on its release message.

Who may: whoever may promote the release (release managers, the service's owners and the
environment's approvers). A refusal is audited; so is the fresh gate, with who asked.
"""

from __future__ import annotations

from sqlmodel import Session

from bot.domain.gates import refusal as refusals
from bot.logs import logged_ids
from bot.services import gate_rerequest, gates
from bot.usecases.context import Context
from bot.usecases.operate import operator_groups, refusal

ACTION = "re-request"


@logged_ids("gate_id")
async def rerequest_gate(ctx: Context, *, gate_id: int, user_id: str) -> gates.Outcome:
    """Open a fresh gate for the release of an expired one, in one transaction."""
    found = await ctx.read(lambda s: gate_rerequest.target(s, gate_id))
    if found is None:
        return gates.Outcome(gates.REFUSED, refusals.unknown_gate().text, gate_id)
    service, environment, deployment_id = found
    allowed = await operator_groups(
        ctx,
        action=ACTION,
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
            action=ACTION,
            gate_id=gate_id,
        )
        if refused is not None:
            return refused
        return gate_rerequest.rerequest(
            session, now=now, config=ctx.config, gate_id=gate_id, actor=user_id
        )

    outcome = await ctx.write(run)
    ctx.wake()
    return outcome
