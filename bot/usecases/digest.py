"""Post the weekly DORA digest: last week's metrics, queued once for the default channel.

Every replica runs the job; only the first queues the week's digest (`dora.enqueue_digest`).
The report is read outside the write transaction, so SQLite's writer is not held while it
is computed.
"""

from __future__ import annotations

import logging

from bot.services import dora
from bot.usecases.context import Context

log = logging.getLogger(__name__)

DIGEST_DAYS = 7


async def post_weekly_digest(ctx: Context) -> bool:
    """Compute the digest (read-only) and queue it; True when this call queued it."""
    now = ctx.clock.now()
    services = sorted(ctx.config.services)
    channel = ctx.config.slack.default_channel
    production = dora.Production.of(ctx.config)
    message = await ctx.read(
        lambda s: dora.digest(
            s, now=now, services=services, days=DIGEST_DAYS, production=production
        )
    )
    queued = await ctx.write(
        lambda s: dora.enqueue_digest(s, now=now, channel=channel, digest_message=message)
    )
    if queued:
        log.info("weekly DORA digest queued for %s", channel)
        ctx.wake()
    else:
        log.info("weekly DORA digest already queued by another replica")
    return queued
