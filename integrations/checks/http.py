"""The `http` verify check: GET a URL and look at the answer.

    runner = HttpCheckRunner()                      # a fresh client per run, closed after it
    runner = HttpCheckRunner(make_client(""))       # or share one client (you close it)
    await runner.run({"name": "health", "http": {"url": "http://127.0.0.1:9310/healthz",
                                                 "expect_status": 200, "timeout": "2s"}})
    CheckResult(passed=True, summary="HTTP 200 in 43 ms", evidence={...})

The check passes when all of these hold:

- the status is `expect_status` (default 200; redirects are not followed, a 301 is a 301);
- `body_contains`, if set, occurs in the body text;
- `json_field`, if set, exists in the JSON body: a dotted path such as `status` or
  `checks.db.status`, where a number picks a list item (`items.0.name`);
- `json_equals`, if set (not null), equals that field's value. JSON types are compared
  strictly: `true` is not `1`, `1` equals `1.0`. Because `model_dump` always writes
  `json_equals`, a `json_equals: null` in the config is the same as leaving it out (the
  field only has to exist).

`timeout` (default 5 s) bounds the whole call: connecting, waiting for the answer and
reading the body. Only the first 64 KiB of a body are read: `body_contains` searches those
and a longer JSON body does not parse. The latency is measured from sending the request to
the end of that read, with the injectable `monotonic` clock.

No failure raises: a wrong status, a timeout ("timed out after 2 s"), a refused connection
("connection refused") or an unusable check dict all come back as a failed `CheckResult`.
`evidence` carries url (without credentials or query), status_code, latency_ms,
body_excerpt (up to 500 characters), body_truncated, json_value and error, as they apply.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from bot.ports import CheckResult
from integrations.checks import (
    describe_transport_error,
    duration_seconds,
    format_seconds,
    misconfigured,
    safe_url,
    section,
)
from integrations.http import make_client

__all__ = ["DEFAULT_TIMEOUT", "EXCERPT_CHARS", "MAX_BODY_BYTES", "HttpCheckRunner"]

MAX_BODY_BYTES = 64 * 1024
"""The most of a body a check reads."""

EXCERPT_CHARS = 500
"""The most of a body kept in `evidence["body_excerpt"]`."""

DEFAULT_TIMEOUT = 5.0
"""Seconds, when the check dict names no timeout (the config's own default is 5s too)."""

ClientFactory = Callable[[], httpx.AsyncClient]
Monotonic = Callable[[], float]

_MISSING = object()


class HttpCheckRunner:
    """`CheckRunner` for `http` checks.

    **Parameters:**

    * **client** - an `httpx.AsyncClient` to share between runs (the caller closes it, or
      calls `aclose()`), or a zero-argument factory called for each run, whose client is
      closed after the run. Default: a factory of `make_client("")`, so each run opens a
      fresh connection and measures a cold request, as a user would see it.
    * **monotonic** - seconds from a monotonic clock, for the latency (tests inject one).
    """

    def __init__(
        self,
        client: httpx.AsyncClient | ClientFactory | None = None,
        *,
        monotonic: Monotonic = time.perf_counter,
    ) -> None:
        self._client: httpx.AsyncClient | None = None
        self._factory: ClientFactory | None = None
        if client is None:
            self._factory = _default_client
        elif isinstance(client, httpx.AsyncClient):
            self._client = client
        else:
            self._factory = client
        self._monotonic = monotonic

    async def aclose(self) -> None:
        """Close the shared client, if one was given."""
        if self._client is not None:
            await self._client.aclose()

    async def run(self, check: Mapping[str, Any]) -> CheckResult:
        config = section(check, "http")
        if config is None:
            return misconfigured(check, "no http section")
        url = config.get("url")
        if not isinstance(url, str) or not _is_http_url(url):
            return misconfigured(check, f"http.url {url!r} is not an http(s) URL")
        expect = config.get("expect_status", 200)
        if expect is None:
            expect = 200
        if not isinstance(expect, int) or isinstance(expect, bool):
            return misconfigured(check, f"http.expect_status {expect!r} is not a status code")
        raw_timeout = config.get("timeout")
        try:
            timeout = DEFAULT_TIMEOUT if raw_timeout is None else duration_seconds(raw_timeout)
        except ValueError as error:
            return misconfigured(check, f"http.timeout: {error}")
        body_contains = config.get("body_contains")
        json_field = config.get("json_field")
        json_equals = config.get("json_equals")
        if body_contains is not None and not isinstance(body_contains, str):
            return misconfigured(check, "http.body_contains must be text")
        if json_field is not None and (not isinstance(json_field, str) or not json_field):
            return misconfigured(check, "http.json_field must be a dotted path like checks.db")
        if json_equals is not None and json_field is None:
            return misconfigured(check, "http.json_equals needs json_field")

        evidence: dict[str, Any] = {"url": safe_url(url), "expect_status": expect}
        if self._client is not None:
            return await self._check(
                self._client, url, timeout, expect, body_contains, json_field, json_equals, evidence
            )
        assert self._factory is not None
        client = self._factory()
        try:
            return await self._check(
                client, url, timeout, expect, body_contains, json_field, json_equals, evidence
            )
        finally:
            await client.aclose()

    def _ms(self, started: float) -> int:
        return max(0, round((self._monotonic() - started) * 1000))

    async def _check(
        self,
        client: httpx.AsyncClient,
        url: str,
        timeout: float,
        expect: int,
        body_contains: str | None,
        json_field: str | None,
        json_equals: Any,
        evidence: dict[str, Any],
    ) -> CheckResult:
        started = self._monotonic()
        try:
            async with asyncio.timeout(timeout):
                answer = await _get(client, url, timeout)
        except (TimeoutError, httpx.TimeoutException):
            reason = f"timed out after {format_seconds(timeout)}"
            return _failed(reason, evidence, error=reason, latency_ms=self._ms(started))
        except httpx.HTTPError as error:
            reason = describe_transport_error(error, timeout=timeout)
            return _failed(reason, evidence, error=reason, latency_ms=self._ms(started))
        except (httpx.InvalidURL, UnicodeError) as error:
            reason = f"invalid URL: {error}"
            return _failed(reason, evidence, error=reason)
        latency = self._ms(started)
        status, text, truncated = answer.status, answer.text, answer.truncated
        evidence.update(
            status_code=status,
            latency_ms=latency,
            body_excerpt=text[:EXCERPT_CHARS],
            body_truncated=truncated,
        )
        answered = f"HTTP {status} in {latency} ms"

        if status != expect:
            moved = f" (redirects to {safe_url(answer.location)})" if answer.location else ""
            return _failed(f"expected HTTP {expect}, got {status} in {latency} ms{moved}", evidence)

        if body_contains is not None and body_contains not in text:
            where = f"the first {MAX_BODY_BYTES // 1024} KiB of " if truncated else ""
            return _failed(
                f"{answered}, but {where}the body does not contain {_show(body_contains)}",
                evidence,
            )

        if json_field is None:
            return CheckResult(passed=True, summary=answered, evidence=evidence)

        try:
            document = json.loads(answer.body)
        except ValueError:
            longer = f" (or is longer than {MAX_BODY_BYTES // 1024} KiB)" if truncated else ""
            return _failed(f"{answered}, but the body is not JSON{longer}", evidence)
        value = _lookup(document, json_field)
        if value is _MISSING:
            return _failed(f"{answered}, but the JSON has no field {json_field}", evidence)
        evidence["json_value"] = value
        if json_equals is not None and not _same(value, json_equals):
            return _failed(
                f"{answered}, but {json_field} is {_show(value)}, expected {_show(json_equals)}",
                evidence,
            )
        shown = f", {json_field} is {_show(value)}" if json_equals is not None else ""
        return CheckResult(passed=True, summary=answered + shown, evidence=evidence)


def _default_client() -> httpx.AsyncClient:
    return make_client("")


@dataclass(frozen=True)
class _Answer:
    status: int
    location: str | None
    text: str
    body: bytes
    truncated: bool  # the body was longer than MAX_BODY_BYTES; only that much was read


async def _get(client: httpx.AsyncClient, url: str, timeout: float) -> _Answer:
    """GET `url`, reading at most MAX_BODY_BYTES of the body."""
    request = client.build_request("GET", url, timeout=httpx.Timeout(timeout))
    response = await client.send(request, stream=True)
    try:
        chunks: list[bytes] = []
        size = 0
        truncated = False
        async for chunk in response.aiter_bytes():
            room = MAX_BODY_BYTES - size
            if len(chunk) > room:
                chunks.append(chunk[:room])
                truncated = True
                break
            chunks.append(chunk)
            size += len(chunk)
        body = b"".join(chunks)
    finally:
        await response.aclose()
    return _Answer(
        status=response.status_code,
        location=response.headers.get("location"),
        text=_decode(response, body),
        body=body,
        truncated=truncated,
    )


def _decode(response: httpx.Response, body: bytes) -> str:
    encoding = response.charset_encoding or "utf-8"
    try:
        return body.decode(encoding, errors="replace")
    except LookupError:
        return body.decode("utf-8", errors="replace")


def _lookup(document: Any, path: str) -> Any:
    current = document
    for part in path.split("."):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.lstrip("-").isdigit():
            index = int(part)
            if not -len(current) <= index < len(current):
                return _MISSING
            current = current[index]
        else:
            return _MISSING
    return current


def _same(left: Any, right: Any) -> bool:
    """JSON equality: booleans are not numbers, 1 == 1.0, containers compared item by item."""
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if isinstance(left, int | float) and isinstance(right, int | float):
        return left == right
    if isinstance(left, dict) and isinstance(right, Mapping):
        return left.keys() == right.keys() and all(_same(left[k], right[k]) for k in left)
    if isinstance(left, list) and isinstance(right, list | tuple):
        return len(left) == len(right) and all(
            _same(a, b) for a, b in zip(left, right, strict=True)
        )
    return type(left) is type(right) and bool(left == right)


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def _is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _failed(
    summary: str,
    evidence: dict[str, Any],
    *,
    error: str | None = None,
    latency_ms: int | None = None,
) -> CheckResult:
    if latency_ms is not None:
        evidence["latency_ms"] = latency_ms
    if error is not None:
        evidence["error"] = error
    return CheckResult(passed=False, summary=summary, evidence=evidence)
