"""Re-request an expired gate: the Re-request button on its release message.

Who may: whoever may promote the release (release managers, the service's owners and the
environment's approvers). A refusal is audited; so is the fresh gate, with who asked.
"""

from __future__ import annotations

from sqlmodel import Session

from bot.logs import logged_ids
from bot.services import gate_rerequest, gates, releases
from bot.usecases.context import Context

ACTION = "re-request"


@logged_ids("gate_id")
async def rerequest_gate(ctx: Context, *, gate_id: int, user_id: str) -> gates.Outcome:
    """Open a fresh gate for the release of an expired one, in one transaction."""
    found = await ctx.read(lambda s: gate_rerequest.target(s, gate_id))
    if found is None:
        return gates.Outcome(gates.REFUSED, "this gate does not exist", gate_id)
    service, environment, deployment_id = found
    memberships = await ctx.groups_of(
        user_id, releases.operators(ctx.config, service, environment, action=ACTION)
    )
    now = ctx.clock.now()

    def run(session: Session) -> gates.Outcome:
        refused = releases.refusal_for(
            session,
            now=now,
            config=ctx.config,
            deployment_id=deployment_id,
            user_id=user_id,
            memberships=memberships,
            action=ACTION,
        )
        if refused is not None:
            return gates.Outcome(gates.REFUSED, refused, gate_id, deployment_id)
        return gate_rerequest.rerequest(
            session, now=now, config=ctx.config, gate_id=gate_id, actor=user_id
        )

    outcome = await ctx.write(run)
    ctx.wake()
    return outcome
