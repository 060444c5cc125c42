"""Opsgenie Alert API: open and close alerts; deploys become low-priority "change" alerts.

    pager = OpsgeniePager(make_client(OPSGENIE_API_URL))     # or OPSGENIE_EU_API_URL
    await pager.send(PagerEvent(action="trigger", routing_key=api_key, dedup_key="release-bot/...",
                                summary="checkout 1.4.2 failed verification", source="..."))
    # -> "43a29c5c-3dbf-4fa4-9c26-f4f71023e120" (Opsgenie's requestId)

Every call sends `Authorization: GenieKey <event.routing_key>` (the API integration key).

- trigger -> `POST /v2/alerts` `{message (<= 130 chars), alias (= dedup_key), description
  (the summary, then the links), priority, details, source, entity}`. Priority from the
  severity: critical P1, error P2, warning P3, info P4 (anything else P2). `details` is a
  string map in Opsgenie, so non-string custom_details are written as JSON. `entity` is the
  event's component, else its source.
- resolve -> `POST /v2/alerts/{alias}/close?identifierType=alias` `{source, note}`; needs a
  dedup_key.
- change -> `POST /v2/alerts` like a trigger, with priority P5 and the tag "change".
  Opsgenie has no change events: this is a real (informational) alert, which someone or a
  policy has to close, and which notifies whoever the integration's rules say. Give change
  events their own dedup_key (or none): an alias shared with a trigger would merge into
  that open alert (Opsgenie keeps one open alert per alias and counts repeats).

Answers: 202 -> the `requestId` (Opsgenie processes alerts asynchronously; the request's fate
is at `GET /v2/alerts/requests/{requestId}`). 429 -> retryable, `retry_after` from
`X-RateLimit-Period-In-Sec` (else Retry-After, else 60 s). 5xx and network errors -> retried
in place per the `RetryPolicy`, then retryable. 400/401/402/403/404/422 -> not retryable,
with Opsgenie's `message`. The API key never appears in a reason.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import httpx

from bot.ports import PagerEvent
from integrations.http import (
    DEFAULT_RATE_LIMIT_WAIT,
    RetryPolicy,
    error_message,
    make_client,
    retry_after_seconds,
)
from integrations.pagers import json_body, post_with_retries, refused

__all__ = [
    "ALERTS_PATH",
    "CHANGE_PRIORITY",
    "CHANGE_TAG",
    "OPSGENIE_API_URL",
    "OPSGENIE_EU_API_URL",
    "PRIORITIES",
    "OpsgeniePager",
]

OPSGENIE_API_URL = "https://api.opsgenie.com"
OPSGENIE_EU_API_URL = "https://api.eu.opsgenie.com"
ALERTS_PATH = "/v2/alerts"

PRIORITIES = {"critical": "P1", "error": "P2", "warning": "P3", "info": "P4"}
DEFAULT_PRIORITY = "P2"
CHANGE_PRIORITY = "P5"
CHANGE_TAG = "change"

MESSAGE_MAX_CHARS = 130
ALIAS_MAX_CHARS = 512
DESCRIPTION_MAX_CHARS = 15000
NOTE_MAX_CHARS = 25000
SOURCE_MAX_CHARS = 100
ENTITY_MAX_CHARS = 512


class OpsgeniePager:
    """`Pager` for Opsgenie's Alert API (`event.routing_key` is the GenieKey).

    **Parameters:**

    * **client** - an `httpx.AsyncClient` whose base URL is the API (`OPSGENIE_API_URL`,
      or `OPSGENIE_EU_API_URL` for EU accounts); default one for `OPSGENIE_API_URL`.
    * **retry** - how calls retry.
    """

    def __init__(
        self, client: httpx.AsyncClient | None = None, *, retry: RetryPolicy | None = None
    ) -> None:
        self._client = client if client is not None else make_client(OPSGENIE_API_URL)
        self._retry = retry or RetryPolicy()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def send(self, event: PagerEvent) -> str | None:
        if not event.routing_key:
            raise refused("Opsgenie: no API key for this service")
        if event.dedup_key is not None and len(event.dedup_key) > ALIAS_MAX_CHARS:
            raise refused(f"Opsgenie: dedup_key is longer than {ALIAS_MAX_CHARS} characters")
        params: dict[str, str] | None = None
        if event.action == "trigger":
            path, body = ALERTS_PATH, _alert_body(event)
        elif event.action == "change":
            path, body = ALERTS_PATH, _alert_body(event, change=True)
        elif event.action == "resolve":
            if not event.dedup_key:
                raise refused("Opsgenie: a resolve needs the dedup_key (alias) of the alert")
            path = f"{ALERTS_PATH}/{quote(event.dedup_key, safe='')}/close"
            params = {"identifierType": "alias"}
            body = {
                "source": _clip(event.source, SOURCE_MAX_CHARS),
                "note": _clip(event.summary, NOTE_MAX_CHARS),
            }
        else:
            raise refused(f"Opsgenie: unknown event action {event.action!r}")
        response = await post_with_retries(
            self._client,
            path,
            provider="Opsgenie",
            json=body,
            params=params,
            headers={"Authorization": f"GenieKey {event.routing_key}"},
            policy=self._retry,
            explain=_explain,
            rate_limit_wait=_rate_limit_wait,
            secrets=[event.routing_key],
        )
        request_id = json_body(response).get("requestId")
        return request_id if isinstance(request_id, str) and request_id else None


def _alert_body(event: PagerEvent, *, change: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"message": _clip(event.summary, MESSAGE_MAX_CHARS)}
    if event.dedup_key:
        body["alias"] = event.dedup_key
    body["description"] = _clip(_description(event), DESCRIPTION_MAX_CHARS)
    body["priority"] = (
        CHANGE_PRIORITY if change else PRIORITIES.get(event.severity, DEFAULT_PRIORITY)
    )
    if change:
        body["tags"] = [CHANGE_TAG]
    if event.custom_details:
        body["details"] = {
            str(key): value if isinstance(value, str) else json.dumps(value, default=str)
            for key, value in event.custom_details.items()
        }
    body["source"] = _clip(event.source, SOURCE_MAX_CHARS)
    body["entity"] = _clip(event.component or event.source, ENTITY_MAX_CHARS)
    return body


def _description(event: PagerEvent) -> str:
    lines = [event.summary]
    if event.links:
        lines.append("")
        lines.extend(f"{text}: {href}" if text else href for href, text in event.links)
    return "\n".join(lines)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _rate_limit_wait(response: httpx.Response, now: float) -> float:
    period = response.headers.get("x-ratelimit-period-in-sec")
    if period is not None:
        try:
            seconds = float(period)
        except ValueError:
            seconds = -1.0
        if 0 <= seconds < float("inf"):
            return seconds
    asked = retry_after_seconds(response, now=now)
    return DEFAULT_RATE_LIMIT_WAIT if asked is None else asked


def _explain(response: httpx.Response) -> str:
    """Opsgenie's `message`, with its per-field `errors` when it sends them (422)."""
    message = error_message(response)
    errors = json_body(response).get("errors")
    if isinstance(errors, dict) and errors:
        detail = "; ".join(f"{field}: {problem}" for field, problem in errors.items())
        return f"{message} ({detail})"
    return message
