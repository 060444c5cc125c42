"""Record a delivery: store one verified webhook delivery, apply it, let the outbox send."""

from __future__ import annotations

import asyncio
import logging

from bot.domain.events import DeployEvent
from bot.domain.ingest import ACCEPTED, Delivery, IngestResult, ShaLookup
from bot.logs import log_context
from bot.ports import Comparison
from bot.services import ingest
from bot.usecases.context import Context

log = logging.getLogger(__name__)


async def record_delivery(
    ctx: Context,
    delivery: Delivery,
    event: DeployEvent | None,
    note: str | None = None,
    *,
    commits: Comparison | None = None,
    lookup: ShaLookup | None = None,
) -> IngestResult:
    """Store and apply one delivery, answered once its transaction has committed.

    `lookup` is an event whose full sha the worker still has to fetch (GitLab's Deployment
    Hook); `commits` is a commit list the webhook carried itself. Deliveries arriving
    together share one transaction (each in its own savepoint): a group commit.
    """
    with log_context(delivery_id=delivery.delivery_id):
        now = ctx.clock.now()
        result = await asyncio.wrap_future(
            ctx.db.submit_write(
                lambda s: ingest.record_delivery(
                    s,
                    now=now,
                    config=ctx.config,
                    delivery=delivery,
                    event=event,
                    note=note,
                    commits=commits,
                    lookup=lookup,
                )
            )
        )
        ctx.metrics.webhooks.labels(delivery.provider, result.status).inc()
        log.info(
            "%s %s delivery %s",
            delivery.provider,
            delivery.event,
            result.status,
            extra={"deployment_id": result.deployment_id},
        )
        if result.status == ACCEPTED:
            ctx.wake()
        return result
