"""Who is on call now, from PagerDuty's REST API (`GET /oncalls`).

    oncalls = PagerDutyOncalls(make_client(PAGERDUTY_API_URL))
    await oncalls.emails(escalation_policy="PABC123", token=api_token)
    # -> ["sam@acme.example"]

One call per question:

    GET /oncalls?escalation_policy_ids[]=PABC123&earliest=true&include[]=users
    Authorization: Token token=<REST API key>
    Accept: application/json

`earliest=true` gives one entry per escalation level and schedule (the current shift), and
`include[]=users` puts each user's full record, e-mail included, in the answer. The people
mentioned are those of the lowest escalation level present (the first responders), in
PagerDuty's order, without repeats.

Failures raise `bot.domain.errors.DeliveryFailed` (a 401 for a wrong token, a 404 for an
unknown policy, 429 and 5xx after the retries) with PagerDuty's own message; the token never
appears in a reason. Callers fall back to the configured Slack group.
"""

from __future__ import annotations

from typing import Any

import httpx

from integrations.http import RetryPolicy, make_client

__all__ = ["ONCALLS_PATH", "PAGERDUTY_API_URL", "PagerDutyOncalls"]

PAGERDUTY_API_URL = "https://api.pagerduty.com"
ONCALLS_PATH = "/oncalls"


class PagerDutyOncalls:
    """The e-mail addresses of the people on call now for an escalation policy.

    **Parameters:**

    * **client** - an `httpx.AsyncClient` whose base URL is the REST API
      (`PAGERDUTY_API_URL`, or `PAGERDUTY_API_URL` from the settings); default one.
    * **retry** - how calls retry (a mention waits for the answer: two attempts by default).
    """

    def __init__(
        self, client: httpx.AsyncClient | None = None, *, retry: RetryPolicy | None = None
    ) -> None:
        self._client = client if client is not None else make_client(PAGERDUTY_API_URL)
        self._retry = retry or RetryPolicy(attempts=2, max_inline_wait=2.0)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def emails(self, *, escalation_policy: str, token: str) -> list[str]:
        """The first responders' e-mail addresses (possibly none)."""
        response = await self._retry.request(
            self._client,
            "GET",
            ONCALLS_PATH,
            params={
                "escalation_policy_ids[]": escalation_policy,
                "earliest": "true",
                "include[]": "users",
            },
            headers={"Authorization": f"Token token={token}", "Accept": "application/json"},
            secrets=[token],
        )
        return first_responders(_json(response))


def first_responders(data: dict[str, Any]) -> list[str]:
    """The e-mails of the on-calls at the lowest escalation level, in order, no repeats."""
    entries = [e for e in data.get("oncalls") or [] if isinstance(e, dict)]
    levels = [_level(e) for e in entries]
    if not levels:
        return []
    lowest = min(levels)
    found: list[str] = []
    for entry, level in zip(entries, levels, strict=True):
        user = entry.get("user")
        email = user.get("email") if isinstance(user, dict) else None
        if level == lowest and isinstance(email, str) and email and email not in found:
            found.append(email)
    return found


def _level(entry: dict[str, Any]) -> int:
    level = entry.get("escalation_level")
    return level if isinstance(level, int) else 1


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data: Any = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
