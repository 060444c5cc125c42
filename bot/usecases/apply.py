"""Apply stored deliveries: the applier's loop, and replaying deliveries on request.

A webhook request stores its delivery and is answered; the `Applier` then claims stored
deliveries and applies them (`bot.services.applier`), in arrival order per service and
environment, and wakes the outbox worker for what they queued. Woken by every stored
delivery, it also looks every `poll_seconds` for retries that came due (and for deliveries
another replica stored).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import partial

from sqlmodel import Session

from bot.config import Config
from bot.metrics import Metrics
from bot.ports import Clock
from bot.requests_first import RequestsFirst
from bot.services import applier
from bot.store.db import Database

log = logging.getLogger(__name__)

BATCH = 16  # deliveries applied in one transaction: short, so webhook writes interleave
BUSY_BATCH = 4  # while requests arrive: a batch holds SQLite's writer for a few ms only


def watches_arrivals(role: str, dialect: str) -> bool:
    """Whether an applier learns of arriving requests from the deliveries other replicas
    store: a worker always (the webhooks go to other replicas), and a replica of role
    `all` on PostgreSQL (others like it may share the database), not on SQLite (one
    process)."""
    return role == "worker" or (role == "all" and dialect == "postgresql")


class Applier:
    """Claims stored deliveries and applies them, until stopped."""

    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        config: Config,
        metrics: Metrics,
        wake_outbox: Callable[[], None],
        max_attempts: int,
        batch: int = BATCH,
        watch_arrivals: bool = False,
        requests: RequestsFirst | None = None,
    ) -> None:
        """`requests`: when to give way to the requests this process answers
        (`bot.requests_first`). `watch_arrivals` (`--role worker`): the webhooks go to
        other replicas, so requests arriving are told by the deliveries those store, as
        well as by this process's own (`wake`)."""
        self._db = db
        self._clock = clock
        self._config = config
        self._metrics = metrics
        self._wake_outbox = wake_outbox
        self._max_attempts = max_attempts
        self._batch = batch
        self._wakeup: asyncio.Event | None = None
        self._idle = asyncio.Event()
        self._stopping = False
        self._requests = requests or RequestsFirst()
        self._watch_arrivals = watch_arrivals
        self._newest_seen: int | None = None

    @property
    def watching_arrivals(self) -> bool:
        """Whether deliveries other replicas store tell this applier requests arrive."""
        return self._watch_arrivals

    def wake(self) -> None:
        """A delivery was stored: look for work now (once the requests let it)."""
        self._requests.arrivals.stored(time.monotonic())
        self.look()

    def look(self) -> None:
        """Look for work now: deliveries came in some other way than a request (the spool
        drained into the database)."""
        self._idle.clear()
        if self._wakeup is not None:
            self._wakeup.set()

    def stop(self) -> None:
        """Claim nothing more; the batch being applied finishes (it is one transaction)."""
        self._stopping = True
        self._idle.clear()
        if self._wakeup is not None:
            self._wakeup.set()

    async def run(self, *, poll_seconds: float = 1.0) -> None:
        """Apply whenever woken, or every `poll_seconds`, until stopped. Requests come
        first (`RequestsFirst`): a burst is answered at the speed of storing and applied
        right after it; under a sustained load batches and requests take turns; a steady
        trickle is applied as it arrives."""
        self._wakeup = asyncio.Event()
        while not self._stopping:
            self._wakeup.clear()
            done = None
            try:
                await self._let_requests_in()
                if self._stopping:
                    break
                started = time.monotonic()
                busy = self._requests.busy(started)
                limit = min(BUSY_BATCH, self._batch) if busy else self._batch
                # Begun in a quiet moment, a batch ends early when a request comes in.
                done = await self._apply_batch(limit, stop=None if busy else self._requested)
                self._requests.ran(started, time.monotonic())
            except Exception:  # keep applying; the deliveries stay pending
                log.exception("applying stored deliveries failed; will try again")
            if self._stopping:
                break
            if done is not None and (done.left or (done.claimed >= limit and done.applied > 0)):
                continue  # a backlog: the next batch at once (once requests let it)
            self._requests.drained(time.monotonic())
            if done is not None and not self._wakeup.is_set():  # not after a failed batch
                self._idle.set()
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout=poll_seconds)
            except TimeoutError:
                pass
            finally:
                self._idle.clear()

    async def idle(self) -> None:
        """Until the loop waits for work (a wake-up or its poll) with none left to do."""
        await self._idle.wait()

    async def _let_requests_in(self) -> None:
        held = await self._requests.wait_turn(
            go_on=lambda: not self._stopping,
            look=self.notice_arrivals if self._watch_arrivals else None,
        )
        if held:
            self._metrics.held_back.labels("applier").inc(held)

    async def notice_arrivals(self) -> bool:
        """Whether another replica stored a delivery since the last look. Such a delivery
        counts as a request arriving, as one stored here does: the web replicas answering
        a burst come first (on one machine, for the CPU; on any, for the database)."""
        newest = await asyncio.to_thread(self._newest)
        arrived = self._newest_seen is not None and newest > self._newest_seen
        if arrived:
            self._requests.arrivals.stored(time.monotonic())
        self._newest_seen = newest
        return arrived

    def _newest(self) -> int:
        with self._db.read() as session:
            return applier.newest(session)

    async def drain(self) -> int:
        """Apply every delivery that is due now; returns how many were applied."""
        applied = 0
        while not self._stopping:
            done = await self._apply_batch(self._batch)
            applied += done.applied
            if done.claimed < self._batch or not done.applied:
                break
        return applied

    def _requested(self) -> bool:
        return self._requests.requested(time.monotonic())

    async def _apply_batch(
        self, limit: int, *, stop: Callable[[], bool] | None = None
    ) -> applier.Applied:
        write = partial(self._apply, limit=limit, stop=stop)
        done = await asyncio.to_thread(self._db.write, write)
        if done.applied:
            self._wake_outbox()
        return done

    def _apply(
        self, session: Session, *, limit: int, stop: Callable[[], bool] | None = None
    ) -> applier.Applied:
        done = applier.apply_due(
            session,
            now=self._clock.now(),
            config=self._config,
            limit=limit,
            max_attempts=self._max_attempts,
            stop=stop,
        )
        if done.failed:
            self._metrics.deliveries_apply_failures.inc(done.failed)
        return done


def deliveries(
    db: Database, *, failed: bool = False, since: datetime | None = None, limit: int = 100
) -> list[applier.DeliveryRow]:
    """The stored deliveries `releasebot webhooks list` shows."""
    with db.read() as session:
        return applier.deliveries(session, failed=failed, since=since, limit=limit)


def replay(
    db: Database,
    *,
    ids: Sequence[int] = (),
    failed: bool = False,
    since: datetime | None = None,
) -> list[int]:
    """Put the deliveries named (by row id), the failed ones, or those received since a
    time back to pending; the applier applies them again. Re-applying changes nothing a
    delivery already did: an event a deployment has seen is answered ignored."""

    def run(session: Session) -> list[int]:
        chosen = list(ids)
        if failed or since is not None:
            rows = applier.deliveries(session, failed=failed, since=since, limit=100_000)
            chosen.extend(row.id for row in rows)
        return applier.replay(session, row_ids=sorted(set(chosen)))

    return db.write(run)
