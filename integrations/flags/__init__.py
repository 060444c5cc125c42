"""Feature flag platforms: LaunchDarkly, Unleash, and a signed webhook for anything else.

    senders = FlagSenders(config=config, secrets=os.environ.get, ledger=FlagLedger(db, clock),
                          clock=clock)
    OutboxWorker(..., more={**senders.handlers(transport=None)})

Each `FlagChange` outbox row (queued by `bot.services.flags` when a step is approved or the
kill switch is pulled) is sent by the client of its platform (`launchdarkly.py`,
`unleash.py`, `webhook.py`) with the flag's settings from the service's `release:` block;
the credentials come from the environment variables those settings name. The platform's
answer is the receipt (`flag.delivered`); a change given up on (a refused token, a flag
that does not exist) is recorded as `flag.failed` with the reason. 429, 5xx and network
errors are retried by the outbox.
"""

from __future__ import annotations

from typing import Any, Protocol

from bot.config.flags import Flag
from bot.domain.errors import DeliveryFailed
from bot.domain.flags import FlagChange
from integrations.flags import launchdarkly, unleash, webhook
from integrations.http_sender import Handler, OutboxSenders

__all__ = ["FlagSenders", "Handler", "Ledger"]


class Ledger(Protocol):
    """Where receipts are recorded (`bot.usecases.flags.FlagLedger`)."""

    async def delivered(self, change: FlagChange, receipt: dict[str, Any]) -> None: ...

    async def undelivered(self, change: FlagChange, reason: str) -> None: ...


class FlagSenders(OutboxSenders[Ledger]):
    """Sends `FlagChange` rows: `handlers()` maps the outbox kind to the sender."""

    kind = FlagChange.KIND

    async def _send(self, row: Any, _batch: object) -> None:
        change = FlagChange.from_payload(row.payload)
        service = self._config.services.get(change.service)
        release = service.release if service is not None else None
        settings = release.flag(change.flag) if release is not None else None
        try:
            if service is None or settings is None:
                raise DeliveryFailed(
                    f"{change.flag} is no longer in the release block of {change.service}",
                    retryable=False,
                )
            receipt = await self._apply(change, settings, service.release_environment() or "")
        except DeliveryFailed as exc:
            if not exc.retryable:
                await self._ledger.undelivered(change, exc.reason)
            raise
        await self._ledger.delivered(change, receipt)

    async def _apply(self, change: FlagChange, settings: Flag, environment: str) -> dict[str, Any]:
        now = self._clock.now().timestamp()
        comment = f"releasebot: {change.describe()} ({change.service}, step {change.step_id})"
        async with self._client() as client:
            if settings.launchdarkly is not None:
                key = self._secret(settings.launchdarkly.api_key_env, "launchdarkly")
                return await launchdarkly.apply(
                    client, change, settings.launchdarkly, api_key=key, comment=comment, now=now
                )
            if settings.unleash is not None:
                token = self._secret(settings.unleash.token_env, "unleash")
                return await unleash.apply(client, change, settings.unleash, token=token, now=now)
            assert settings.webhook is not None
            secret = self._secret(settings.webhook.secret_env, "the flag webhook")
            return await webhook.apply(
                client, change, settings.webhook, environment=environment, secret=secret, now=now
            )
