"""Refusals a use case makes before its transaction: a person Slack's directory cannot vouch
for is refused with a clear answer, and the refusal is audited."""

from __future__ import annotations

import logging
from datetime import datetime

from bot.domain.errors import DeliveryFailed
from bot.domain.gates import refusal as refusals
from bot.services import audit
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
