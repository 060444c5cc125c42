"""Engines and transactions: SQLite in WAL mode by default, PostgreSQL through psycopg 3.

`Database.write(fn)` runs `fn(session)` in one transaction and retries it when another
writer got there first (a unique key or a version column refused the write), so concurrent
requests are settled by the database and never by timing.

`Database.submit_write(fn)` does the same for small, frequent writes (webhook deliveries)
with a group commit: one writer thread runs every `fn` that is waiting when it gets to them
in one transaction, each in its own SAVEPOINT, and resolves their futures only after the
COMMIT. One that fails rolls back alone and is retried on its own, like `write` would.

`await Database.store_batched(many, item, alone)` is the cheaper kind of group write: every
item of a group stored with the same `many` function is written by one call of it (one
SELECT and one multi-row INSERT for a group of deliveries, instead of a SAVEPOINT and a
session each). When the database refuses that call (another replica stored one of the
items first), each item is written again on its own through `alone`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm.exc import StaleDataError
from sqlmodel import Session

from bot.domain.errors import ConcurrentUpdate

# Another writer got there first: a unique key taken, a row_version moved on, a row the ORM
# updates or deletes gone. The whole write is run again, on what the database holds now.
_REFUSED = (IntegrityError, ConcurrentUpdate, StaleDataError)

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")
WRITE_ATTEMPTS = 8
GROUP_MAX = 64  # writes in one group commit
GROUP_IDLE_SECONDS = 2.0  # the group writer thread stops after this long without work
BUSY_GROUP = 8  # a group this large means writes arrive faster than groups commit
GROUP_LINGER_SECONDS = 0.001  # then the next group waits this long for more writes


def innermost_transaction(session: Session) -> object:
    """The transaction, or savepoint, the session's statements run in now: what a value a
    session caches for "this transaction" is keyed by, so no other transaction trusts it."""
    return session.get_nested_transaction() or session.get_transaction()


def normalize_url(url: str) -> str:
    """Accept the usual spellings of a PostgreSQL URL and use psycopg 3 for them."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(url: str, *, echo: bool = False) -> Engine:
    url = normalize_url(url)
    if url.startswith("sqlite"):
        engine = sa.create_engine(
            url,
            echo=echo,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=8,
            max_overflow=8,
        )
        _configure_sqlite(engine)
        return engine
    return sa.create_engine(url, echo=echo, pool_size=10, max_overflow=10, pool_pre_ping=True)


def _configure_sqlite(engine: Engine) -> None:
    in_memory = engine.url.database in (None, "", ":memory:")

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy manage transactions itself (pysqlite's implicit ones would defeat
        # BEGIN IMMEDIATE below).
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        if not in_memory:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Take the write lock up front so two writers queue instead of deadlocking on upgrade.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.get("write") else "BEGIN")


class Database:
    """The engine plus the two ways the services use it: read and write transactions."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        # SQLite has one writer at a time; queueing writers in-process is cheaper than
        # letting them spin on the busy timeout.
        self._write_lock = threading.Lock() if self.is_sqlite else None
        # On SQLite one connection serves every write (they run one at a time, under the
        # lock): checking a connection out of the pool and resetting it on its return cost
        # more than a small write does.
        self._writer: sa.Connection | None = None
        self._writer_pool: object = None  # the pool it came from: a disposed engine's is old
        self._group_queue: queue.SimpleQueue[_GroupItem[Any]] = queue.SimpleQueue()
        self._group_thread: threading.Thread | None = None
        self._group_start = threading.Lock()
        self._last_group, self._last_end = 0, 0.0  # the size of the last group, and its end

    @contextmanager
    def read(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    def write(self, fn: Callable[[Session], T], *, attempts: int = WRITE_ATTEMPTS) -> T:
        last: Exception | None = None
        for attempt in range(attempts):
            if attempt:
                # Let the writer that won settle before trying again, a little longer each time.
                time.sleep(random.uniform(0, 0.005 * 2**attempt))
            try:
                return self._write_once(fn)
            except _REFUSED as exc:
                last = exc
            except OperationalError as exc:
                if not _is_retryable_operational(exc):
                    raise
                last = exc
        assert last is not None
        raise last

    def _write_once(self, fn: Callable[[Session], T]) -> T:
        if self._write_lock is not None:
            with self._write_lock:
                return self._run(fn)
        return self._run(fn)

    def _run(self, fn: Callable[[Session], T]) -> T:
        with self._write_connection() as conn:
            with Session(bind=conn, expire_on_commit=False) as session:
                result = fn(session)
                session.commit()
                return result

    @contextmanager
    def _write_connection(self) -> Iterator[sa.Connection]:
        """A connection to write one transaction on (its BEGIN takes the write lock). The
        caller holds `_write_lock` on SQLite, where the same connection is used each time."""
        if self._write_lock is None:
            with self.engine.connect() as pooled:
                pooled.info["write"] = True
                try:
                    yield pooled
                except BaseException:
                    _drop_if_left_open(pooled)
                    raise
                finally:
                    pooled.info.pop("write", None)
            return
        old = self._writer
        if (
            old is None
            or old.closed
            or old.invalidated
            or self._writer_pool is not self.engine.pool
        ):
            if old is not None:  # the engine was disposed of: its connections are dropped
                old.invalidate()
            fresh = self.engine.connect()
            fresh.info["write"] = True  # never returned to the pool, never used to read
            self._writer, self._writer_pool = fresh, self.engine.pool
        conn = self._writer
        assert conn is not None
        try:
            yield conn
        except BaseException:
            if _drop_if_left_open(conn):
                self._writer = None  # the next write opens a fresh one
            raise

    def dispose(self) -> None:
        if self._write_lock is not None:
            with self._write_lock:
                if self._writer is not None:
                    self._writer.invalidate()  # closed, never back in the pool
                    self._writer = None
        self.engine.dispose()

    # --- group commit ----------------------------------------------------------------------

    def submit_write(self, fn: Callable[[Session], T]) -> Future[T]:
        """Run `fn(session)` in a transaction shared with other submitted writes.

        The future resolves (with fn's result or exception) after the transaction committed,
        so a caller that answers when it resolves answers only for stored data. `fn` runs in
        its own SAVEPOINT: when it raises, only its own changes are rolled back; when the
        database refused it (a unique key, a version column, a row gone), it is run again on
        its own through `write`, as `write` would have retried it. `fn` may run more than once.
        """
        future: Future[T] = Future()
        # Running from now on: a caller that stops waiting (a cancelled request) cannot
        # cancel it under the writer thread, which resolves it whatever happens.
        future.set_running_or_notify_cancel()
        self._enqueue(_GroupItem(fn, future))
        return future

    async def store_batched(
        self,
        many: Callable[[sa.Connection, list[Any]], list[T]],
        item: Any,
        alone: Callable[[Session], T],
        *,
        again: Callable[[sa.Connection, list[Any]], list[T]] | None = None,
    ) -> T:
        """Write `item` in the next group commit together with the other items stored with
        the same `many`, which gets them all and answers one result per item, in order;
        the answer comes after the COMMIT, like `submit_write`'s. When a group of these
        items alone fails, it is written once more with `again` (a more careful `many`),
        and only if that fails too is each item written `alone`. Awaited on the running
        event loop: the writer thread hands a whole group's answers to the loop at once
        (one wake-up per group, not per write). A caller that stops waiting does not stop
        the write."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[T] = loop.create_future()
        self._enqueue(_GroupItem(alone, answer, many=many, item=item, loop=loop, again=again))
        return await answer

    def _enqueue(self, item: _GroupItem[Any]) -> None:
        self._group_queue.put(item)
        with self._group_start:
            if self._group_thread is None:
                self._group_thread = threading.Thread(
                    target=self._group_writer, name="db-group-writer", daemon=True
                )
                self._group_thread.start()

    def _group_writer(self) -> None:
        while True:
            try:
                first = self._group_queue.get(timeout=GROUP_IDLE_SECONDS)
            except queue.Empty:
                with self._group_start:  # exit only if nothing arrived meanwhile
                    if self._group_queue.empty():
                        self._group_thread = None
                        return
                continue
            group = self._gather(first)
            answers: list[tuple[_GroupItem[Any], _Outcome]] = []
            try:
                self._commit_group(group, answers)
                self._last_group, self._last_end = len(group), time.monotonic()
            except BaseException as exc:  # never leave a caller waiting on a dead writer
                log.exception("group writer failed")
                known = {id(item) for item, _ in answers}  # those keep what they got
                answers += [(item, _Outcome(error=exc)) for item in group if id(item) not in known]
            _answer(answers)

    def _gather(self, first: _GroupItem[Any]) -> list[_GroupItem[Any]]:
        """The next group: whatever queued up while the previous group ran. A lone write
        does not wait for company; but while writes arrive faster than groups commit (the
        previous group was large and ended just now), the writer waits up to
        `GROUP_LINGER_SECONDS` for more, so a burst takes fewer, larger transactions."""
        group = [first]
        busy = self._last_group >= BUSY_GROUP and time.monotonic() - self._last_end < 0.01
        deadline = time.monotonic() + GROUP_LINGER_SECONDS if busy else 0.0
        while len(group) < GROUP_MAX:
            try:
                group.append(self._group_queue.get_nowait())
                continue
            except queue.Empty:
                left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                group.append(self._group_queue.get(timeout=left))
            except queue.Empty:
                break
        return group

    def _commit_group(
        self, group: list[_GroupItem[Any]], answers: list[tuple[_GroupItem[Any], _Outcome]]
    ) -> None:
        """Write the group, adding each write's outcome to `answers` once it is final: the
        writes the group's transaction stored first, then those rewritten one by one."""
        outcomes: dict[int, _Outcome] = {}
        try:
            if self._write_lock is not None:
                with self._write_lock:
                    self._run_group(group, outcomes)
            else:
                self._run_group(group, outcomes)
        except Exception:
            # The group's transaction failed as a whole (BEGIN or COMMIT): nothing of it
            # is stored. Run every write on its own, with the usual retries.
            log.warning("group commit of %d writes failed; writing one by one", len(group))
            for item in group:
                answers.append((item, self._write_alone(item)))
            return
        again = [item for index, item in enumerate(group) if outcomes[index].retry]
        answers += [(item, outcomes[i]) for i, item in enumerate(group) if not outcomes[i].retry]
        for item in again:
            answers.append((item, self._write_alone(item)))

    def _run_group(self, group: list[_GroupItem[Any]], outcomes: dict[int, _Outcome]) -> None:
        batches: dict[Callable[..., list[Any]], list[int]] = {}
        for index, item in enumerate(group):
            if item.many is not None:
                batches.setdefault(item.many, []).append(index)
        if len(batches) == 1 and len(group) == len(next(iter(batches.values()))):
            self._run_one_batch(group, outcomes)
            return
        with self._write_connection() as conn, conn.begin():
            for many, indexes in batches.items():
                items = [group[i].item for i in indexes]
                done = _batch_in_savepoint(conn, many, items, again=group[indexes[0]].again)
                outcomes.update(zip(indexes, done, strict=True))
            for index, item in enumerate(group):
                if item.many is None:
                    outcomes[index] = _in_savepoint(conn, item.fn)

    def _run_one_batch(self, group: list[_GroupItem[Any]], outcomes: dict[int, _Outcome]) -> None:
        """A group of one kind of batched write only (webhook deliveries, mostly): the
        transaction is the batch, with no SAVEPOINT around it."""

        @contextmanager
        def transaction() -> Iterator[sa.Connection]:
            with self._write_connection() as conn, conn.begin():
                yield conn

        items = [item.item for item in group]
        done = _first_batch_that_holds(group[0].many, group[0].again, items, transaction)
        outcomes.update(enumerate(done))

    def _write_alone(self, item: _GroupItem[Any]) -> _Outcome:
        try:
            return _Outcome(result=self.write(item.fn))
        except Exception as exc:
            return _Outcome(error=exc)


@dataclass
class _GroupItem(Generic[R]):
    fn: Callable[[Session], R]  # the write alone, in a session
    future: Future[R] | asyncio.Future[R]  # an asyncio one is answered on `loop`
    many: Callable[[sa.Connection, list[Any]], list[R]] | None = None  # batched with its kind
    item: Any = None  # what `many` gets for this write
    loop: asyncio.AbstractEventLoop | None = None
    again: Callable[[sa.Connection, list[Any]], list[R]] | None = None  # `many`'s second try


def _answer(answers: list[tuple[_GroupItem[Any], _Outcome]]) -> None:
    """Resolve each write's future with its outcome: a thread's at once, and those awaited
    on an event loop in one callback per loop."""
    on_loops: dict[asyncio.AbstractEventLoop, list[tuple[Any, _Outcome]]] = {}
    for item, outcome in answers:
        if item.loop is not None:
            on_loops.setdefault(item.loop, []).append((item.future, outcome))
        else:
            _settle(item.future, outcome)
    for loop, settled in on_loops.items():
        try:
            loop.call_soon_threadsafe(_settle_all, settled)
        except RuntimeError:  # the loop has closed: nobody awaits these any more
            log.debug("%d answers for a closed event loop dropped", len(settled))


def _settle_all(settled: list[tuple[Any, _Outcome]]) -> None:
    for future, outcome in settled:
        _settle(future, outcome)


def _settle(future: Future[Any] | asyncio.Future[Any], outcome: _Outcome) -> None:
    if future.done():  # an awaiting caller that stopped waiting cancelled it
        return
    if outcome.error is not None:
        future.set_exception(outcome.error)
    else:
        future.set_result(outcome.result)


@dataclass
class _Outcome:
    result: Any = None
    error: BaseException | None = None
    retry: bool = False  # the database refused it: run it again on its own


def _drop_if_left_open(conn: sa.Connection) -> bool:
    """After a write failed on `conn`: a COMMIT that failed leaves its transaction attached
    (SQLAlchemy calls it inactive) and the driver's still open (SQLite's write lock held,
    psycopg in a transaction). Such a connection is rolled back and dropped, never used
    again; True when it was. One a rolled-back write left clean is kept."""
    if conn.get_transaction() is None:
        return False
    with contextlib.suppress(Exception):
        conn.rollback()
    with contextlib.suppress(Exception):
        conn.invalidate()
    return True


def _in_savepoint(conn: sa.Connection, fn: Callable[[Session], Any]) -> _Outcome:
    """Run one write of a group in a SAVEPOINT of the group's transaction."""
    # A Session of its own per write (no identity map shared with the others of the group);
    # its commit releases the savepoint, its rollback undoes only this write.
    with Session(
        bind=conn, expire_on_commit=False, join_transaction_mode="create_savepoint"
    ) as session:
        try:
            result = fn(session)
            session.commit()
            return _Outcome(result=result)
        except _REFUSED:
            session.rollback()
            return _Outcome(retry=True)
        except OperationalError as exc:
            session.rollback()
            if _is_retryable_operational(exc):
                return _Outcome(retry=True)
            return _Outcome(error=exc)
        except Exception as exc:
            session.rollback()
            return _Outcome(error=exc)


def _batch_in_savepoint(
    conn: sa.Connection,
    many: Callable[[sa.Connection, list[Any]], list[Any]],
    items: list[Any],
    *,
    again: Callable[[sa.Connection, list[Any]], list[Any]] | None = None,
) -> list[_Outcome]:
    """Write a batch of items of one kind in one SAVEPOINT: an outcome per item."""

    @contextmanager
    def savepoint() -> Iterator[sa.Connection]:
        with conn.begin_nested():
            yield conn

    return _first_batch_that_holds(many, again, items, savepoint)


def _first_batch_that_holds(
    many: Callable[[sa.Connection, list[Any]], list[Any]] | None,
    again: Callable[[sa.Connection, list[Any]], list[Any]] | None,
    items: list[Any],
    scope: Callable[[], contextlib.AbstractContextManager[sa.Connection]],
) -> list[_Outcome]:
    """Write a batch with `many` in a `scope` (a transaction, or a savepoint) of its own:
    an outcome per item. When it fails (another writer stored one of its items first, or
    one item is bad), nothing of it is kept and it is written once more with `again` in a
    fresh scope; when that fails too (or there is none) every item is marked to be written
    again alone, so each gets its own answer. A batch answering a different number of
    results than it got items fails inside its scope."""
    for attempt in (many, again):
        if attempt is None:
            continue
        try:
            with scope() as conn:
                results = attempt(conn, items)
                if len(results) != len(items):
                    raise RuntimeError(f"{len(results)} answers for {len(items)} writes")
        except Exception:
            log.info("batched write of %d items failed", len(items))
            continue
        return [_Outcome(result=result) for result in results]
    log.info("writing the %d items one by one", len(items))
    return [_Outcome(retry=True) for _ in items]


def _is_retryable_operational(exc: OperationalError) -> bool:
    text = str(exc.orig).lower() if exc.orig is not None else str(exc).lower()
    return any(
        marker in text
        for marker in ("database is locked", "deadlock detected", "could not serialize")
    )
