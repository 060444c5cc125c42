"""While the database cannot be reached, webhooks are still answered 202: each delivery is
held in this replica's local spool and stored, in arrival order and once, when the database
answers again, even after a restart in between. A full spool answers 503 as before.

The app runs as `releasebot serve` does (store, answer, then apply), with no background
loop: each test drains the spool and the applier itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from bot.outside import Overrides
from bot.store.tables import Deployment, WebhookDelivery
from bot.usecases.spooled import SPOOLED
from tests.conftest import Bot, BotFactory
from tests.fakes import FrozenClock
from tests.helpers import (
    SHA_A,
    database_unreachable,
    deployment_status,
    encode,
    github_headers,
    rows,
)


@asynccontextmanager
async def storing_bot(
    bot_factory: BotFactory, clock: FrozenClock, **env: str
) -> AsyncIterator[Bot]:
    overrides = Overrides(
        clock=clock, start_scheduler=False, run_outbox_worker=False, apply_before_response=False
    )
    async with bot_factory(env=env, overrides=overrides) as bot:
        yield bot


async def deliver(bot: Bot, state: str, delivery: str) -> Any:
    body = encode(deployment_status(state, sha=SHA_A))
    headers = github_headers("deployment_status", body, delivery=delivery)
    return await bot.post("/webhooks/github", body, headers)


def stored_ids(bot: Bot) -> list[str]:
    return sorted(d.delivery_id for d in rows(bot, WebhookDelivery))


async def test_deliveries_while_the_database_is_down_are_answered_and_stored_once_it_is_back(
    bot_factory: BotFactory, clock: FrozenClock
) -> None:
    async with storing_bot(bot_factory, clock) as bot:
        with database_unreachable(bot.runtime.db.engine):
            answers = [
                await deliver(bot, "in_progress", "d-1"),
                await deliver(bot, "in_progress", "d-1"),  # GitHub's redelivery of it
            ]
            # Nothing can be stored while the database is down: the spool keeps them, and
            # the replica stays ready, so a load balancer keeps sending webhooks here.
            assert await bot.runtime.spool_drainer.drain() == 0
            ready = await bot.http.get("/readyz")
            assert ready.status_code == 200
            report = ready.json()
            assert "database" in report["down"]
            assert report["dependencies"]["spool"] == {"ok": True, "held": 2, "limit": 100_000}
            assert "held in this replica's spool" in report["reason"]
            exposition = await bot.http.get("/metrics")
            assert exposition.status_code == 200
            assert "releasebot_spool_held 2.0" in exposition.text
        # Back up, before the spool is drained: a new delivery queues behind the held ones,
        # so the success is never stored before the in_progress it follows.
        answers.append(await deliver(bot, "success", "d-2"))
        assert [a.status_code for a in answers] == [202, 202, 202]
        assert {a.json()["detail"] for a in answers} == {SPOOLED}
        assert stored_ids(bot) == []

        assert await bot.runtime.spool_drainer.drain() == 3
        await bot.runtime.applier.drain()

        assert stored_ids(bot) == ["d-1", "d-2"]  # the redelivery was a duplicate
        [deployment] = rows(bot, Deployment)
        assert (deployment.sha, deployment.state) == (SHA_A, "verifying")
        assert bot.runtime.context.spool is not None and bot.runtime.context.spool.count == 0
        # Drained, the spool is out of the way again: the next delivery goes to the database.
        answer = await deliver(bot, "success", "d-3")
        assert answer.json() == {"status": "accepted", "delivery": "d-3"}


async def test_held_deliveries_survive_a_restart_and_are_stored_by_the_next_start(
    bot_factory: BotFactory, clock: FrozenClock
) -> None:
    async with storing_bot(bot_factory, clock) as bot:
        with database_unreachable(bot.runtime.db.engine):
            assert (await deliver(bot, "in_progress", "r-1")).status_code == 202
    # The process stopped (or crashed) with the delivery still in its spool.
    async with storing_bot(bot_factory, clock) as bot:
        assert stored_ids(bot) == []
        assert await bot.runtime.spool_drainer.drain() == 1
        await bot.runtime.applier.drain()
        assert stored_ids(bot) == ["r-1"]
        assert [d.state for d in rows(bot, Deployment)] == ["in_progress"]


async def test_a_full_spool_answers_503_to_retry_and_holds_nothing(
    bot_factory: BotFactory, clock: FrozenClock
) -> None:
    async with storing_bot(bot_factory, clock, RELEASEBOT_SPOOL_MAX="0") as bot:
        with database_unreachable(bot.runtime.db.engine):
            answer = await deliver(bot, "in_progress", "f-1")
            ready = await bot.http.get("/readyz")
        assert answer.status_code == 503
        assert answer.headers["retry-after"] == "5"
        assert ready.status_code == 503
        assert ready.json()["dependencies"]["spool"] == {"ok": False, "held": 0, "limit": 0}
        assert answer.json()["error"] == "database unavailable; try again"
        assert bot.runtime.context.spool is not None and bot.runtime.context.spool.count == 0
        assert await bot.runtime.spool_drainer.drain() == 0
        assert stored_ids(bot) == []


async def test_a_spool_file_that_is_not_a_delivery_is_set_aside_and_the_rest_stored(
    bot_factory: BotFactory, clock: FrozenClock
) -> None:
    async with storing_bot(bot_factory, clock) as bot:
        with database_unreachable(bot.runtime.db.engine):
            await deliver(bot, "in_progress", "s-1")
        spool = bot.runtime.context.spool
        assert spool is not None
        [held] = spool.paths()
        broken = held.with_name("00000000000000000000-0-000000000.json")
        broken.write_text("{not json")
    async with storing_bot(bot_factory, clock) as bot:
        spool = bot.runtime.context.spool
        assert spool is not None and spool.count == 2
        assert await bot.runtime.spool_drainer.drain() == 1
        assert stored_ids(bot) == ["s-1"]
        assert spool.count == 0
        assert broken.with_name(broken.name + ".unreadable").exists()
