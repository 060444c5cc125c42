"""Housekeeping the scheduler runs: sweep gates (remind, then expire) and drop old webhook
bodies past their retention."""

from __future__ import annotations

import logging
from datetime import timedelta

from bot.services import gates
from bot.services.housekeeping import drop_old_webhook_bodies
from bot.usecases.context import Context

log = logging.getLogger(__name__)


async def sweep_gates(ctx: Context) -> int:
    """Remind approvers of gates waiting long; expire the ones past their time."""
    now = ctx.clock.now()
    acted = await ctx.write(lambda s: gates.sweep(s, now=now, config=ctx.config))
    if acted:
        ctx.wake()
    return acted


async def drop_old_webhook_bodies_now(ctx: Context) -> int:
    """Raw webhook bodies older than `RELEASEBOT_WEBHOOK_RETENTION_DAYS` are dropped."""
    now = ctx.clock.now()
    retention = timedelta(days=ctx.settings.webhook_retention_days)
    dropped = await ctx.write(lambda s: drop_old_webhook_bodies(s, now=now, retention=retention))
    if dropped:
        log.info("dropped %d raw webhook bodies older than %s", dropped, retention)
    return dropped
