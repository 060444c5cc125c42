"""What a running app holds, built once by the lifespan and handed to the handlers."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from bot.config import Config
from bot.domain.events import DeployEvent
from bot.domain.gates import Person
from bot.metrics import Metrics
from bot.outbox import OutboxWorker
from bot.ports import Clock, Comparison, SlackDirectory
from bot.services import gates
from bot.services.deployments import Delivery, IngestResult, ShaLookup, record_delivery
from bot.settings import Settings
from bot.store.db import Database


@dataclass
class Runtime:
    directory: SlackDirectory
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

    async def decide_gate(
        self, *, gate_id: int, user_id: str, decision: str, reason: str | None = None
    ) -> gates.Outcome:
        """One person's approve or reject from Slack: who they are, then one transaction."""
        found = await asyncio.to_thread(self._gate_scope, gate_id)
        if found is None:
            return gates.Outcome(gates.REFUSED, "this gate does not exist", gate_id)
        service, environment = found
        groups = gates.gate_principals(self.config, service, environment)
        group_members = {group: await self.directory.group_members(group) for group in groups}
        user = await self.directory.user(user_id)
        person = Person.from_config(user_id, user.email, self.config.identities)
        now = self.clock.now()
        outcome = await asyncio.to_thread(
            self.db.write,
            lambda s: gates.decide(
                s,
                now=now,
                config=self.config,
                gate_id=gate_id,
                person=person,
                group_members=group_members,
                decision=decision,
                reason=reason,
            ),
        )
        self.worker.wake()
        return outcome

    def _gate_scope(self, gate_id: int) -> tuple[str, str] | None:
        with self.db.read() as session:
            return gates.scope(session, gate_id)
