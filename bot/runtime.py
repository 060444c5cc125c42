"""What a running app holds, built once by the lifespan and handed to the handlers."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from bot.config import Config
from bot.domain.events import DeployEvent
from bot.metrics import Metrics
from bot.outbox import OutboxWorker
from bot.ports import Clock
from bot.ports import Comparison
from bot.services.deployments import Delivery, IngestResult, ShaLookup, record_delivery
from bot.settings import Settings
from bot.store.db import Database


@dataclass
class Runtime:
    settings: Settings
    config: Config
    db: Database
    clock: Clock
    metrics: Metrics
    worker: OutboxWorker
    migrations_head: str | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def record_delivery(
        self,
        delivery: Delivery,
        event: DeployEvent | None,
        note: str | None = None,
        *,
        commits: Comparison | None = None,
        lookup: ShaLookup | None = None,
    ) -> IngestResult:
        """Store and apply one verified webhook delivery, then let the outbox send.

        `lookup` is an event whose full sha the worker still has to fetch (GitLab's
        Deployment Hook); `commits` is a commit list the webhook carried itself.
        """
        now = self.clock.now()
        result = await asyncio.to_thread(
            self.db.write,
            lambda s: record_delivery(
                s,
                now=now,
                config=self.config,
                delivery=delivery,
                event=event,
                note=note,
                commits=commits,
                lookup=lookup,
            ),
        )
        self.metrics.webhooks.labels(delivery.provider, result.status).inc()
        if result.status == "accepted":
            self.worker.wake()
        return result
