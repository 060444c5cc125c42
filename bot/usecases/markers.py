"""The deploy markers' ledger: what the marker senders read and record in the database.

The senders (`integrations.markers`) reach Grafana, Datadog and New Relic; this is their one
way in: the Grafana region opened for a deployment (to close it), and the receipts
(`marker.delivered`, `marker.failed`) audited by `bot.services.markers`.
"""

from __future__ import annotations

import asyncio

from bot.domain.messages import DeployMarker
from bot.ports import Clock
from bot.services import markers
from bot.store.db import Database


class MarkerLedger:
    """Reads and records marker receipts, each in its own transaction."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self.clock = clock

    async def opened_region(self, marker: DeployMarker) -> str | None:
        def read() -> str | None:
            with self._db.read() as session:
                return markers.opened_region(
                    session, deployment_id=marker.deployment_id, platform=marker.platform
                )

        return await asyncio.to_thread(read)

    async def delivered(self, marker: DeployMarker, remote_id: str) -> None:
        now = self.clock.now()
        await asyncio.to_thread(
            self._db.write,
            lambda s: markers.delivered(s, now=now, marker=marker, remote_id=remote_id),
        )

    async def failed(self, marker: DeployMarker, reason: str) -> None:
        now = self.clock.now()
        await asyncio.to_thread(
            self._db.write, lambda s: markers.failed(s, now=now, marker=marker, reason=reason)
        )
