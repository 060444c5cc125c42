"""A restart loses no check: the real server, SIGKILLed between planning and the due time.

`python -m bot serve` runs as a subprocess on a file SQLite database (or a fresh PostgreSQL
database when RELEASEBOT_TEST_DATABASE_URL is set). A signed `deployment_status` success for
acme/checkout production plans its health check at 2 s and 3 s; the process is killed with
SIGKILL as soon as the runs are in the database, before either is due. A second process on
the same database must then run each planned check exactly once and verify the deployment.

Nothing here sleeps for a fixed time: every wait polls a real process or the database with a
deadline.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlmodel import col, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from bot.domain import states
from bot.services import verification
from bot.store.db import Database, make_engine
from bot.store.tables import AuditEvent, CheckRun, Deployment
from tests.helpers import (
    GITHUB_SECRET,
    REPO_ROOT,
    deployment_status,
    encode,
    example_config_data,
    github_headers,
)
from tests.servers import serve_in_thread

pytestmark = pytest.mark.skipif(
    not hasattr(signal, "SIGKILL"), reason="needs POSIX signals to kill the server"
)

HOST = "127.0.0.1"
OFFSETS = ["2s", "3s"]  # the first run is due 2 s after planning: time enough to kill first
STARTUP_SECONDS = 60.0  # import, migrate, /readyz (generous: CI machines are slow)
PLANNED_SECONDS = 15.0
VERIFIED_SECONDS = 30.0
POLL_SECONDS = 0.05
# Variables of the developer's shell that would change what the server does.
CLEARED_PREFIXES = ("SLACK_", "RELEASEBOT_", "GITHUB_", "GITLAB_", "ARGOCD_", "PAGERDUTY_")


class HealthServer:
    """A fake service's health endpoint: answers 200 and counts requests per path."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def app(self) -> Starlette:
        async def healthz(request: Request) -> PlainTextResponse:
            with self._lock:
                self._counts[request.url.path] += 1
            return PlainTextResponse("ok")

        return Starlette(routes=[Route("/healthz", healthz, methods=["GET"])])

    def counts(self) -> Counter[str]:
        with self._lock:
            return Counter(self._counts)


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def write_config(path: Path, health_url: str) -> Path:
    """The example config, with checkout production verified by one HTTP check at 2 s and 3 s."""
    data = example_config_data()
    [production] = [
        env for env in data["services"]["checkout"]["environments"] if env["name"] == "production"
    ]
    production["verify"] = [
        {
            "name": "health",
            "http": {"url": health_url, "expect_status": 200, "timeout": "2s"},
            "at": OFFSETS,
        }
    ]
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def start_server(*, database_url: str, config: Path, log_path: Path) -> Server:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(CLEARED_PREFIXES)}
    env |= {
        "RELEASEBOT_DATABASE_URL": database_url,
        "RELEASEBOT_CONFIG": str(config),
        "RELEASEBOT_LOG_LEVEL": "INFO",
        "GITHUB_WEBHOOK_SECRET": GITHUB_SECRET,
        "PYTHONPATH": str(REPO_ROOT),
    }
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve", "--host", HOST, "--port", str(port)],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return Server(process, f"http://{HOST}:{port}", log_path)


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
                + server.log_tail()
            )
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {timeout:.0f} s:\n" + server.log_tail())
        time.sleep(POLL_SECONDS)  # polling a real process, not waiting out a fixed delay


def wait_until_ready(server: Server, client: httpx.Client) -> None:
    def ready() -> bool:
        try:
            return client.get(f"{server.base_url}/readyz", timeout=2.0).status_code == 200
        except httpx.TransportError:
            return False

    wait_for(ready, timeout=STARTUP_SECONDS, what="200 from /readyz", server=server)


def stop(server: Server) -> None:
    if server.process.poll() is None:
        server.process.kill()
    server.process.wait(timeout=30)


def runs(db: Database) -> list[CheckRun]:
    with db.read() as session:
        return list(session.exec(select(CheckRun).order_by(col(CheckRun.due_at))).all())


def check_results(db: Database) -> Counter[int]:
    """How many results (check.passed / check.failed audit records) each run id got."""
    with db.read() as session:
        events = session.exec(
            select(AuditEvent).where(col(AuditEvent.action).in_(("check.passed", "check.failed")))
        ).all()
    return Counter(int(json.loads(event.details)["run"]) for event in events)


@pytest.fixture
def health() -> Iterator[tuple[HealthServer, str]]:
    server = HealthServer()
    with serve_in_thread(server.app()) as base_url:
        yield server, base_url


def test_planned_checks_survive_sigkill_and_run_exactly_once_after_restart(
    database_url_factory: Callable[..., str],
    tmp_path: Path,
    health: tuple[HealthServer, str],
) -> None:
    health_server, health_base = health
    health_url = f"{health_base}/healthz"  # carries the fake's port
    database_url = database_url_factory()
    config = write_config(tmp_path / "releasebot.yaml", health_url)
    db = Database(make_engine(database_url))
    servers: list[Server] = []
    try:
        with httpx.Client() as client:
            first = start_server(
                database_url=database_url, config=config, log_path=tmp_path / "first.log"
            )
            servers.append(first)
            wait_until_ready(first, client)

            body = encode(deployment_status("success"))
            response = client.post(
                f"{first.base_url}/webhooks/github",
                content=body,
                headers=github_headers("deployment_status", body),
                timeout=10.0,
            )
            assert response.status_code == 202, response.text

            def all_planned() -> list[CheckRun] | None:
                found = runs(db)
                return found if len(found) == len(OFFSETS) else None

            planned = wait_for(
                all_planned,
                timeout=PLANNED_SECONDS,
                what=f"{len(OFFSETS)} planned check runs",
                server=first,
            )
            assert [run.status for run in planned] == [verification.PENDING] * len(OFFSETS)
            first.process.kill()  # SIGKILL: no shutdown hook, no lifespan exit
            first.process.wait(timeout=30)
            assert first.process.returncode == -signal.SIGKILL

            # Killed before the first due time: nothing ran, nothing was claimed.
            assert health_server.counts() == Counter(), (
                "a check ran before the kill; this machine is slow: use larger OFFSETS"
            )
            left = runs(db)
            assert [run.status for run in left] == [verification.PENDING] * len(OFFSETS)
            assert all(run.claimed_by is None for run in left)

            second = start_server(
                database_url=database_url, config=config, log_path=tmp_path / "second.log"
            )
            servers.append(second)
            wait_until_ready(second, client)

            def all_passed() -> list[CheckRun] | None:
                found = runs(db)
                return found if all(run.status == verification.PASSED for run in found) else None

            finished = wait_for(
                all_passed,
                timeout=VERIFIED_SECONDS,
                what="passed check runs after the restart",
                server=second,
            )
            # Whatever is in flight has settled: the deployment's last transition is committed
            # in the same transaction as the last run's result.
            with db.read() as session:
                [deployment] = session.exec(select(Deployment)).all()

        assert [run.id for run in finished] == [run.id for run in planned]
        assert all(run.finished_at is not None for run in finished)
        assert all(run.finished_at >= run.due_at for run in finished if run.finished_at)
        assert health_server.counts() == Counter({"/healthz": len(OFFSETS)})
        assert check_results(db) == Counter({run.id: 1 for run in finished if run.id})
        assert deployment.state == states.VERIFIED
    finally:
        for server in servers:
            stop(server)
        db.dispose()
