"""The `datadog` verify check: a metric query over the window before the check runs.

    runner = DatadogCheckRunner(make_client(""), secrets=os.environ.get, clock=SystemClock())
    await runner.run({"name": "errors", "datadog": {"site": "datadoghq.eu",
        "api_key_env": "DD_API_KEY", "app_key_env": "DD_APP_KEY",
        "query": "sum:trace.http.request.errors{service:checkout}.as_count()", "max": 5}})

One `GET https://api.<site>/api/v1/query?from=<s>&to=<s>&query=...` per run, with the
`DD-API-KEY` and `DD-APPLICATION-KEY` headers (read from the environment variables the check
names; never shown). Each series' `pointlist` (`[[ms, value], ...]`, null for a gap) is
reduced by `reduce` and the worst series compared with `max`/`min`. An error answer
(`{"errors": [...]}`, or `{"status": "error", "error": ...}`) is a failed result in plain
words. The thread line links to the metric explorer over the same window (`link:` replaces it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

import httpx

from bot.ports import CheckResult, Clock, SystemClock
from integrations.checks import describe_transport_error, misconfigured, section
from integrations.checks.metric import (
    Misconfigured,
    Threshold,
    clip,
    failed,
    judge,
    reduce_series,
    reducer,
    text,
    window_label,
    window_seconds,
)
from integrations.http import make_client

QUERY_PATH = "/api/v1/query"


def app_host(site: str) -> str:
    """The web app of a Datadog site: datadoghq.com -> app.datadoghq.com,
    us3.datadoghq.com -> us3.datadoghq.com, datadoghq.eu -> app.datadoghq.eu."""
    return f"app.{site}" if site.count(".") == 1 else site


class DatadogCheckRunner:
    """`CheckRunner` for `datadog` checks."""

    def __init__(
        self,
        client: httpx.AsyncClient | None = None,
        *,
        secrets: Callable[[str], str | None],
        clock: Clock | None = None,
    ) -> None:
        self._client = client if client is not None else make_client("")
        self._secrets = secrets
        self._clock = clock or SystemClock()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def run(self, check: Mapping[str, Any]) -> CheckResult:
        config = section(check, "datadog")
        if config is None:
            return misconfigured(check, "no datadog section")
        try:
            site, query = str(config.get("site") or "datadoghq.com"), text(config, "query")
            api_env, app_env = text(config, "api_key_env"), text(config, "app_key_env")
            threshold, window, how = Threshold.of(config), window_seconds(config), reducer(config)
        except Misconfigured as error:
            return misconfigured(check, f"datadog.{error}")
        end = int(self._clock.now().timestamp())
        start = end - int(window)
        evidence: dict[str, Any] = {
            "site": site,
            "query": query,
            "window": window_label(window),
            "reduce": how,
            **threshold.to_evidence(),
            "link": config.get("link") or explorer_link(site, query, start, end),
        }
        keys = {name: self._secrets(name) for name in (api_env, app_env)}
        unset = [name for name, value in keys.items() if not value]
        if unset:
            return failed(f"{' and '.join(unset)} not set: cannot query Datadog", evidence)
        headers = {"DD-API-KEY": keys[api_env] or "", "DD-APPLICATION-KEY": keys[app_env] or ""}
        params = {"from": str(start), "to": str(end), "query": query}
        try:
            response = await self._client.get(
                f"https://api.{site}{QUERY_PATH}", params=params, headers=headers
            )
        except httpx.HTTPError as error:
            reason = f"could not reach Datadog ({site}): {describe_transport_error(error)}"
            return failed(reason, evidence, error=reason)
        evidence["status_code"] = response.status_code
        series = _series(response, evidence)
        if isinstance(series, CheckResult):
            return series
        what = f"{how} over {window_label(window)}"
        return judge(
            reduce_series(series, how),
            what=what,
            threshold=threshold,
            evidence=evidence,
        )


def explorer_link(site: str, query: str, start: int, end: int) -> str:
    """The metric explorer of the Datadog site, over the check's window."""
    params = {"from_ts": str(start * 1000), "to_ts": str(end * 1000), "live": "false"}
    params["exp_metric"] = query
    return f"https://{app_host(site)}/metric/explorer?{urlencode(params)}"


def _series(
    response: httpx.Response, evidence: dict[str, Any]
) -> list[list[float | None]] | CheckResult:
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if not response.is_success or not isinstance(body, dict):
        errors = body.get("errors") if isinstance(body, dict) else None
        detail = "; ".join(str(e) for e in errors) if isinstance(errors, list) else response.text
        reason = f"Datadog answered HTTP {response.status_code}"
        if detail.strip():
            reason += f": {clip(detail, 200)}"
        return failed(reason, evidence, error=clip(detail))
    if body.get("status") == "error":
        error = clip(str(body.get("error") or "no message"))
        return failed(f"the Datadog query failed: {error}", evidence, error=error)
    series: list[list[float | None]] = []
    for item in body.get("series") or []:
        points = item.get("pointlist") if isinstance(item, dict) else None
        series.append([_point(p) for p in points or []])
    return series


def _point(pair: Any) -> float | None:
    try:
        return None if pair[1] is None else float(pair[1])
    except (TypeError, ValueError, IndexError):
        return None
