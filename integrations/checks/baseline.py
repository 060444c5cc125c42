"""The `baseline` verify check: is the release worse than what ran before it?

    runner = BaselineCheckRunner(make_client(""), clock=SystemClock())
    await runner.run({"name": "errors-vs-before", "baseline": {"url": "http://prom:9090",
        "query": "sum(rate(errors[1m])) / sum(rate(requests[1m]))", "window": "10m",
        "step": "30s", "compare": "before", "direction": "increase_is_bad",
        "min_change": 10, "alpha": 0.05, "deployed_at": 1795000000.0}})
    CheckResult(passed=False, summary="median 0.02 after vs 0.01 before (+100%, p=0.00091):
                fail, an increase is bad", evidence={...})

Two `GET {url}/api/v1/query_range` per run at `step` resolution:

- `compare: before`: the query over the window after the deploy (from the deploy, at most
  `window` long, up to now) and over the same length just before the deploy (`deployed_at`
  is given by the verification plan; without it, the window before the last `window`);
- `compare: series`: `query` and `baseline_query` over the same last `window` (a canary
  against the stable pods).

The samples of every series returned are pooled (aggregate in the query to compare a
total). `bot.domain.baseline.judge` gives pass, fail or inconclusive; an inconclusive
verdict passes the check unless `on_inconclusive: fail`. The evidence keeps both medians,
the change, the p-value and up to 120 samples of each window for the dashboard's chart.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import httpx

from bot.domain.baseline import FAIL, INCONCLUSIVE, BaselineRule, judge
from bot.ports import CheckResult, Clock, SystemClock
from integrations.checks import describe_transport_error, misconfigured, safe_url, section
from integrations.checks.metric import Misconfigured, clip, text, window_label, window_seconds
from integrations.checks.prometheus import ERROR_MESSAGES
from integrations.checks.prometheus_range import RANGE_PATH, graph_link
from integrations.http import make_client

MAX_POINTS = 120

Samples = list[tuple[float, float]]


class QueryFailed(Exception):
    """Prometheus gave no samples; the message says why."""


class BaselineCheckRunner:
    """`CheckRunner` for `baseline` checks (a client without a base URL)."""

    def __init__(self, client: httpx.AsyncClient | None = None, *, clock: Clock | None = None):
        self._client = client if client is not None else make_client("")
        self._clock = clock or SystemClock()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def run(self, check: Mapping[str, Any]) -> CheckResult:
        config = section(check, "baseline")
        if config is None:
            return misconfigured(check, "no baseline section")
        try:
            url, query = text(config, "url").rstrip("/"), text(config, "query")
            window = window_seconds(config)
            step = window_seconds(config, "step", default=30)
            rule = _rule(config)
            other = text(config, "baseline_query") if config.get("compare") == "series" else None
        except Misconfigured as error:
            return misconfigured(check, f"baseline.{error}")
        server = safe_url(url)
        now = self._clock.now().timestamp()
        windows = _windows(config, now, window, other is not None)
        evidence: dict[str, Any] = {
            "url": server,
            "query": query,
            "compare": "series" if other is not None else "before",
            "window": window_label(windows[1] - windows[0]),
            "link": config.get("link") or graph_link(server, query, window),
        }
        try:
            after = await self._samples(url, query, windows[0], windows[1], step)
            before = await self._samples(url, other or query, windows[2], windows[3], step)
        except QueryFailed as error:
            evidence["error"] = str(error)
            return CheckResult(False, str(error), evidence)
        verdict = judge([v for _, v in after], [v for _, v in before], rule=rule)
        evidence["baseline"] = verdict.to_evidence()
        evidence["samples"] = {"after": _thin(after), "before": _thin(before)}
        passed = verdict.outcome != FAIL and not (
            verdict.outcome == INCONCLUSIVE and config.get("on_inconclusive") == "fail"
        )
        return CheckResult(passed, verdict.line(), evidence)

    async def _samples(
        self, url: str, query: str, start: float, end: float, step: float
    ) -> Samples:
        params = {"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
        try:
            response = await self._client.get(url + RANGE_PATH, params=params)
        except httpx.HTTPError as error:
            server = safe_url(url)
            raise QueryFailed(
                f"could not reach Prometheus at {server}: {describe_transport_error(error)}"
            ) from None
        return _read(response, start)


def _rule(config: Mapping[str, Any]) -> BaselineRule:
    try:
        change = config.get("min_change", 10.0)
        if isinstance(change, str):
            change = float(change.strip().rstrip("%"))
        return BaselineRule(
            direction="decrease_is_bad"
            if config.get("direction") == "decrease_is_bad"
            else "increase_is_bad",
            min_change=float(change),
            alpha=float(config.get("alpha", 0.05)),
            min_samples=int(config.get("min_samples", 8)),
        )
    except (TypeError, ValueError) as error:
        raise Misconfigured(f"{error}") from None


def _windows(
    config: Mapping[str, Any], now: float, window: float, series: bool
) -> tuple[float, float, float, float]:
    """(after start, after end, baseline start, baseline end) in epoch seconds."""
    if series:
        return now - window, now, now - window, now
    deployed = config.get("deployed_at")
    if isinstance(deployed, int | float) and not isinstance(deployed, bool) and deployed < now:
        start = max(float(deployed), now - window)
        return start, now, float(deployed) - (now - start), float(deployed)
    return now - window, now, now - 2 * window, now - window


def _read(response: httpx.Response, start: float) -> Samples:
    """The samples of every series (time relative to `start`), or QueryFailed saying why."""
    try:
        envelope: Any = response.json()
    except ValueError:
        envelope = None
    if not isinstance(envelope, dict) or envelope.get("status") not in ("success", "error"):
        raise QueryFailed(
            f"Prometheus answered HTTP {response.status_code} without an API response"
        )
    if envelope["status"] == "error":
        error = clip(str(envelope.get("error") or "no message"))
        template = ERROR_MESSAGES.get(str(envelope.get("errorType") or ""), "Prometheus: {error}")
        raise QueryFailed(template.replace("{error}", error))
    data = envelope.get("data")
    if not isinstance(data, dict) or data.get("resultType") != "matrix":
        kind = data.get("resultType") if isinstance(data, dict) else None
        raise QueryFailed(f"a range query should return a matrix, got {kind!r}")
    found: Samples = []
    for item in data.get("result") or []:
        for pair in (item.get("values") if isinstance(item, dict) else None) or []:
            try:
                moment, value = float(pair[0]), float(pair[1])
            except (TypeError, ValueError, IndexError):
                continue
            if math.isfinite(value):
                found.append((moment - start, value))
    return sorted(found)


def _thin(samples: Samples) -> list[list[float]]:
    """At most MAX_POINTS samples, evenly picked, for the chart."""
    if len(samples) > MAX_POINTS:
        stride = len(samples) / MAX_POINTS
        samples = [samples[int(i * stride)] for i in range(MAX_POINTS)]
    return [[round(t, 3), v] for t, v in samples]
