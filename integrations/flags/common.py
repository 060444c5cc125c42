"""What the flag clients share: one request per attempt (`integrations.http_sender`), with
LaunchDarkly's and Unleash's own words in the reason of a refusal.

- network errors, 429 (with its `Retry-After`) and 5xx: retryable; the outbox tries again
  with backoff;
- 401, 403, 404 and every other 4xx: given up on at once (a refused token or a flag that
  does not exist does not heal by itself), with the platform's own message. The token is
  blanked out of every reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx

from integrations.http_sender import platform_message, send_once


@dataclass(frozen=True)
class Platform:
    """Who is called and how: its name in reasons, its headers, the secret they carry
    (blanked out of every reason) and the time now (for `Retry-After`)."""

    name: str
    headers: dict[str, str]
    secret: str
    now: float


async def send(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    platform: Platform,
    body: dict[str, Any] | None = None,
    content_type: str = "application/json",
) -> tuple[int, Any]:
    """The status and JSON answer (None when there is none) of one request, or
    DeliveryFailed saying why not."""
    sent = dict(platform.headers)
    content = None
    if body is not None:
        content = json.dumps(body).encode()
        sent["Content-Type"] = content_type
    response = await send_once(
        client,
        method,
        url,
        platform=platform.name,
        secret=platform.secret,
        now=platform.now,
        explain=message_of,
        headers=sent,
        content=content,
    )
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, None


def message_of(response: httpx.Response) -> str:
    """The platform's words: LaunchDarkly's `message`, Unleash's `message` or `details`."""
    return platform_message(response, "details")
