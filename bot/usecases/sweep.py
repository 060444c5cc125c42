"""Housekeeping the scheduler runs: sweep gates and flag steps (remind, escalate, then
expire) and drop old webhook bodies past their retention."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta

from bot.domain.errors import DeliveryFailed
from bot.services import flag_gates, gate_sweep
from bot.services.housekeeping import drop_old_webhook_bodies
from bot.usecases.context import Context

log = logging.getLogger(__name__)


async def sweep_gates(ctx: Context) -> int:
    """Remind approvers of gates waiting long, escalate the ones waiting longer (the user
    groups among their approvers read from Slack first), expire the ones past their time;
    then the same for the flag steps waiting for approvals."""
    now = ctx.clock.now()
    principals = await ctx.read(
        lambda s: (
            gate_sweep.escalation_principals(s, now=now, config=ctx.config)
            | flag_gates.escalation_principals(s, now=now, config=ctx.config)
        )
    )
    members: Mapping[str, frozenset[str]] | None = {}
    if principals:
        try:
            members = await ctx.members_of(principals)
        except DeliveryFailed as exc:
            log.warning("escalations wait for the next sweep: %s", exc.reason)
            members = None
    acted = await ctx.write(
        lambda s: gate_sweep.sweep(s, now=now, config=ctx.config, group_members=members)
    )
    acted += await ctx.write(
        lambda s: flag_gates.sweep(s, now=now, config=ctx.config, group_members=members)
    )
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
