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
  connects again, waking everything once for what was committed while it was deaf. Both
  connections are sessions of their own: `LISTEN` needs one (not a transaction-pooling
  PgBouncer).
- **SQLite:** the processes share one file on one machine. A worker (`--role worker`)
  watches `PRAGMA data_version`, which changes whenever another connection commits, every
  `WATCH_SECONDS`, and wakes both (its own commits change it too, so such a change is not
  taken for requests arriving, and costs an empty look); ringing is a no-op. One process
  (`--role all`, the default) wakes its own loops directly and watches nothing.

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
RECONNECT_SECONDS = (1.0, 30.0)  # first and longest wait before connecting again
CONNECT_TIMEOUT_SECONDS = 5
NOTIFY_TIMEOUT_SECONDS = 1.0  # how long a listener waits for a notification before looking up
FLUSH_SECONDS = 1.0  # at close, how long the rings still waiting may take to go out

Wakes = Mapping[str, Callable[[], None]]  # what to wake, per topic


class Doorbell:
    """Rings nobody and hears nothing: one process, or an in-memory database."""

    listens = False
    heard = 0  # wake-ups that came from another process (or a change of the file)

    def ring(self, topic: str) -> None:
        """Work of `topic` was committed (called after the commit)."""

    async def listen(self, wakes: Wakes) -> None:
        """Call `wakes[topic]` whenever another process rings `topic`, until `stop()`."""

    async def ready(self) -> None:
        """Until `listen` hears what is committed from now on (at once when it never will)."""

    def stop(self) -> None:
        """End `listen` (the rings still go out until `aclose`)."""

    async def aclose(self) -> None:
        """Send the rings still waiting (for at most `FLUSH_SECONDS`), close the connections."""

    def state(self) -> dict[str, Any]:
        """For /readyz: whether the other processes' work is heard, or only polled for."""
        return {"ok": True}


def doorbell_for(engine: Engine, *, role: str) -> Doorbell:
    """The doorbell of a process of `role` on `engine`'s database."""
    if engine.dialect.name == "postgresql":
        return PostgresDoorbell(connect_args(engine), listens=role != "web")
    database = engine.url.database
    on_file = engine.dialect.name == "sqlite" and database not in (None, "", ":memory:")
    if on_file and role == "worker":
        return SqliteWatch(str(database))
    return Doorbell()


def connect_args(engine: Engine) -> dict[str, Any]:
    """What the engine connects with (every host of a multi-host URL, its query options),
    for psycopg's own connections."""
    _, params = engine.dialect.create_connect_args(engine.url)
    params = {k: v for k, v in params.items() if k != "context"}  # SQLAlchemy's adapters
    params.setdefault("connect_timeout", CONNECT_TIMEOUT_SECONDS)
    return params


class _Streak:
    """Failures of one kind in a row: logged once when they begin, once when they end;
    how long to wait before the next try, doubling."""

    def __init__(self, what: str) -> None:
        self._what = what
        self.failing = False
        self._wait = RECONNECT_SECONDS[0]

    def failed(self, error: BaseException) -> float:
        if not self.failing:
            log.warning("%s failed (%s); polling meanwhile, trying again", self._what, error)
        self.failing = True
        wait, self._wait = self._wait, min(self._wait * 2, RECONNECT_SECONDS[1])
        return wait

    def worked(self) -> None:
        if self.failing:
            log.info("%s works again", self._what)
        self.failing = False
        self._wait = RECONNECT_SECONDS[0]


class PostgresDoorbell(Doorbell):
    """`NOTIFY` after the commits that leave work, `LISTEN` in the replicas that work."""

    def __init__(self, connect_args: dict[str, Any], *, listens: bool) -> None:
        self.listens = listens
        self._connect_args = connect_args
        self._token = secrets.token_hex(8)  # this process: its own rings are not heard
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiting: set[str] = set()
        self._sender: asyncio.Task[None] | None = None
        self._ringer: Any = None  # psycopg.AsyncConnection, made on the first ring
        self._ringing = _Streak("ringing the other replicas")
        self._closed = False
        self._stopping = asyncio.Event()
        self._listening = False
        self._listening_changed = asyncio.Condition()

    @property
    def listening(self) -> bool:
        return self._listening

    def state(self) -> dict[str, Any]:
        """For /readyz: listening for the other replicas' rings, or polling until it is
        connected again (the replica stays ready either way)."""
        return {"ok": self._listening, "listening": self._listening, "heard": self.heard}

    async def ready(self) -> None:
        await self.wait_listening(True)

    async def wait_listening(self, listening: bool = True) -> None:
        """Until the listener is connected (or, `False`, has lost its connection)."""
        async with self._listening_changed:
            await self._listening_changed.wait_for(lambda: self._listening is listening)

    async def _now_listening(self, listening: bool) -> None:
        async with self._listening_changed:
            self._listening = listening
            self._listening_changed.notify_all()

    # -- ringing ------------------------------------------------------------------------------

    def ring(self, topic: str) -> None:
        if self._closed:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # another thread: ring from the loop that owns the connection
            if self._loop is not None and not self._loop.is_closed():
                self._loop.call_soon_threadsafe(self.ring, topic)
            return  # no loop at all (a command's one-off write): the polls find the work
        self._loop = loop
        self._waiting.add(topic)
        if self._sender is None or self._sender.done():
            self._sender = loop.create_task(self._send(), name="doorbell-ring")

    async def _send(self) -> None:
        while self._waiting:
            topics = sorted(self._waiting)
            self._waiting.clear()
            try:
                await self._notify(topics)
            except Exception as first:  # a connection the server dropped: one more, at once
                await self._close_ringer()
                try:
                    await self._notify(topics)
                except Exception:
                    await self._close_ringer()
                    self._waiting.update(topics)  # kept for the next try
                    await asyncio.sleep(self._ringing.failed(first))
                    continue
            self._ringing.worked()
            await asyncio.sleep(RING_GAP_SECONDS)

    async def _notify(self, topics: list[str]) -> None:
        import psycopg  # only a replica on PostgreSQL pays for importing it

        if self._ringer is None or self._ringer.closed:
            self._ringer = await psycopg.AsyncConnection.connect(
                **self._connect_args, autocommit=True
            )
        for topic in topics:
            await self._ringer.execute(
                "SELECT pg_notify(%s, %s)", (CHANNEL, f"{topic} {self._token}")
            )

    async def _close_ringer(self) -> None:
        ringer, self._ringer = self._ringer, None
        if ringer is not None:
            with contextlib.suppress(Exception):
                await ringer.close()

    # -- listening ----------------------------------------------------------------------------

    async def listen(self, wakes: Wakes) -> None:
        import psycopg

        streak = _Streak("listening for the other replicas' work")
        while not self._stopping.is_set():
            try:
                async with await psycopg.AsyncConnection.connect(
                    **self._connect_args, autocommit=True
                ) as connection:
                    await connection.execute(f"LISTEN {CHANNEL}")
                    streak.worked()
                    await self._now_listening(True)
                    _look(wakes)  # what was committed before this connection listened
                    while not self._stopping.is_set():
                        async for notice in connection.notifies(timeout=NOTIFY_TIMEOUT_SECONDS):
                            self._hear(notice.payload, wakes)
            except Exception as error:
                if self._stopping.is_set():
                    break
                await self._now_listening(False)
                wait = streak.failed(error)
                with contextlib.suppress(TimeoutError):  # stop() ends the wait
                    await asyncio.wait_for(self._stopping.wait(), wait)
        await self._now_listening(False)

    def _hear(self, payload: str, wakes: Wakes) -> None:
        topic, _, token = payload.partition(" ")
        if token == self._token:
            return
        self.heard += 1
        wake = wakes.get(topic)
        if wake is not None:
            try:
                wake()
            except Exception:  # one wake-up failing must not deafen the replica
                log.exception("waking for the other replicas' %s failed", topic)

    def stop(self) -> None:
        self._stopping.set()

    async def aclose(self) -> None:
        self.stop()
        sender = self._sender
        if sender is not None and not sender.done():
            done, _ = await asyncio.wait({sender}, timeout=FLUSH_SECONDS)
            if not done:
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sender
        self._closed = True
        await self._close_ringer()


class SqliteWatch(Doorbell):
    """A worker sharing a SQLite file with a web process: any other connection's commit
    wakes its applier and outbox worker."""

    listens = True

    def __init__(self, path: str) -> None:
        self._path = path
        self._stopping = asyncio.Event()
        self._watching = asyncio.Event()
        self._failing = False

    async def ready(self) -> None:
        await self._watching.wait()

    def state(self) -> dict[str, Any]:
        return {"ok": not self._failing, "watching": self._watching.is_set()}

    async def listen(self, wakes: Wakes) -> None:
        streak = _Streak("watching the database file for other processes' work")
        while not self._stopping.is_set():
            try:
                await self._watch(wakes)
                streak.worked()
            except Exception as error:
                self._failing = True
                wait = streak.failed(error)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), wait)

    async def _watch(self, wakes: Wakes) -> None:
        connection = await asyncio.to_thread(self._connect)
        try:
            seen = await asyncio.to_thread(_data_version, connection)
            self._failing = False
            self._watching.set()
            _look(wakes)  # what was committed before the first reading
            while not self._stopping.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), WATCH_SECONDS)
                try:
                    version = await asyncio.to_thread(_data_version, connection)
                except sqlite3.OperationalError as error:  # busy for a moment: look again
                    log.debug("could not read the database's data_version: %s", error)
                    continue
                if version != seen:
                    seen = version
                    self.heard += 1
                    _look(wakes)
        finally:
            await asyncio.to_thread(connection.close)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self._path, check_same_thread=False, timeout=1.0)

    def stop(self) -> None:
        self._stopping.set()


def _data_version(connection: sqlite3.Connection) -> int:
    return int(connection.execute("PRAGMA data_version").fetchone()[0])


def _look(wakes: Wakes) -> None:
    wake = wakes.get(CHANGED)
    if wake is not None:
        wake()
