"""The places an audit checkpoint is published, as outbox handlers.

- the JSON Lines file (`RELEASEBOT_AUDIT_CHECKPOINT_FILE`): one line appended per
  checkpoint, the file opened in append mode only;
- the Slack audit channel (`slack.audit_channel`): a short line;
- the webhook sink (`RELEASEBOT_AUDIT_CHECKPOINT_URL`): the checkpoint as a JSON body,
  signed with `X-Releasebot-Signature-256: sha256=<HMAC-SHA256 of the body>` under
  `RELEASEBOT_AUDIT_CHECKPOINT_SECRET`. Network errors, 429 and 5xx are retried by the outbox.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

import httpx

from bot.domain.checkpoints import CheckpointToFile, CheckpointToSlack, CheckpointToWebhook
from bot.domain.errors import DeliveryFailed
from bot.ports import SlackSender
from bot.settings import Settings
from integrations.http import make_client

SIGNATURE_HEADER = "X-Releasebot-Signature-256"


class _Row(Protocol):
    @property
    def payload(self) -> dict[str, Any]: ...


Handler = Callable[[Any, Any], Awaitable[None]]


def signature_of(body: bytes, secret: str) -> str:
    """The webhook's signature header value for this body."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def line_of(checkpoint: dict[str, Any]) -> str:
    return json.dumps(checkpoint, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class CheckpointSinks:
    """Sends checkpoint rows: `handlers()` maps each outbox kind to its sender."""

    def __init__(
        self,
        *,
        slack: SlackSender,
        file: Path | None = None,
        url: str | None = None,
        secret: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._slack = slack
        self._file = file
        self._url = url
        self._secret = secret
        self._transport = transport

    def handlers(self) -> dict[str, Handler]:
        return {
            CheckpointToFile.KIND: self._to_file,
            CheckpointToSlack.KIND: self._to_slack,
            CheckpointToWebhook.KIND: self._to_webhook,
        }

    async def _to_file(self, row: _Row, _batch: object) -> None:
        if self._file is None:
            raise DeliveryFailed("RELEASEBOT_AUDIT_CHECKPOINT_FILE is not set", retryable=False)
        line = line_of(dict(CheckpointToFile.from_payload(row.payload).checkpoint)) + "\n"
        try:
            await asyncio.to_thread(_append, self._file, line)
        except OSError as exc:
            raise DeliveryFailed(
                f"cannot append to {self._file}: {exc.strerror}", retryable=True
            ) from exc

    async def _to_slack(self, row: _Row, _batch: object) -> None:
        post = CheckpointToSlack.from_payload(row.payload)
        await self._slack.post_message(channel=post.channel, text=post.text)

    async def _to_webhook(self, row: _Row, _batch: object) -> None:
        if self._url is None:
            raise DeliveryFailed("RELEASEBOT_AUDIT_CHECKPOINT_URL is not set", retryable=False)
        body = line_of(dict(CheckpointToWebhook.from_payload(row.payload).checkpoint)).encode()
        headers = {"Content-Type": "application/json"}
        if self._secret:
            headers[SIGNATURE_HEADER] = signature_of(body, self._secret)
        async with make_client(self._url, transport=self._transport) as client:
            try:
                response = await client.post(self._url, content=body, headers=headers)
            except httpx.TransportError as exc:
                raise DeliveryFailed(
                    f"checkpoint webhook: {type(exc).__name__}", retryable=True
                ) from exc
        if response.is_success:
            return
        retryable = response.status_code == 429 or response.status_code >= 500
        raise DeliveryFailed(
            f"checkpoint webhook answered {response.status_code}", retryable=retryable
        )


def _append(path: Path, line: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as out:
        out.write(line)
        out.flush()


def checkpoint_handlers(
    settings: Settings, slack: SlackSender, transport: httpx.AsyncBaseTransport | None = None
) -> dict[str, Handler]:
    """The outbox senders of checkpoint rows, as the settings configure them."""
    secret = settings.audit_checkpoint_secret
    return CheckpointSinks(
        slack=slack,
        file=settings.audit_checkpoint_file,
        url=settings.audit_checkpoint_url,
        secret=secret.get_secret_value() if secret is not None else None,
        transport=transport,
    ).handlers()
