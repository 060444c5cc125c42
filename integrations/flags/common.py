"""What the flag clients share: one request per attempt, and how an answer that is not a
success becomes `DeliveryFailed` for the outbox.

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

from bot.domain.errors import DeliveryFailed
from integrations.http import redact, retry_after_seconds


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
    path = httpx.URL(url).path
    name, secret, now = platform.name, platform.secret, platform.now
    sent = dict(platform.headers)
    content = None
    if body is not None:
        content = json.dumps(body).encode()
        sent["Content-Type"] = content_type
    try:
        response = await client.request(method, url, content=content, headers=sent)
    except httpx.HTTPError as exc:
        raise DeliveryFailed(
            f"{name}: {method} {path}: {type(exc).__name__}", retryable=True
        ) from exc
    if response.is_success:
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, None
    status = response.status_code
    detail = redact(message_of(response), [secret])
    reason = f"{name}: {method} {path}: {status}" + (f" {detail}" if detail else "")
    if status == 429:
        raise DeliveryFailed(
            reason, retryable=True, retry_after=retry_after_seconds(response, now=now)
        )
    raise DeliveryFailed(reason, retryable=status >= 500)


def message_of(response: httpx.Response) -> str:
    """The platform's words: LaunchDarkly's `message`, Unleash's `message` or `details`."""
    try:
        body: Any = response.json()
    except ValueError:  # an HTML error page from a proxy: its status says enough
        return response.reason_phrase
    if not isinstance(body, dict):
        return ""
    if isinstance(body.get("message"), str):
        return str(body["message"])[:200]
    details = body.get("details")
    if isinstance(details, list):
        words = (d.get("message") if isinstance(d, dict) else d for d in details)
        return "; ".join(str(w) for w in words)[:200]
    return ""
