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

This module holds what the pagers share: their retry rules and their error body reader.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import httpx

from bot.domain.errors import DeliveryFailed
from integrations.http import (
    Explain,
    RateLimitWait,
    RetryPolicy,
    RetryRules,
    send_with_retries,
)

__all__ = ["json_body", "post_with_retries", "refused"]


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

    `integrations.http.send_with_retries` with the pagers' rules: network errors, 408 and
    5xx are retried in place with the policy's backoff (a Retry-After on them is not read);
    only a 429 is a rate limit, slept through when `rate_limit_wait` (the provider's header
    or its documented default, given the policy's clock) is at most
    `policy.max_inline_wait`, else raised at once as retryable with `retry_after`; any other
    status is not retryable, explained by `explain`. Reasons start with `provider`, and a
    redirect's target is shown without its query string.
    """
    rules = RetryRules(
        label=provider,
        explain=explain,
        rate_limited=_is_429,
        rate_limit_wait=rate_limit_wait,
        server_wait=None,
        redirect_target=_without_query,
        chain_network_error=False,
    )
    return await send_with_retries(
        client,
        "POST",
        path,
        policy=policy,
        rules=rules,
        params=params,
        headers=headers,
        json=json,
        secrets=secrets,
    )


def json_body(response: httpx.Response) -> dict[str, Any]:
    """The response's JSON object, or {} when it has none."""
    try:
        data: Any = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _is_429(response: httpx.Response) -> bool:
    return response.status_code == 429


def _without_query(location: str) -> str:
    return location.split("?", 1)[0]
