"""A release message's edits are queued once while one is waiting: the waiting edit is
rendered when it is sent, so a burst of state changes costs one Slack call, not one each."""

from __future__ import annotations

from functools import partial

from bot.services import outbox
from integrations.sandbox.webapi import FakeSlackWebApi
from tests.conftest import Bot
from tests.fakes import FrozenClock
from tests.test_outbox import CHANNEL, deploy, outbox_rows


def edits(bot: Bot) -> list[str]:
    """The status of each queued release-message row, in order."""
    return [row.status for row in outbox_rows(bot) if row.kind == outbox.SLACK_MESSAGE]


async def test_state_changes_while_an_edit_waits_queue_no_second_edit(
    bot: Bot, slack: FakeSlackWebApi
) -> None:
    await deploy(bot, "in_progress")
    await deploy(bot, "success")  # deployed, then verifying: the message's edit still waits
    assert edits(bot) == ["pending"]
    lines = [row for row in outbox_rows(bot) if row.kind == outbox.SLACK_THREAD]
    assert len(lines) == 3  # every line of the thread is still queued

    await bot.send_outbox()
    [message] = slack.messages(CHANNEL)
    assert "Verifying" in message["text"]  # the one edit shows the newest state
    replies = slack.thread(CHANNEL, message["ts"])[1:]
    assert ["Deploying" in replies[0]["text"], "Deployed" in replies[1]["text"]] == [True, True]


async def test_an_edit_already_sent_is_followed_by_a_new_one(
    bot: Bot, slack: FakeSlackWebApi
) -> None:
    await deploy(bot, "in_progress")
    await bot.send_outbox()
    [message] = slack.messages(CHANNEL)
    assert "Verifying" not in message["text"]

    await deploy(bot, "success")
    assert edits(bot)[-1] == "pending"
    await bot.send_outbox()
    [message] = slack.messages(CHANNEL)
    assert "Verifying" in message["text"]


async def test_an_edit_a_worker_has_claimed_is_followed_by_a_new_one(
    bot: Bot, slack: FakeSlackWebApi, clock: FrozenClock
) -> None:
    """A claimed edit may already have read the state it shows: the next change queues
    its own edit, or the message would be left showing the older state."""
    await deploy(bot, "in_progress")
    claim = partial(outbox.claim_due, now=clock.now(), limit=100, token="another-worker")
    claimed = bot.runtime.db.write(claim)
    assert outbox.SLACK_MESSAGE in {row.kind for row in claimed}

    await deploy(bot, "success")
    assert edits(bot) == ["pending", "pending"]  # the claimed one and a new one
    clock.advance(seconds=outbox.LEASE.total_seconds() + 1)  # the other worker is gone
    await bot.send_outbox()
    [message] = slack.messages(CHANNEL)
    assert "Verifying" in message["text"]
