"""While webhooks arrive, the applier holds back so requests are answered at the speed of
storing; it never holds a backlog back for long, so a sustained load does not starve it."""

from __future__ import annotations

from bot.config import Config
from bot.domain.ingest import Delivery
from bot.metrics import Metrics
from bot.services.delivery_work import Work
from bot.services.ingest import store_one, to_store
from bot.store.db import Database
from bot.usecases.apply import BATCH, BUSY_BATCH, Applier, RequestsFirst
from integrations.github import payloads
from tests.conftest import BotFactory
from tests.fakes import FrozenClock
from tests.helpers import SHA_A, deployment_status, encode


def test_a_burst_is_held_back_in_small_batches_until_requests_let_up() -> None:
    policy = RequestsFirst(quiet=0.02, longest=2.0)
    policy.stored(10.000)
    assert policy.hold(10.005)  # a delivery stored 5 ms ago: wait for a quiet moment
    assert policy.batch(10.005, BATCH) == BUSY_BATCH
    policy.stored(10.010)
    assert policy.hold(10.015)
    assert not policy.hold(10.031)  # 21 ms without a delivery: apply now, a full batch
    assert policy.batch(10.031, BATCH) == BATCH


def test_a_backlog_is_held_back_at_most_the_longest_hold_then_applied_in_full() -> None:
    policy = RequestsFirst(quiet=0.02, longest=2.0)
    now = 10.0
    held = []
    while now < 13.0:  # a delivery every 10 ms for three seconds: never quiet
        policy.stored(now)
        held.append((now, policy.hold(now + 0.001), policy.batch(now + 0.001, BATCH)))
        now += 0.01
    assert all(hold and size == BUSY_BATCH for at, hold, size in held if at < 11.99)
    assert all(not hold and size == BATCH for at, hold, size in held if at > 12.01)


def test_once_drained_the_next_burst_is_held_back_again() -> None:
    policy = RequestsFirst(quiet=0.02, longest=2.0)
    policy.stored(10.0)
    assert policy.hold(10.001)
    policy.stored(12.5)
    assert not policy.hold(12.501)  # the same backlog, held back long enough
    policy.drained()
    policy.stored(20.0)
    assert policy.hold(20.001)  # a new burst after the backlog was applied


def test_a_steady_trickle_is_applied_as_it_arrives() -> None:
    policy = RequestsFirst(quiet=0.02, longest=2.0)
    policy.stored(10.0)
    assert not policy.hold(10.1)  # ten a second: each one finds a quiet moment
    assert policy.batch(10.1, BATCH) == BATCH


async def test_a_worker_counts_deliveries_other_replicas_store_as_requests_arriving(
    db: Database, clock: FrozenClock, example_config: Config
) -> None:
    """`--role worker` stores nothing itself: a delivery a web replica stored since its last
    look is what tells it requests are arriving."""
    worker = Applier(
        db=db,
        clock=clock,
        config=example_config,
        metrics=Metrics(),
        wake_outbox=lambda: None,
        max_attempts=3,
        watch_arrivals=True,
    )
    assert not await worker.notice_arrivals()  # the first look learns where things stand

    body = deployment_status("in_progress", sha=SHA_A)
    parsed = payloads.parse("deployment_status", body)
    delivery = Delivery("github", "from-a-web-replica", "deployment_status", encode(body))
    item = to_store(
        now=clock.now(), config=example_config, delivery=delivery, work=Work(event=parsed.event)
    )
    db.write(lambda session: store_one(session, item))

    assert await worker.notice_arrivals()
    assert not await worker.notice_arrivals()  # nothing stored since


async def test_a_worker_and_a_postgresql_replica_watch_what_other_replicas_store(
    bot_factory: BotFactory,
) -> None:
    async with bot_factory(env={"RELEASEBOT_ROLE": "worker"}) as worker:
        assert worker.runtime.applier.watching_arrivals
    async with bot_factory() as replica:  # role all
        on_postgresql = replica.runtime.context.db.engine.dialect.name == "postgresql"
        assert replica.runtime.applier.watching_arrivals == on_postgresql
