"""Deploy markers on dashboards: Grafana annotations, Datadog events, New Relic deployments.

    senders = MarkerSenders(config=config, secrets=os.environ.get, ledger=MarkerLedger(db, clock),
                            clock=clock)
    OutboxWorker(..., more={**senders.handlers(transport=None)})

Each `DeployMarker` outbox row (queued by `bot.services.markers`) is sent by the client of
its platform (`grafana.py`, `datadog.py`, `newrelic.py`) with the service's `markers:`
settings; the secrets come from the environment variables those settings name. A mark
sent is audited as `marker.delivered` with the platform's id; a mark given up on (a
refused key, a missing variable, a bad request) as `marker.failed` with the reason. 429,
5xx and network errors are retried by the outbox.
"""

from __future__ import annotations

from typing import Any, Protocol

from bot.domain.errors import DeliveryFailed
from bot.domain.messages import DeployMarker
from integrations.http_sender import Handler, OutboxSenders
from integrations.markers import datadog, grafana, newrelic

__all__ = ["Handler", "Ledger", "MarkerSenders"]


class Ledger(Protocol):
    """Where receipts are read and recorded (`bot.usecases.markers.MarkerLedger`)."""

    async def opened_region(self, marker: DeployMarker) -> str | None: ...

    async def delivered(self, marker: DeployMarker, remote_id: str) -> None: ...

    async def failed(self, marker: DeployMarker, reason: str) -> None: ...


class MarkerSenders(OutboxSenders[Ledger]):
    """Sends `DeployMarker` rows: `handlers()` maps the outbox kind to the sender."""

    kind = DeployMarker.KIND

    async def _send(self, row: Any, _batch: object) -> None:
        marker = DeployMarker.from_payload(row.payload)
        service = self._config.services.get(marker.service)
        settings = getattr(service.markers, marker.platform, None) if service else None
        if settings is None:
            return  # the service's markers were taken out of the config since
        try:
            remote_id = await self._mark(marker, settings)
        except DeliveryFailed as exc:
            if not exc.retryable:
                await self._ledger.failed(marker, exc.reason)
            raise
        await self._ledger.delivered(marker, remote_id)

    async def _mark(self, marker: DeployMarker, settings: Any) -> str:
        now = self._clock.now().timestamp()
        async with self._client() as client:
            if marker.platform == "grafana":
                return await grafana.mark(
                    client,
                    marker,
                    settings,
                    url=self._secret(settings.url_env, "grafana"),
                    token=self._secret(settings.token_env, "grafana"),
                    opened_region=self._ledger.opened_region,
                    now=now,
                )
            key = self._secret(settings.api_key_env, marker.platform)
            if marker.platform == "datadog":
                return await datadog.mark(client, marker, settings, api_key=key, now=now)
            return await newrelic.mark(client, marker, settings, api_key=key, now=now)
