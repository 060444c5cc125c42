"""Refusals a use case makes before its transaction: a person Slack's directory cannot vouch
for is refused with a clear answer, and the refusal is audited."""

from __future__ import annotations

import logging
from datetime import datetime

from bot.domain.errors import DeliveryFailed
from bot.services import audit
from bot.usecases.context import Context

log = logging.getLogger(__name__)


def unknown_person(failure: DeliveryFailed) -> str:
    """What to tell someone whose click cannot be checked because Slack's directory failed."""
    if failure.retryable:
        return (
            f"Slack's directory did not answer ({failure.reason}), so I cannot check who you "
            "are: nothing was recorded, try again in a minute"
        )
    return (
        f"Slack's directory could not confirm who you are ({failure.reason}), so I cannot "
        "check that you may decide this: nothing was recorded. Someone from this workspace "
        "listed as an approver can decide it"
    )


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
