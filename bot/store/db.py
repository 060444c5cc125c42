"""Engines and transactions: SQLite in WAL mode by default, PostgreSQL through psycopg 3.

`Database.write(fn)` runs `fn(session)` in one transaction and retries it when another
writer got there first (a unique key or a version column refused the write), so concurrent
requests are settled by the database and never by timing.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session

from bot.domain.errors import ConcurrentUpdate

log = logging.getLogger(__name__)

T = TypeVar("T")
WRITE_ATTEMPTS = 8


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
            except (IntegrityError, ConcurrentUpdate) as exc:
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
        with self.engine.connect() as conn:
            conn.info["write"] = True
            try:
                with Session(bind=conn, expire_on_commit=False) as session:
                    result = fn(session)
                    session.commit()
                    return result
            finally:
                conn.info.pop("write", None)

    def dispose(self) -> None:
        self.engine.dispose()


def _is_retryable_operational(exc: OperationalError) -> bool:
    text = str(exc.orig).lower() if exc.orig is not None else str(exc).lower()
    return any(
        marker in text
        for marker in ("database is locked", "deadlock detected", "could not serialize")
    )
