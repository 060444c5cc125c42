"""A release message's edits are queued once while one is waiting: the waiting edit is
rendered when it is sent, so a burst of state changes costs one Slack call, not one each."""

from __future__ import annotations

from functools import partial

from bot.domain.messages import Message, OncallLine, TemplateLine, lines_of
from bot.services import outbox, outbox_coalesce
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
    # the three lines of the thread wait in one row, in the order they were queued
    [line_row] = [row for row in outbox_rows(bot) if row.kind == outbox.SLACK_THREAD]
    assert len(line_row.payload["more"]) == 2

    await bot.send_outbox()
    [message] = slack.messages(CHANNEL)
    assert "Verifying" in message["text"]  # the one edit shows the newest state
    [reply] = slack.thread(CHANNEL, message["ts"])[1:]
    lines = reply["text"].split("\n")
    assert ["Deploying" in lines[0], "Deployed" in lines[1], "Verifying" in lines[2]] == [
        True,
        True,
        True,
    ]
    assert len(slack.calls_to("chat.postMessage")) == 2  # the message and one reply


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
    # The line sent with the first delivery took no later line; lines queued together
    # are not merged with each other: sent as they come, a thread looks as it always has.
    replies = [reply["text"] for reply in slack.thread(CHANNEL, message["ts"])[1:]]
    assert ["Deploying" in replies[0], "Deployed" in replies[1], "Verifying" in replies[2]] == [
        True,
        True,
        True,
    ]


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


def queue(bot: Bot, clock: FrozenClock, *batch: Message) -> None:
    """Queue messages as a service does, in one transaction of their own."""
    bot.runtime.db.write(partial(outbox.enqueue_many, batch=batch, now=clock.now()))


def line(text: str) -> TemplateLine:
    return TemplateLine(1, "note.txt.j2", {"text": text})


def line_rows(bot: Bot) -> list[list[str]]:
    """The thread-line rows of deployment 1, each as the texts it will send."""
    return [
        [part["text"] for part in lines_of(row.payload)]
        for row in outbox_rows(bot)
        if row.key == "deployment:1" and row.kind != outbox.SLACK_MESSAGE
    ]


async def test_a_line_never_joins_one_queued_before_another_kind_of_row(
    bot: Bot, clock: FrozenClock
) -> None:
    """A line queued after, say, an on-call mention must be sent after it: it joins only
    a line that is its message's newest row."""
    queue(bot, clock, line("one"))
    queue(bot, clock, line("two"))
    queue(bot, clock, OncallLine(1, "note.txt.j2", {"text": "oncall"}))
    queue(bot, clock, line("three"))
    queue(bot, clock, line("four"))
    assert line_rows(bot) == [["one", "two"], ["oncall"], ["three", "four"]]


async def test_a_reply_takes_at_most_ten_lines(bot: Bot, clock: FrozenClock) -> None:
    for number in range(12):
        queue(bot, clock, line(str(number)))
    assert [len(texts) for texts in line_rows(bot)] == [outbox_coalesce.MAX_LINES, 2]


async def test_a_line_a_worker_has_claimed_takes_no_more_lines(
    bot: Bot, clock: FrozenClock
) -> None:
    queue(bot, clock, line("one"))
    bot.runtime.db.write(partial(outbox.claim_due, now=clock.now(), limit=10, token="elsewhere"))
    queue(bot, clock, line("two"))
    queue(bot, clock, line("three"))
    assert line_rows(bot) == [["one"], ["two", "three"]]
