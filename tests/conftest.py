"""Shared fixtures: a fresh database per test (SQLite, or PostgreSQL when
RELEASEBOT_TEST_DATABASE_URL is set), the fake Slack Web API on loopback, and the real app.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from asgi_lifespan import LifespanManager
from sqlalchemy.engine import make_url
from starlette.applications import Starlette

from bot import migrate
from bot.app import Overrides, create_app
from bot.config import Config, load_config
from bot.runtime import Runtime
from bot.settings import Settings, load_settings
from bot.store.db import Database, make_engine, normalize_url
from integrations.sandbox.webapi import FakeSlackWebApi
from tests.fakes import FakeEdge, FrozenClock
from tests.helpers import (
    EXAMPLE_CONFIG,
    GITHUB_SECRET,
    SLACK_GROUPS,
    SLACK_SIGNING_SECRET,
    SLACK_TOKEN,
    SLACK_USERS,
)
from tests.servers import serve_in_thread

pytest_plugins = ["tests.slackflow"]  # fixtures for driving gates through GitHub and Slack

TEST_SECRETS = {"PD_CHECKOUT_ROUTING_KEY": "pd-test-routing-key"}
PG_URL = os.environ.get("RELEASEBOT_TEST_DATABASE_URL")
CLEARED_PREFIXES = (
    "SLACK_",
    "RELEASEBOT_",
    "GITHUB_",
    "GITLAB_",
    "ARGOCD_",
    "PAGERDUTY_",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "http_proxy",
    "https_proxy",
)


def pytest_report_header() -> str:
    if PG_URL:
        return f"database: PostgreSQL ({make_url(normalize_url(PG_URL)).render_as_string()})"
    return "database: SQLite (set RELEASEBOT_TEST_DATABASE_URL to run on PostgreSQL)"


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(CLEARED_PREFIXES) and name != "RELEASEBOT_TEST_DATABASE_URL":
            monkeypatch.delenv(name, raising=False)


# --- databases ---------------------------------------------------------------------------


class PostgresDatabases:
    """Fresh databases cloned from a migrated template, one per test."""

    def __init__(self, url: str) -> None:
        self.url = make_url(normalize_url(url))
        self.admin = sa.create_engine(
            self.url.set(database="postgres"), isolation_level="AUTOCOMMIT"
        )
        self.template = f"rb_template_{uuid.uuid4().hex[:8]}"
        with self.admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{self.template}"')
        engine = make_engine(self.url.set(database=self.template).render_as_string(False))
        migrate.upgrade(engine)
        engine.dispose()

    def create(self, *, migrated: bool = True) -> str:
        name = f"rb_test_{uuid.uuid4().hex[:12]}"
        with self.admin.connect() as conn:
            if migrated:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
            else:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        return self.url.set(database=name).render_as_string(hide_password=False)

    def drop(self, url: str) -> None:
        name = make_url(url).database
        with self.admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def close(self) -> None:
        self.drop(self.url.set(database=self.template).render_as_string(False))
        self.admin.dispose()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresDatabases | None]:
    if not PG_URL:
        yield None
        return
    databases = PostgresDatabases(PG_URL)
    yield databases
    databases.close()


def _new_database_url(postgres: PostgresDatabases | None, tmp_path: Path, migrated: bool) -> str:
    if postgres is not None:
        return postgres.create(migrated=migrated)
    return f"sqlite:///{tmp_path / f'releasebot-{uuid.uuid4().hex[:6]}.db'}"


@pytest.fixture
def database_url_factory(
    postgres: PostgresDatabases | None, tmp_path: Path
) -> Iterator[Callable[..., str]]:
    """Make empty (migrated=False) or migrated databases; all are dropped after the test."""
    made: list[str] = []

    def make(*, migrated: bool = True) -> str:
        url = _new_database_url(postgres, tmp_path, migrated)
        if postgres is None and migrated:
            engine = make_engine(url)
            migrate.upgrade(engine)
            engine.dispose()
        made.append(url)
        return url

    yield make
    if postgres is not None:
        for url in made:
            postgres.drop(url)


@pytest.fixture
def database_url(database_url_factory: Callable[..., str]) -> str:
    return database_url_factory()


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(make_engine(database_url))
    yield database
    database.dispose()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture(scope="session")
def example_config() -> Config:
    return load_config(EXAMPLE_CONFIG)


# --- Slack -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def slack_server() -> Iterator[tuple[FakeSlackWebApi, str]]:
    fake = FakeSlackWebApi(users=SLACK_USERS, usergroups=SLACK_GROUPS)
    with serve_in_thread(fake.app()) as base_url:
        yield fake, base_url


@pytest.fixture
def slack(slack_server: tuple[FakeSlackWebApi, str]) -> FakeSlackWebApi:
    slack_server[0].reset()
    return slack_server[0]


# --- the app -----------------------------------------------------------------------------


@pytest.fixture
def environ(
    database_url: str, slack_server: tuple[FakeSlackWebApi, str], tmp_path: Path
) -> dict[str, str]:
    return {
        "RELEASEBOT_DATABASE_URL": database_url,
        "RELEASEBOT_SPOOL_DIR": str(tmp_path / "spool"),
        "RELEASEBOT_CONFIG": str(EXAMPLE_CONFIG),
        "RELEASEBOT_PUBLIC_URL": "https://releasebot.example",
        "SLACK_BOT_TOKEN": SLACK_TOKEN,
        "SLACK_SIGNING_SECRET": SLACK_SIGNING_SECRET,
        "RELEASEBOT_SLACK_API_URL": f"{slack_server[1]}/api/",
        "GITHUB_WEBHOOK_SECRET": GITHUB_SECRET,
    }


@dataclass
class Bot:
    """The real app, running its lifespan, reached over ASGI."""

    app: Starlette
    http: httpx.AsyncClient
    runtime: Runtime

    async def post(self, path: str, content: bytes, headers: dict[str, str]) -> httpx.Response:
        return await self.http.post(path, content=content, headers=headers)

    async def send_outbox(self) -> int:
        """Send everything due now, as the worker would."""
        return await self.runtime.worker.drain()


BotFactory = Callable[..., Any]


@pytest.fixture
def bot_factory(environ: dict[str, str], clock: FrozenClock, slack: FakeSlackWebApi) -> BotFactory:
    """`async with bot_factory(**env_overrides) as bot:` runs the app with its lifespan.

    The outbox worker's loop is not started (outbox_poll_seconds is huge and nothing wakes
    it during a test unless the test says so); tests call `bot.send_outbox()` to send.
    """

    @asynccontextmanager
    async def run(
        *,
        env: dict[str, str | None] | None = None,
        overrides: Overrides | None = None,
        settings: Settings | None = None,
    ) -> AsyncIterator[Bot]:
        merged: dict[str, str] = dict(environ)
        for key, value in (env or {}).items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        chosen = overrides or Overrides(clock=clock, start_scheduler=False, run_outbox_worker=False)
        # Nothing in a test reaches the network: outside HTTP APIs answer from fakes, and
        # secrets named in the config come from here rather than the real environment.
        chosen = replace(
            chosen,
            http_transport=chosen.http_transport or FakeEdge().transport,
            environ=chosen.environ if chosen.environ is not None else TEST_SECRETS,
        )
        app = create_app(settings or load_settings(merged), overrides=chosen)
        async with LifespanManager(app) as manager:
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bot") as http:
                yield Bot(app=app, http=http, runtime=app.state.runtime)

    return run


@pytest.fixture
async def bot(bot_factory: BotFactory) -> AsyncIterator[Bot]:
    async with bot_factory() as running:
        yield running
