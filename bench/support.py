"""What several benchmarks share: a fresh database to seed and measure; the deployments the
outbox and checks benchmarks seed in it (verifying, each with a posted release message); and
the stand-in Slack Web API they send to, served on loopback, through the real sender."""

from __future__ import annotations

import asyncio
import random
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.engine import make_url
from sqlmodel import Session

from bot import migrate
from bot.domain import states
from bot.store.db import Database, make_engine, normalize_url
from bot.store.tables import Deployment, Release, ReleaseMessage
from integrations.slack.sender import WebApiSlackSender, make_web_client

SERVICE, ENVIRONMENT = "checkout", "production"
OUTAGE_FAILURES = ((429, "ratelimited"), (500, "internal_error"), (503, "service_unavailable"))


def out(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


@contextmanager
def bench_database(url: str | None, *, keep: bool, prefix: str) -> Iterator[str]:
    """A fresh database: a SQLite file in a temp dir named after `prefix`, or a new database
    on the PostgreSQL server `url` names (created here, dropped afterwards unless `keep`)."""
    if url is None:
        workdir = Path(tempfile.mkdtemp(prefix=prefix))
        try:
            yield f"sqlite:///{workdir / 'releasebot.db'}"
        finally:
            if keep:
                out(f"kept {workdir}")
            else:
                shutil.rmtree(workdir, ignore_errors=True)
        return
    server = make_url(normalize_url(url))
    if server.get_backend_name() != "postgresql":
        raise SystemExit(f"--database-url must be a PostgreSQL URL, not {server.drivername}")
    name = f"rb_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        try:
            yield server.set(database=name).render_as_string(hide_password=False)
        finally:
            if keep:
                out(f"kept database {name}")
            else:
                with admin.connect() as conn:
                    conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


def migrated_database(url: str) -> Database:
    """The database at `url`, migrated to the head revision."""
    engine = make_engine(url)
    migrate.upgrade(engine)
    return Database(engine)


def seed_verifying_deployments(
    db: Database,
    indexes: range,
    *,
    now: datetime,
    sha: Callable[[int], str],
    channel: Callable[[int], str],
) -> list[int]:
    """One release of checkout and its deployment to production per index, `verifying`, with
    a release message already posted in `channel(i)`; returns the deployment ids in order.
    Written in one transaction."""

    def insert(session: Session) -> list[int]:
        ids: list[int] = []
        for i in indexes:
            release = Release(service=SERVICE, sha=sha(i), version=f"1.0.{i}", created_at=now)
            session.add(release)
            session.flush()
            assert release.id is not None
            deployment = Deployment(
                release_id=release.id,
                service=SERVICE,
                environment=ENVIRONMENT,
                sha=sha(i),
                state=states.VERIFYING,
                source="bench",
                created_at=now,
                updated_at=now,
                deployed_at=now,
            )
            session.add(deployment)
            session.flush()
            assert deployment.id is not None
            session.add(
                ReleaseMessage(
                    deployment_id=deployment.id,
                    channel=channel(i),
                    ts=f"1700000000.{i:06d}",
                    posted_at=now,
                )
            )
            ids.append(deployment.id)
        return ids

    return db.write(insert)


@dataclass
class StandInSlack:
    """A stand-in Slack Web API for `serve_slack`: answers `chat.postMessage` (with a fresh
    ts), `chat.update` and `conversations.history`/`replies` (no messages) after `delay` real
    seconds; while `failing`, answers every call with 429 (Retry-After 1-5 s), 500 or 503.
    Counts its answers per method and status, and when each call succeeded."""

    delay: float
    failing: bool = False
    seed: int = 7
    done: list[tuple[float, str]] = field(default_factory=list)  # (monotonic, method) of oks
    answers: Counter[str] = field(default_factory=Counter)  # "method status" -> count
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _posted: int = 0

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    async def handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        form = await request.post()
        await asyncio.sleep(self.delay)
        if self.failing:
            status, error = self._rng.choice(OUTAGE_FAILURES)
            headers = {"Retry-After": str(self._rng.randint(1, 5))} if status == 429 else {}
            with self._lock:
                self.answers[f"{method} {status}"] += 1
            return web.json_response({"ok": False, "error": error}, status=status, headers=headers)
        body: dict[str, Any] = {"ok": True}
        if method == "chat.postMessage":
            with self._lock:
                self._posted += 1
                body.update(
                    channel=str(form.get("channel")), ts=f"{time.time():.0f}.{self._posted:06d}"
                )
        elif method in ("conversations.history", "conversations.replies"):
            body.update(messages=[], has_more=False)
        elif method == "chat.update":
            body.update(channel=str(form.get("channel")), ts=str(form.get("ts")))
        with self._lock:
            self.answers[f"{method} 200"] += 1
            self.done.append((time.monotonic(), method))
        return web.json_response(body)

    def reset(self) -> None:
        with self._lock:
            self.done.clear()
            self.answers.clear()


@contextmanager
def serve_slack(slack: StandInSlack) -> Iterator[str]:
    """Serve `slack` on a free loopback port from a thread (and event loop) of its own; yields
    its Web API base URL, e.g. http://127.0.0.1:PORT/api/."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict[str, Any] = {}

    async def start() -> None:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", slack.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        server = site._server
        assert server is not None
        holder["port"] = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        holder["runner"] = runner
        started.set()

    thread = threading.Thread(target=loop.run_forever, name="stand-in-slack", daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop)
    if not started.wait(10):
        raise SystemExit("the stand-in Slack did not start")
    try:
        yield f"http://127.0.0.1:{holder['port']}/api/"
    finally:
        asyncio.run_coroutine_threadsafe(holder["runner"].cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def slack_sender(token: str, base_url: str, session: aiohttp.ClientSession) -> WebApiSlackSender:
    """The real sender `releasebot serve` uses (slack_sdk over `session`), aimed at `base_url`."""
    return WebApiSlackSender(make_web_client(token, base_url, session=session))
