"""Deliveries that arrive while the database cannot be reached: held locally, stored later.

A webhook is answered once its delivery is durable. Normally that is the database's group
commit; when the database cannot be reached (a PostgreSQL restart, a failover, a network
cut), it is this replica's local spool (`bot.store.spool`), and the sender still gets its
202 instead of a 5xx it might never retry. While the spool holds anything, new deliveries
join its end, so deliveries are stored in the order they arrived. `SpoolDrainer` stores
the spool's records in the database as soon as it answers again, oldest first, and only
then removes them; a crash in between stores them again at the next start, where the
delivery ids make the copies duplicates. A spool at its limit (`RELEASEBOT_SPOOL_MAX`)
takes nothing more: the request is answered 503 with Retry-After, as without a spool.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from sqlmodel import Session

from bot.domain.ingest import ACCEPTED, IngestResult
from bot.services import ingest
from bot.store.db import Database
from bot.store.spool import Spool, SpoolFull
from bot.usecases.availability import database_unavailable
from bot.usecases.context import Context

log = logging.getLogger(__name__)

BATCH = 200  # spooled deliveries stored per transaction
SPOOLED = "held on this replica while the database is unreachable; stored once it is back"


async def store(ctx: Context, item: ingest.ToStore) -> IngestResult:
    """Store one delivery in the database, or in the local spool when it cannot be reached
    (or the spool already holds deliveries that arrived before this one)."""
    spool = ctx.spool
    if spool is not None and spool.count:
        return await _hold(ctx, spool, item, None)
    alone = partial(ingest.store_one, item=item)
    try:
        return await ctx.db.store_batched(ingest.insert_many, item, alone, again=ingest.store_many)
    except Exception as error:
        if spool is None or not database_unavailable(error):
            raise
        return await _hold(ctx, spool, item, error)


async def _hold(
    ctx: Context, spool: Spool, item: ingest.ToStore, error: Exception | None
) -> IngestResult:
    try:
        await asyncio.to_thread(spool.put, ingest.to_record(item))
    except SpoolFull:
        if error is not None:
            raise error from None
        raise
    if error is not None:
        log.warning("database unreachable: delivery held in the local spool (%s)", spool.count)
    ctx.wake_spool()
    return IngestResult(item.result.status, item.delivery_id, detail=SPOOLED)


def _store_all(session: Session, *, items: list[ingest.ToStore]) -> list[IngestResult]:
    return ingest.store_many(session.connection(), items)


class SpoolDrainer:
    """Stores what the spool holds as soon as the database answers, until stopped."""

    def __init__(self, db: Database, spool: Spool, *, wake_applier: Callable[[], None]) -> None:
        self._db = db
        self._spool = spool
        self._wake_applier = wake_applier
        self._wakeup: asyncio.Event | None = None
        self._stopping = False

    def wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()

    def stop(self) -> None:
        self._stopping = True
        self.wake()

    async def run(self, *, poll_seconds: float = 1.0) -> None:
        """Drain whenever woken, and every `poll_seconds` while the spool holds anything."""
        self._wakeup = asyncio.Event()
        while not self._stopping:
            self._wakeup.clear()
            if self._spool.count:
                try:
                    await self.drain()
                except Exception:
                    log.exception("storing spooled deliveries failed; will try again")
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout=poll_seconds)
            except TimeoutError:
                pass

    async def drain(self) -> int:
        """Store every spooled delivery, oldest first; returns how many were stored. Stops
        quietly at the first batch the database cannot take yet."""
        stored = 0
        while self._spool.count and not self._stopping:
            paths = await asyncio.to_thread(self._spool.paths, BATCH)
            if not paths:
                break
            items, paths = await asyncio.to_thread(self._read, paths)
            try:
                results = await asyncio.to_thread(self._db.write, partial(_store_all, items=items))
            except Exception as error:
                if database_unavailable(error):
                    return stored
                raise
            await asyncio.to_thread(self._spool.remove, paths)
            stored += len(items)
            accepted = sum(1 for r in results if r.status == ACCEPTED)
            log.info("stored %d spooled deliveries (%d new)", len(items), accepted)
            if accepted:
                self._wake_applier()
        return stored

    def _read(self, paths: list[Path]) -> tuple[list[ingest.ToStore], list[Path]]:
        """The records' deliveries; a file that is not a record is set aside, never lost."""
        items: list[ingest.ToStore] = []
        kept: list[Path] = []
        for path in paths:
            try:
                record: Any = self._spool.read(path)
                items.append(ingest.from_record(record))
                kept.append(path)
            except (ValueError, KeyError, TypeError) as exc:
                aside = self._spool.set_aside(path)
                log.error("spool file %s is not a delivery (%s); moved to %s", path, exc, aside)
        return items, kept
