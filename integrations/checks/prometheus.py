"""The `prometheus` verify check: run an instant query, compare its value with max/min.

    runner = PrometheusCheckRunner(make_client(""))
    await runner.run({"name": "error-rate", "prometheus": {
        "url": "http://127.0.0.1:9390", "query": "sum(rate(...)) / sum(rate(...))", "max": 0.01}})
    CheckResult(passed=True, summary="error-rate 0.004 <= max 0.01", evidence={...})

One `GET {url}/api/v1/query?query=...` per run, read as Prometheus' JSON envelope
(`{status, data: {resultType, result}, errorType, error, warnings}`):

- `vector` with one series: its value. With several, **thresholds apply to the worst
  series**: `max` is compared with the largest value and `min` with the smallest, so one bad
  instance fails the check. Aggregate in the query (`sum`, `avg`, ...) to check a total.
- `scalar`: its value.
- an empty vector: failed, "no data: the query returned an empty result". An empty result
  means nothing matched, not 0 (a typo in a label, or no traffic yet).
- "NaN", "+Inf" or "-Inf" in any series: failed with the reason (NaN is usually 0/0, a
  ratio over a window with no traffic).
- `matrix` (a range selector such as `x[5m]`), `string` and native-histogram samples:
  failed, since none of them is one number to compare.
- the check passes when `value <= max` and `value >= min` (each only when set).

Prometheus errors come back as failed results in plain English, by `errorType`:
bad_data -> "the query is invalid: <error>", execution -> "the query failed: <error>",
timeout -> "Prometheus timed out running the query", canceled -> "Prometheus canceled the
query", internal -> "Prometheus had an internal error: <error>", not_found -> "Prometheus
says not found: <error>", unavailable -> "Prometheus is unavailable: <error>". A 5xx or 4xx
that is not an envelope, a redirect, and network errors are failed results too. Nothing is
retried here: the scheduler runs the check again at its next `at:` offset.

`evidence` carries url (no credentials), query, status_code, resultType, value, series
(how many), worst_series (labels), min_value/max_value, warnings, errorType and error, as
they apply.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from bot.ports import CheckResult
from integrations.checks import (
    describe_transport_error,
    format_number,
    misconfigured,
    safe_url,
    section,
)
from integrations.http import make_client

__all__ = ["ERROR_MESSAGES", "NO_DATA", "PrometheusCheckRunner"]

QUERY_PATH = "/api/v1/query"

NO_DATA = "no data: the query returned an empty result"

ERROR_MESSAGES: dict[str, str] = {
    "bad_data": "the query is invalid: {error}",
    "execution": "the query failed: {error}",
    "timeout": "Prometheus timed out running the query",
    "canceled": "Prometheus canceled the query",
    "internal": "Prometheus had an internal error: {error}",
    "not_found": "Prometheus says not found: {error}",
    "unavailable": "Prometheus is unavailable: {error}",
}
"""Plain-English reason for each Prometheus `errorType`; `{error}` is Prometheus' message."""

MAX_ERROR_CHARS = 300


class PrometheusCheckRunner:
    """`CheckRunner` for `prometheus` checks.

    **Parameters:**

    * **client** - an `httpx.AsyncClient` without a base URL (each check names its server);
      its timeout bounds the query. Default: `make_client("")`. `aclose()` closes it.
    """

    def __init__(self, client: httpx.AsyncClient | None = None) -> None:
        self._client = client if client is not None else make_client("")

    async def aclose(self) -> None:
        await self._client.aclose()

    async def run(self, check: Mapping[str, Any]) -> CheckResult:
        config = section(check, "prometheus")
        if config is None:
            return misconfigured(check, "no prometheus section")
        url, query = config.get("url"), config.get("query")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            return misconfigured(check, f"prometheus.url {url!r} is not an http(s) URL")
        if not isinstance(query, str) or not query.strip():
            return misconfigured(check, "prometheus.query is empty")
        try:
            bounds = _Bounds(_number(config.get("max")), _number(config.get("min")))
        except ValueError as error:
            return misconfigured(check, str(error))
        if bounds.max is None and bounds.min is None:
            return misconfigured(check, "set prometheus.max, prometheus.min or both")
        name = check.get("name")
        label = name if isinstance(name, str) and name else "value"

        server = safe_url(url.rstrip("/"))
        evidence: dict[str, Any] = {"url": server, "query": query}
        if bounds.max is not None:
            evidence["max"] = bounds.max
        if bounds.min is not None:
            evidence["min"] = bounds.min

        try:
            response = await self._client.get(url.rstrip("/") + QUERY_PATH, params={"query": query})
        except httpx.HTTPError as error:
            reason = f"could not reach Prometheus at {server}: {describe_transport_error(error)}"
            return _failed(reason, evidence, error=reason)
        except (httpx.InvalidURL, UnicodeError) as error:
            return _failed(f"invalid Prometheus URL: {error}", evidence, error=str(error))
        evidence["status_code"] = response.status_code
        return _read(response, label, bounds, evidence)


@dataclass(frozen=True)
class _Bounds:
    max: float | None
    min: float | None


@dataclass(frozen=True)
class _Sample:
    value: float
    labels: dict[str, str]


def _read(
    response: httpx.Response, label: str, bounds: _Bounds, evidence: dict[str, Any]
) -> CheckResult:
    """The check's result from Prometheus' answer to the instant query."""
    try:
        envelope: Any = response.json()
    except ValueError:
        envelope = None
    if not isinstance(envelope, dict) or envelope.get("status") not in ("success", "error"):
        return _not_an_envelope(response, evidence)

    for key in ("warnings", "infos"):
        notes = envelope.get(key)
        if isinstance(notes, list) and notes:
            evidence[key] = [str(note) for note in notes]

    if envelope["status"] == "error":
        return _query_error(envelope, evidence)

    data = envelope.get("data")
    if not isinstance(data, dict):
        return _failed("the Prometheus answer has no data", evidence)
    samples = _samples(data, evidence)
    if isinstance(samples, CheckResult):
        return samples
    evidence["series"] = len(samples)
    if not samples:
        return _failed(NO_DATA, evidence)
    return _compare(samples, label, bounds, evidence)


def _not_an_envelope(response: httpx.Response, evidence: dict[str, Any]) -> CheckResult:
    """An answer that is not Prometheus' JSON envelope: a redirect, an HTTP error, or other."""
    status = response.status_code
    if 300 <= status < 400:
        location = response.headers.get("location")
        moved = f" (redirects to {safe_url(location)})" if location else ""
        return _failed(f"Prometheus answered HTTP {status}{moved}", evidence)
    if status >= 400:
        hint = " (is the url the Prometheus server's base URL?)" if status == 404 else ""
        detail = _text(response)
        reason = f"Prometheus answered HTTP {status} {response.reason_phrase}{hint}"
        return _failed(reason, evidence, error=detail or None)
    return _failed(
        "the answer is not a Prometheus API response (is the url a Prometheus server?)",
        evidence,
    )


def _query_error(envelope: dict[str, Any], evidence: dict[str, Any]) -> CheckResult:
    """`{"status": "error"}` in plain English, by its `errorType` (`ERROR_MESSAGES`)."""
    error_type = str(envelope.get("errorType") or "")
    error = _clip(str(envelope.get("error") or "no message"))
    evidence["errorType"] = error_type
    evidence["error"] = error
    template = ERROR_MESSAGES.get(error_type)
    if template is None:
        reason = f"Prometheus returned an error ({error_type or 'unknown'}): {error}"
    else:
        reason = template.replace("{error}", error)
    return _failed(reason, evidence)


def _samples(data: dict[str, Any], evidence: dict[str, Any]) -> list[_Sample] | CheckResult:
    """The numbers of a `scalar` or `vector` result; a failed result for anything else."""
    result_type = data.get("resultType")
    evidence["resultType"] = result_type
    result = data.get("result")
    if result_type == "scalar":
        sample = _sample(result, {})
        if sample is None:
            return _failed(f"unreadable scalar in the Prometheus answer: {result!r}", evidence)
        return [sample]
    if result_type == "vector":
        return _vector(result, evidence)
    if result_type == "matrix":
        return _failed(
            "the query returns a range vector (matrix), not one value: drop the [range] or "
            "wrap it in a function such as max_over_time()",
            evidence,
        )
    if result_type == "string":
        return _failed("the query returns a string, not a number", evidence)
    return _failed(f"unknown resultType {result_type!r} in the Prometheus answer", evidence)


def _vector(result: Any, evidence: dict[str, Any]) -> list[_Sample] | CheckResult:
    """Each series of an instant vector with its labels; native histograms are refused."""
    if not isinstance(result, list):
        return _failed("unreadable vector in the Prometheus answer", evidence)
    samples: list[_Sample] = []
    for item in result:
        if isinstance(item, dict) and "value" not in item and "histogram" in item:
            return _failed(
                "the query returns native histograms, not numbers: wrap it in "
                "histogram_quantile(), histogram_count() or histogram_sum()",
                evidence,
            )
        labels = item.get("metric") if isinstance(item, dict) else None
        sample = _sample(
            item.get("value") if isinstance(item, dict) else None,
            {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {},
        )
        if sample is None:
            return _failed(f"unreadable sample in the Prometheus answer: {item!r}", evidence)
        samples.append(sample)
    return samples


def _compare(
    samples: list[_Sample], label: str, bounds: _Bounds, evidence: dict[str, Any]
) -> CheckResult:
    several = len(samples) > 1
    for sample in samples:
        if not math.isfinite(sample.value):
            shown = format_number(sample.value)
            evidence["value"] = shown
            where = f" for {_series(sample.labels)}" if several else ""
            why = (
                " (usually 0/0: no traffic in the query's window)"
                if math.isnan(sample.value)
                else " (usually a division by zero)"
            )
            if several:
                evidence["worst_series"] = sample.labels
            return _failed(f"{label} is {shown}{where}{why}", evidence)

    high = max(samples, key=lambda sample: sample.value)
    low = min(samples, key=lambda sample: sample.value)
    if several:
        evidence["max_value"] = high.value
        evidence["min_value"] = low.value
    evidence["value"] = high.value if bounds.max is not None else low.value

    def of(sample: _Sample) -> str:
        return f" ({_series(sample.labels)}, worst of {len(samples)} series)" if several else ""

    if bounds.max is not None and high.value > bounds.max:
        evidence["value"] = high.value
        if several:
            evidence["worst_series"] = high.labels
        return _failed(
            f"{label} {format_number(high.value)} > max {format_number(bounds.max)}{of(high)}",
            evidence,
        )
    if bounds.min is not None and low.value < bounds.min:
        evidence["value"] = low.value
        if several:
            evidence["worst_series"] = low.labels
        return _failed(
            f"{label} {format_number(low.value)} < min {format_number(bounds.min)}{of(low)}",
            evidence,
        )

    worst = f" (worst of {len(samples)} series)" if several else ""
    if bounds.max is not None and bounds.min is not None:
        shown = (
            format_number(high.value)
            if high.value == low.value
            else f"{format_number(low.value)}..{format_number(high.value)}"
        )
        summary = (
            f"{label} {shown} within min {format_number(bounds.min)} "
            f"and max {format_number(bounds.max)}{worst}"
        )
    elif bounds.max is not None:
        summary = f"{label} {format_number(high.value)} <= max {format_number(bounds.max)}{worst}"
    else:
        assert bounds.min is not None
        summary = f"{label} {format_number(low.value)} >= min {format_number(bounds.min)}{worst}"
    return CheckResult(passed=True, summary=summary, evidence=evidence)


def _sample(pair: Any, labels: dict[str, str]) -> _Sample | None:
    """A `[timestamp, "value"]` pair (values are strings: "1.5", "NaN", "+Inf") -> _Sample."""
    if not isinstance(pair, list | tuple) or len(pair) != 2:
        return None
    raw = pair[1]
    if not isinstance(raw, str | int | float) or isinstance(raw, bool):
        return None
    try:
        return _Sample(float(raw), labels)
    except ValueError:
        return None


def _number(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"threshold {value!r} is not a number")
    return float(value)


def _series(labels: Mapping[str, str]) -> str:
    name = labels.get("__name__", "")
    inner = ",".join(
        f'{key}="{value}"' for key, value in sorted(labels.items()) if key != "__name__"
    )
    return f"{name}{{{inner}}}"


def _text(response: httpx.Response) -> str:
    try:
        text = response.text
    except (UnicodeDecodeError, LookupError):
        return ""
    return _clip(" ".join(text.split()))


def _clip(text: str) -> str:
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."


def _failed(summary: str, evidence: dict[str, Any], *, error: str | None = None) -> CheckResult:
    if error is not None:
        evidence.setdefault("error", error)
    return CheckResult(passed=False, summary=summary, evidence=evidence)
