"""Wake-ups between the processes that share one database.

A web replica stores a delivery, or queues a Slack message for a click it answered, and a
worker replica does the work. Without a word from the web, the worker would find it only at
its next poll (a second for deliveries, five for the outbox). The doorbell carries that word:

- **PostgreSQL:** every replica rings after a commit that left work (`ring(topic)`, a
  `NOTIFY` on the channel `releasebot_work`, sent on a connection of its own once the rows
  are committed, so a listener always finds them). The replicas that work listen (`LISTEN`
  on a connection of their own) and wake their applier or outbox worker. Rings of a burst
  are coalesced: at most one in flight per process, then one every `RING_GAP_SECONDS`. A
  replica does not wake itself (it has already), and a listener that lost its connection
  connects again, waking everything once for what was committed while it was deaf.
- **SQLite:** the processes share one file on one machine. A worker (`--role worker`)
  watches `PRAGMA data_version`, which changes whenever another connection commits, every
  `WATCH_SECONDS`, and wakes both (its own commits change it too, so such a change is not
  taken for requests arriving); ringing is a no-op. One process (`--role all`, the
  default) wakes its own loops directly and watches nothing.

The polls stay as they were: a ring lost (a connection down) costs at most one poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import sqlite3
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

DELIVERIES = "deliveries"  # a webhook delivery was stored: the applier has work
OUTBOX = "outbox"  # outbox rows were queued: the outbox worker has work
# Something was committed, what is not known (a listener connected again after missing
# rings; a SQLite file changed, by this process or another): look for work of every kind,
# without taking it for requests arriving.
CHANGED = "changed"

CHANNEL = "releasebot_work"
RING_GAP_SECONDS = 0.01  # between two rings of one process: a burst rings ~100 times a second
WATCH_SECONDS = 0.05  # SQLite: how often a worker looks at the file's data_version
RECONNECT_SECONDS = (1.0, 30.0)  # a listener's first and longest wait before connecting again
NOTIFY_TIMEOUT_SECONDS = 1.0  # how long a listener waits for a notification before looking up

Heard = Mapping[str, Callable[[], None]]  # what to wake, per topic


class Doorbell:
    """Rings nobody and hears nothing: one process, or an in-memory database."""

    listens = False

    def ring(self, topic: str) -> None:
        """Work of `topic` was committed (called on the event loop, after the commit)."""

    async def listen(self, heard: Heard) -> None:
        """Wake `heard[topic]` whenever another process rings `topic`, until `stop()`."""

    def stop(self) -> None:
        """End `listen`; ring no more."""

    async def aclose(self) -> None:
        """Close the connections."""

    def state(self) -> dict[str, Any]:
        """For /readyz: whether the other processes' work is heard, or only polled for."""
        return {"ok": True}


def doorbell_for(engine: Engine, *, role: str) -> Doorbell:
    """The doorbell of a process of `role` on `engine`'s database."""
    if engine.dialect.name == "postgresql":
        return PostgresDoorbell(_conninfo(engine), listens=role != "web")
    database = engine.url.database
    on_file = engine.dialect.name == "sqlite" and database not in (None, "", ":memory:")
    if on_file and role == "worker":
        return SqliteWatch(str(database))
    return Doorbell()


def _conninfo(engine: Engine) -> str:
    """The engine's URL as libpq takes it (no SQLAlchemy driver name)."""
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


class PostgresDoorbell(Doorbell):
    """`NOTIFY` after the commits that leave work, `LISTEN` in the replicas that work."""

    def __init__(self, conninfo: str, *, listens: bool) -> None:
        self.listens = listens
        self._conninfo = conninfo
        self._token = secrets.token_hex(8)  # this process: its own rings are not heard
        self._waiting: set[str] = set()
        self._sender: asyncio.Task[None] | None = None
        self._ringer: Any = None  # psycopg.AsyncConnection, made on the first ring
        self._stopping = False
        self._listening = False
        self._listening_changed = asyncio.Condition()
        self.heard = 0  # notifications from other processes

    @property
    def listening(self) -> bool:
        return self._listening

    def state(self) -> dict[str, Any]:
        """For /readyz: listening for the other replicas' rings, or polling until it is
        connected again (the replica stays ready either way)."""
        return {"ok": self._listening, "listening": self._listening, "heard": self.heard}

    async def wait_listening(self, listening: bool = True) -> None:
        """Until the listener is connected (or, `False`, has lost its connection)."""
        async with self._listening_changed:
            await self._listening_changed.wait_for(lambda: self._listening is listening)

    async def _now_listening(self, listening: bool) -> None:
        async with self._listening_changed:
            self._listening = listening
            self._listening_changed.notify_all()

    def ring(self, topic: str) -> None:
        if self._stopping:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop to ring from (a command's one-off write): polls find it
            return
        self._waiting.add(topic)
        if self._sender is None or self._sender.done():
            self._sender = loop.create_task(self._send())

    async def _send(self) -> None:
        while self._waiting and not self._stopping:
            topics = sorted(self._waiting)
            self._waiting.clear()
            try:
                connection = await self._ringing_connection()
                for topic in topics:
                    await connection.execute(
                        "SELECT pg_notify(%s, %s)", (CHANNEL, f"{topic} {self._token}")
                    )
            except Exception as error:  # the others' polls find the work
                log.warning("could not ring the other replicas: %s", error)
                await self._close_ringer()
            await asyncio.sleep(RING_GAP_SECONDS)

    async def _ringing_connection(self) -> Any:
        import psycopg  # only a replica on PostgreSQL pays for importing it

        if self._ringer is None or self._ringer.closed:
            self._ringer = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
        return self._ringer

    async def _close_ringer(self) -> None:
        ringer, self._ringer = self._ringer, None
        if ringer is not None:
            with contextlib.suppress(Exception):
                await ringer.close()

    async def listen(self, heard: Heard) -> None:
        import psycopg

        wait = RECONNECT_SECONDS[0]
        while not self._stopping:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True
                ) as connection:
                    await connection.execute(f"LISTEN {CHANNEL}")
                    log.info("listening for the other replicas' work")
                    await self._now_listening(True)
                    wait = RECONNECT_SECONDS[0]
                    _look(heard)  # what was committed before we listened
                    while not self._stopping:
                        async for notice in connection.notifies(timeout=NOTIFY_TIMEOUT_SECONDS):
                            self._hear(notice.payload, heard)
            except Exception as error:
                if self._stopping:
                    break
                if self._listening:
                    log.warning(
                        "lost the connection listening for other replicas' work (%s); "
                        "polling until it is back",
                        error,
                    )
                await self._now_listening(False)
                await asyncio.sleep(wait)
                wait = min(wait * 2, RECONNECT_SECONDS[1])
        await self._now_listening(False)

    def _hear(self, payload: str, heard: Heard) -> None:
        topic, _, token = payload.partition(" ")
        if token == self._token:
            return
        self.heard += 1
        wake = heard.get(topic)
        if wake is not None:
            wake()

    def stop(self) -> None:
        self._stopping = True
        self._waiting.clear()

    async def aclose(self) -> None:
        self.stop()
        if self._sender is not None and not self._sender.done():
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
        await self._close_ringer()


class SqliteWatch(Doorbell):
    """A worker sharing a SQLite file with a web process: any other connection's commit
    wakes its applier and outbox worker."""

    listens = True

    def __init__(self, path: str) -> None:
        self._path = path
        self._stopping = False
        self.heard = 0

    async def listen(self, heard: Heard) -> None:
        connection = await asyncio.to_thread(self._connect)
        try:
            seen = await asyncio.to_thread(_data_version, connection)
            while not self._stopping:
                await asyncio.sleep(WATCH_SECONDS)
                try:
                    version = await asyncio.to_thread(_data_version, connection)
                except sqlite3.Error as error:  # busy or locked for a moment: look again
                    log.debug("could not read the database's data_version: %s", error)
                    continue
                if version != seen:
                    seen = version
                    self.heard += 1
                    _look(heard)
        finally:
            await asyncio.to_thread(connection.close)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self._path, check_same_thread=False, timeout=1.0)

    def stop(self) -> None:
        self._stopping = True


def _data_version(connection: sqlite3.Connection) -> int:
    return int(connection.execute("PRAGMA data_version").fetchone()[0])


def _look(heard: Heard) -> None:
    wake = heard.get(CHANGED)
    if wake is not None:
        wake()
