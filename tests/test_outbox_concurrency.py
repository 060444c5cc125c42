"""The outbox sends different messages at once, each in order, within Slack's limits.

Slack is played by a sender whose answers the test releases (asyncio events), or by the
fake Web API on loopback for rate limits; the worker's drain rounds are driven directly and
the clock is injected: nothing sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import select

from bot.app import Overrides
from bot.config import Config
from bot.domain.errors import DeliveryFailed
from bot.domain.messages import DirectMessage
from bot.metrics import Metrics
from bot.outbox_worker import OutboxWorker
from bot.outbox_worker.writes import LaneWrites
from bot.ports import PostedMessage
from bot.render import Renderer
from bot.services import outbox
from bot.settings import load_settings
from bot.store.db import Database, make_engine
from bot.store.tables import OutboxMessage
from integrations.sandbox.webapi import FakeSlackWebApi
from tests.conftest import Bot, BotFactory
from tests.fakes import FrozenClock
from tests.helpers import deployment_status, encode, github_headers

CHANNEL = "#checkout-deploys"
WAIT = 10.0  # seconds a test waits for the worker to reach a call before it fails


@dataclass
class Call:
    method: str
    channel: str
    text: str
    thread_ts: str | None
    answer: asyncio.Event = field(default_factory=asyncio.Event)


class GatedSlack:
    """A Slack whose every call waits until the test answers it."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._changed = asyncio.Condition()
        self._posted = 0

    async def _call(self, call: Call) -> None:
        async with self._changed:
            self.calls.append(call)
            self._changed.notify_all()
        await call.answer.wait()

    async def started(self, count: int) -> list[Call]:
        """Wait until `count` calls have reached Slack."""
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: len(self.calls) >= count), timeout=WAIT
            )
        return list(self.calls)

    async def post_message(
        self,
        *,
        channel: str,
        text: str,
        blocks: list[dict[str, Any]] | None = None,
        thread_ts: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> PostedMessage:
        await self._call(Call("chat.postMessage", channel, text, thread_ts))
        self._posted += 1
        return PostedMessage(channel=channel, ts=f"1700000000.{self._posted:06d}")

    async def update_message(
        self, *, channel: str, ts: str, text: str, blocks: list[dict[str, Any]] | None = None
    ) -> None:
        await self._call(Call("chat.update", channel, text, ts))

    async def find_message(
        self, *, channel: str, oldest: float, metadata: dict[str, Any], thread_ts: str | None = None
    ) -> PostedMessage | None:
        return None


async def deploy(bot: Bot, state: str, **fields: Any) -> None:
    body = encode(deployment_status(state, **fields))
    answer = await bot.post("/webhooks/github", body, github_headers("deployment_status", body))
    assert answer.status_code == 202, answer.text


@pytest.fixture
async def gated(
    bot_factory: BotFactory, clock: FrozenClock
) -> AsyncIterator[tuple[Bot, GatedSlack]]:
    slack = GatedSlack()
    overrides = Overrides(
        clock=clock, start_scheduler=False, run_outbox_worker=False, slack_sender=slack
    )
    async with bot_factory(overrides=overrides) as bot:
        yield bot, slack


SHA_B, SHA_C = "b" * 40, "c" * 40


async def answer_until_done(slack: GatedSlack, task: asyncio.Task[Any]) -> None:
    """Answer every call as it comes until `task` (a drain) is over."""
    while not task.done():
        for call in slack.calls:
            call.answer.set()
        arrival = asyncio.create_task(slack.started(len(slack.calls) + 1))
        await asyncio.wait({task, arrival}, timeout=WAIT, return_when=asyncio.FIRST_COMPLETED)
        arrival.cancel()
    await task


async def test_different_messages_go_out_at_once_while_one_messages_calls_stay_in_order(
    gated: tuple[Bot, GatedSlack],
) -> None:
    bot, slack = gated
    await deploy(bot, "in_progress")
    await deploy(bot, "in_progress", sha=SHA_B, deployment_id=4242)
    round_ = asyncio.create_task(bot.runtime.worker.drain_round())

    posts = await slack.started(2)
    # Both release messages are in flight together; neither thread line has started.
    assert [c.method for c in posts] == ["chat.postMessage"] * 2
    assert all(c.thread_ts is None for c in posts)
    [first] = [c for c in posts if "f95f852" in c.text]
    [other] = [c for c in posts if "bbbbbbb" in c.text]

    other.answer.set()  # the second message goes on while the first's post still waits
    line = (await slack.started(3))[2]
    assert line.thread_ts is not None and "Deploying" in line.text
    line.answer.set()
    assert not first.answer.is_set() and len(slack.calls) == 3

    first.answer.set()
    await answer_until_done(slack, round_)
    lines = [c.thread_ts for c in slack.calls if c.method == "chat.postMessage" and c.thread_ts]
    assert len(lines) == 2 and len(set(lines)) == 2  # one line in each thread
    await answer_until_done(slack, asyncio.create_task(bot.runtime.worker.drain()))
    with bot.runtime.db.read() as session:
        rows = session.exec(select(OutboxMessage)).all()
        assert {row.status for row in rows if row.key.startswith("deployment:")} == {"sent"}


async def answer_all_but_edits(slack: GatedSlack, edits: int) -> Call:
    """Answer every call but edits until the `edits`-th edit arrives; return that edit."""
    while True:
        for call in slack.calls:
            if call.method != "chat.update":
                call.answer.set()
        found = [c for c in slack.calls if c.method == "chat.update"]
        if len(found) >= edits:
            return found[edits - 1]
        await slack.started(len(slack.calls) + 1)


async def test_two_edits_of_one_message_go_out_in_order(gated: tuple[Bot, GatedSlack]) -> None:
    bot, slack = gated
    worker = bot.runtime.worker
    await deploy(bot, "queued")
    await answer_until_done(slack, asyncio.create_task(worker.drain()))
    edits_before = sum(c.method == "chat.update" for c in slack.calls)

    await deploy(bot, "in_progress")
    first_round = asyncio.create_task(worker.drain_round())
    first = await answer_all_but_edits(slack, edits_before + 1)
    await deploy(bot, "success")  # a second edit of the same message, queued meanwhile
    calls = len(slack.calls)
    await worker.drain_round()  # other messages' rows may go; this one waits for its edit
    assert slack.calls[calls:] == []

    first.answer.set()
    await answer_until_done(slack, first_round)
    await answer_until_done(slack, asyncio.create_task(worker.drain()))
    updates = [c.text for c in slack.calls if c.method == "chat.update"][edits_before:]
    assert updates[0] == first.text and "Deploying" in first.text
    assert "Deploying" not in updates[-1] and len(updates) >= 2  # the later state, last


async def test_a_429_on_chat_update_holds_every_chat_update_until_retry_after_but_not_posts(
    bot: Bot, slack: FakeSlackWebApi, clock: FrozenClock
) -> None:
    await deploy(bot, "in_progress")
    await deploy(bot, "in_progress", sha=SHA_B, deployment_id=4242)
    await bot.send_outbox()
    before = len(slack.calls_to("chat.update"))

    def edits() -> int:
        return len(slack.calls_to("chat.update")) - before

    slack.fail_next("chat.update", status=429, retry_after=30)
    await deploy(bot, "success")
    await bot.send_outbox()
    assert edits() == 1  # the 429

    await deploy(bot, "success", sha=SHA_B, deployment_id=4242)
    await deploy(bot, "in_progress", sha=SHA_C, deployment_id=4343)
    await bot.send_outbox()
    assert edits() == 1  # the other edit was held, never sent
    assert len(slack.messages(CHANNEL)) == 3  # posts were not held

    clock.advance(seconds=29)
    await bot.send_outbox()
    assert edits() == 1
    clock.advance(seconds=1.5)
    await bot.send_outbox()
    assert edits() >= 3  # both held edits went out (and their follow-ups)
    for message in slack.messages(CHANNEL)[:2]:  # both show the success, not the rollout
        assert "Deploying" not in message["text"] and message["edited"]
    with bot.runtime.db.read() as session:
        rows = session.exec(select(OutboxMessage)).all()
        assert {row.status for row in rows if row.kind.startswith("slack.")} == {"sent"}
        assert all(row.attempts == 0 for row in rows)  # a rate limit is not a failed attempt


async def test_rate_limits_do_not_grow_the_backoff_of_server_errors(
    bot: Bot, slack: FakeSlackWebApi, clock: FrozenClock
) -> None:
    slack.fail_next("chat.postMessage", status=429, retry_after=30, times=5)
    await deploy(bot, "in_progress")
    for _ in range(5):
        await bot.send_outbox()
        clock.advance(seconds=31)
    slack.fail_next("chat.postMessage", status=500, error="internal_error")
    await bot.send_outbox()
    with bot.runtime.db.read() as session:
        row = session.get(OutboxMessage, 1)
    assert row is not None and row.attempts == 1
    # The first backoff step (1 s, jitter at most +50 %), not the sixth (32 s or more).
    assert row.next_attempt_at - clock.now() <= timedelta(seconds=1.5)
    clock.advance(seconds=1.6)
    await bot.send_outbox()
    assert len(slack.messages(CHANNEL)) == 1


# --- after an outage ---------------------------------------------------------------------


def pending_rows(bot: Bot) -> list[OutboxMessage]:
    with bot.runtime.db.read() as session:
        rows = session.exec(select(OutboxMessage).where(OutboxMessage.status == "pending")).all()
        return [row for row in rows if row.kind.startswith("slack.")]


async def test_after_a_slack_outage_every_row_is_due_within_seconds_of_recovery(
    bot: Bot, slack: FakeSlackWebApi, clock: FrozenClock
) -> None:
    slack.fail_next("chat.postMessage", status=500, error="internal_error", times=10_000)
    for n in range(10):
        await deploy(bot, "in_progress", sha=f"{n:x}" * 40, deployment_id=5000 + n)
    for _ in range(45):  # 45 s of 500s on every post, the worker trying all along
        await bot.send_outbox()
        clock.advance(seconds=1)
    await bot.send_outbox()

    # Slack was asked a few probes while it was down, not every row again and again.
    assert 2 <= len(slack.calls_to("chat.postMessage")) <= 15
    rows = pending_rows(bot)
    assert len(rows) >= 20  # ten release messages and their thread lines wait
    # No row waits on its own backoff: every one is due within the circuit's longest hold.
    assert max(row.next_attempt_at for row in rows) - clock.now() <= timedelta(seconds=9)

    slack.reset()  # Slack recovers: the faults not yet used are forgotten
    for _ in range(10):  # ten seconds after the recovery
        clock.advance(seconds=1)
        await bot.send_outbox()
    assert pending_rows(bot) == []
    assert len(slack.messages(CHANNEL)) == 10  # each release message once
    for message in slack.messages(CHANNEL):
        assert len(slack.thread(CHANNEL, message["ts"])) >= 1


async def test_a_single_server_error_among_answers_still_backs_off_only_its_own_row(
    bot: Bot, slack: FakeSlackWebApi, clock: FrozenClock
) -> None:
    await deploy(bot, "in_progress")
    await bot.send_outbox()
    slack.fail_next("chat.update", status=503, error="service_unavailable")
    await deploy(bot, "success")
    await deploy(bot, "in_progress", sha=SHA_B, deployment_id=4242)
    await bot.send_outbox()
    # The other deployment's message went out at once: one 503 is not an outage.
    assert len(slack.messages(CHANNEL)) == 2
    [failed] = [r for r in pending_rows(bot) if r.attempts]  # the rest wait behind it
    assert failed.kind == outbox.SLACK_MESSAGE and failed.attempts == 1
    assert failed.last_error is not None
    assert "service_unavailable" in failed.last_error
    clock.advance(seconds=1.6)
    await bot.send_outbox()
    assert pending_rows(bot) == []
    assert "Deploying" not in slack.messages(CHANNEL)[0]["text"]


# --- two workers on one database ------------------------------------------------------------


@pytest.fixture
def two_databases(database_url: str) -> AsyncIterator[tuple[Database, Database]]:
    first, second = Database(make_engine(database_url)), Database(make_engine(database_url))
    yield first, second
    first.dispose()
    second.dispose()


def worker_on(db: Database, clock: FrozenClock, config: Config, slack: GatedSlack) -> OutboxWorker:
    return OutboxWorker(
        db=db, clock=clock, config=config, slack=slack, renderer=Renderer(), metrics=Metrics()
    )


def queue_direct_messages(db: Database, clock: FrozenClock, *texts: str) -> None:
    messages = [DirectMessage(user_id="U0RM1", text=text) for text in texts]
    db.write(lambda s: outbox.enqueue_many(s, messages, now=clock.now()))


def statuses(db: Database) -> list[tuple[str, str]]:
    with db.read() as session:
        rows = session.exec(select(OutboxMessage).order_by(OutboxMessage.id)).all()
        return [(row.payload["text"], row.status) for row in rows]


async def test_a_lease_renewed_while_a_call_is_in_flight_keeps_the_row_from_other_workers(
    two_databases: tuple[Database, Database], clock: FrozenClock, example_config: Config
) -> None:
    db_a, db_b = two_databases
    queue_direct_messages(db_a, clock, "first", "second")
    slack_a, slack_b = GatedSlack(), GatedSlack()
    a = worker_on(db_a, clock, example_config, slack_a)
    b = worker_on(db_b, clock, example_config, slack_b)

    round_a = asyncio.create_task(a.drain_round())
    [slow] = await slack_a.started(1)
    for _ in range(4):  # 4 x 50 s: far past one 60 s lease, renewed all along
        clock.advance(seconds=50)
        assert await a.renew_leases() == set()
        assert await b.drain_round() == 0
    slow.answer.set()
    [_, second] = await slack_a.started(2)
    second.answer.set()
    await asyncio.wait_for(round_a, timeout=WAIT)

    assert slack_b.calls == []
    assert [c.text for c in slack_a.calls] == ["first", "second"]
    assert statuses(db_a) == [("first", "sent"), ("second", "sent")]


async def test_a_row_whose_lease_was_lost_is_never_sent_again_by_the_first_worker(
    two_databases: tuple[Database, Database], clock: FrozenClock, example_config: Config
) -> None:
    db_a, db_b = two_databases
    queue_direct_messages(db_a, clock, "first", "second")
    slack_a, slack_b = GatedSlack(), GatedSlack()
    a = worker_on(db_a, clock, example_config, slack_a)
    b = worker_on(db_b, clock, example_config, slack_b)

    round_a = asyncio.create_task(a.drain_round())
    [stalled] = await slack_a.started(1)
    clock.advance(seconds=61)  # A never renewed: its lease ran out, B takes both rows over
    round_b = asyncio.create_task(b.drain_round())
    for count in (1, 2):
        (await slack_b.started(count))[-1].answer.set()
    assert await asyncio.wait_for(round_b, timeout=WAIT) == 2
    assert await a.renew_leases() == {1, 2}

    stalled.answer.set()  # A's call in flight ends: A neither settles it nor sends the next
    await asyncio.wait_for(round_a, timeout=WAIT)
    assert [c.text for c in slack_a.calls] == ["first"]
    assert [c.text for c in slack_b.calls] == ["first", "second"]
    assert statuses(db_a) == [("first", "sent"), ("second", "sent")]


async def test_a_row_lost_to_another_worker_and_given_back_is_sent_by_the_first_again(
    two_databases: tuple[Database, Database], clock: FrozenClock, example_config: Config
) -> None:
    db_a, db_b = two_databases
    queue_direct_messages(db_a, clock, "first")
    slack_a, slack_b = GatedSlack(), GatedSlack()
    a = worker_on(db_a, clock, example_config, slack_a)
    b = worker_on(db_b, clock, example_config, slack_b)

    round_a = asyncio.create_task(a.drain_round())
    [stalled] = await slack_a.started(1)
    clock.advance(seconds=61)  # A's lease runs out; B takes the row over
    round_b = asyncio.create_task(b.drain_round())
    await slack_b.started(1)
    assert await a.renew_leases() == {1}
    round_b.cancel()  # B is shut down past its grace: it gives the row back unsent
    with contextlib.suppress(asyncio.CancelledError):
        await round_b
    stalled.answer.set()
    await asyncio.wait_for(round_a, timeout=WAIT)
    assert statuses(db_a) == [("first", "pending")]

    round_again = asyncio.create_task(a.drain_round())  # A alone now: it sends the row
    (await slack_a.started(2))[-1].answer.set()
    assert await asyncio.wait_for(round_again, timeout=WAIT) == 1
    assert statuses(db_a) == [("first", "sent")]


def test_the_concurrency_is_a_setting() -> None:
    assert load_settings({}).outbox_concurrency == 100
    assert load_settings({"RELEASEBOT_OUTBOX_CONCURRENCY": "32"}).outbox_concurrency == 32
    with pytest.raises(ValueError, match="RELEASEBOT_OUTBOX_CONCURRENCY"):
        load_settings({"RELEASEBOT_OUTBOX_CONCURRENCY": "0"})


async def test_a_row_that_could_not_be_marked_attempted_is_given_back_not_held_forever(
    two_databases: tuple[Database, Database],
    clock: FrozenClock,
    example_config: Config,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The database went away between the claim and the send (a restart): nothing went
    out, and the row is free to be sent as soon as the database is back, rather than kept
    leased (and renewed) by a worker that will never send it."""
    db, _ = two_databases
    queue_direct_messages(db, clock, "only")
    slack = GatedSlack()
    worker = worker_on(db, clock, example_config, slack)
    real_begin = outbox.begin_attempts
    failures: list[bool] = []

    def database_down_once(*args: Any, **kwargs: Any) -> Any:
        if not failures:
            failures.append(True)
            raise sa.exc.OperationalError("UPDATE", {}, Exception("connection refused"))
        return real_begin(*args, **kwargs)

    monkeypatch.setattr(outbox, "begin_attempts", database_down_once)
    assert await worker.drain_round() == 1
    assert failures and slack.calls == []
    assert await worker.renew_leases() == set()  # holds nothing: there is nothing to renew

    sending = asyncio.create_task(worker.drain_round())  # at once, no lease to wait out
    (await slack.started(1))[-1].answer.set()
    assert await asyncio.wait_for(sending, timeout=WAIT) == 1
    assert [c.text for c in slack.calls] == ["only"]
    assert statuses(db) == [("only", "sent")]


class FailingFor(GatedSlack):
    """Answers every call once the test says so; a call with `failing` text fails with a
    server error."""

    def __init__(self, failing: str) -> None:
        super().__init__()
        self._failing = failing

    async def post_message(self, *, channel: str, text: str, **kwargs: Any) -> PostedMessage:
        posted = await super().post_message(channel=channel, text=text, **kwargs)
        if text == self._failing:
            raise DeliveryFailed("chat.postMessage: internal_error", retryable=True, status=500)
        return posted


async def test_an_outcome_that_cannot_be_recorded_leaves_the_rows_sent_beside_it_marked_sent(
    two_databases: tuple[Database, Database],
    clock: FrozenClock,
    example_config: Config,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The lanes' marks are written together; one that fails (the database refuses the
    failed row's retry) must not take down the marks written with it: the rows Slack took
    are marked sent, and only the failed row waits for its lease to run out."""
    db, _ = two_databases
    for user, text in (("U0RM1", "first"), ("U0RM2", "refused"), ("U0RM3", "third")):
        db.write(
            lambda s, u=user, t=text: outbox.enqueue(
                s, DirectMessage(user_id=u, text=t), now=clock.now()
            )
        )
    slack = FailingFor("refused")
    worker = worker_on(db, clock, example_config, slack)

    def refused(*args: Any, **kwargs: Any) -> bool:
        raise sa.exc.OperationalError("UPDATE", {}, Exception("disk I/O error"))

    monkeypatch.setattr(outbox, "mark_retry", refused)
    sending = asyncio.create_task(worker.drain_round())
    for call in await slack.started(3):
        call.answer.set()  # all three answered at once: their marks go out together
    assert await asyncio.wait_for(sending, timeout=WAIT) == 3
    assert statuses(db) == [("first", "sent"), ("refused", "pending"), ("third", "sent")]
    with db.read() as session:
        refused_row = session.exec(
            select(OutboxMessage).where(OutboxMessage.status == "pending")
        ).one()
    assert refused_row.claimed_until is not None  # still leased: tried again once it runs out


async def test_lanes_waiting_on_a_group_cancelled_with_the_loop_are_not_left_waiting(
    two_databases: tuple[Database, Database],
    clock: FrozenClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Shutting down while a group of lane writes is being written: the lanes waiting on
    that group, and on the next, end (cancelled) instead of waiting for answers that never
    come, so the worker's shutdown is not held up by them."""
    db, _ = two_databases
    writing, release, written = threading.Event(), threading.Event(), threading.Event()
    real_write = db.write

    def slow_write(fn: Any, **kwargs: Any) -> Any:
        writing.set()
        release.wait(WAIT)
        try:
            return real_write(fn, **kwargs)
        finally:
            written.set()

    monkeypatch.setattr(db, "write", slow_write)
    writes = LaneWrites(db, clock, outbox.LEASE)
    first = asyncio.create_task(writes.write(lambda s: 1))
    await asyncio.to_thread(writing.wait, WAIT)  # the first group is in the database
    second = asyncio.create_task(writes.write(lambda s: 2))  # waits for the next group
    await asyncio.sleep(0)
    group = writes._writing
    assert group is not None
    group.cancel()
    try:
        for lane in (first, second):
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(lane, timeout=WAIT)
    finally:
        release.set()
        await asyncio.to_thread(written.wait, WAIT)  # the database is closed after it
