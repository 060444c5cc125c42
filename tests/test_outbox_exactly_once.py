"""Exactly one Slack post, even when a send is in doubt.

Every post carries Slack message metadata naming what it is; when an attempt's outcome is
unknown (Slack stored the post but its answer was lost, the database failed before the ts
was recorded, the process was killed while waiting for the answer), the next attempt looks
the post up in the channel or thread (conversations.history / conversations.replies with
`include_all_metadata`, from a little before the first attempt) and adopts it.

The fake Slack here stamps messages with the bot's clock, as Slack's ts and our clock agree.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlmodel import select

from bot import migrate
from bot.outbox_worker import sends
from bot.store.db import Database, make_engine
from bot.store.tables import OutboxMessage, ReleaseMessage
from integrations.sandbox.webapi import FakeSlackWebApi
from tests.conftest import Bot, BotFactory
from tests.fakes import FrozenClock
from tests.helpers import (
    GENERIC_SECRET,
    SLACK_GROUPS,
    SLACK_TOKEN,
    SLACK_USERS,
    database_unreachable,
    deployment_status,
    encode,
    generic_body,
    github_headers,
    signed_headers,
)
from tests.servers import serve_in_thread
from tests.test_shutdown_drain import (
    Server,
    servers,  # noqa: F401  (the fixture that kills what a test started)
    start_server,
    terminate,
    wait_for,
    wait_until_ready,
)

CHANNEL = "#checkout-deploys"
RELEASE_METADATA = {"event_type": "releasebot_release", "event_payload": {"deployment_id": 1}}


@pytest.fixture
def synced_slack(clock: FrozenClock) -> Iterator[tuple[FakeSlackWebApi, str]]:
    """A fake Slack whose message timestamps follow the bot's (frozen) clock."""
    fake = FakeSlackWebApi(
        users=SLACK_USERS, usergroups=SLACK_GROUPS, clock=lambda: clock.now().timestamp()
    )
    with serve_in_thread(fake.app()) as base_url:
        yield fake, f"{base_url}/api/"


async def deploy(bot: Bot, state: str) -> None:
    body = encode(deployment_status(state))
    answer = await bot.post("/webhooks/github", body, github_headers("deployment_status", body))
    assert answer.status_code == 202, answer.text


def stored_ts(bot: Bot) -> list[str]:
    with bot.runtime.db.read() as session:
        return [m.ts for m in session.exec(select(ReleaseMessage)).all()]


def pending(bot: Bot) -> list[OutboxMessage]:
    with bot.runtime.db.read() as session:
        query = select(OutboxMessage).where(OutboxMessage.status == "pending")
        return list(session.exec(query).all())


async def test_a_post_whose_answer_was_lost_is_found_and_adopted_not_posted_again(
    bot_factory: BotFactory, synced_slack: tuple[FakeSlackWebApi, str], clock: FrozenClock
) -> None:
    slack, url = synced_slack
    async with bot_factory(env={"RELEASEBOT_SLACK_API_URL": url}) as bot:
        slack.lose_next_answer("chat.postMessage")  # stored in Slack, answered 504
        await deploy(bot, "in_progress")
        first_attempt = clock.now()
        await bot.send_outbox()
        [original] = slack.messages(CHANNEL)
        assert original["metadata"] == {
            "event_type": "releasebot_release",
            "event_payload": {"deployment_id": 1, "outbox_id": 1},
        }
        [row] = [r for r in pending(bot) if r.id == 1]
        assert row.attempted_at == first_attempt  # in doubt since then

        clock.advance(seconds=5)
        await bot.send_outbox()

        [message] = slack.messages(CHANNEL)
        assert message["ts"] == original["ts"]
        assert stored_ts(bot) == [original["ts"]]
        [lookup] = slack.calls_to("conversations.history")
        assert lookup.params["include_all_metadata"] in (True, "1", "true")
        assert float(lookup.params["oldest"]) <= first_attempt.timestamp()
        assert len(slack.calls_to("chat.postMessage")) == 2  # the message once, its line
        assert "Deploying" in slack.thread(CHANNEL, message["ts"])[1]["text"]
        assert pending(bot) == []


async def test_a_post_whose_ts_could_not_be_recorded_is_adopted_not_posted_again(
    bot_factory: BotFactory,
    synced_slack: tuple[FakeSlackWebApi, str],
    clock: FrozenClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slack, url = synced_slack
    async with bot_factory(env={"RELEASEBOT_SLACK_API_URL": url}) as bot:
        await deploy(bot, "in_progress")
        failed: list[bool] = []

        def database_down_once(*args: Any, **kwargs: Any) -> None:
            assert slack.messages(CHANNEL)  # the post is in Slack: recording it fails
            failed.append(True)
            raise sa.exc.OperationalError(
                "INSERT", {}, Exception("server closed the connection unexpectedly")
            )

        with monkeypatch.context() as patched:
            patched.setattr(sends, "save_message", database_down_once)
            await bot.send_outbox()
        assert failed and stored_ts(bot) == []
        [original] = slack.messages(CHANNEL)

        clock.advance(seconds=5)
        await bot.send_outbox()

        [message] = slack.messages(CHANNEL)
        assert message["ts"] == original["ts"]
        assert stored_ts(bot) == [original["ts"]]
        assert pending(bot) == []


async def test_a_database_restart_between_the_post_and_its_recording_posts_it_once(
    bot_factory: BotFactory, synced_slack: tuple[FakeSlackWebApi, str], clock: FrozenClock
) -> None:
    """Slack stored the post; before its answer arrived the database went away (every
    connection dropped, new ones refused), so the post could not be recorded. Once the
    database is back and the claim has run out, the row is looked up and adopted."""
    slack, url = synced_slack
    async with bot_factory(env={"RELEASEBOT_SLACK_API_URL": url}) as bot:
        await deploy(bot, "in_progress")
        slack.hold_answers("chat.postMessage")
        sending = asyncio.create_task(bot.send_outbox())
        assert await asyncio.to_thread(slack.wait_for_held_answer, 10)
        with database_unreachable(bot.runtime.db.engine):
            slack.release_answers()  # the answer arrives while the database is down
            with contextlib.suppress(sa.exc.OperationalError):
                await sending  # the worker's next claim fails too
            assert slack.messages(CHANNEL)  # the post is in Slack
        assert stored_ts(bot) == []  # and nowhere in the database
        [original] = slack.messages(CHANNEL)

        clock.advance(seconds=61)  # the claim taken before the restart runs out
        await bot.send_outbox()

        [message] = slack.messages(CHANNEL)
        assert message["ts"] == original["ts"]
        assert len(slack.calls_to("chat.postMessage")) == 2  # the message once, its line
        assert stored_ts(bot) == [original["ts"]]
        assert pending(bot) == []


async def test_a_thread_line_whose_answer_was_lost_is_not_posted_twice(
    bot_factory: BotFactory, synced_slack: tuple[FakeSlackWebApi, str], clock: FrozenClock
) -> None:
    slack, url = synced_slack
    async with bot_factory(env={"RELEASEBOT_SLACK_API_URL": url}) as bot:
        await deploy(bot, "in_progress")
        await bot.send_outbox()
        [message] = slack.messages(CHANNEL)

        slack.lose_next_answer("chat.postMessage")  # the next thread line
        await deploy(bot, "success")
        await bot.send_outbox()
        clock.advance(seconds=5)
        await bot.send_outbox()

        lines = [reply["text"] for reply in slack.thread(CHANNEL, message["ts"])[1:]]
        assert len(lines) == len(set(lines)), lines
        assert sum("Deployed" in line for line in lines) == 1
        [lookup, *_] = slack.calls_to("conversations.replies")
        assert lookup.params["ts"] == message["ts"]
        assert len(slack.messages(CHANNEL)) == 1
        assert pending(bot) == []


async def test_a_retry_that_finds_nothing_posts_once(
    bot_factory: BotFactory, synced_slack: tuple[FakeSlackWebApi, str], clock: FrozenClock
) -> None:
    """A lost answer of a call Slack did not carry out: the lookup finds nothing, so the
    retry posts, once."""
    slack, url = synced_slack
    async with bot_factory(env={"RELEASEBOT_SLACK_API_URL": url}) as bot:
        slack.fail_next("chat.postMessage", status=503, error="service_unavailable")
        await deploy(bot, "in_progress")
        await bot.send_outbox()
        assert slack.messages(CHANNEL) == []
        clock.advance(seconds=5)
        await bot.send_outbox()
        assert len(slack.calls_to("conversations.history")) == 1
        assert len(slack.messages(CHANNEL)) == 1


async def test_a_rate_limited_post_is_not_in_doubt(
    bot: Bot, slack: FakeSlackWebApi, clock: FrozenClock
) -> None:
    """A 429 surely posted nothing: the retry posts without reading the channel first."""
    slack.fail_next("chat.postMessage", status=429, retry_after=3)
    await deploy(bot, "in_progress")
    await bot.send_outbox()
    [row] = [r for r in pending(bot) if r.id == 1]
    assert row.attempted_at is None
    clock.advance(seconds=4)
    await bot.send_outbox()
    assert slack.calls_to("conversations.history") == []
    assert len(slack.messages(CHANNEL)) == 1


def test_a_process_killed_after_slack_stored_its_post_posts_it_once_after_restart(
    tmp_path: Path,
    servers: list[Server],  # noqa: F811
) -> None:
    fake = FakeSlackWebApi(users=SLACK_USERS, usergroups=SLACK_GROUPS, clock=time.time)
    db_path = tmp_path / "releasebot.db"
    db = Database(make_engine(f"sqlite:///{db_path}"))
    migrate.upgrade(db.engine)
    with serve_in_thread(fake.app()) as base_url:
        environ = {
            "SLACK_BOT_TOKEN": SLACK_TOKEN,
            "RELEASEBOT_SLACK_API_URL": f"{base_url}/api/",
            "RELEASEBOT_OUTBOX_LEASE_SECONDS": "2",
        }
        first = start_server(tmp_path, db_path, **environ)
        servers.append(first)
        wait_until_ready(first)
        fake.hold_answers("chat.postMessage")
        body = encode(generic_body("succeeded"))
        answer = httpx.post(
            f"{first.base_url}/webhooks/generic",
            content=body,
            headers=signed_headers(body, GENERIC_SECRET),
            timeout=10,
        )
        assert answer.status_code == 202, answer.text
        assert fake.wait_for_held_answer(timeout=30), first.log()[-4000:]
        [channel] = fake.channels()
        assert len(fake.messages(channel)) == 1  # stored by Slack, its answer held back
        first.process.kill()
        first.process.wait(timeout=30)
        fake.release_answers()

        second = start_server(tmp_path, db_path, **environ)
        servers.append(second)
        wait_until_ready(second)

        def all_sent() -> bool:
            with db.read() as session:
                rows = session.exec(select(OutboxMessage)).all()
            return bool(rows) and all(row.status == "sent" for row in rows)

        wait_for(all_sent, timeout=60, what="every outbox row sent", server=second)
        terminate(second, within=30)

    [message] = fake.messages(channel)
    with db.read() as session:
        assert [m.ts for m in session.exec(select(ReleaseMessage)).all()] == [message["ts"]]
    assert fake.calls_to("conversations.history")
    assert len(fake.thread(channel, message["ts"])) >= 2  # its thread went on after it
    db.dispose()


async def test_a_post_slack_will_not_let_us_look_for_is_posted_again_not_stuck(
    bot_factory: BotFactory, synced_slack: tuple[FakeSlackWebApi, str], clock: FrozenClock
) -> None:
    # Without the history scope, or where the bot may not read the channel, Slack refuses
    # the lookup for good. The message must still go out (at most twice), never wait
    # forever. (A channel configured by #name is read by its id: test_outbox_exactly_once_by_name.)
    slack, url = synced_slack
    async with bot_factory(env={"RELEASEBOT_SLACK_API_URL": url}) as bot:
        slack.lose_next_answer("chat.postMessage")
        slack.fail_next("conversations.history", status=200, error="channel_not_found")
        await deploy(bot, "in_progress")
        await bot.send_outbox()
        clock.advance(seconds=5)
        await bot.send_outbox()

        assert len(slack.calls_to("conversations.history")) == 1
        messages = slack.messages(CHANNEL)
        assert len(messages) == 2  # the lost answer's post, and the one sent again
        assert stored_ts(bot) == [messages[-1]["ts"]]
        assert pending(bot) == []
        with bot.runtime.db.read() as session:
            given_up = session.exec(select(OutboxMessage).where(OutboxMessage.status == "dead"))
            assert list(given_up) == []  # nothing was given up on
