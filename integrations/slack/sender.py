"""`bot.ports.SlackSender` over slack_sdk's `AsyncWebClient`.

    sender = WebApiSlackSender(make_web_client(token, "https://slack.com/api/"))
    posted = await sender.post_message(channel="#releases", text="v42 is rolling out")
    await sender.update_message(channel=posted.channel, ts=posted.ts, text="v42 is live")
    found = await sender.find_message(channel="C0RELEASES", oldest=1_700_000_000.0,
                                      metadata={"event_type": "releasebot_release",
                                                "event_payload": {"deployment_id": 7}})

Retrying is the outbox's job, so the client keeps only slack_sdk's default retry handler (one
retry on a dropped connection) and every failure becomes `DeliveryFailed`, which says whether a
retry may help and, for rate limits, how long Slack asked to wait. Reasons name the Web API
method and Slack's error code, never the token.

Posts can carry Slack message metadata (`metadata={"event_type", "event_payload"}`), and
`find_message` reads a channel's history (or a thread's replies) back with
`include_all_metadata` to find a post by it: how the outbox learns whether a post whose
answer never came was stored after all. It reads at most `HISTORY_PAGES` pages. Both methods
take channel ids only: a channel configured by `#name` is read by the id its posts were
answered with, or found once through `conversations.list` (`integrations/slack/channels.py`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from bot.domain.errors import DeliveryFailed
from bot.ports import PostedMessage
from integrations.slack.channels import ChannelIds

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
HISTORY_PAGES = 5
"""Pages of `HISTORY_PAGE_SIZE` messages `find_message` reads at most (each is one call)."""
HISTORY_PAGE_SIZE = 200


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
    """Posts and edits messages through the Slack Web API.

    `clock` (monotonic seconds) times how often a channel name not found is listed again.
    """

    def __init__(
        self, client: AsyncWebClient, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._client = client
        self._channel_ids = ChannelIds(self._list_channels, clock=clock)

    async def post_message(
        self,
        *,
        channel: str,
        text: str,
        blocks: list[dict[str, Any]] | None = None,
        thread_ts: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> PostedMessage:
        """Post to `channel`, or into the thread of `thread_ts`; return where the message is.

        The returned channel is the one Slack answers with (an id when given a `#name`).
        `metadata` ({"event_type", "event_payload"}) is stored with the message, unseen.
        """
        arguments: dict[str, Any] = {"channel": channel, "text": text}
        if blocks is not None:
            arguments["blocks"] = blocks
        if thread_ts is not None:
            arguments["thread_ts"] = thread_ts
        if metadata is not None:
            arguments["metadata"] = metadata
        data = await self._call("chat.postMessage", self._client.chat_postMessage, arguments)
        ts = data.get("ts")
        if not isinstance(ts, str) or not ts:
            # The message may well exist, so a retry could post it twice.
            raise DeliveryFailed("chat.postMessage: the reply carried no ts", retryable=False)
        answered = data.get("channel")
        if not isinstance(answered, str) or not answered:
            return PostedMessage(channel=channel, ts=ts)
        self._channel_ids.learn(channel, answered)
        return PostedMessage(channel=answered, ts=ts)

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

    async def find_message(
        self,
        *,
        channel: str,
        oldest: float,
        metadata: dict[str, Any],
        thread_ts: str | None = None,
    ) -> PostedMessage | None:
        """The message since `oldest` carrying `metadata` (its event type and every field of
        its payload), newest pages first: `conversations.history` for the channel, or
        `conversations.replies` for the thread of `thread_ts`. None after `HISTORY_PAGES`
        pages without it. Raises `DeliveryFailed` when Slack cannot be read (a 429 says how
        long to wait), so a caller never takes "could not look" for "not there".

        A channel given by `#name` is read by its id (both methods take ids only), learnt
        from an earlier post or listed once (`ChannelIds`); the message found names it by id.
        """
        channel = await self._channel_ids.id_of(channel)
        arguments: dict[str, Any] = {
            "channel": channel,
            "oldest": f"{max(oldest, 0.0):.6f}",
            "include_all_metadata": True,
            "limit": HISTORY_PAGE_SIZE,
        }
        call: Callable[..., Awaitable[Any]] = self._client.conversations_history
        method = "conversations.history"
        if thread_ts is not None:
            method, call = "conversations.replies", self._client.conversations_replies
            arguments["ts"] = thread_ts
        for _ in range(HISTORY_PAGES):
            data = await self._call(method, call, arguments)
            for message in data.get("messages") or []:
                if isinstance(message, Mapping) and _carries(message, metadata):
                    ts = message.get("ts")
                    if isinstance(ts, str) and ts:
                        return PostedMessage(channel=channel, ts=ts)
            cursor = (data.get("response_metadata") or {}).get("next_cursor")
            if not data.get("has_more") or not cursor:
                return None
            arguments["cursor"] = cursor
        return None

    async def _list_channels(self, arguments: dict[str, Any]) -> Mapping[str, Any]:
        """One page of `conversations.list`, for `ChannelIds`."""
        return await self._call("conversations.list", self._client.conversations_list, arguments)

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


def _carries(message: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """Whether a message's metadata has `wanted`'s event type and every payload field."""
    found = message.get("metadata")
    if not isinstance(found, Mapping) or found.get("event_type") != wanted.get("event_type"):
        return False
    payload = found.get("event_payload")
    if not isinstance(payload, Mapping):
        return False
    return all(payload.get(k) == v for k, v in (wanted.get("event_payload") or {}).items())


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
