"""One limiter for every Slack call the outbox makes, shared by all the messages in flight.

Slack limits each Web API method per workspace (chat.update, conversations.history: Tier 3)
and chat.postMessage also per channel (about one a second, short bursts allowed). When it
answers 429 with Retry-After, that wait holds for the whole method: while it lasts no other
call to that method goes out (each is refused here at once, `RateLimited`, and its row is
rescheduled for the end of the wait without counting as a failed attempt), while calls to
other methods carry on. Posts to one channel are also kept to `per_channel` at a time, so a
backlog spreads over channels instead of bursting into one.

    limiter = SlackLimiter(clock)
    slack = LimitedSlack(sender, limiter)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

from bot.domain.errors import DeliveryFailed
from bot.ports import Clock, PostedMessage, SlackSender

POST = "chat.postMessage"
UPDATE = "chat.update"
HISTORY = "conversations.history"
REPLIES = "conversations.replies"
DEFAULT_RETRY_AFTER = 1.0  # seconds, for a 429 that did not say how long to wait
PER_CHANNEL = 4


class RateLimited(DeliveryFailed):
    """Slack asked us to wait (or a wait it asked for still holds): nothing was sent, and the
    row goes out again at `until`, its backoff untouched."""

    def __init__(self, reason: str, *, until: datetime) -> None:
        super().__init__(reason, retryable=True, status=429)
        self.until = until


class SlackLimiter:
    """Who may call which Slack method now: Retry-After per method, posts per channel."""

    def __init__(self, clock: Clock, *, per_channel: int = PER_CHANNEL) -> None:
        self._clock = clock
        self._per_channel = per_channel
        self._blocked: dict[str, datetime] = {}  # method -> until when Slack asked us to wait
        self._channels: dict[str, asyncio.Semaphore] = {}

    def blocked_until(self, method: str) -> datetime | None:
        """When the wait Slack asked for on `method` ends, if it still holds."""
        until = self._blocked.get(method)
        if until is None or until <= self._clock.now():
            return None
        return until

    def check(self, method: str) -> None:
        """Raise `RateLimited` while `method` waits out a Retry-After."""
        until = self.blocked_until(method)
        if until is not None:
            raise RateLimited(f"{method}: waiting out Slack's Retry-After", until=until)

    def hold(self, method: str, retry_after: float | None) -> datetime:
        """Slack answered 429 on `method`: hold every call to it until Retry-After is over."""
        wait = DEFAULT_RETRY_AFTER if retry_after is None else retry_after
        until = self._clock.now() + timedelta(seconds=wait)
        self._blocked[method] = max(until, self._blocked.get(method, until))
        return self._blocked[method]

    @asynccontextmanager
    async def channel(self, channel: str) -> AsyncIterator[None]:
        """A turn to post in `channel` (at most `per_channel` posts there at once)."""
        slot = self._channels.get(channel)
        if slot is None:
            slot = self._channels[channel] = asyncio.Semaphore(self._per_channel)
        async with slot:
            yield


class LimitedSlack:
    """A `SlackSender` whose every call first asks the shared `SlackLimiter`."""

    def __init__(self, inner: SlackSender, limiter: SlackLimiter) -> None:
        self._inner = inner
        self._limiter = limiter

    async def post_message(
        self,
        *,
        channel: str,
        text: str,
        blocks: list[dict[str, Any]] | None = None,
        thread_ts: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> PostedMessage:
        async with self._limiter.channel(channel):
            self._limiter.check(POST)
            try:
                return await self._inner.post_message(
                    channel=channel,
                    text=text,
                    blocks=blocks,
                    thread_ts=thread_ts,
                    metadata=metadata,
                )
            except DeliveryFailed as exc:
                raise self._limited(POST, exc) from exc

    async def update_message(
        self, *, channel: str, ts: str, text: str, blocks: list[dict[str, Any]] | None = None
    ) -> None:
        self._limiter.check(UPDATE)
        try:
            await self._inner.update_message(channel=channel, ts=ts, text=text, blocks=blocks)
        except DeliveryFailed as exc:
            raise self._limited(UPDATE, exc) from exc

    async def find_message(
        self,
        *,
        channel: str,
        oldest: float,
        metadata: dict[str, Any],
        thread_ts: str | None = None,
    ) -> PostedMessage | None:
        method = HISTORY if thread_ts is None else REPLIES
        self._limiter.check(method)
        try:
            return await self._inner.find_message(
                channel=channel, oldest=oldest, metadata=metadata, thread_ts=thread_ts
            )
        except DeliveryFailed as exc:
            raise self._limited(method, exc) from exc

    def _limited(self, method: str, exc: DeliveryFailed) -> DeliveryFailed:
        """A 429 holds the whole method; any other failure passes through as it is."""
        if exc.status != 429 or isinstance(exc, RateLimited):
            return exc
        until = self._limiter.hold(method, exc.retry_after)
        return RateLimited(exc.reason, until=until)
