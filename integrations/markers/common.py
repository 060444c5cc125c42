"""What the three marker clients share: one request per attempt, and how an answer that is
not a success becomes `DeliveryFailed` for the outbox.

- network errors, 429 (with its `Retry-After`) and 5xx: retryable; the outbox tries again
  with backoff;
- 401, 403 and every other 4xx: given up on at once (a refused key does not heal by
  itself), with the platform's own message. The key is blanked out of every reason.
"""

from __future__ import annotations

from typing import Any

import httpx

from bot.domain.errors import DeliveryFailed
from integrations.http import redact, retry_after_seconds


async def send(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    platform: str,
    json: dict[str, Any],
    headers: dict[str, str],
    secret: str,
    now: float,
) -> Any:
    """The JSON answer of one request, or DeliveryFailed saying why not."""
    path = httpx.URL(url).path
    try:
        response = await client.request(method, url, json=json, headers=headers)
    except httpx.HTTPError as exc:
        raise DeliveryFailed(
            f"{platform}: {method} {path}: {type(exc).__name__}", retryable=True
        ) from exc
    if response.is_success:
        try:
            return response.json()
        except ValueError:
            return {}
    status = response.status_code
    detail = redact(message_of(response), [secret])
    reason = f"{platform}: {method} {path}: {status}" + (f" {detail}" if detail else "")
    if status == 429:
        wait = retry_after_seconds(response, now=now)
        raise DeliveryFailed(reason, retryable=True, retry_after=wait)
    raise DeliveryFailed(reason, retryable=status >= 500)


def message_of(response: httpx.Response) -> str:
    """The platform's words: Grafana's `message`, Datadog's `errors`, NerdGraph's `errors`."""
    try:
        body: Any = response.json()
    except ValueError:  # an HTML error page from a proxy: its status says enough
        return response.reason_phrase
    if not isinstance(body, dict):
        return ""
    if isinstance(body.get("message"), str):
        return str(body["message"])[:200]
    errors = body.get("errors")
    if isinstance(errors, list):
        return "; ".join(str(e.get("message") if isinstance(e, dict) else e) for e in errors)[:200]
    return ""
