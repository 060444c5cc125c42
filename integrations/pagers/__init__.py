"""Pagers: `bot.ports.Pager` for each on-call tool a service's `oncall:` section can name.

    pager = PagerDutyPager(make_client(settings.pagerduty_events_url))   # pagerduty.py
    pager = OpsgeniePager(make_client(OPSGENIE_API_URL))                 # opsgenie.py
    key = await pager.send(PagerEvent(action="trigger", routing_key=routing_key,
                                      dedup_key="release-bot/checkout/42", summary="...",
                                      source="releasebot/checkout/production"))

| oncall key | module       | class            | `routing_key` is                  |
|------------|--------------|------------------|-----------------------------------|
| pagerduty  | pagerduty.py | `PagerDutyPager` | the Events v2 integration key     |
| opsgenie   | opsgenie.py  | `OpsgeniePager`  | the API integration key (GenieKey)|

Both take their `httpx.AsyncClient` (and a `RetryPolicy`) in the constructor and read no
environment. `send` raises `bot.domain.errors.DeliveryFailed`: retryable for network errors,
5xx and rate limits (`retry_after` set), not retryable for anything else the provider refuses,
with the provider's own words. The key in `routing_key` is a credential: it is redacted from
every reason, and never part of a URL or a log line. `aclose()` closes the client.

Both providers deduplicate (PagerDuty on `dedup_key`, Opsgenie on `alias`), so retrying a
trigger or resolve is safe; use deterministic keys such as `release-bot/<svc>/<deploy_id>`.

This module holds the request loop the pagers share.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import httpx

from bot.domain.errors import DeliveryFailed
from integrations.http import RetryPolicy, redact

__all__ = ["Explain", "RateLimitWait", "json_body", "post_with_retries", "refused"]

Explain = Callable[[httpx.Response], str]
"""The provider's own words for a refused request."""

RateLimitWait = Callable[[httpx.Response], float]
"""Seconds to wait after a 429, from the provider's headers or its documented default."""


def refused(reason: str) -> DeliveryFailed:
    """A failure no retry can fix (a missing key, an event the provider cannot take)."""
    return DeliveryFailed(reason, retryable=False)


async def post_with_retries(
    client: httpx.AsyncClient,
    path: str,
    *,
    provider: str,
    json: Any,
    policy: RetryPolicy,
    explain: Explain,
    rate_limit_wait: RateLimitWait,
    params: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    secrets: Iterable[str] = (),
) -> httpx.Response:
    """POST `json` to `path`; return the 2xx response or raise `DeliveryFailed`.

    Like `integrations.http.request_with_retries`, with the provider's rate-limit rule and
    error body: network errors, 408 and 5xx are retried in place with the policy's backoff;
    a 429 is slept through only when `rate_limit_wait` is at most `policy.max_inline_wait`,
    else raised at once as retryable with `retry_after`; any other status is not retryable.
    """
    secret_list = [secret for secret in secrets if secret]
    what = f"{provider} POST {path.split('?', 1)[0]}"
    delay = policy.backoff
    attempt = 0
    while True:
        attempt += 1
        last = attempt >= policy.attempts
        try:
            response = await client.post(path, json=json, params=params, headers=headers)
        except httpx.TransportError as error:
            if last:
                raise _failed(
                    f"{what}: {_network_error(error)}", secret_list, retryable=True
                ) from None
            await policy.sleep(delay)
            delay = min(delay * 2, policy.max_backoff)
            continue

        status = response.status_code
        if 200 <= status < 300:
            return response
        await response.aread()
        reason = f"{what}: {status} {explain(response)}"

        if status == 429:
            wait = rate_limit_wait(response)
            if last or wait > policy.max_inline_wait:
                raise _failed(
                    f"{reason} (rate limited; retry in {wait:g} s)",
                    secret_list,
                    retryable=True,
                    retry_after=wait,
                    status=status,
                )
            await policy.sleep(wait)
            continue

        if status >= 500 or status == 408:
            if last:
                raise _failed(reason, secret_list, retryable=True, status=status)
            await policy.sleep(delay)
            delay = min(delay * 2, policy.max_backoff)
            continue

        if 300 <= status < 400:
            location = response.headers.get("location")
            moved = f" (redirected to {location.split('?', 1)[0]})" if location else ""
            reason = f"{what}: {status} {response.reason_phrase}{moved}"
        raise _failed(reason, secret_list, retryable=False, status=status)


def json_body(response: httpx.Response) -> dict[str, Any]:
    """The response's JSON object, or {} when it has none."""
    try:
        data: Any = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _network_error(error: httpx.TransportError) -> str:
    if isinstance(error, httpx.TimeoutException):
        return f"timed out ({type(error).__name__})"
    detail = str(error)
    return f"{type(error).__name__}: {detail}" if detail else type(error).__name__


def _failed(
    reason: str,
    secrets: list[str],
    *,
    retryable: bool,
    retry_after: float | None = None,
    status: int | None = None,
) -> DeliveryFailed:
    return DeliveryFailed(
        redact(reason, secrets), retryable=retryable, retry_after=retry_after, status=status
    )
