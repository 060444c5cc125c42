"""Exactly one Slack post in a channel configured by `#name`, even when a send is in doubt.

The example config names checkout's channel `#checkout-deploys`, as most configs do. Slack
reads history by channel id only, so the retry of a post in doubt finds the channel's id
first (from an earlier post's answer, or by listing the channels once) and looks for the
post there. A listing Slack cannot answer now is tried again later; nothing is posted twice
meanwhile.
"""

from __future__ import annotations

import logging

import pytest
from sqlmodel import select

from bot.store.tables import OutboxMessage, ReleaseMessage
from integrations.sandbox.webapi import FakeSlackWebApi
from tests.conftest import Bot, BotFactory
from tests.fakes import FrozenClock
from tests.helpers import SHA_B, deployment_status, encode, github_headers
from tests.test_outbox_exactly_once import (
    CHANNEL,
    deploy,
    pending,
    stored_ts,
    synced_slack,  # noqa: F401  (the fake Slack stamping messages with the bot's clock)
)


async def deploy_another_release(bot: Bot, state: str) -> None:
    body = encode(deployment_status(state, sha=SHA_B, deployment_id=2))
    answer = await bot.post("/webhooks/github", body, github_headers("deployment_status", body))
    assert answer.status_code == 202, answer.text


def stored_channels(bot: Bot) -> list[str]:
    with bot.runtime.db.read() as session:
        return [m.channel for m in session.exec(select(ReleaseMessage)).all()]


def dead(bot: Bot) -> list[OutboxMessage]:
    with bot.runtime.db.read() as session:
        query = select(OutboxMessage).where(OutboxMessage.status == "dead")
        return list(session.exec(query).all())


async def test_a_release_message_in_doubt_in_a_named_channel_is_found_by_id_and_adopted(
    bot_factory: BotFactory,
    synced_slack: tuple[FakeSlackWebApi, str],  # noqa: F811
    clock: FrozenClock,
) -> None:
    slack, url = synced_slack
    async with bot_factory(env={"RELEASEBOT_SLACK_API_URL": url}) as bot:
        slack.lose_next_answer("chat.postMessage")  # stored in Slack, answered 504
        await deploy(bot, "in_progress")
        await bot.send_outbox()
        [original] = slack.messages(CHANNEL)
        [post] = slack.calls_to("chat.postMessage")
        assert post.params["channel"] == CHANNEL  # configured, and posted, by name

        clock.advance(seconds=5)
        await bot.send_outbox()

        [message] = slack.messages(CHANNEL)  # one top-level post
        assert message["ts"] == original["ts"]
        assert stored_ts(bot) == [original["ts"]]
        channel_id = slack.channel_id(CHANNEL)
        assert stored_channels(bot) == [channel_id]  # kept by id, as Slack names it
        [listing] = slack.calls_to("conversations.list")
        assert listing.params["types"] == "public_channel,private_channel"
        [lookup] = slack.calls_to("conversations.history")
        assert lookup.params["channel"] == channel_id
        assert "Deploying" in slack.thread(CHANNEL, message["ts"])[1]["text"]
        assert pending(bot) == []


async def test_a_later_post_in_doubt_uses_the_id_an_earlier_post_was_answered_with(
    bot_factory: BotFactory,
    synced_slack: tuple[FakeSlackWebApi, str],  # noqa: F811
    clock: FrozenClock,
) -> None:
    slack, url = synced_slack
    async with bot_factory(env={"RELEASEBOT_SLACK_API_URL": url}) as bot:
        await deploy(bot, "in_progress")
        await bot.send_outbox()
        [first] = slack.messages(CHANNEL)

        slack.lose_next_answer("chat.postMessage")  # the second release's message
        await deploy_another_release(bot, "in_progress")
        await bot.send_outbox()
        clock.advance(seconds=5)
        await bot.send_outbox()

        assert [m["ts"] for m in slack.messages(CHANNEL)][0] == first["ts"]
        assert len(slack.messages(CHANNEL)) == 2  # one message per release
        assert slack.calls_to("conversations.list") == []  # the id came with the first post
        [lookup] = slack.calls_to("conversations.history")
        assert lookup.params["channel"] == slack.channel_id(CHANNEL)
        assert pending(bot) == []


async def test_a_thread_line_in_doubt_in_a_named_channel_is_posted_once(
    bot_factory: BotFactory,
    synced_slack: tuple[FakeSlackWebApi, str],  # noqa: F811
    clock: FrozenClock,
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
        assert sum("Deployed" in line for line in lines) == 1, lines
        assert len(lines) == len(set(lines)), lines
        [lookup, *_] = slack.calls_to("conversations.replies")
        assert (lookup.params["channel"], lookup.params["ts"]) == (
            slack.channel_id(CHANNEL),
            message["ts"],
        )
        assert len(slack.messages(CHANNEL)) == 1
        assert pending(bot) == []


@pytest.mark.parametrize(
    ("status", "error", "retry_after", "wait"),
    [(429, "ratelimited", 30, 31), (503, "service_unavailable", None, 120)],
)
async def test_a_listing_slack_cannot_answer_now_is_retried_later_never_posted_twice(
    bot_factory: BotFactory,
    synced_slack: tuple[FakeSlackWebApi, str],  # noqa: F811
    clock: FrozenClock,
    status: int,
    error: str,
    retry_after: int | None,
    wait: int,
) -> None:
    slack, url = synced_slack
    async with bot_factory(env={"RELEASEBOT_SLACK_API_URL": url}) as bot:
        slack.lose_next_answer("chat.postMessage")
        slack.fail_next("conversations.list", status=status, error=error, retry_after=retry_after)
        await deploy(bot, "in_progress")
        await bot.send_outbox()
        [original] = slack.messages(CHANNEL)

        clock.advance(seconds=5)
        await bot.send_outbox()  # the listing fails: the row waits, nothing is posted

        assert len(slack.calls_to("conversations.list")) == 1
        assert slack.calls_to("conversations.history") == []
        assert len(slack.calls_to("chat.postMessage")) == 1
        assert 1 in [row.id for row in pending(bot)]  # the release message waits its turn

        clock.advance(seconds=wait)
        await bot.send_outbox()

        [message] = slack.messages(CHANNEL)
        assert message["ts"] == original["ts"]
        assert stored_ts(bot) == [original["ts"]]
        assert len(slack.calls_to("conversations.list")) == 2
        assert pending(bot) == [] and dead(bot) == []


async def test_without_the_listing_scope_a_post_in_doubt_is_sent_again_with_a_warning(
    bot_factory: BotFactory,
    synced_slack: tuple[FakeSlackWebApi, str],  # noqa: F811
    clock: FrozenClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    slack, url = synced_slack
    async with bot_factory(env={"RELEASEBOT_SLACK_API_URL": url}) as bot:
        slack.lose_next_answer("chat.postMessage")
        slack.fail_next("conversations.list", status=200, error="missing_scope")
        await deploy(bot, "in_progress")
        await bot.send_outbox()
        clock.advance(seconds=5)
        with caplog.at_level(logging.WARNING, logger="bot.outbox_worker.sends"):
            await bot.send_outbox()

        messages = slack.messages(CHANNEL)
        assert len(messages) == 2  # the lost answer's post, and the one sent again
        assert stored_ts(bot) == [messages[-1]["ts"]]
        assert "conversations.list: missing_scope" in caplog.text
        assert slack.calls_to("conversations.history") == []
        assert pending(bot) == [] and dead(bot) == []
