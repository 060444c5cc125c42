"""One limiter for every Slack call the outbox makes, shared by all the messages in flight.

Slack limits each Web API method per workspace (chat.update, conversations.history: Tier 3)
and chat.postMessage also per channel (about one a second, short bursts allowed). When it
answers 429 with Retry-After, that wait holds for the whole method: while it lasts no other
call to that method goes out (each is refused here at once, `RateLimited`, and its row is
rescheduled for the end of the wait without counting as a failed attempt), while calls to
other methods carry on. Posts to one channel are also kept to `per_channel` at a time, so a
backlog spreads over channels instead of bursting into one.

When Slack answers a method with server errors (5xx) `DOWN_AFTER` times in a row, the method
is known down and a short circuit opens for it: for `CIRCUIT_FIRST` seconds, doubling with
each failed probe up to `CIRCUIT_LONGEST`, every call to it is refused here (`RateLimited`,
not an attempt), then one call goes out as a probe while the others wait `PROBE_WAIT`; the
first answer that is not a server error closes it. A row whose own call failed while the
method is known down (`MethodDown`) is retried when the circuit ends, not after its own
growing backoff, so after an outage the backlog is due within seconds of Slack's recovery.
A single 5xx among successes still backs its row off alone.

    limiter = SlackLimiter(clock)
    slack = LimitedSlack(sender, limiter)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any, TypeVar

from bot.domain.errors import DeliveryFailed
from bot.ports import Clock, PostedMessage, SlackSender

T = TypeVar("T")

POST = "chat.postMessage"
UPDATE = "chat.update"
HISTORY = "conversations.history"
REPLIES = "conversations.replies"
DEFAULT_RETRY_AFTER = 1.0  # seconds, for a 429 that did not say how long to wait
PER_CHANNEL = 4
DOWN_AFTER = 2  # server errors in a row on one method that make it known down
CIRCUIT_FIRST = 1.0  # seconds a known-down method is held before the first probe
CIRCUIT_LONGEST = 8.0  # seconds at most between two probes
PROBE_WAIT = 1.0  # seconds the other calls wait while a probe is out
PROBE_TIMEOUT = 30.0  # seconds after which a probe with no answer yet no longer counts


class RateLimited(DeliveryFailed):
    """Slack asked us to wait (or a wait it asked for still holds): nothing was sent, and the
    row goes out again at `until`, its backoff untouched."""

    def __init__(self, reason: str, *, until: datetime) -> None:
        super().__init__(reason, retryable=True, status=429)
        self.until = until


class MethodDown(DeliveryFailed):
    """This call failed with a server error while its method is known down: the row is
    retried (`retry_after`) when the method's circuit lets a call through again."""

    def __init__(self, failure: DeliveryFailed, *, until: datetime, wait: float) -> None:
        super().__init__(
            failure.reason, retryable=True, retry_after=max(wait, 0.0), status=failure.status
        )
        self.until = until


class SlackLimiter:
    """Who may call which Slack method now: Retry-After and circuits per method, posts per
    channel."""

    def __init__(self, clock: Clock, *, per_channel: int = PER_CHANNEL) -> None:
        self._clock = clock
        self._per_channel = per_channel
        self._blocked: dict[str, datetime] = {}  # method -> until when Slack asked us to wait
        self._channels: dict[str, asyncio.Semaphore] = {}
        self._errors: dict[str, int] = {}  # method -> server errors in a row
        self._trips: dict[str, int] = {}  # method -> times its circuit opened since it worked
        self._open: dict[str, datetime] = {}  # method -> until when its circuit is open
        self._probe: dict[str, datetime] = {}  # method -> when its probe went out

    def blocked_until(self, method: str) -> datetime | None:
        """When the wait on `method` (Slack's Retry-After, or its open circuit) ends, if it
        still holds."""
        now = self._clock.now()
        waits = [w for w in (self._blocked.get(method), self._open.get(method)) if w and w > now]
        return max(waits) if waits else None

    def now(self) -> datetime:
        """The limiter's clock (the worker's)."""
        return self._clock.now()

    def is_down(self, method: str) -> bool:
        """Whether `method` is known down (its circuit opened and no call has worked since)."""
        return self._trips.get(method, 0) > 0

    def check(self, method: str) -> bool:
        """Raise `RateLimited` while `method` waits out a Retry-After or its circuit, or while
        another call probes it; True when this call is the probe of a known-down method."""
        until = self.blocked_until(method)
        if until is not None:
            why = (
                "waiting out Slack's Retry-After"
                if self._blocked.get(method) == until
                else "Slack is failing it; waiting before the next try"
            )
            raise RateLimited(f"{method}: {why}", until=until)
        if not self.is_down(method):
            return False
        now = self._clock.now()
        sent = self._probe.get(method)
        if sent is not None and now - sent < timedelta(seconds=PROBE_TIMEOUT):
            raise RateLimited(
                f"{method}: Slack is failing it; one call is trying it again",
                until=now + timedelta(seconds=PROBE_WAIT),
            )
        self._probe[method] = now
        return True

    def hold(self, method: str, retry_after: float | None) -> datetime:
        """Slack answered 429 on `method`: hold every call to it until Retry-After is over."""
        wait = DEFAULT_RETRY_AFTER if retry_after is None else retry_after
        until = self._clock.now() + timedelta(seconds=wait)
        self._blocked[method] = max(until, self._blocked.get(method, until))
        return self._blocked[method]

    def worked(self, method: str) -> None:
        """Slack answered a call to `method` (whatever the answer, not a server error): the
        method is up again."""
        self._errors.pop(method, None)
        self._trips.pop(method, None)
        self._open.pop(method, None)
        self._probe.pop(method, None)

    def settled(self, method: str, *, probe: bool) -> None:
        """A call ended without telling whether `method` works (a timeout, a 429): a probe
        that ends so makes way for the next."""
        if probe:
            self._probe.pop(method, None)

    def server_error(self, method: str, *, probe: bool) -> datetime | None:
        """Slack answered a call to `method` with a 5xx: when its circuit ends if the method
        is known down now (the circuit opens, or opens longer after a failed probe), else
        None (a single failure among successes)."""
        if probe:
            self._probe.pop(method, None)
        errors = self._errors[method] = self._errors.get(method, 0) + 1
        if errors < DOWN_AFTER:
            return None
        now = self._clock.now()
        current = self._open.get(method)
        if current is not None and current > now and not probe:
            return current  # a call that went out before the circuit opened
        trips = self._trips[method] = self._trips.get(method, 0) + 1
        wait = min(CIRCUIT_LONGEST, CIRCUIT_FIRST * 2 ** min(trips - 1, 16))
        self._open[method] = now + timedelta(seconds=wait)
        return self._open[method]

    @asynccontextmanager
    async def channel(self, channel: str) -> AsyncIterator[None]:
        """A turn to post in `channel` (at most `per_channel` posts there at once)."""
        slot = self._channels.get(channel)
        if slot is None:
            slot = self._channels[channel] = asyncio.Semaphore(self._per_channel)
        async with slot:
            yield


class LimitedSlack:
    """A `SlackSender` whose every call first asks the shared `SlackLimiter`, and tells it
    how the call went."""

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
            return await self._call(
                POST,
                lambda: self._inner.post_message(
                    channel=channel,
                    text=text,
                    blocks=blocks,
                    thread_ts=thread_ts,
                    metadata=metadata,
                ),
            )

    async def update_message(
        self, *, channel: str, ts: str, text: str, blocks: list[dict[str, Any]] | None = None
    ) -> None:
        await self._call(
            UPDATE,
            lambda: self._inner.update_message(channel=channel, ts=ts, text=text, blocks=blocks),
        )

    async def find_message(
        self,
        *,
        channel: str,
        oldest: float,
        metadata: dict[str, Any],
        thread_ts: str | None = None,
    ) -> PostedMessage | None:
        return await self._call(
            HISTORY if thread_ts is None else REPLIES,
            lambda: self._inner.find_message(
                channel=channel, oldest=oldest, metadata=metadata, thread_ts=thread_ts
            ),
        )

    async def _call(self, method: str, call: Callable[[], Awaitable[T]]) -> T:
        probe = self._limiter.check(method)
        try:
            result = await call()
        except DeliveryFailed as exc:
            raise self._limited(method, exc, probe=probe) from exc
        except BaseException:
            self._limiter.settled(method, probe=probe)
            raise
        self._limiter.worked(method)
        return result

    def _limited(self, method: str, exc: DeliveryFailed, *, probe: bool) -> DeliveryFailed:
        """A 429 holds the whole method; a 5xx while the method is known down waits for its
        circuit; any other failure passes through as it is."""
        if isinstance(exc, RateLimited):
            self._limiter.settled(method, probe=probe)
            return exc
        if exc.status == 429:
            self._limiter.settled(method, probe=probe)
            until = self._limiter.hold(method, exc.retry_after)
            return RateLimited(exc.reason, until=until)
        if exc.status is not None and exc.status >= 500:
            ends = self._limiter.server_error(method, probe=probe)
            if ends is None:
                return exc
            return MethodDown(exc, until=ends, wait=(ends - self._limiter.now()).total_seconds())
        if exc.status is None:  # no answer at all: nothing learnt about the method
            self._limiter.settled(method, probe=probe)
        else:
            self._limiter.worked(method)
        return exc
