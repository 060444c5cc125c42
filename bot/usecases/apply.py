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

from sqlmodel import Session

from bot.config import Config
from bot.metrics import Metrics
from bot.ports import Clock
from bot.services import applier
from bot.store.db import Database

log = logging.getLogger(__name__)

BATCH = 16  # deliveries applied in one transaction: short, so webhook writes interleave
QUIET_SECONDS = 0.02  # no delivery stored for this long: the requests have let up
LONGEST_WAIT_SECONDS = 1.0  # a batch waits for a quiet moment this long at most


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
    ) -> None:
        self._db = db
        self._clock = clock
        self._config = config
        self._metrics = metrics
        self._wake_outbox = wake_outbox
        self._max_attempts = max_attempts
        self._batch = batch
        self._wakeup: asyncio.Event | None = None
        self._stopping = False
        self._last_store = 0.0  # time.monotonic() of the last delivery stored here

    def wake(self) -> None:
        """A delivery was stored: look for work now (once the requests let it)."""
        self._last_store = time.monotonic()
        if self._wakeup is not None:
            self._wakeup.set()

    def stop(self) -> None:
        """Claim nothing more; the batch being applied finishes (it is one transaction)."""
        self._stopping = True
        if self._wakeup is not None:
            self._wakeup.set()

    async def run(self, *, poll_seconds: float = 1.0) -> None:
        """Apply whenever woken, or every `poll_seconds`, until stopped.

        Requests come first: while deliveries keep arriving (one stored within the last
        `QUIET_SECONDS`), a batch waits, but never longer than `LONGEST_WAIT_SECONDS`. A
        burst is answered at the speed of storing and applied right after it; a steady
        trickle is applied as it arrives. The wait happens once: a backlog is then applied
        batch after batch even while requests keep arriving, so a sustained load never
        leaves the applier at one batch per `LONGEST_WAIT_SECONDS`.
        """
        self._wakeup = asyncio.Event()
        backlog = False
        while not self._stopping:
            self._wakeup.clear()
            done = None
            try:
                if not backlog:  # once per burst: a backlog is then applied batch by batch
                    await self._let_requests_in()
                done = await self._apply_batch()
            except Exception:  # keep applying; the deliveries stay pending
                log.exception("applying stored deliveries failed; will try again")
            if self._stopping:
                break
            backlog = done is not None and done.claimed >= self._batch and done.applied > 0
            if backlog:
                continue  # the next batch at once, even while requests keep arriving
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout=poll_seconds)
            except TimeoutError:
                pass

    async def _let_requests_in(self) -> None:
        started = time.monotonic()
        while not self._stopping:
            now = time.monotonic()
            if now - self._last_store >= QUIET_SECONDS or now - started >= LONGEST_WAIT_SECONDS:
                return
            await asyncio.sleep(QUIET_SECONDS)

    async def drain(self) -> int:
        """Apply every delivery that is due now; returns how many were applied."""
        applied = 0
        while not self._stopping:
            done = await self._apply_batch()
            applied += done.applied
            if done.claimed < self._batch or not done.applied:
                break
        return applied

    async def _apply_batch(self) -> applier.Applied:
        done = await asyncio.to_thread(self._db.write, self._apply)
        if done.applied:
            self._wake_outbox()
        return done

    def _apply(self, session: Session) -> applier.Applied:
        done = applier.apply_due(
            session,
            now=self._clock.now(),
            config=self._config,
            limit=self._batch,
            max_attempts=self._max_attempts,
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
