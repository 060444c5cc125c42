"""What the three marker clients share: one request per attempt
(`integrations.http_sender`), with Grafana's, Datadog's and New Relic's own words in the
reason of a refusal.

- network errors, 429 (with its `Retry-After`) and 5xx: retryable; the outbox tries again
  with backoff;
- 401, 403 and every other 4xx: given up on at once (a refused key does not heal by
  itself), with the platform's own message. The key is blanked out of every reason.
"""

from __future__ import annotations

from typing import Any

import httpx

from integrations.http_sender import platform_message, send_once


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
    response = await send_once(
        client,
        method,
        url,
        platform=platform,
        secret=secret,
        now=now,
        explain=message_of,
        headers=headers,
        json=json,
    )
    try:
        return response.json()
    except ValueError:
        return {}


def message_of(response: httpx.Response) -> str:
    """The platform's words: Grafana's `message`, Datadog's `errors`, NerdGraph's `errors`."""
    return platform_message(response, "errors")
