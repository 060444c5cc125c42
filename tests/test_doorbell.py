"""Split roles: the worker does at once what a web replica stored or queued.

A web replica (`--role web`) stores webhook deliveries and answers clicks; a worker
(`--role worker`) applies the deliveries and sends the outbox. Here both run in one test
process on one database, and the worker's polls are an hour long: only the doorbell
(`bot.store.doorbell`) can tell it of the web's work in time. On PostgreSQL the web rings
(`NOTIFY`) and the worker listens; on SQLite the worker watches the file's data_version.

The tests wait for the fake Slack to receive the calls (`FakeSlackWebApi.wait_until`, woken
by each call it receives), never on a sleep of their own; only the reconnection test waits
out the listener's backoff, held at 3 s so that the web rings while the worker is deaf.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
import sqlalchemy as sa

from bot.outside import Overrides
from bot.store import doorbell as doorbell_module
from bot.store.db import make_engine
from bot.store.doorbell import PostgresDoorbell, SqliteWatch, connect_args
from integrations.sandbox.webapi import FakeSlackWebApi
from tests.conftest import PG_URL, Bot, BotFactory
from tests.fakes import FakeEdge, FakeGitHub, FrozenClock
from tests.helpers import deployment_status, encode, github_headers
from tests.slackflow import CHANNEL, buttons, click, gated_env, request_gate, the_gate

HOUR = 3600.0  # the worker's polls: a test that passes did not wait for them
WAIT = 30.0  # seconds a test waits for the worker at most (it takes milliseconds)


@asynccontextmanager
async def web_and_worker(
    bot_factory: BotFactory, clock: FrozenClock, edge: FakeEdge, env: dict[str, str]
) -> AsyncIterator[tuple[Bot, Bot]]:
    """A web replica and a worker on the test's database, the worker's loops running."""
    overrides = Overrides(
        clock=clock,
        start_scheduler=False,
        run_outbox_worker=True,
        outbox_poll_seconds=HOUR,
        applier_poll_seconds=HOUR,
        process_before_response=True,  # a click is recorded before it is answered
        http_transport=edge.transport,
        environ={},
    )
    async with AsyncExitStack() as stack:
        web = await stack.enter_async_context(
            bot_factory(env={**env, "RELEASEBOT_ROLE": "web"}, overrides=overrides)
        )
        worker = await stack.enter_async_context(
            bot_factory(env={**env, "RELEASEBOT_ROLE": "worker"}, overrides=overrides)
        )
        yield web, worker


async def settled(worker: Bot) -> None:
    """Until the worker hears the others, and its applier and outbox worker both wait for
    work: from then on only a ring wakes them before their polls, an hour away."""
    runtime = worker.runtime
    await asyncio.wait_for(runtime.doorbell.ready(), WAIT)
    await asyncio.wait_for(asyncio.gather(runtime.applier.idle(), runtime.worker.idle()), WAIT)


async def until(slack: FakeSlackWebApi, done: Callable[[], bool]) -> bool:
    return await asyncio.to_thread(slack.wait_until, done, WAIT)


def release_message(slack: FakeSlackWebApi) -> dict[str, Any] | None:
    messages = slack.messages(CHANNEL)
    return messages[0] if messages else None


def shows(slack: FakeSlackWebApi, text: str) -> bool:
    message = release_message(slack)
    return message is not None and text in json.dumps(message["blocks"])


async def test_a_delivery_a_web_stored_is_applied_and_posted_by_the_worker_at_once(
    bot_factory: BotFactory, clock: FrozenClock, edge: FakeEdge, slack: FakeSlackWebApi
) -> None:
    async with web_and_worker(bot_factory, clock, edge, {}) as (web, worker):
        postgres = worker.runtime.db.engine.dialect.name == "postgresql"
        expected = PostgresDoorbell if postgres else SqliteWatch
        assert isinstance(worker.runtime.doorbell, expected) and worker.runtime.doorbell.listens
        assert not web.runtime.doorbell.listens  # a web replica runs no loop to wake
        await settled(worker)
        assert (await worker.http.get("/readyz")).json()["dependencies"]["doorbell"]["ok"]

        body = encode(deployment_status("in_progress"))
        answer = await web.post("/webhooks/github", body, github_headers("deployment_status", body))
        assert answer.status_code == 202

        assert await until(slack, lambda: shows(slack, ":rocket: Deploying"))


async def test_a_click_a_web_answered_reaches_slack_and_github_through_the_worker(
    bot_factory: BotFactory,
    clock: FrozenClock,
    edge: FakeEdge,
    github: FakeGitHub,
    slack: FakeSlackWebApi,
    app_private_key: str,
) -> None:
    github.compare_files = [  # medium risk: one release manager must approve
        {"filename": "Dockerfile", "status": "modified", "additions": 1600, "deletions": 400}
    ]
    env = gated_env(app_private_key)
    async with web_and_worker(bot_factory, clock, edge, env) as (web, worker):
        await settled(worker)
        await request_gate(web, send=False)
        assert await until(slack, lambda: shows(slack, "0 of 1 approvals"))
        gate = the_gate(web)
        await settled(worker)

        await click(web, "U0RM1", "release_approve", gate.id or 0, send=False)
        assert the_gate(web).status == "approved"  # the web recorded it before answering

        # The worker edits the message and tells GitHub, woken by the web's click.
        assert await until(slack, lambda: shows(slack, ":white_check_mark:"))
        message = release_message(slack)
        assert message is not None and "release_approve" not in buttons(message)
        # The thread line telling of the pipeline's answer comes after the call to GitHub.
        assert await until(slack, lambda: bool(github.decisions()))
        assert github.decisions()[0]["state"] == "approved"


@pytest.mark.skipif(PG_URL is None, reason="LISTEN and NOTIFY are PostgreSQL's")
async def test_a_worker_that_lost_its_listening_connection_listens_again(
    bot_factory: BotFactory,
    clock: FrozenClock,
    edge: FakeEdge,
    slack: FakeSlackWebApi,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Deaf for 3 s once the connection is lost: time for the test to ring unheard.
    monkeypatch.setattr(doorbell_module, "RECONNECT_SECONDS", (3.0, 30.0))
    async with web_and_worker(bot_factory, clock, edge, {}) as (web, worker):
        doorbell = worker.runtime.doorbell
        assert isinstance(doorbell, PostgresDoorbell)
        await settled(worker)
        with worker.runtime.db.engine.connect() as connection:
            killed = connection.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE query = 'LISTEN releasebot_work' AND datname = current_database()"
                )
            ).all()
        assert killed == [(True,)]
        await asyncio.wait_for(doorbell.wait_listening(False), WAIT)
        ready = (await worker.http.get("/readyz")).json()
        assert ready["ready"] and ready["down"] == ["doorbell"]  # polling meanwhile
        runtime = worker.runtime
        await asyncio.wait_for(asyncio.gather(runtime.applier.idle(), runtime.worker.idle()), WAIT)
        assert not doorbell.listening

        body = encode(deployment_status("in_progress"))
        answer = await web.post("/webhooks/github", body, github_headers("deployment_status", body))
        assert answer.status_code == 202
        # Deaf when the web rang: connected again, it wakes its loops for what it missed.
        assert not doorbell.listening and doorbell.heard == 0
        assert await until(slack, lambda: release_message(slack) is not None)
        assert doorbell.listening
        ready = (await worker.http.get("/readyz")).json()
        assert ready["dependencies"]["doorbell"]["listening"] and ready["down"] == []


def test_the_doorbell_connects_as_the_engine_does_to_every_host_of_the_url() -> None:
    engine = make_engine(
        "postgresql://bot:p%40ss@/releasebot?host=db1:5432&host=db2:5433&sslmode=require"
    )
    try:
        args = connect_args(engine)
    finally:
        engine.dispose()
    assert args["host"] == "db1,db2" and args["port"] == "5432,5433"  # both, in order
    assert args["password"] == "p@ss" and args["sslmode"] == "require"
    assert args["dbname"] == "releasebot" and args["connect_timeout"] > 0
