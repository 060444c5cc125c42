"""Post-deploy checks: `bot.ports.CheckRunner` for each kind of `verify:` check.

    client = make_client("")                          # checks give absolute URLs
    runner = VerifyRunner(http=HttpCheckRunner(client), prometheus=PrometheusCheckRunner(client))
    result = await runner.run(check.model_dump(mode="json"))   # a bot.config.VerifyCheck
    result.passed, result.summary, result.evidence

| kind        | module         | class                   |
|-------------|----------------|-------------------------|
| http        | http.py        | `HttpCheckRunner`       |
| prometheus  | prometheus.py  | `PrometheusCheckRunner` |
| prometheus_range | prometheus_range.py | `PrometheusRangeCheckRunner` |
| datadog     | datadog.py     | `DatadogCheckRunner`    |
| nrql        | nrql.py        | `NrqlCheckRunner`       |
| baseline    | baseline.py    | `BaselineCheckRunner`   |
| burn_rate   | budget.py      | `BurnRateCheckRunner`   |

The metric runners (the last three) share `metric.py`: the `reduce` of a window to one
number, the threshold, and the result line with its query link.

A runner never raises for anything the check's target does (a wrong status, a timeout, a
refused connection, a Prometheus error, a misconfigured check dict): it returns a failed
`CheckResult` whose `summary` says why in one line. Retrying a failed check is the
scheduler's business (the `at:` offsets); a runner sends one request per run.

`check` is `VerifyCheck.model_dump(mode="json")`, so durations arrive as strings like "2s"
or "500ms"; `model_dump()` (timedelta), plain numbers of seconds and ISO 8601 ("PT2S") are
accepted too.

This module holds the dispatcher and the small helpers both runners share.
"""

from __future__ import annotations

import math
import socket
import ssl
from collections.abc import Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import TypeAdapter, ValidationError

from bot.config import parse_duration
from bot.ports import CheckResult, CheckRunner

__all__ = [
    "KINDS",
    "VerifyRunner",
    "check_kind",
    "describe_transport_error",
    "duration_seconds",
    "format_number",
    "format_seconds",
    "misconfigured",
    "safe_url",
    "section",
]

KINDS = ("http", "prometheus", "prometheus_range", "datadog", "nrql", "baseline", "burn_rate")
"""The keys of a `verify:` check that name its kind; exactly one is set."""

_TIMEDELTA = TypeAdapter(timedelta)


class VerifyRunner:
    """`CheckRunner` for any `verify:` check: hands it to the runner of its kind.

    A check with no known kind (or with two) is a failed result, not an error.
    """

    def __init__(
        self,
        *,
        http: CheckRunner,
        prometheus: CheckRunner,
        more: Mapping[str, CheckRunner] | None = None,
    ) -> None:
        self._runners: dict[str, CheckRunner] = {"http": http, "prometheus": prometheus}
        self._runners.update(more or {})

    async def run(self, check: Mapping[str, Any]) -> CheckResult:
        kind = check_kind(check)
        if kind is None or kind not in self._runners:
            known = list(self._runners)
            return misconfigured(
                check, f"set exactly one of {', '.join(known[:-1])} or {known[-1]}"
            )
        return await self._runners[kind].run(check)


def check_kind(check: Mapping[str, Any]) -> str | None:
    """The one kind (of `KINDS`) whose section is set (not None); else None."""
    kinds = [kind for kind in KINDS if check.get(kind) is not None]
    return kinds[0] if len(kinds) == 1 else None


def section(check: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    """The check's `kind` section as a mapping, or None if it is missing or not a mapping."""
    value = check.get(kind)
    return value if isinstance(value, Mapping) else None


def misconfigured(check: Mapping[str, Any], problem: str) -> CheckResult:
    """A failed result for a check dict the runner cannot use."""
    return CheckResult(
        passed=False,
        summary=f"the check is misconfigured: {problem}",
        evidence={"check": _name(check), "error": problem},
    )


def duration_seconds(value: object) -> float:
    """Seconds from "2s" / "500ms" / "1h30m", "PT2S", a timedelta or a number of seconds.

    Raises ValueError for anything else, and for durations that are not positive.
    """
    seconds: float
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}")
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        try:
            seconds = parse_duration(value).total_seconds()
        except ValueError:  # PydanticCustomError is a ValueError
            try:
                seconds = _TIMEDELTA.validate_python(value).total_seconds()
            except ValidationError:
                raise ValueError(f"invalid duration {value!r}") from None
    else:
        raise ValueError(f"invalid duration {value!r}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"duration must be longer than 0s, got {value!r}")
    return seconds


def format_seconds(seconds: float) -> str:
    """`2.0` -> "2 s", `0.2` -> "0.2 s"."""
    return f"{seconds:g} s"


def format_number(value: float) -> str:
    """A value for a summary line: up to 6 significant digits, "NaN", "+Inf" or "-Inf"."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return f"{value:.6g}"


def safe_url(url: str) -> str:
    """`url` without user:password and query string, for summaries and evidence."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return url.split("?", 1)[0].rsplit("@", 1)[-1]
    if not parts.scheme or not host:  # a relative reference, like a Location of "/login"
        return parts.path
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{port}" if port else "")
    return f"{parts.scheme}://{netloc}{parts.path}"


def describe_transport_error(error: httpx.HTTPError, *, timeout: float | None = None) -> str:
    """A short plain-English reason for a request that got no answer.

    "timed out after 2 s", "connection refused", "could not resolve host example.invalid", ...
    """
    if isinstance(error, httpx.TimeoutException):
        return f"timed out after {format_seconds(timeout)}" if timeout else "timed out"
    host = _host_of(error)
    for cause in _causes(error):
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, socket.gaierror):
            return f"could not resolve host {host}" if host else "could not resolve the host"
        if isinstance(cause, ssl.SSLCertVerificationError):
            detail = cause.verify_message or "verification failed"
            return f"TLS certificate problem: {detail}"
        if isinstance(cause, ssl.SSLError):
            return f"TLS error: {cause.reason or cause}"
        if isinstance(cause, ConnectionResetError):
            return "the connection was reset"
    if isinstance(error, httpx.RemoteProtocolError):
        return "the server closed the connection without a complete answer"
    if isinstance(error, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return f"invalid URL: {error}"
    if isinstance(error, httpx.ConnectError):
        return f"could not connect: {error}" if str(error) else "could not connect"
    detail = str(error)
    return f"{type(error).__name__}: {detail}" if detail else type(error).__name__


def _causes(error: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in seen and len(seen) < 10:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _host_of(error: httpx.HTTPError) -> str | None:
    try:
        return error.request.url.host or None
    except RuntimeError:  # an error raised before a request existed
        return None


def _name(check: Mapping[str, Any]) -> str:
    name = check.get("name")
    return name if isinstance(name, str) else ""
