"""The fast ingest path keeps its promises: group commit, batched outbox claims and views.

`Database.submit_write` runs the writes that arrive together in one transaction, each in its
own savepoint: one that fails rolls back alone, one the database refuses is retried on its
own, and the audit chain stays one chain. `claim_due` leases several rows of a key at once
but never one behind an earlier pending row. `release_views` reads what `release_view`
reads, for many deployments at once.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from typing import Any, ClassVar

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from bot.config import Config
from bot.domain.ingest import Delivery, IngestResult
from bot.services import audit, outbox, verification
from bot.services.delivery_work import Work
from bot.services.ingest import (
    ToStore,
    insert_many,
    record_delivery,
    store_many,
    store_one,
    to_store,
)
from bot.services.release_views import release_view, release_views
from bot.store.db import Database
from bot.store.tables import AuditEvent, Deployment, OutboxMessage, Release, WebhookDelivery
from integrations.github import payloads
from integrations.sandbox.webapi import FakeSlackWebApi
from tests.conftest import Bot
from tests.fakes import FrozenClock
from tests.helpers import SHA_A, SHA_B, deployment_status, encode, github_headers


def held_group(db: Database) -> tuple[threading.Event, Future[None]]:
    """Occupy the group writer until the event is set, so the writes submitted meanwhile
    queue up and are committed together in the next group."""
    release = threading.Event()
    started = threading.Event()

    def hold(_: Session) -> None:
        started.set()
        assert release.wait(10)

    future = db.submit_write(hold)
    assert started.wait(10)
    return release, future


def note(clock: FrozenClock, action: str) -> Callable[[Session], str]:
    def write(session: Session) -> str:
        audit.append(session, at=clock.now(), actor="test", action=action, subject="group")
        return action

    return write


def actions(db: Database) -> list[str]:
    with db.read() as session:
        rows = session.exec(select(AuditEvent).order_by(AuditEvent.seq)).all()
        return [row.action for row in rows]


def test_a_failing_write_in_a_group_rolls_back_alone_and_the_chain_holds(
    db: Database, clock: FrozenClock
) -> None:
    release, held = held_group(db)

    def fails(session: Session) -> None:
        audit.append(session, at=clock.now(), actor="test", action="test.bad", subject="group")
        raise RuntimeError("boom")

    first = db.submit_write(note(clock, "test.first"))
    bad = db.submit_write(fails)
    second = db.submit_write(note(clock, "test.second"))
    release.set()
    held.result(10)

    assert first.result(10) == "test.first"
    assert second.result(10) == "test.second"
    with pytest.raises(RuntimeError, match="boom"):
        bad.result(10)
    assert actions(db) == ["test.first", "test.second"]
    with db.read() as session:
        assert audit.verify_chain(session) == (2, None)


class Halt(BaseException):
    """Not an Exception: what the group writer does not expect (an interpreter shutdown)."""


def test_writes_a_group_stored_keep_their_answers_when_a_retry_dies(
    db: Database, clock: FrozenClock
) -> None:
    """The group commits the first write; the second is refused and, retried alone, dies
    with a BaseException. The first's caller still learns it was stored."""
    release, held = held_group(db)
    tries: list[int] = []

    def refused_then_dies(session: Session) -> None:
        tries.append(1)
        if len(tries) == 1:
            raise sa.exc.IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed"))
        raise Halt()

    stored = db.submit_write(note(clock, "test.stored"))
    dying = db.submit_write(refused_then_dies)
    release.set()
    held.result(10)

    assert stored.result(10) == "test.stored"
    with pytest.raises(Halt):
        dying.result(10)
    assert actions(db) == ["test.stored"]
    assert db.submit_write(note(clock, "test.after")).result(10) == "test.after"  # writer lives


def test_a_write_the_database_refuses_in_a_group_is_retried_on_its_own(
    db: Database, clock: FrozenClock
) -> None:
    """As if another replica inserted the same release between the check and the insert."""
    table = Release.__table__  # type: ignore[attr-defined]
    tries: list[int] = []

    def make_release(*, check: bool) -> Callable[[Session], str]:
        def write(session: Session) -> str:
            tries.append(1)
            found = session.connection().execute(
                sa.select(table.c.id).where(table.c.service == "checkout")
            )
            if (check or len(tries) > 2) and found.first() is not None:
                return "exists"
            session.connection().execute(
                sa.insert(table), {"service": "checkout", "sha": SHA_A, "created_at": clock.now()}
            )
            audit.append(session, at=clock.now(), actor="test", action="test.r", subject="r")
            return "inserted"

        return write

    release, held = held_group(db)
    first = db.submit_write(make_release(check=True))
    racing = db.submit_write(make_release(check=False))  # skips the check the first time
    release.set()
    held.result(10)

    assert (first.result(10), racing.result(10)) == ("inserted", "exists")
    assert actions(db) == ["test.r"]


def github(
    config: Config, clock: FrozenClock, delivery_id: str, status: str, sha: str = SHA_A
) -> Callable[[Session], IngestResult]:
    body = deployment_status(status, sha=sha)
    parsed = payloads.parse("deployment_status", body)
    delivery = Delivery("github", delivery_id, "deployment_status", encode(body))
    now = clock.now()
    return lambda s: record_delivery(
        s, now=now, config=config, delivery=delivery, event=parsed.event
    )


def test_copies_and_racing_deliveries_in_one_group_are_settled_by_the_database(
    db: Database, clock: FrozenClock, example_config: Config
) -> None:
    release, held = held_group(db)
    futures = [
        db.submit_write(github(example_config, clock, "d-1", "in_progress")),
        db.submit_write(github(example_config, clock, "d-1", "in_progress")),  # a redelivery
        db.submit_write(github(example_config, clock, "d-2", "in_progress")),  # same deployment
        db.submit_write(github(example_config, clock, "d-3", "success")),
        db.submit_write(github(example_config, clock, "d-4", "in_progress", sha=SHA_B)),
    ]
    release.set()
    held.result(10)

    answers = [f.result(10).status for f in futures]
    assert answers == ["accepted", "duplicate", "ignored", "accepted", "accepted"]
    with db.read() as session:
        deployments = session.exec(select(Deployment).order_by(Deployment.id)).all()
        assert [(d.sha, d.state) for d in deployments] == [
            (SHA_A, "verifying"),
            (SHA_B, "in_progress"),
        ]
        checked, broken = audit.verify_chain(session)
        assert broken is None and checked > 5


def stored(config: Config, clock: FrozenClock, delivery_id: str, status: str) -> ToStore:
    body = deployment_status(status, sha=SHA_A)
    parsed = payloads.parse("deployment_status", body)
    delivery = Delivery("github", delivery_id, "deployment_status", encode(body))
    work = Work(event=parsed.event, note=parsed.note)
    return to_store(now=clock.now(), config=config, delivery=delivery, work=work)


def submit_stored(db: Database, item: ToStore) -> asyncio.Task[IngestResult]:
    """A webhook request's store, queued behind whatever holds the group writer."""
    alone = partial(store_one, item=item)
    return asyncio.create_task(db.store_batched(insert_many, item, alone, again=store_many))


@dataclass
class Statements:
    """What the database was asked while a test ran: rows per delivery INSERT, look-ups of
    stored deliveries, and SAVEPOINTs."""

    inserts: list[int] = field(default_factory=list)
    looked_up: int = 0
    savepoints: int = 0

    def __call__(
        self, _conn: Any, _cursor: Any, statement: str, _params: Any, context: Any, *_: Any
    ) -> None:
        words = " ".join(statement.split()).upper()
        if words.startswith("INSERT INTO WEBHOOK_DELIVERY"):
            self.inserts.append(len(context.compiled_parameters))
        elif words.startswith("SELECT") and "FROM WEBHOOK_DELIVERY" in words:
            self.looked_up += 1
        elif words.startswith("SAVEPOINT"):
            self.savepoints += 1


@contextmanager
def watching(db: Database) -> Iterator[Statements]:
    seen = Statements()
    sa.event.listen(db.engine, "before_cursor_execute", seen)
    try:
        yield seen
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", seen)


async def test_deliveries_stored_together_take_one_insert_and_copies_answer_duplicate(
    db: Database, clock: FrozenClock, example_config: Config
) -> None:
    with watching(db) as seen:
        release, held = held_group(db)
        futures = [
            submit_stored(db, stored(example_config, clock, "s-1", "in_progress")),
            submit_stored(db, stored(example_config, clock, "s-1", "in_progress")),  # a copy
            submit_stored(db, stored(example_config, clock, "s-2", "success")),
        ]
        await asyncio.sleep(0)  # each task queues its write behind the held group
        release.set()
        await asyncio.wrap_future(held)
        answers = [(await f).status for f in futures]
    # New deliveries: one statement for the group's two, no look-up, no savepoint.
    assert (seen.inserts, seen.looked_up, seen.savepoints) == ([2], 0, 0)

    with watching(db) as seen:
        again = await submit_stored(db, stored(example_config, clock, "s-2", "success"))
    # A redelivery fails the unique key; the group is written again, looked up first.
    assert again.status == "duplicate"
    assert seen.looked_up == 1

    assert answers == ["accepted", "duplicate", "accepted"]
    with db.read() as session:
        kept = session.exec(select(WebhookDelivery.delivery_id, WebhookDelivery.outcome)).all()
    assert sorted(kept) == [("s-1", "pending"), ("s-2", "pending")]


async def test_deliveries_awaited_on_the_loop_are_answered_together_even_if_one_stops_waiting(
    db: Database, clock: FrozenClock, example_config: Config
) -> None:
    """A webhook request awaits its delivery's group commit on the event loop; one whose
    client went away (its task cancelled) still has its delivery stored, and the others of
    its group get their answers."""
    items = [stored(example_config, clock, f"a-{n}", "in_progress") for n in (1, 2, 3)]
    release, held = held_group(db)
    waiting = [submit_stored(db, item) for item in items]
    await asyncio.sleep(0)  # each task queues its write behind the held group
    waiting[1].cancel()
    release.set()
    await asyncio.wrap_future(held)

    first, third = await waiting[0], await waiting[2]
    assert (first.status, third.status) == ("accepted", "accepted")
    assert waiting[1].cancelled()
    again = await submit_stored(db, items[1])
    assert again.status == "duplicate"  # it was stored though nobody awaited it
    with db.read() as session:
        kept = session.exec(select(WebhookDelivery.delivery_id)).all()
    assert sorted(kept) == ["a-1", "a-2", "a-3"]


async def test_a_delivery_another_replica_stored_meanwhile_is_answered_duplicate(
    db: Database, clock: FrozenClock, example_config: Config
) -> None:
    """The group's insert met the row another replica committed before it: the group is
    written once more, with one look-up for all of it (not one by one), and only that copy
    is a duplicate; nothing else is lost."""
    racing = stored(example_config, clock, "r-1", "in_progress")
    others = [stored(example_config, clock, f"r-{n}", "in_progress") for n in (2, 3, 4)]
    db.write(lambda s: store_one(s, racing))  # the other replica's commit

    with watching(db) as seen:
        release, held = held_group(db)
        futures = [submit_stored(db, item) for item in (racing, *others)]
        await asyncio.sleep(0)  # all queue behind the held group: they are stored together
        release.set()
        await asyncio.wrap_future(held)
        answers = [(await f).status for f in futures]

    assert answers == ["duplicate", "accepted", "accepted", "accepted"]
    assert (seen.inserts, seen.looked_up) == ([4, 3], 1)
    with db.read() as session:
        ids = session.exec(select(WebhookDelivery.delivery_id)).all()
    assert sorted(ids) == ["r-1", "r-2", "r-3", "r-4"]


async def test_when_the_second_try_fails_too_each_delivery_is_stored_alone(
    db: Database, clock: FrozenClock, example_config: Config
) -> None:
    """The careful second try can meet a copy too (its look-up ran before another replica
    committed): then every delivery of the group is stored on its own."""
    racing = stored(example_config, clock, "x-1", "in_progress")
    other = stored(example_config, clock, "x-2", "in_progress")
    db.write(lambda s: store_one(s, racing))  # the other replica's commit
    table = WebhookDelivery.__table__  # type: ignore[attr-defined]

    def missed_it(conn: Any, batch: list[ToStore]) -> list[IngestResult]:
        conn.execute(sa.insert(table), [item.row for item in batch])  # the look-up missed it
        return [item.result for item in batch]

    release, held = held_group(db)
    futures = [
        asyncio.create_task(
            db.store_batched(insert_many, item, partial(store_one, item=item), again=missed_it)
        )
        for item in (racing, other)
    ]
    await asyncio.sleep(0)  # both queue behind the held group: they are stored together
    release.set()
    await asyncio.wrap_future(held)

    assert [(await f).status for f in futures] == ["duplicate", "accepted"]
    with db.read() as session:
        ids = session.exec(select(WebhookDelivery.delivery_id)).all()
    assert sorted(ids) == ["x-1", "x-2"]


async def test_a_redelivery_in_a_group_shared_with_other_writes_fails_only_its_batch(
    db: Database, clock: FrozenClock, example_config: Config
) -> None:
    """Deliveries share a group with another write (an audit record), each in a savepoint
    of its own: the deliveries' insert meets a stored copy and is rolled back to its
    savepoint, then written again with a look-up in a fresh one, and the other write is
    committed with the group."""
    old = stored(example_config, clock, "m-1", "in_progress")
    db.write(lambda s: store_one(s, old))
    with watching(db) as seen:
        release, held = held_group(db)
        deliveries = [
            submit_stored(db, item)
            for item in (old, stored(example_config, clock, "m-2", "success"))
        ]
        other = db.submit_write(note(clock, "test.beside"))
        await asyncio.sleep(0)  # all three queue behind the held group
        release.set()
        await asyncio.wrap_future(held)
        await asyncio.gather(*deliveries)

    # One group: the audit write's savepoint and the deliveries' two (a try, and again).
    assert (seen.inserts, seen.looked_up, seen.savepoints) == ([2, 1], 1, 3)

    assert [(await d).status for d in deliveries] == ["duplicate", "accepted"]
    assert other.result(10) == "test.beside"
    assert actions(db) == ["test.beside"]
    with db.read() as session:
        ids = session.exec(select(WebhookDelivery.delivery_id)).all()
    assert sorted(ids) == ["m-1", "m-2"]


@dataclass(frozen=True)
class Probe:
    """A row of a kind no worker sends: only its key and order matter here."""

    KIND: ClassVar[str] = "test.kind"
    key: str

    def to_payload(self) -> dict[str, Any]:
        return {}


def enqueue(db: Database, clock: FrozenClock, key: str, **values: Any) -> int:
    def write(session: Session) -> int:
        outbox.enqueue(session, Probe(key), now=clock.now())
        table = OutboxMessage.__table__  # type: ignore[attr-defined]
        row_id = int(session.connection().execute(sa.select(sa.func.max(table.c.id))).scalar_one())
        if values:
            session.connection().execute(
                sa.update(table).where(table.c.id == row_id).values(**values)
            )
        return row_id

    return db.write(write)


def test_a_claim_takes_runs_of_rows_per_key_never_one_behind_a_waiting_row(
    db: Database, clock: FrozenClock
) -> None:
    later = clock.now() + timedelta(minutes=5)
    a1, a2 = enqueue(db, clock, "a"), enqueue(db, clock, "a")
    enqueue(db, clock, "b", next_attempt_at=later)  # retrying later: b waits
    b2 = enqueue(db, clock, "b")
    enqueue(db, clock, "c", claimed_until=later)  # being sent by another worker
    c2 = enqueue(db, clock, "c")
    a3 = enqueue(db, clock, "a")

    claimed = db.write(lambda s: outbox.claim_due(s, now=clock.now(), limit=10))
    assert [row.id for row in claimed] == [a1, a2, a3]
    assert db.write(lambda s: outbox.claim_due(s, now=clock.now(), limit=10)) == []

    db.write(lambda s: outbox.release(s, row_ids=[a3]))  # a3 was never tried
    db.write(lambda s: outbox.mark_sent_many(s, row_ids=[a1, a2], now=clock.now()))
    clock.advance(minutes=6)  # b's retry is due, c's lease ran out
    claimed = db.write(lambda s: outbox.claim_due(s, now=clock.now(), limit=10))
    assert {row.id for row in claimed} >= {a3, b2, c2}
    assert [row.id for row in claimed] == sorted(row.id for row in claimed)


def test_release_views_read_what_release_view_reads(
    db: Database, clock: FrozenClock, example_config: Config
) -> None:
    for n, (status, sha) in enumerate(
        [("in_progress", SHA_A), ("success", SHA_A), ("in_progress", SHA_B)]
    ):
        db.write(github(example_config, clock, f"v-{n}", status, sha=sha))
    with db.read() as session:
        ids = [d.id for d in session.exec(select(Deployment)).all() if d.id is not None]
        views = release_views(session, [*ids, 999], config=example_config)
        assert sorted(views) == sorted(ids)
        for deployment_id in ids:
            assert views[deployment_id] == release_view(
                session, deployment_id, config=example_config
            )
            assert views[deployment_id].verification == verification.progress(
                session, deployment_id
            )
        assert any(view.verification for view in views.values())


async def test_one_batch_posts_the_message_once_and_sends_only_its_newest_edit(
    bot: Bot, slack: FakeSlackWebApi
) -> None:
    for status in ("in_progress", "success"):
        body = encode(deployment_status(status))
        answer = await bot.post("/webhooks/github", body, github_headers("deployment_status", body))
        assert answer.status_code == 202
    await bot.send_outbox()

    [message] = slack.messages("#checkout-deploys")
    assert "Verifying" in message["text"]
    # One edit waited for the message through both deliveries, and posted it; the risk
    # assessment then queued one more, sent by the next batch.
    assert len(slack.calls_to("chat.update")) == 1
    replies = slack.thread("#checkout-deploys", message["ts"])[1:]
    # deploying, deployed, verifying: every line is sent, in one reply since they waited
    # together for the message to be posted
    assert [reply["text"].count("\n") + 1 for reply in replies] == [3]
    with bot.runtime.db.read() as session:
        rows = session.exec(select(OutboxMessage)).all()
        assert {row.status for row in rows if row.kind.startswith("slack.")} == {"sent"}


async def test_edits_of_a_posted_message_queued_together_are_one_call(
    bot: Bot, slack: FakeSlackWebApi
) -> None:
    """The message is in Slack; the edits queued since are settled together and only the
    newest is sent: what a backlog after a burst or an outage comes down to."""
    body = encode(deployment_status("in_progress"))
    await bot.post("/webhooks/github", body, github_headers("deployment_status", body))
    await bot.send_outbox()
    updates_before = len(slack.calls_to("chat.update"))
    with bot.runtime.db.read() as session:
        queued_before = len(session.exec(select(OutboxMessage)).all())

    body = encode(deployment_status("success"))
    await bot.post("/webhooks/github", body, github_headers("deployment_status", body))
    with bot.runtime.db.read() as session:
        rows = session.exec(select(OutboxMessage)).all()[queued_before:]
    edits = [row for row in rows if row.kind == "slack.release_message"]
    assert len(edits) == 1  # succeeded, then verifying: one edit for both
    await bot.send_outbox()

    [message] = slack.messages("#checkout-deploys")
    assert "Verifying" in message["text"]
    assert len(slack.calls_to("chat.update")) == updates_before + 1
    with bot.runtime.db.read() as session:
        rows = session.exec(select(OutboxMessage)).all()
        assert {row.status for row in rows if row.kind.startswith("slack.")} == {"sent"}


async def test_a_caller_that_stops_waiting_does_not_stop_later_writes(db: Database) -> None:
    """A webhook request cancelled while its write is queued (a client gone, a shutdown):
    the write still lands, and the group writer goes on serving the next ones."""
    import asyncio
    from datetime import UTC, datetime

    NOW = datetime(2026, 11, 17, 10, 0, tzinfo=UTC)  # noqa: N806

    gate = threading.Event()

    def slow(session: Session) -> int:
        gate.wait(5)
        session.add(Release(service="checkout", sha=SHA_A, created_at=NOW))
        return 1

    def quick(session: Session) -> int:
        session.add(Release(service="checkout", sha=SHA_B, created_at=NOW))
        return 2

    waiting = asyncio.ensure_future(asyncio.wrap_future(db.submit_write(slow)))
    await asyncio.sleep(0)
    waiting.cancel()  # the request goes away while its write waits
    gate.set()
    assert await asyncio.wait_for(asyncio.wrap_future(db.submit_write(quick)), 10) == 2
    with db.read() as session:
        assert sorted(r.sha for r in session.exec(select(Release)).all()) == sorted([SHA_A, SHA_B])
