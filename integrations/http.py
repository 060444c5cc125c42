"""The HTTP plumbing every outbound client shares: one way to build a client, one retry loop.

    client = make_client("https://api.github.com", headers={"Accept": "application/json"})
    response = await request_with_retries(client, "GET", "/repos/acme/ledger", secrets=[token])

`request_with_retries` retries what a short wait can fix and turns everything else into
`DeliveryFailed`, which the caller's outbox understands:

- network errors and 5xx: retried with exponential backoff (`backoff`, doubled each time, at
  most `max_backoff`), then `DeliveryFailed(retryable=True)`;
- rate limits (429, or 403 with `x-ratelimit-remaining: 0` / a "secondary rate limit"
  message): retried in place only when the host asks for at most `max_inline_wait` seconds,
  otherwise `DeliveryFailed(retryable=True, retry_after=<seconds>)` at once, so a worker never
  sleeps through a long window;
- any other 3xx or 4xx: `DeliveryFailed(retryable=False, reason="GET /path: 404 Not Found")`.

Every wait goes through the injectable `sleep` coroutine and every "now" through `clock`
(epoch seconds), so tests neither sleep nor depend on the wall clock. Reasons name the
method, the path (never the query string) and the host's message; the values in `secrets`
are blanked out of them should a host ever echo one back.

The loop itself is `send_with_retries`; `RetryPolicy` says how often and how long it waits,
and `RetryRules` how one family of APIs answers (what is a rate limit, how long it asks us
to wait, how a refusal is explained). The defaults above are GitHub's and GitLab's rules;
the pagers (`integrations.pagers`) bring their own.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from bot.domain.errors import DeliveryFailed

__all__ = [
    "DEFAULT_RATE_LIMIT_WAIT",
    "DEFAULT_RULES",
    "USER_AGENT",
    "EpochClock",
    "Explain",
    "RateLimitWait",
    "RetryPolicy",
    "RetryRules",
    "ServerWait",
    "Sleep",
    "default_rate_limit_wait",
    "error_message",
    "is_rate_limited",
    "make_client",
    "redact",
    "request_with_retries",
    "retry_after_seconds",
    "send_with_retries",
    "server_retry_after",
]

USER_AGENT = "releasebot"

DEFAULT_RATE_LIMIT_WAIT = 60.0
"""Seconds to wait on a rate limit that names no time (GitHub: "wait at least one minute")."""

MAX_MESSAGE_CHARS = 200

Sleep = Callable[[float], Awaitable[None]]
EpochClock = Callable[[], float]
"""Seconds since the epoch, like `time.time`."""

# Above this a *-Reset header is an epoch time; below it, seconds from now (IETF draft style).
_EPOCH_THRESHOLD = 1_000_000_000


def make_client(
    base_url: str,
    *,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """An `AsyncClient` for `base_url` that says who it is and follows no redirects.

    A redirect comes back as a 3xx response (and `request_with_retries` reports it), so a
    credential header is never replayed against a host the caller did not choose.
    `transport` is the test seam: pass `httpx.MockTransport(handler)`.
    """
    merged = {"User-Agent": USER_AGENT}
    if headers:
        merged.update(headers)
    return httpx.AsyncClient(
        base_url=base_url,
        headers=merged,
        timeout=timeout,
        follow_redirects=False,
        transport=transport,
        verify=_tls_context() if transport is None else True,
    )


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One verifying TLS context for every client: httpx builds one per client by default,
    reading the CA bundle each time (~30 ms each, a quarter second at start-up)."""
    return httpx.create_ssl_context()


def retry_after_seconds(response: httpx.Response, *, now: float) -> float | None:
    """How long the host asked us to wait, in seconds from `now` (epoch seconds); None if unsaid.

    Reads, in order: `Retry-After` (delta seconds or an HTTP date), then `x-ratelimit-reset`
    (GitHub) or `RateLimit-Reset` (GitLab), epoch seconds, used only when the matching
    `*-remaining` header is absent or 0 (otherwise the reset is about a window that is not
    exhausted). Never negative.
    """
    headers = response.headers
    seconds = _header_retry_after(response, now=now)
    if seconds is not None:
        return seconds
    for reset_name, remaining_name in (
        ("x-ratelimit-reset", "x-ratelimit-remaining"),
        ("ratelimit-reset", "ratelimit-remaining"),
    ):
        reset = _float(headers.get(reset_name))
        if reset is None:
            continue
        remaining = _float(headers.get(remaining_name))
        if remaining is not None and remaining > 0:
            continue
        if reset < _EPOCH_THRESHOLD:
            return max(0.0, reset)
        return max(0.0, reset - now)
    return None


def is_rate_limited(response: httpx.Response) -> bool:
    """429, or a 403 that GitHub/GitLab use for an exhausted or secondary rate limit."""
    if response.status_code == 429:
        return True
    if response.status_code != 403:
        return False
    headers = response.headers
    for name in ("x-ratelimit-remaining", "ratelimit-remaining"):
        if _float(headers.get(name)) == 0:
            return True
    if "retry-after" in headers:
        return True
    message = error_message(response).lower()
    return "secondary rate limit" in message or "abuse detection" in message


def error_message(response: httpx.Response) -> str:
    """The host's own words: `message` / `error` of a JSON body, else the start of the text."""
    text = _body_text(response)
    message: str = ""
    try:
        data: Any = response.json()
    except ValueError:
        data = None
    if isinstance(data, Mapping):
        for key in ("message", "error_description", "error"):
            value = data.get(key)
            if isinstance(value, str) and value.strip():
                message = value.strip()
                break
            if isinstance(value, Mapping | list) and value:
                message = f"{key}: {value}"
                break
    if not message and data is None:
        message = " ".join(text.split())
    if not message:
        message = response.reason_phrase
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[: MAX_MESSAGE_CHARS - 3] + "..."
    return message


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every non-empty secret replaced by `***`."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


@dataclass(frozen=True)
class RetryPolicy:
    """How often a call is sent and how long it waits in between, as one value.

    policy = RetryPolicy(sleep=fake_sleep, clock=lambda: 1_700_000_000.0)
    response = await policy.request(client, "GET", "/repos/acme/ledger")
    """

    attempts: int = 3
    backoff: float = 0.5
    max_backoff: float = 8.0
    max_inline_wait: float = 5.0
    clock: EpochClock = field(default=time.time)
    sleep: Sleep = field(default=asyncio.sleep)

    async def request(
        self,
        client: httpx.AsyncClient,
        method: str,
        url: str,
        *,
        params: Mapping[str, str | int] | None = None,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        secrets: Iterable[str] = (),
        attempts: int | None = None,
    ) -> httpx.Response:
        """`request_with_retries` with this policy (`attempts` overrides it for one call)."""
        return await request_with_retries(
            client,
            method,
            url,
            params=params,
            headers=headers,
            json=json,
            attempts=self.attempts if attempts is None else attempts,
            backoff=self.backoff,
            max_backoff=self.max_backoff,
            max_inline_wait=self.max_inline_wait,
            clock=self.clock,
            sleep=self.sleep,
            secrets=secrets,
        )


Explain = Callable[[httpx.Response], str]
"""A host's own words for a refused request."""

RateLimitWait = Callable[[httpx.Response, float], float]
"""Seconds to wait on a rate-limited answer, given the answer and `now` (epoch seconds)."""

ServerWait = Callable[[httpx.Response, float], float | None]
"""Seconds a 5xx or 408 answer asked us to wait, given `now`; None if it asked nothing."""


def default_rate_limit_wait(response: httpx.Response, now: float) -> float:
    """What the host asked for (`retry_after_seconds`), else `DEFAULT_RATE_LIMIT_WAIT`."""
    wait = retry_after_seconds(response, now=now)
    return DEFAULT_RATE_LIMIT_WAIT if wait is None else wait


def server_retry_after(response: httpx.Response, now: float) -> float | None:
    """The `Retry-After` of a 5xx or 408 answer, in seconds from `now`; None if absent."""
    return _header_retry_after(response, now=now)


def _same(location: str) -> str:
    return location


@dataclass(frozen=True)
class RetryRules:
    """How one family of APIs answers: the hooks of the retry loop.

    The defaults read GitHub and GitLab (and most REST APIs); the pagers swap in their own.

    * **label** - put before every reason ("PagerDuty POST /v2/enqueue: ...").
    * **explain** - the host's words for a refused request.
    * **rate_limited** - whether an answer is a rate limit (429, GitHub's 403s, ...).
    * **rate_limit_wait** - how long a rate limit asks us to wait.
    * **server_wait** - how long a 5xx or 408 asks us to wait (None: never read, use backoff).
    * **redirect_target** - the Location of a 3xx as a reason shows it.
    * **chain_network_error** - whether a network failure keeps httpx's error as its cause.
    """

    label: str = ""
    explain: Explain = error_message
    rate_limited: Callable[[httpx.Response], bool] = is_rate_limited
    rate_limit_wait: RateLimitWait = default_rate_limit_wait
    server_wait: ServerWait | None = server_retry_after
    redirect_target: Callable[[str], str] = _same
    chain_network_error: bool = True

    def describe(self, method: str, url: str) -> str:
        """ "GET /repos/acme/ledger" (never the query string), after the label if any."""
        what = f"{method.upper()} {url.split('?', 1)[0]}"
        return f"{self.label} {what}" if self.label else what


DEFAULT_RULES = RetryRules()


async def request_with_retries(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    params: Mapping[str, str | int] | None = None,
    headers: Mapping[str, str] | None = None,
    json: Any = None,
    attempts: int = 3,
    backoff: float = 0.5,
    max_backoff: float = 8.0,
    max_inline_wait: float = 5.0,
    clock: EpochClock = time.time,
    sleep: Sleep = asyncio.sleep,
    secrets: Iterable[str] = (),
) -> httpx.Response:
    """Send the request, retrying transient failures; return the 2xx response.

    **Parameters:**

    * **attempts** - how many times the request may be sent in all (1 disables retries; use
      it for calls that are not idempotent).
    * **backoff**, **max_backoff** - the first wait after a 5xx or network error, doubled
      after each further failure, capped.
    * **max_inline_wait** - the longest rate-limit wait slept through here; longer waits
      raise `DeliveryFailed(retryable=True, retry_after=...)`.
    * **clock**, **sleep** - epoch seconds and the coroutine that waits (tests inject both).
    * **secrets** - strings that must never appear in a reason (tokens, JWTs).

    Raises `DeliveryFailed` for anything but a 2xx answer.
    """
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    policy = RetryPolicy(attempts, backoff, max_backoff, max_inline_wait, clock, sleep)
    return await send_with_retries(
        client,
        method,
        url,
        policy=policy,
        params=params,
        headers=headers,
        json=json,
        secrets=secrets,
    )


async def send_with_retries(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    policy: RetryPolicy,
    rules: RetryRules = DEFAULT_RULES,
    params: Mapping[str, str | int] | None = None,
    headers: Mapping[str, str] | None = None,
    json: Any = None,
    secrets: Iterable[str] = (),
) -> httpx.Response:
    """The retry loop: send until a 2xx answer, or raise `DeliveryFailed` (module doc).

    `policy` says how often and how long to wait; `rules` how the host's answers are read.
    """
    secret_list = [secret for secret in secrets if secret]
    what = rules.describe(method, url)
    delay = policy.backoff
    attempt = 0
    while True:
        attempt += 1
        last = attempt >= policy.attempts
        try:
            response = await client.request(method, url, params=params, headers=headers, json=json)
        except httpx.TransportError as error:
            if last:
                failure = _failed(
                    f"{what}: {_describe_network_error(error)}", secret_list, retryable=True
                )
                raise failure from (error if rules.chain_network_error else None)
            await policy.sleep(delay)
            delay = min(delay * 2, policy.max_backoff)
            continue
        if 200 <= response.status_code < 300:
            return response
        await response.aread()
        wait, backs_off = _wait_or_raise(
            response, what, rules, policy, delay=delay, last=last, secrets=secret_list
        )
        await policy.sleep(wait)
        if backs_off:
            delay = min(delay * 2, policy.max_backoff)


def _wait_or_raise(
    response: httpx.Response,
    what: str,
    rules: RetryRules,
    policy: RetryPolicy,
    *,
    delay: float,
    last: bool,
    secrets: list[str],
) -> tuple[float, bool]:
    """For a non-2xx answer: (seconds to wait before the next attempt, whether that is a
    backoff step), or the `DeliveryFailed` to give up with."""
    status = response.status_code
    reason = f"{what}: {status} {rules.explain(response)}"

    if rules.rate_limited(response):
        wait = rules.rate_limit_wait(response, policy.clock())
        if last or wait > policy.max_inline_wait:
            raise _failed(
                f"{reason} (rate limited; retry in {wait:g} s)",
                secrets,
                retryable=True,
                retry_after=wait,
                status=status,
            )
        return wait, False

    if status >= 500 or status == 408:
        asked = None if rules.server_wait is None else rules.server_wait(response, policy.clock())
        if last or (asked is not None and asked > policy.max_inline_wait):
            raise _failed(reason, secrets, retryable=True, retry_after=asked, status=status)
        return max(delay, asked or 0.0), True

    if 300 <= status < 400:
        location = response.headers.get("location")
        moved = f" (redirected to {rules.redirect_target(location)})" if location else ""
        reason = f"{what}: {status} {response.reason_phrase}{moved}"
    raise _failed(reason, secrets, retryable=False, status=status)


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


def _describe_network_error(error: httpx.TransportError) -> str:
    if isinstance(error, httpx.TimeoutException):
        return f"timed out ({type(error).__name__})"
    detail = str(error)
    return f"{type(error).__name__}: {detail}" if detail else type(error).__name__


def _header_retry_after(response: httpx.Response, *, now: float) -> float | None:
    value = response.headers.get("retry-after")
    return None if value is None else _parse_retry_after(value.strip(), now=now)


def _parse_retry_after(value: str, *, now: float) -> float | None:
    seconds = _float(value)
    if seconds is not None:
        return max(0.0, seconds)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" parses naive; HTTP dates are always GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def _float(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    if number != number or number in (float("inf"), float("-inf")):
        return None
    return number


def _body_text(response: httpx.Response) -> str:
    try:
        return response.text
    except (UnicodeDecodeError, LookupError):
        return ""
