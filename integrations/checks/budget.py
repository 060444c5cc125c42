"""Error ratios of an SLO from Prometheus, and the `burn_rate` verify check built on them.

    source = PrometheusBudget(make_client(""))
    await source.error_ratios(url="http://prom:9090", good="sum(rate(ok[$window]))",
                              total="sum(rate(all[$window]))", windows=("30d", "1h", "5m"))
    {"30d": 0.0004, "1h": 0.0012, "5m": None}      # None: no traffic in that window

One instant query per window, `1 - ((good) / (total))` with `$window` replaced, through
`GET {url}/api/v1/query` (Prometheus' JSON envelope). An empty vector or NaN (0/0) is a
window without traffic. Anything else that is not a number raises `DeliveryFailed` with the
reason in plain English (the budget is then unknown, never guessed).

`BurnRateCheckRunner` fails a `burn_rate` check while the SLO burns faster than `max` over
both its `window` and its `short_window`.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from typing import Any

import httpx

from bot.domain.errors import DeliveryFailed
from bot.domain.slo import burn_rate
from bot.ports import CheckResult
from integrations.checks import (
    describe_transport_error,
    duration_seconds,
    misconfigured,
    safe_url,
    section,
)
from integrations.checks.metric import clip, window_label
from integrations.checks.prometheus import ERROR_MESSAGES, QUERY_PATH
from integrations.http import make_client

WINDOW = "$window"


def ratio_query(good: str, total: str, window: str) -> str:
    """The error ratio over `window`: `1 - ((good) / (total))`."""
    return f"1 - (({good.replace(WINDOW, window)}) / ({total.replace(WINDOW, window)}))"


class PrometheusBudget:
    """`bot.ports.BudgetSource` over Prometheus' instant-query API."""

    def __init__(self, client: httpx.AsyncClient | None = None) -> None:
        self._client = client if client is not None else make_client("")

    async def aclose(self) -> None:
        await self._client.aclose()

    async def error_ratios(
        self, *, url: str, good: str, total: str, windows: tuple[str, ...]
    ) -> dict[str, float | None]:
        answers = await asyncio.gather(
            *(self._ratio(url.rstrip("/"), ratio_query(good, total, w)) for w in windows)
        )
        return dict(zip(windows, answers, strict=True))

    async def _ratio(self, url: str, query: str) -> float | None:
        server = safe_url(url)
        try:
            response = await self._client.get(url + QUERY_PATH, params={"query": query})
        except httpx.HTTPError as error:
            reason = f"could not reach Prometheus at {server}: {describe_transport_error(error)}"
            raise DeliveryFailed(reason, retryable=True) from None
        return _value(response, server)


def _value(response: httpx.Response, server: str) -> float | None:
    try:
        envelope: Any = response.json()
    except ValueError:
        envelope = None
    if not isinstance(envelope, dict) or envelope.get("status") not in ("success", "error"):
        reason = (
            f"Prometheus at {server} answered HTTP {response.status_code} without an API answer"
        )
        raise DeliveryFailed(reason, retryable=response.status_code >= 500)
    if envelope["status"] == "error":
        error = clip(str(envelope.get("error") or "no message"))
        template = ERROR_MESSAGES.get(str(envelope.get("errorType") or ""), "{error}")
        raise DeliveryFailed("Prometheus: " + template.replace("{error}", error), retryable=False)
    data = envelope.get("data")
    kind = data.get("resultType") if isinstance(data, dict) else None
    result = data.get("result") if isinstance(data, dict) else None
    if kind == "scalar":
        pair: Any = result
    elif kind == "vector" and isinstance(result, list):
        if not result:
            return None
        pair = result[0].get("value") if isinstance(result[0], dict) else None
    else:
        raise DeliveryFailed(f"the SLO query returned {kind!r}, not a number", retryable=False)
    try:
        value = float(pair[1])
    except (TypeError, ValueError, IndexError):
        raise DeliveryFailed(
            f"unreadable sample in the Prometheus answer: {pair!r}", retryable=False
        ) from None
    return None if math.isnan(value) else value


class BurnRateCheckRunner:
    """`CheckRunner` for `burn_rate` checks (the service's SLO is in the check)."""

    def __init__(self, source: PrometheusBudget | None = None) -> None:
        self._source = source or PrometheusBudget()

    async def aclose(self) -> None:
        await self._source.aclose()

    async def run(self, check: Mapping[str, Any]) -> CheckResult:
        config = section(check, "burn_rate")
        slo = section(config, "slo") if config is not None else None
        if config is None or slo is None:
            return misconfigured(check, "burn_rate needs the service's slo")
        try:
            long = window_label(duration_seconds(config.get("window", "1h")))
            short = window_label(duration_seconds(config.get("short_window", "5m")))
            limit = float(config.get("max", 14.4))
            objective = float(slo["objective"])
            url, good, total = str(slo["url"]), str(slo["good"]), str(slo["total"])
        except (KeyError, TypeError, ValueError) as error:
            return misconfigured(check, f"burn_rate: {error}")
        evidence: dict[str, Any] = {"url": safe_url(url), "max": limit, "objective": objective}
        try:
            ratios = await self._source.error_ratios(
                url=url, good=good, total=total, windows=(long, short)
            )
        except DeliveryFailed as error:
            evidence["error"] = error.reason
            return CheckResult(False, f"the burn rate is unknown: {error.reason}", evidence)
        rates = {w: burn_rate(r or 0.0, objective) for w, r in ratios.items()}
        evidence["burn"] = rates
        shown = f"burn rate {rates[long]:.3g}× over {long}, {rates[short]:.3g}× over {short}"
        if rates[long] > limit and rates[short] > limit:
            return CheckResult(False, f"{shown}: both above max {limit:g}", evidence)
        return CheckResult(True, f"{shown} (fails when both exceed {limit:g})", evidence)
