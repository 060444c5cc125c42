"""The audit forwarder's webhook: records POSTed as JSON Lines, signed like GitHub's hooks.

    POST <RELEASEBOT_AUDIT_FORWARD_URL>
    Content-Type: application/x-ndjson
    X-Releasebot-Audit-Seq: 41-60                         first and last sequence carried
    X-Releasebot-Signature-256: sha256=<hex HMAC-SHA256 of the body under the secret>

The signature header is sent only when RELEASEBOT_AUDIT_FORWARD_SECRET is set; the secret
itself never leaves the process. A 2xx answer is a delivery; 408, 429 and 5xx (and network
errors) are retried by the outbox; any other answer is a permanent refusal.
"""

from __future__ import annotations

import hashlib
import hmac

import httpx

from bot.domain.errors import DeliveryFailed
from bot.settings import Settings
from integrations.http import make_client

SIGNATURE_HEADER = "X-Releasebot-Signature-256"
SEQ_HEADER = "X-Releasebot-Audit-Seq"
RETRYABLE = frozenset({408, 429})


def signature(secret: str, body: bytes) -> str:
    """The signature header's value for `body`."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


class AuditWebhook:
    """Sends stretches of the audit trail to one URL."""

    def __init__(self, url: str, secret: str | None, client: httpx.AsyncClient) -> None:
        self._url = url
        self._secret = secret
        self._client = client

    @classmethod
    def from_settings(
        cls, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> AuditWebhook | None:
        """The forwarder for RELEASEBOT_AUDIT_FORWARD_URL, or None when it is not set."""
        if not settings.audit_forward_url:
            return None
        secret = settings.audit_forward_secret
        return cls(
            settings.audit_forward_url,
            secret.get_secret_value() if secret is not None else None,
            make_client("", transport=transport),
        )

    async def send(self, body: bytes, *, first_seq: int, last_seq: int) -> int:
        """POST the records; the receiver's status code. Raises `DeliveryFailed`."""
        headers = {"Content-Type": "application/x-ndjson", SEQ_HEADER: f"{first_seq}-{last_seq}"}
        if self._secret:
            headers[SIGNATURE_HEADER] = signature(self._secret, body)
        try:
            response = await self._client.post(self._url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise DeliveryFailed(
                f"audit forwarder: {type(exc).__name__} reaching the receiver", retryable=True
            ) from exc
        if response.is_success:
            return response.status_code
        status = response.status_code
        raise DeliveryFailed(
            f"audit forwarder: the receiver answered HTTP {status}",
            retryable=status in RETRYABLE or status >= 500,
            status=status,
        )

    async def aclose(self) -> None:
        await self._client.aclose()
