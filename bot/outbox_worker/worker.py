"""The outbox worker: sends what the services queued, many messages at once, each in order.

Rows that share a key (one deployment's Slack message and its thread, one deployer's
calls) are a lane, sent strictly in order; up to `concurrency` lanes are in flight at once,
so a slow Slack holds one message, not all of them. Every Slack call asks one shared
`SlackLimiter` first: a 429 holds its whole method until Retry-After and reschedules the
row then, without counting as a failed attempt; 5xx and network errors back off
exponentially with jitter, except that while a Slack method is known down (5xx in a row)
its rows wait only for the limiter's short circuit; a row is given up on (status dead,
shown in /readyz and /metrics) only after a permanent error or the retry horizon.

A row is leased (claimed) before it is sent, so several replicas can share one database;
the lease is renewed while its calls are in flight, checked before each send and when
settling, so a row another worker has taken over is never sent or settled again here. Each
row is marked attempted before its call goes out and settled as soon as it is done: a post
whose outcome is unknown is looked up in Slack before it is sent again (`sends.py`). On
shutdown (`stop`) lanes finish the row in flight and give back the rest; rows cut short
past the grace are given back at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from functools import partial
from typing import TypeVar

from sqlmodel import Session

from bot import receipts
from bot.config import Config
from bot.domain.errors import DeliveryFailed
from bot.logs import log_context
from bot.metrics import Metrics
from bot.outbox_worker.limiter import LimitedSlack, RateLimited, SlackLimiter
from bot.outbox_worker.sends import Batch, Handler, Sends, read_batch, superseded
from bot.outbox_worker.writes import LaneWrites
from bot.ports import Clock, Deployer, DeploymentLookup, Pager, ScmClient, SlackSender
from bot.render import Renderer
from bot.requests_first import RequestsFirst
from bot.services import outbox, pipeline
from bot.store.db import Database

log = logging.getLogger("bot.outbox_worker")

T = TypeVar("T")

HORIZON = timedelta(hours=24)
DEFAULT_CONCURRENCY = 8
PER_KEY = 20  # rows of one key a claim takes at most, so a long backlog does not hog it
BUSY_ROWS = 4  # while requests arrive: the rows a claim takes, sent in one turn
TURN_LONGEST = 0.1  # seconds a turn waits for its rows' calls (a slow Slack takes no turns)


class OutboxWorker:
    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        config: Config,
        slack: SlackSender,
        renderer: Renderer,
        metrics: Metrics,
        scm: Mapping[str, ScmClient] | None = None,
        lookups: Mapping[str, DeploymentLookup] | None = None,
        deployers: Mapping[str, Deployer] | None = None,
        pagers: Mapping[str, Pager] | None = None,
        secrets: Callable[[str], str | None] | None = None,
        public_url: str = "",
        rng: Callable[[], float] = random.random,
        batch: int = 100,
        horizon: timedelta = HORIZON,
        min_interval: float = 0.15,
        concurrency: int = DEFAULT_CONCURRENCY,
        lease: timedelta = outbox.LEASE,
        limiter: SlackLimiter | None = None,
        more: Mapping[str, Handler] | None = None,  # further kinds: checkpoints, audit.forward
        requests: RequestsFirst | None = None,  # the requests this process answers come first
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, not {concurrency}")
        self._db = db
        self._clock = clock
        self._metrics = metrics
        self._rng = rng
        self._batch = batch
        self._horizon = horizon
        self._min_interval = min_interval
        self._concurrency = concurrency
        self._lease = lease
        self.limiter = limiter or SlackLimiter(clock)
        self._writes = LaneWrites(db, clock, lease)
        sends = Sends(
            db=db,
            writes=self._writes,
            clock=clock,
            config=config,
            slack=LimitedSlack(receipts.slack_sender(slack), self.limiter),
            renderer=renderer,
            wake=self.wake,
            scm=scm or {},
            lookups=lookups or {},
            deployers=receipts.deployers(deployers),
            pagers=receipts.pagers(pagers),
            secrets=secrets or (lambda _name: None),
            public_url=public_url,
        )
        self._config = config
        self._by_kind = {**sends.table(), **(more or {})}
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._stopping = False
        self._held: dict[int, str] = {}  # rows claimed and not settled: id -> lease token
        self._lost: set[int] = set()  # rows whose lease another worker took over
        self._lanes: set[asyncio.Task[None]] = set()
        self._requests = requests or RequestsFirst()  # nobody: it never holds
        self._running = False  # `run` is running: its lanes give way to requests
        self._holding: asyncio.Task[None] | None = None  # the shared wait while they do

    def wake(self) -> None:
        self._idle.clear()
        self._wakeup.set()

    def stop(self) -> None:
        """Claim nothing more; the sends in flight finish and `run` returns."""
        self._stopping = True
        self._wakeup.set()

    async def run(self, *, poll_seconds: float = 5.0) -> None:
        """Claim rows whenever woken (a commit queued something), a lane finished, or every
        `poll_seconds`, keeping up to `concurrency` messages in flight.

        During a burst every commit wakes the worker; a claim then happens at most every
        `min_interval` seconds, so rows pile up a little and one claim takes them together
        (and sends only the newest edit of each release message).
        """
        loop = asyncio.get_running_loop()
        renewing = asyncio.create_task(self._renew_forever(), name="outbox-lease-renewal")
        self._running = True
        try:
            while not self._stopping:
                started = loop.time()
                claimed = True
                if len(self._lanes) < self._concurrency:
                    try:
                        await self._claim_in_turn()
                    except Exception:  # keep the worker alive; the rows stay pending
                        claimed = False
                        log.exception("outbox claim failed; will try again")
                await self._wait(poll_seconds, idle=claimed)
                pause = self._min_interval - (loop.time() - started)
                if pause > 0 and not self._stopping:
                    await asyncio.sleep(pause)
            if self._lanes:
                await asyncio.gather(*self._lanes)
        except asyncio.CancelledError:  # shutdown outlasted its grace: give back the rest
            await self._give_back_all()
            raise
        finally:
            self._running = False
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing

    async def _claim_in_turn(self) -> None:
        """Claim rows for the free lanes. While requests arrive (`RequestsFirst`), wait for
        a quiet moment or for this worker's turn; on its turn, take a small step: a few
        rows, sent (or `TURN_LONGEST` waited for, when Slack is slow) before the requests
        get theirs. A claim that finds nothing, with no lane running, has worked the
        backlog off."""
        requests = self._requests
        await self._let_requests_in()
        started = time.monotonic()
        busy = requests.busy(started)
        limit = BUSY_ROWS if busy else self._batch
        claimed, lanes = await self._claim_and_start(
            self._concurrency - len(self._lanes), limit=limit
        )
        if busy:
            if lanes:
                await asyncio.wait(lanes, timeout=TURN_LONGEST)
            requests.ran(started, time.monotonic())
            if claimed >= limit:
                self._wakeup.set()  # more is due: the next step once its turn comes
        if not claimed and not self._lanes:
            requests.drained(time.monotonic())

    async def _let_requests_in(self) -> None:
        """While `run` runs: wait as long as the requests come first (`RequestsFirst`).
        Every lane waiting waits on one shared look, not on a look of its own."""
        if not self._held_back():
            return
        if self._holding is None or self._holding.done():
            self._holding = asyncio.create_task(self._hold_back(), name="outbox-requests-first")
        await asyncio.shield(self._holding)

    def _held_back(self) -> bool:
        return self._running and not self._stopping and self._requests.hold(time.monotonic())

    async def _hold_back(self) -> None:
        held = await self._requests.wait_turn(go_on=lambda: self._running and not self._stopping)
        self._metrics.held_back.labels("outbox").inc(held)

    async def _wait(self, poll_seconds: float, *, idle: bool = True) -> None:
        """Until woken, a lane finishes, or `poll_seconds` pass. `idle`: the claim before
        found what was due (it did not fail), so with no lane running there is nothing to do."""
        if idle and not self._lanes and not self._wakeup.is_set():
            self._idle.set()
        woken = asyncio.create_task(self._wakeup.wait())
        try:
            await asyncio.wait(
                {woken, *self._lanes}, timeout=poll_seconds, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            woken.cancel()
            self._idle.clear()
        self._wakeup.clear()

    async def idle(self) -> None:
        """Until `run` waits for work (a wake-up or its poll) with no message in flight."""
        await self._idle.wait()

    async def drain(self) -> int:
        """Send every row that is due now, round after round; returns how many were claimed."""
        claimed = 0
        while not self._stopping and (found := await self.drain_round()):
            claimed += found
        return claimed

    async def drain_round(self) -> int:
        """One claim of up to `concurrency` messages, all sent (each in order) before it
        returns; how many rows it claimed."""
        claimed, lanes = await self._claim_and_start(self._concurrency)
        try:
            if lanes:
                await asyncio.gather(*lanes)
        except asyncio.CancelledError:
            await self._give_back_all()
            raise
        return claimed

    async def renew_leases(self) -> set[int]:
        """Extend the leases of every row this worker holds; returns the rows it lost (their
        lease ran out and another worker claimed them), which it will neither send nor
        settle. Runs every third of the lease while `run` does."""
        by_token: dict[str, list[int]] = defaultdict(list)
        for row_id, token in list(self._held.items()):
            by_token[token].append(row_id)
        now = self._clock.now()
        lost: set[int] = set()
        for token, row_ids in by_token.items():
            renew = partial(outbox.renew, row_ids=row_ids, token=token, now=now, lease=self._lease)
            gone = await asyncio.to_thread(self._db.write, renew)
            # A row settled here meanwhile (sent, or due again later) is not lost.
            lost |= {row_id for row_id in gone if self._held.get(row_id) == token}
        for row_id in lost:
            log.warning("outbox row %s was taken over by another worker; leaving it", row_id)
            self._held.pop(row_id, None)
        self._lost |= lost
        return lost

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self._lease.total_seconds() / 3)
            try:
                await self.renew_leases()
            except Exception:
                log.exception("could not renew the outbox leases; will try again")

    async def _claim_and_start(
        self, keys: int, *, limit: int | None = None
    ) -> tuple[int, list[asyncio.Task[None]]]:
        """Claim due rows (up to `limit`) of up to `keys` messages and start one lane for
        each."""
        if self._stopping or keys < 1:
            return 0, []
        token = outbox.new_lease_token()
        claim = partial(
            outbox.claim_due,
            now=self._clock.now(),
            limit=limit or self._batch,
            per_key=PER_KEY,
            max_keys=keys,
            token=token,
            lease=self._lease,
        )
        claimed: list[outbox.Claimed] = await asyncio.to_thread(self._db.write, claim)
        if not claimed:
            return 0, []
        for row in claimed:
            self._held[row.id] = token
            self._lost.discard(row.id)  # claimed anew: this worker holds it again
        try:
            batch = await asyncio.to_thread(read_batch, self._db, self._config, claimed)
        except Exception:
            await self._give_back([row.id for row in claimed])
            raise
        by_key: dict[str, list[outbox.Claimed]] = defaultdict(list)
        for row in claimed:
            by_key[row.key].append(row)
        lanes = [
            asyncio.create_task(self._lane(rows, batch), name=f"outbox-lane-{key}")
            for key, rows in by_key.items()
        ]
        for lane in lanes:
            self._lanes.add(lane)
            lane.add_done_callback(self._lanes.discard)
        return len(claimed), lanes

    async def _lane(self, rows: list[outbox.Claimed], batch: Batch) -> None:
        """Send one key's rows in order; stop at the first that is not sent (it is settled
        for a retry, and the later rows wait for it), and give back the ones not tried.
        Edits a later edit of the same message replaces are settled first, together,
        without a call."""
        replaced = [row for row in rows if superseded(row, batch)]
        if replaced:
            await self._settle_replaced(replaced)
            settled = {row.id for row in replaced}
            rows = [row for row in rows if row.id not in settled]
        for index, row in enumerate(rows):
            if index:
                await self._let_requests_in()
            if self._stopping or row.id in self._lost:
                await self._give_back([r.id for r in rows[index:]])
                return
            with log_context(**row.log_ids()):
                sent = await self._send(row, batch)
            if not sent:
                await self._give_back([r.id for r in rows[index + 1 :]])
                return

    async def _settle_replaced(self, rows: list[outbox.Claimed]) -> None:
        """Mark sent, in one write, edits that need no call; a row this worker no longer
        holds is left to the worker that does."""
        now = self._clock.now()
        by_token: dict[str | None, list[int]] = defaultdict(list)
        for row in rows:
            if row.id in self._held and row.id not in self._lost:
                self._held.pop(row.id)
                by_token[row.lease_token].append(row.id)
        for token, row_ids in by_token.items():
            settle = partial(outbox.mark_sent_many, row_ids=row_ids, now=now, token=token)
            try:
                await asyncio.to_thread(self._db.write, settle)
            except Exception:  # their leases run out; claimed again, they are sent then
                log.exception("could not settle replaced edits %s", row_ids)
                continue
            self._metrics.outbox_sent.labels(outbox.SLACK_MESSAGE).inc(len(row_ids))

    async def _send(self, row: outbox.Claimed, batch: Batch) -> bool:
        """Send one row and settle it at once; False when it was not sent."""
        try:
            attempt = await self._writes.begin(row)
        except Exception:  # nothing went out: give the row back (or let its lease run out)
            log.exception("could not mark outbox row %s as attempted; not sending it", row.id)
            await self._give_back([row.id])
            return False
        if attempt is None:
            log.warning("outbox row %s was taken over by another worker; not sending it", row.id)
            self._lost.add(row.id)
            self._held.pop(row.id, None)
            return False
        if attempt.in_doubt_since is not None:
            batch.in_doubt[row.id] = attempt.in_doubt_since
        try:
            answers = await self._dispatch(row, batch)
        except DeliveryFailed as exc:
            self._metrics.outbox_failures.labels(row.kind, str(exc.retryable).lower()).inc()
            if row.kind.startswith("slack."):
                self._metrics.slack_api_errors.labels(_error_code(exc.reason)).inc()
            failed = self._failure(row, exc, attempt.in_doubt_since)
            await self._settle(row, self._writes.write(failed))
            return False
        except Exception as exc:
            log.exception("outbox row %s (%s) failed unexpectedly", row.id, row.kind)
            self._metrics.outbox_failures.labels(row.kind, "true").inc()
            failure = DeliveryFailed(f"{type(exc).__name__}: {exc}", retryable=True)
            failed = self._failure(row, failure, attempt.in_doubt_since)
            await self._settle(row, self._writes.write(failed))
            return False
        if await self._settle(row, self._writes.sent(row, answers, self._clock.now())) is False:
            log.warning("outbox row %s was sent, but another worker holds it now", row.id)
        self._metrics.outbox_sent.labels(row.kind).inc()
        return True

    async def _dispatch(self, row: outbox.Claimed, batch: Batch) -> list[receipts.Receipt]:
        """Send one row; what the platforms answered, to be audited when it is settled."""
        handler = self._by_kind.get(row.kind)
        if handler is None:
            raise DeliveryFailed(f"unknown outbox kind {row.kind!r}", retryable=False)
        with receipts.collect() as answers:
            await handler(row, batch)
        return answers

    def _failure(
        self, row: outbox.Claimed, exc: DeliveryFailed, in_doubt_since: datetime | None
    ) -> Callable[[Session], object]:
        """How to settle a row whose send failed: later (at Retry-After for a rate limit,
        else after a growing backoff), or never (dead) past the horizon or on a permanent
        error. A failure Slack answered for sure (any status below 500) sent nothing, so an
        earlier attempt's doubt is all that is kept; otherwise this attempt is in doubt."""
        now = self._clock.now()
        token = row.lease_token
        if not exc.retryable or now - row.created_at > self._horizon:
            log.error("giving up on outbox row %s (%s): %s", row.id, row.kind, exc.reason)

            def give_up(session: Session) -> None:
                if outbox.mark_dead(session, row_id=row.id, error=exc.reason, token=token):
                    if row.kind == outbox.DEPLOY:
                        pipeline.record_failure(
                            session, now=now, payload=row.payload, error=exc.reason
                        )

            return give_up
        # Sure that nothing went out: back to the earlier attempt's doubt (or none).
        sure = exc.status is not None and exc.status < 500
        attempted_at = in_doubt_since if sure else outbox.KEEP
        if isinstance(exc, RateLimited):
            log.info("outbox row %s (%s) waits for Slack until %s", row.id, row.kind, exc.until)
            return partial(
                outbox.mark_retry,
                row_id=row.id,
                next_attempt_at=exc.until,
                error=exc.reason,
                token=token,
                count_attempt=False,
                attempted_at=attempted_at,
            )
        delay = outbox.retry_delay(row.attempts, exc.retry_after, jitter=self._rng())
        log.warning(
            "outbox row %s (%s) failed, retry in %.1fs: %s", row.id, row.kind, delay, exc.reason
        )
        return partial(
            outbox.mark_retry,
            row_id=row.id,
            next_attempt_at=now + timedelta(seconds=delay),
            error=exc.reason,
            token=token,
            attempted_at=attempted_at,
        )

    async def _settle(self, row: outbox.Claimed, recorded: Awaitable[T]) -> T | None:
        """Await the write that records a row's outcome (`self._writes`); the row is no
        longer held either way. A failure to record is logged (None): the row keeps its
        lease until it runs out, then it is tried again (a post in doubt is looked up first)."""
        self._held.pop(row.id, None)
        try:
            return await recorded
        except Exception:
            log.exception("could not record the outcome of outbox row %s", row.id)
            return None

    async def _give_back(self, row_ids: list[int]) -> None:
        """Give back the leases of held rows not tried, so they wait for nothing else."""
        by_token: dict[str, list[int]] = defaultdict(list)
        for row_id in row_ids:
            token = self._held.pop(row_id, None)
            if token is not None:
                by_token[token].append(row_id)
        for token, ids in by_token.items():
            release = partial(outbox.release, row_ids=ids, token=token)
            try:
                await asyncio.to_thread(self._db.write, release)
            except Exception:
                log.exception("could not give back outbox rows %s", ids)

    async def _give_back_all(self) -> None:
        """Cut short: stop every lane and give back every row still held."""
        lanes = list(self._lanes)
        for lane in lanes:
            lane.cancel()
        await asyncio.gather(*lanes, return_exceptions=True)
        await self._give_back(list(self._held))


def _error_code(reason: str) -> str:
    return reason.rsplit(": ", 1)[-1][:64] if ": " in reason else "error"
