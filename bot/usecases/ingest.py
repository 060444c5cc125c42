"""Record a delivery: store one verified webhook delivery and answer; the applier applies it.

The request stores the delivery (de-duplicated, with what it parsed) in a group commit and
is answered 202; `bot.usecases.apply.Applier` applies it next and wakes the outbox. A
process that applies before answering (`Context.apply_inline`: tests that drive the
background work themselves) stores and applies in one transaction, answering what
applying did.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial

from bot.domain.events import DeployEvent
from bot.domain.ingest import ACCEPTED, Delivery, IngestResult, ShaLookup
from bot.logs import log_context
from bot.ports import Comparison
from bot.services import ingest
from bot.services.delivery_work import Work
from bot.usecases import spooled
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
    """Store one delivery and answer once its transaction has committed.

    `lookup` is an event whose full sha the worker still has to fetch (GitLab's Deployment
    Hook); `commits` is a commit list the webhook carried itself. Deliveries arriving
    together are stored by one multi-row insert in one transaction: a group commit. While
    the database cannot be reached, the delivery is held in the local spool instead
    (`bot.usecases.spooled`).
    """
    with log_context(delivery_id=delivery.delivery_id):
        now = ctx.clock.now()
        if ctx.apply_inline:
            write = partial(
                ingest.record_delivery,
                now=now,
                config=ctx.config,
                delivery=delivery,
                event=event,
                note=note,
                commits=commits,
                lookup=lookup,
            )
            result = await asyncio.wrap_future(ctx.db.submit_write(write))
        else:
            work = Work(event=event, note=note, commits=commits, lookup=lookup)
            item = ingest.to_store(now=now, config=ctx.config, delivery=delivery, work=work)
            result = await spooled.store(ctx, item)
        ctx.metrics.webhooks.labels(delivery.provider, result.status).inc()
        log.info(
            "%s %s delivery %s",
            delivery.provider,
            delivery.event,
            result.status,
            extra={"deployment_id": result.deployment_id},
        )
        if result.status == ACCEPTED:
            if ctx.apply_inline:
                ctx.wake()
            else:
                ctx.wake_applier()
        return result
