"""The outbox worker: retries, ordering, give-up, and exactly one message across restarts."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import sqlalchemy as sa
from sqlmodel import select

from bot.app import Overrides
from bot.store.tables import OutboxMessage, ReleaseMessage
from integrations.sandbox.webapi import FakeSlackWebApi
from tests.conftest import Bot, BotFactory
from tests.fakes import FrozenClock
from tests.helpers import deployment_status, encode, github_headers

CHANNEL = "#checkout-deploys"


async def deploy(bot: Bot, state: str, **kw: Any) -> None:
    body = encode(deployment_status(state, **kw))
    answer = await bot.post("/webhooks/github", body, github_headers("deployment_status", body))
    assert answer.status_code == 202, answer.text


def outbox_rows(bot: Bot) -> list[OutboxMessage]:
    with bot.runtime.db.read() as session:
        return list(session.exec(select(OutboxMessage).order_by(OutboxMessage.id)).all())


async def test_a_rate_limited_post_waits_for_retry_after_then_posts_once(
    bot: Bot, slack: FakeSlackWebApi, clock: FrozenClock
) -> None:
    slack.fail_next("chat.postMessage", status=429, retry_after=7)
    await deploy(bot, "in_progress")
    await bot.send_outbox()
    assert slack.messages(CHANNEL) == []
    first = outbox_rows(bot)[0]
    # A rate limit is not a failed attempt: the row waits for Retry-After, its backoff untouched.
    assert first.attempts == 0 and "ratelimited" in (first.last_error or "")

    clock.advance(seconds=6.9)
    await bot.send_outbox()
    assert slack.messages(CHANNEL) == []  # Retry-After is honoured

    clock.advance(seconds=1.2)
    await bot.send_outbox()
    assert len(slack.messages(CHANNEL)) == 1
    assert len(slack.calls_to("chat.postMessage")) == 3  # 429, the message, its thread line


async def test_server_errors_back_off_and_recover(
    bot: Bot, slack: FakeSlackWebApi, clock: FrozenClock
) -> None:
    slack.fail_next("chat.postMessage", status=500, error="internal_error", times=2)
    await deploy(bot, "success")
    await bot.send_outbox()
    assert slack.messages(CHANNEL) == []
    clock.advance(seconds=1.6)  # first backoff is 1 s with jitter of at most +-50 %
    await bot.send_outbox()
    assert slack.messages(CHANNEL) == []
    clock.advance(seconds=3.1)  # then 2 s with jitter
    await bot.send_outbox()
    assert len(slack.messages(CHANNEL)) == 1


async def test_thread_lines_never_overtake_the_message_they_belong_to(
    bot: Bot, slack: FakeSlackWebApi, clock: FrozenClock
) -> None:
    slack.fail_next("chat.postMessage", status=429, retry_after=30)
    await deploy(bot, "in_progress")
    await deploy(bot, "success")
    await bot.send_outbox()
    assert [c.params.get("thread_ts") for c in slack.calls_to("chat.postMessage")] == [None]

    clock.advance(seconds=32)
    await bot.send_outbox()
    [message] = slack.messages(CHANNEL)
    [reply] = slack.thread(CHANNEL, message["ts"])[1:]  # the lines waited together
    lines = reply["text"].split("\n")
    assert ["Deploying" in lines[0], "Deployed" in lines[1]] == [True, True]
    assert "Verifying" in message["text"]  # production verifies what deployed


async def test_a_permanent_slack_error_is_given_up_on_and_shown_in_readyz_and_metrics(
    bot: Bot, slack: FakeSlackWebApi
) -> None:
    slack.fail_next("chat.postMessage", status=200, error="channel_not_found")
    await deploy(bot, "success")
    await bot.send_outbox()

    rows = [row for row in outbox_rows(bot) if row.kind.startswith("slack.")]
    assert rows[0].status == "dead"
    # The lines queued with it had no message to reply to; the edit the risk assessment
    # queued later posts the message after all.
    assert {row.status for row in rows if row.kind == "slack.thread_reply"} == {"dead"}
    assert rows[-1].kind == "slack.release_message" and rows[-1].status == "sent"
    assert len(slack.messages(CHANNEL)) == 1
    ready = (await bot.http.get("/readyz")).json()
    assert ready["outbox"]["dead"] >= 1
    metrics = (await bot.http.get("/metrics")).text
    assert 'releasebot_slack_api_errors_total{error="channel_not_found"} 1.0' in metrics
    assert "releasebot_outbox_dead 4.0" in metrics  # the message and its three lines


async def test_retries_stop_after_the_horizon(
    bot: Bot, slack: FakeSlackWebApi, clock: FrozenClock
) -> None:
    slack.fail_next("chat.postMessage", status=503, error="service_unavailable", times=100)
    await deploy(bot, "success")
    await bot.send_outbox()
    clock.advance(hours=25)
    await bot.send_outbox()
    assert outbox_rows(bot)[0].status == "dead"


async def test_rows_committed_before_a_crash_are_sent_after_restart(
    bot_factory: BotFactory, slack: FakeSlackWebApi
) -> None:
    async with bot_factory() as first:
        await deploy(first, "in_progress")  # committed, never sent: the process "dies"
    assert slack.calls == []

    async with bot_factory() as second:
        await second.send_outbox()
        await deploy(second, "success")
        await second.send_outbox()
    [message] = slack.messages(CHANNEL)
    assert "Verifying" in message["text"]


async def test_a_message_posted_just_before_a_crash_is_edited_not_posted_again(
    bot: Bot, slack: FakeSlackWebApi
) -> None:
    await deploy(bot, "in_progress")
    await bot.send_outbox()
    # The crash came after Slack answered and the ts was stored, before the rows were
    # marked sent: they are pending again when the next worker looks.
    with bot.runtime.db.engine.begin() as conn:
        conn.execute(sa.update(OutboxMessage).values(status="pending"))
    await bot.send_outbox()

    assert len(slack.messages(CHANNEL)) == 1
    with bot.runtime.db.read() as session:
        assert len(session.exec(select(ReleaseMessage)).all()) == 1
    assert slack.calls_to("chat.update")


async def test_the_background_worker_sends_without_being_asked(
    bot_factory: BotFactory, slack: FakeSlackWebApi, clock: FrozenClock
) -> None:
    overrides = Overrides(clock=clock, start_scheduler=False, outbox_poll_seconds=60)
    async with bot_factory(overrides=overrides) as bot:
        await deploy(bot, "success")
        deadline = time.monotonic() + 10
        while len(slack.calls_to("chat.postMessage")) < 4 and time.monotonic() < deadline:
            await asyncio.sleep(0)
    assert len(slack.messages(CHANNEL)) == 1
    # the message, and its thread: deploying, deployed, verifying
    assert len(slack.calls_to("chat.postMessage")) == 4
