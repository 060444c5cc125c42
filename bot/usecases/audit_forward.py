"""Forward the audit trail: queue the records appended since the last run for the SIEM's
webhook (RELEASEBOT_AUDIT_FORWARD_URL), and wake the worker to send them."""

from __future__ import annotations

from bot.services import audit_forward
from bot.usecases.context import Context


async def forward_audit(ctx: Context) -> int:
    """How many outbox rows were queued (0 when the forwarder is not configured)."""
    if not ctx.settings.audit_forward_url:
        return 0
    now = ctx.clock.now()
    queued: int = await ctx.write(lambda s: audit_forward.enqueue_new(s, now=now))
    if queued:
        ctx.wake()
    return queued
