"""The `prometheus_range` verify check: a range query over the window before the check runs.

    runner = PrometheusRangeCheckRunner(make_client(""), clock=SystemClock())
    await runner.run({"name": "p99", "prometheus_range": {"url": "http://prom:9090",
        "query": "histogram_quantile(0.99, ...)", "window": "10m", "step": "30s",
        "reduce": "max", "max": 0.3}})
    CheckResult(passed=True, summary="max over 10m = 0.21 <= max 0.3", evidence={...})

One `GET {url}/api/v1/query_range?query=...&start=...&end=...&step=...` per run, `end` the
moment the check runs and `start` one `window` earlier. The `matrix` answer is reduced per
series by `reduce` (see `integrations.checks.metric`), and the worst series is compared with
`max`/`min`. Prometheus errors (`{"status": "error", "errorType", "error"}`) read as for
instant queries. The thread line links to the Prometheus graph of the same query and window.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import httpx

from bot.ports import CheckResult, Clock, SystemClock
from integrations.checks import describe_transport_error, misconfigured, safe_url, section
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
from integrations.checks.prometheus import ERROR_MESSAGES
from integrations.http import make_client

RANGE_PATH = "/api/v1/query_range"


class PrometheusRangeCheckRunner:
    """`CheckRunner` for `prometheus_range` checks (a client without a base URL)."""

    def __init__(self, client: httpx.AsyncClient | None = None, *, clock: Clock | None = None):
        self._client = client if client is not None else make_client("")
        self._clock = clock or SystemClock()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def run(self, check: Mapping[str, Any]) -> CheckResult:
        config = section(check, "prometheus_range")
        if config is None:
            return misconfigured(check, "no prometheus_range section")
        try:
            url, query = text(config, "url").rstrip("/"), text(config, "query")
            threshold = Threshold.of(config)
            window = window_seconds(config)
            step = window_seconds(config, "step", default=30)
            how = reducer(config)
        except Misconfigured as error:
            return misconfigured(check, f"prometheus_range.{error}")
        if not url.startswith(("http://", "https://")):
            return misconfigured(check, f"prometheus_range.url {url!r} is not an http(s) URL")
        end = self._clock.now().timestamp()
        server = safe_url(url)
        evidence: dict[str, Any] = {
            "url": server,
            "query": query,
            "window": window_label(window),
            "step": window_label(step),
            "reduce": how,
            **threshold.to_evidence(),
            "link": config.get("link") or graph_link(server, query, window),
        }
        params = {"query": query, "start": f"{end - window:.3f}", "end": f"{end:.3f}"}
        params["step"] = f"{step:g}"
        try:
            response = await self._client.get(url + RANGE_PATH, params=params)
        except httpx.HTTPError as error:
            reason = f"could not reach Prometheus at {server}: {describe_transport_error(error)}"
            return failed(reason, evidence, error=reason)
        evidence["status_code"] = response.status_code
        series = _matrix(response, evidence)
        if isinstance(series, CheckResult):
            return series
        what = f"{how} over {window_label(window)}"
        reduced = reduce_series(series, how)
        return judge(reduced, what=what, threshold=threshold, evidence=evidence)


def graph_link(server: str, query: str, window: float) -> str:
    """The Prometheus graph page of this query over the window."""
    params = {"g0.expr": query, "g0.tab": "0", "g0.range_input": window_label(window)}
    return f"{server}/graph?{urlencode(params)}"


def _matrix(
    response: httpx.Response, evidence: dict[str, Any]
) -> list[list[float | None]] | CheckResult:
    """The samples of each series, or the failed result saying why there are none."""
    try:
        envelope: Any = response.json()
    except ValueError:
        envelope = None
    if not isinstance(envelope, dict) or envelope.get("status") not in ("success", "error"):
        reason = f"Prometheus answered HTTP {response.status_code} without an API response"
        return failed(reason, evidence, error=clip(response.text))
    if envelope["status"] == "error":
        error_type = str(envelope.get("errorType") or "")
        error = clip(str(envelope.get("error") or "no message"))
        evidence.update(errorType=error_type, error=error)
        template = ERROR_MESSAGES.get(error_type, "Prometheus returned an error: {error}")
        return failed(template.replace("{error}", error), evidence)
    data = envelope.get("data")
    if not isinstance(data, dict) or data.get("resultType") != "matrix":
        kind = data.get("resultType") if isinstance(data, dict) else None
        return failed(f"a range query should return a matrix, got {kind!r}", evidence)
    series: list[list[float | None]] = []
    for item in data.get("result") or []:
        values = item.get("values") if isinstance(item, dict) else None
        series.append([_sample(v) for v in values or []])
    return series


def _sample(pair: Any) -> float | None:
    try:
        return float(pair[1])
    except (TypeError, ValueError, IndexError):
        return None
