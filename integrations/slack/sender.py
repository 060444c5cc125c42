"""`bot.ports.SlackSender` over slack_sdk's `AsyncWebClient`.

    sender = WebApiSlackSender(make_web_client(token, "https://slack.com/api/"))
    posted = await sender.post_message(channel="#releases", text="v42 is rolling out")
    await sender.update_message(channel=posted.channel, ts=posted.ts, text="v42 is live")

Retrying is the outbox's job, so the client keeps only slack_sdk's default retry handler (one
retry on a dropped connection) and every failure becomes `DeliveryFailed`, which says whether a
retry may help and, for rate limits, how long Slack asked to wait. Reasons name the Web API
method and Slack's error code, never the token.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from bot.domain.errors import DeliveryFailed
from bot.ports import PostedMessage

__all__ = [
    "NETWORK_ERRORS",
    "RETRYABLE_ERRORS",
    "WebApiSlackSender",
    "api_failure",
    "make_http_session",
    "make_web_client",
    "network_failure",
]

NETWORK_ERRORS: tuple[type[BaseException], ...] = (TimeoutError, aiohttp.ClientError, OSError)
"""What a Web API call raises when Slack never answered (timeouts, refused connections)."""

RETRYABLE_ERRORS = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)
"""`ok: false` error codes that describe Slack's trouble rather than the request's."""

DEFAULT_TIMEOUT_SECONDS = 30


def make_web_client(
    token: str | None,
    base_url: str,
    *,
    timeout: int = DEFAULT_TIMEOUT_SECONDS,
    session: aiohttp.ClientSession | None = None,
) -> AsyncWebClient:
    """A client for `base_url` (Slack's, or a fake's) with slack_sdk's default retry handlers.

    With `session` (see `make_http_session`) every call goes through that session's pool of
    kept-alive connections; without, slack_sdk opens a new session (and connection) per call.
    Bolt passes its client's session on to the client it makes for each request.
    """
    return AsyncWebClient(token=token, base_url=base_url, timeout=timeout, session=session)


def make_http_session(*, timeout: int = DEFAULT_TIMEOUT_SECONDS) -> aiohttp.ClientSession:
    """An aiohttp session for `make_web_client`, as slack_sdk would make one for each call
    (the same total timeout, no proxies from the environment), except that it keeps no
    cookies between calls and keeps connections open for the next call. Create it in the
    event loop that uses it and close it there."""
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=timeout), cookie_jar=aiohttp.DummyCookieJar()
    )


class WebApiSlackSender:
    """Posts and edits messages through the Slack Web API."""

    def __init__(self, client: AsyncWebClient) -> None:
        self._client = client

    async def post_message(
        self,
        *,
        channel: str,
        text: str,
        blocks: list[dict[str, Any]] | None = None,
        thread_ts: str | None = None,
    ) -> PostedMessage:
        """Post to `channel`, or into the thread of `thread_ts`; return where the message is.

        The returned channel is the one Slack answers with (an id when given a `#name`).
        """
        arguments: dict[str, Any] = {"channel": channel, "text": text}
        if blocks is not None:
            arguments["blocks"] = blocks
        if thread_ts is not None:
            arguments["thread_ts"] = thread_ts
        data = await self._call("chat.postMessage", self._client.chat_postMessage, arguments)
        ts = data.get("ts")
        if not isinstance(ts, str) or not ts:
            # The message may well exist, so a retry could post it twice.
            raise DeliveryFailed("chat.postMessage: the reply carried no ts", retryable=False)
        answered_channel = data.get("channel")
        return PostedMessage(
            channel=answered_channel if isinstance(answered_channel, str) else channel, ts=ts
        )

    async def update_message(
        self,
        *,
        channel: str,
        ts: str,
        text: str,
        blocks: list[dict[str, Any]] | None = None,
    ) -> None:
        """Edit the message at `ts` in place. Without `blocks`, Slack keeps the old ones."""
        arguments: dict[str, Any] = {"channel": channel, "ts": ts, "text": text}
        if blocks is not None:
            arguments["blocks"] = blocks
        await self._call("chat.update", self._client.chat_update, arguments)

    async def _call(
        self,
        method: str,
        call: Callable[..., Awaitable[Any]],
        arguments: dict[str, Any],
    ) -> Mapping[str, Any]:
        try:
            response = await call(**arguments)
        except SlackApiError as error:
            raise self._redacted(api_failure(method, error)) from error
        except NETWORK_ERRORS as error:
            raise self._redacted(network_failure(method, error)) from error
        except SlackClientError as error:
            # Raised before sending: the request itself is malformed.
            raise self._redacted(
                DeliveryFailed(f"{method}: {type(error).__name__}: {error}", retryable=False)
            ) from error
        data = response.data
        return data if isinstance(data, Mapping) else {}

    def _redacted(self, failure: DeliveryFailed) -> DeliveryFailed:
        """The failure with the token blanked out of its reason, should it ever appear."""
        token = self._client.token
        if not token or token not in failure.reason:
            return failure
        return DeliveryFailed(
            failure.reason.replace(token, "xox?-***"),
            retryable=failure.retryable,
            retry_after=failure.retry_after,
            status=failure.status,
        )


def api_failure(method: str, error: SlackApiError) -> DeliveryFailed:
    """Map Slack's answer (an HTTP error status or `ok: false`) to `DeliveryFailed`."""
    response = error.response
    status = _status_of(response)
    data = getattr(response, "data", None)
    code = data.get("error") if isinstance(data, Mapping) else None
    code = code if isinstance(code, str) and code else None
    headers = getattr(response, "headers", None)
    retry_after = _retry_after(headers) if isinstance(headers, Mapping) else None

    if status == 429:
        retryable = True
    elif status is not None and status >= 500:
        retryable = True
    else:
        retryable = code in RETRYABLE_ERRORS

    if code is not None and status not in (None, 200):
        reason = f"{method}: {code} (HTTP {status})"
    elif code is not None:
        reason = f"{method}: {code}"
    elif status is not None:
        reason = f"{method}: HTTP {status}"
    else:
        reason = f"{method}: unreadable reply"
    return DeliveryFailed(reason, retryable=retryable, retry_after=retry_after, status=status)


def network_failure(method: str, error: BaseException) -> DeliveryFailed:
    """Map a connection error or timeout, where Slack never answered, to a retryable failure."""
    if isinstance(error, TimeoutError):
        what = "timed out"
    else:
        detail = str(error)
        what = f"{type(error).__name__}: {detail}" if detail else type(error).__name__
    return DeliveryFailed(f"{method}: {what}", retryable=True)


def _status_of(response: object) -> int | None:
    # A SlackResponse has .status_code; an aiohttp response (unparseable body) has .status.
    for attribute in ("status_code", "status"):
        value = getattr(response, attribute, None)
        if isinstance(value, int):
            return value
    return None


def _retry_after(headers: Mapping[str, Any]) -> float | None:
    value = headers.get("Retry-After") or headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if seconds >= 0 else None
