"""SIGTERM drains `releasebot serve`, and nothing outside blocks start-up or ingest.

Each test runs `python -m bot serve` as a subprocess on a free loopback port and a SQLite
file, with the Slack Web API played by a fake on loopback whose `chat.postMessage` the test
holds open. Three digest rows of one key are queued before the server starts: the worker
claims all three, sends the first (held by the fake) and keeps the other two for after it.

- the held send is released after SIGTERM: it completes (row `sent`), the two rows claimed
  but never started are pending again with no lease, a request in flight when the signal
  came is answered, rows queued after the signal are not claimed, and the process exits 0
  well within the grace;
- the held send outlasts the grace: the process still exits 0 within the grace plus a little,
  and the row is pending again, its lease cleared, attempted once by the fake (not lost, not
  doubled);
- Slack, GitHub and GitLab accept connections but never answer: start-up, /healthz, /readyz
  and webhook ingest all work, and SIGTERM still ends the process promptly.

Nothing sleeps for a fixed time: every wait is on a condition with a deadline.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import sqlalchemy as sa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bot import migrate
from bot.domain.messages import Digest
from bot.ports import SystemClock
from bot.services import outbox
from bot.store.db import Database, make_engine
from bot.store.tables import OutboxMessage, WebhookDelivery
from tests.helpers import (
    EXAMPLE_CONFIG,
    GENERIC_SECRET,
    REPO_ROOT,
    encode,
    generic_body,
    signed_headers,
)
from tests.servers import serve_in_thread

HOST = "127.0.0.1"
STARTUP_SECONDS = 60.0  # import, migrate, /readyz (generous: CI machines are slow)
WAIT_SECONDS = 30.0
EXIT_SLACK_SECONDS = 8.0  # past the grace: uvicorn's own steps, the release, interpreter exit
POLL_SECONDS = 0.05
CLEARED_PREFIXES = ("SLACK_", "RELEASEBOT_", "GITHUB_", "GITLAB_", "ARGOCD_", "PAGERDUTY_")


class FakeSlack:
    """Slack's Web API on loopback: every method answers ok; `chat.postMessage` waits until
    the test releases it (or, held for good, until the test ends)."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self.started: list[str] = []  # texts of the posts that arrived
        self.finished: list[str] = []  # ... and that were answered
        self.release = threading.Event()

    def app(self) -> Starlette:
        async def method(request: Request) -> JSONResponse:
            name = request.path_params["method"]
            if name != "chat.postMessage":
                return JSONResponse({"ok": True})
            raw = await request.body()
            if raw.startswith(b"{"):
                text = str(json.loads(raw).get("text", ""))
            else:
                text = parse_qs(raw.decode()).get("text", [""])[0]
            with self._changed:
                self.started.append(text)
                self._changed.notify_all()
            await asyncio.to_thread(self.release.wait, WAIT_SECONDS * 2)
            with self._changed:
                self.finished.append(text)
                self._changed.notify_all()
            return JSONResponse(
                {"ok": True, "channel": "C0DIGEST", "ts": f"1700000000.{len(text)}"}
            )

        return Starlette(routes=[Route("/api/{method}", method, methods=["POST"])])

    def wait(self, condition: Callable[[], bool], what: str) -> None:
        with self._changed:
            if not self._changed.wait_for(condition, timeout=WAIT_SECONDS):
                pytest.fail(f"the fake Slack saw no {what} within {WAIT_SECONDS:.0f} s")


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def blackhole() -> Iterator[str]:
    """An address that accepts TCP connections and never answers: an unreachable API."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        sock.listen(64)
        yield f"http://{HOST}:{sock.getsockname()[1]}"


@pytest.fixture
def fake_slack() -> Iterator[tuple[FakeSlack, str]]:
    fake = FakeSlack()
    with serve_in_thread(fake.app()) as base_url:
        try:
            yield fake, base_url
        finally:
            fake.release.set()  # let a held request end so the fake's server can stop


def prepare_database(path: Path, *, digests: int) -> Database:
    """A migrated SQLite file with `digests` digest rows queued (one key: sent in order)."""
    db = Database(make_engine(f"sqlite:///{path}"))
    migrate.upgrade(db.engine)
    if digests:
        now = SystemClock().now()
        messages = [Digest(channel="#releases", text=f"digest {n}") for n in range(digests)]
        db.write(lambda s: outbox.enqueue_many(s, messages, now=now))
    return db


def start_server(tmp_path: Path, db_path: Path, **environ: str) -> Server:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(CLEARED_PREFIXES)}
    env |= {
        "RELEASEBOT_DATABASE_URL": f"sqlite:///{db_path}",
        "RELEASEBOT_CONFIG": str(EXAMPLE_CONFIG),
        "RELEASEBOT_PUBLIC_URL": f"http://{HOST}:{port}",
        "RELEASEBOT_LOG_LEVEL": "INFO",
        "RELEASEBOT_GENERIC_WEBHOOK_SECRET": GENERIC_SECRET,
        "PYTHONPATH": str(REPO_ROOT),
        "PYTHONUNBUFFERED": "1",
        **environ,
    }
    log_path = tmp_path / f"serve-{port}.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve", "--host", HOST, "--port", str(port)],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return Server(process, port, log_path)


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        if server.process.poll() is None:
            server.process.kill()
        server.process.wait(timeout=30)


def wait_for(condition: Callable[[], Any], *, timeout: float, what: str, server: Server) -> Any:
    """Poll `condition` until it returns something truthy; fail with the server's log."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if server.process.poll() is not None:
            pytest.fail(
                f"the server exited ({server.process.returncode}) while waiting for {what}:\n"
                + server.log()[-4000:]
            )
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {timeout:.0f} s:\n" + server.log()[-4000:])
        threading.Event().wait(POLL_SECONDS)  # polling a real process, not a fixed delay


def wait_until_ready(server: Server) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        try:
            answer = httpx.get(f"{server.base_url}/readyz", timeout=2.0)
        except httpx.TransportError:
            return None
        body: dict[str, Any] = answer.json()
        return body if answer.status_code == 200 else None

    found: dict[str, Any] = wait_for(
        ready, timeout=STARTUP_SECONDS, what="200 from /readyz", server=server
    )
    return found


def terminate(server: Server, *, within: float) -> float:
    """SIGTERM, then wait for the exit; returns the seconds it took (fails past `within`)."""
    sent = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    try:
        server.process.wait(timeout=within)
    except subprocess.TimeoutExpired:
        pytest.fail(f"serve did not exit within {within:.0f} s of SIGTERM:\n" + server.log())
    return time.monotonic() - sent


def outbox_rows(db: Database) -> list[dict[str, Any]]:
    with db.engine.connect() as conn:
        table = OutboxMessage.__table__  # type: ignore[attr-defined]
        result = conn.execute(sa.select(table).order_by(table.c.id))
        return [dict(row._mapping) for row in result]


def digests(db: Database) -> list[dict[str, Any]]:
    return [row for row in outbox_rows(db) if row["kind"] == Digest.KIND]


def start_webhook(server: Server) -> tuple[socket.socket, bytes]:
    """A signed generic delivery whose headers are sent now and its body only later."""
    body = encode(generic_body("succeeded"))
    headers = signed_headers(body, GENERIC_SECRET, delivery="drain-1")
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    sock = socket.create_connection((HOST, server.port), timeout=WAIT_SECONDS)
    sock.sendall(
        (
            f"POST /webhooks/generic HTTP/1.1\r\nhost: {HOST}\r\n{head}"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        ).encode()
    )
    return sock, body


def read_status(sock: socket.socket) -> int:
    answer = b""
    while b"\r\n" not in answer:
        chunk = sock.recv(4096)
        if not chunk:
            break
        answer += chunk
    return int(answer.split(b" ", 2)[1])


def test_sigterm_finishes_the_send_in_flight_and_gives_back_what_it_did_not_start(
    tmp_path: Path, fake_slack: tuple[FakeSlack, str], servers: list[Server]
) -> None:
    fake, slack_url = fake_slack
    grace = 15.0
    db_path = tmp_path / "releasebot.db"
    db = prepare_database(db_path, digests=3)
    server = start_server(
        tmp_path,
        db_path,
        SLACK_BOT_TOKEN="xoxb-drain-test",
        SLACK_SIGNING_SECRET="drain-test-signing-secret",
        RELEASEBOT_SLACK_API_URL=f"{slack_url}/api/",
        RELEASEBOT_SHUTDOWN_GRACE_SECONDS=str(grace),
    )
    servers.append(server)
    wait_until_ready(server)
    fake.wait(lambda: fake.started == ["digest 0"], "first digest post")
    claimed = digests(db)
    assert [row["status"] for row in claimed] == ["pending"] * 3
    assert all(row["claimed_until"] is not None for row in claimed), "one batch claims all three"

    request, body = start_webhook(server)  # in flight when the signal comes
    with request:
        sent = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        wait_for(
            lambda: "Shutting down" in server.log(),
            timeout=WAIT_SECONDS,
            what="uvicorn shutting down",
            server=server,
        )
        request.sendall(body)
        assert read_status(request) == 202  # the request in flight was answered
        fake.release.set()  # the outside call in flight completes
        server.process.wait(timeout=grace + EXIT_SLACK_SECONDS)
    took = time.monotonic() - sent

    assert server.process.returncode == 0, server.log()
    assert took < grace, f"took {took:.1f} s: it should not wait out the grace"
    assert fake.finished == ["digest 0"]
    assert fake.started == ["digest 0"], "nothing was claimed or sent after SIGTERM"
    rows = digests(db)
    assert [row["status"] for row in rows] == ["sent", "pending", "pending"]
    assert [row["claimed_until"] for row in rows] == [None, None, None]
    assert [row["attempts"] for row in rows] == [0, 0, 0]
    # The delivery ingested during the drain is stored and answered, and left pending for
    # the next process to apply: the applier claims nothing after SIGTERM either.
    with db.engine.connect() as conn:
        table = WebhookDelivery.__table__  # type: ignore[attr-defined]
        stored = [dict(r._mapping) for r in conn.execute(sa.select(table))]
    assert [(r["delivery_id"], r["outcome"]) for r in stored] == [("drain-1", "pending")]
    queued = [row for row in outbox_rows(db) if row["kind"] != Digest.KIND]
    assert all(row["status"] == "pending" and row["claimed_until"] is None for row in queued)


def test_a_send_slower_than_the_grace_is_cut_short_and_its_row_is_pending_again(
    tmp_path: Path, fake_slack: tuple[FakeSlack, str], servers: list[Server]
) -> None:
    fake, slack_url = fake_slack
    grace = 1.0
    db_path = tmp_path / "releasebot.db"
    db = prepare_database(db_path, digests=3)
    server = start_server(
        tmp_path,
        db_path,
        SLACK_BOT_TOKEN="xoxb-drain-test",
        SLACK_SIGNING_SECRET="drain-test-signing-secret",
        RELEASEBOT_SLACK_API_URL=f"{slack_url}/api/",
        RELEASEBOT_SHUTDOWN_GRACE_SECONDS=str(grace),
    )
    servers.append(server)
    wait_until_ready(server)
    fake.wait(lambda: fake.started == ["digest 0"], "first digest post")

    took = terminate(server, within=grace + EXIT_SLACK_SECONDS)

    assert server.process.returncode == 0, server.log()
    assert took >= grace * 0.9, f"exited after {took:.1f} s: the send had its grace"
    assert fake.started == ["digest 0"] and fake.finished == [], "sent once, never answered"
    rows = digests(db)
    assert [row["status"] for row in rows] == ["pending"] * 3, "not lost"
    assert [row["claimed_until"] for row in rows] == [None] * 3, "another replica takes them now"
    assert [row["attempts"] for row in rows] == [0, 0, 0], "cut short by shutdown is no failure"


def test_start_up_health_and_ingest_do_not_wait_on_unreachable_outside_apis(
    tmp_path: Path, blackhole: str, servers: list[Server]
) -> None:
    db_path = tmp_path / "releasebot.db"
    db = prepare_database(db_path, digests=0)
    server = start_server(
        tmp_path,
        db_path,
        SLACK_BOT_TOKEN="xoxb-unreachable",
        SLACK_APP_TOKEN="xapp-unreachable",
        SLACK_SIGNING_SECRET="unreachable-signing-secret",
        RELEASEBOT_SLACK_API_URL=f"{blackhole}/api/",
        GITHUB_TOKEN="ghp-unreachable",
        GITHUB_API_URL=blackhole,
        GITLAB_TOKEN="glpat-unreachable",
        GITLAB_API_URL=f"{blackhole}/api/v4",
        PAGERDUTY_EVENTS_URL=blackhole,
        RELEASEBOT_SHUTDOWN_GRACE_SECONDS="2",
    )
    servers.append(server)
    ready = wait_until_ready(server)
    assert ready["ready"] is True  # ready to take webhooks; the unreachable Slack is named
    assert ready["down"] == ["slack"]
    assert set(ready["dependencies"]) == {
        "database",
        "migrations",
        "outbox",
        "deliveries",
        "spool",
        "slack",
    }
    assert ready["dependencies"]["spool"] == {"ok": True, "held": 0, "limit": 100_000}
    assert ready["dependencies"]["slack"]["ok"] is False
    assert httpx.get(f"{server.base_url}/healthz", timeout=5.0).json() == {"status": "ok"}

    body = encode(generic_body("succeeded"))
    answer = httpx.post(
        f"{server.base_url}/webhooks/generic",
        content=body,
        headers=signed_headers(body, GENERIC_SECRET, delivery="unreachable-1"),
        timeout=10.0,
    )
    assert answer.status_code == 202, answer.text
    # Stored, answered, then applied by the applier: its messages are queued.
    wait_for(
        lambda: outbox_rows(db),
        timeout=WAIT_SECONDS,
        what="the delivery applied and its messages queued",
        server=server,
    )

    took = terminate(server, within=2.0 + EXIT_SLACK_SECONDS)
    assert server.process.returncode == 0, server.log()
    assert took < 2.0 + EXIT_SLACK_SECONDS
