"""Replicas share one database: each job tick runs once, each delivery is applied once.

Two app instances (two `create_app` on the same database URL, one process) stand for two
replicas. Their schedulers' jobs are called at the same tick, as both schedulers would fire
them; their appliers drain the same stored deliveries at the same time. A web instance
starts no background loop; a worker starts the applier and the outbox worker.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.cli import main
from bot.outside import Overrides
from bot.scheduling import CLAIMED, SKIPPED, build_scheduler, register_jobs, tick_of
from bot.services import audit
from bot.store.tables import Deployment, JobRun, OutboxMessage, WebhookDelivery
from bot.usecases import jobs
from integrations.sandbox.webapi import FakeSlackWebApi
from tests.conftest import Bot, BotFactory
from tests.fakes import FrozenClock
from tests.helpers import (
    GENERIC_SECRET,
    SHA_A,
    SHA_B,
    deployment_status,
    encode,
    generic_body,
    github_headers,
    rows,
    signed_headers,
)

ENV = {"RELEASEBOT_GENERIC_WEBHOOK_SECRET": GENERIC_SECRET}


@asynccontextmanager
async def replicas(
    bot_factory: BotFactory, clock: FrozenClock, n: int = 2, **overrides: Any
) -> AsyncIterator[list[Bot]]:
    chosen = {
        "clock": clock,
        "start_scheduler": False,
        "run_outbox_worker": False,
        "apply_before_response": False,
        **overrides,
    }
    async with AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(bot_factory(env=ENV, overrides=Overrides(**chosen)))
            for _ in range(n)
        ]


def scheduled(bot: Bot) -> dict[str, Any]:
    """The jobs a replica's scheduler would fire, by id (a scheduler of its own each)."""
    scheduler: AsyncIOScheduler = build_scheduler()
    register_jobs(scheduler, bot.runtime)
    return {job.id: job for job in scheduler.get_jobs()}


async def fire(job: Any) -> Any:
    return await job.func(*job.args)


async def test_two_replicas_run_each_job_tick_once(
    bot_factory: BotFactory, clock: FrozenClock
) -> None:
    async with replicas(bot_factory, clock) as (one, two):
        first, second = scheduled(one), scheduled(two)
        for job_id in sorted(CLAIMED & set(first)):
            results = await asyncio.gather(fire(first[job_id]), fire(second[job_id]))
            assert sorted(r == SKIPPED for r in results) == [False, True], job_id
        # The weekly digest both schedulers fired is queued once.
        digests = [r for r in rows(one, OutboxMessage) if r.kind == "slack.digest"]
        assert len(digests) == 1

        # The next tick of the gate sweep runs once again; the same tick never twice.
        assert await fire(second["gates.sweep"]) == SKIPPED
        clock.advance(seconds=30)
        results = await asyncio.gather(fire(first["gates.sweep"]), fire(second["gates.sweep"]))
        assert sorted(r == SKIPPED for r in results) == [False, True]
        sweeps = [r for r in rows(one, JobRun) if r.job_id == "gates.sweep"]
        assert len(sweeps) == 2 and all(r.finished_at is not None for r in sweeps)


async def test_a_crashed_holders_claim_expires(bot_factory: BotFactory, clock: FrozenClock) -> None:
    async with replicas(bot_factory, clock, n=1) as (bot,):
        digest = scheduled(bot)["dora.weekly_digest"]
        tick = tick_of(clock.now(), 3600)
        # A replica claimed this hour's digest and died before finishing it.
        assert await jobs.claim(bot.runtime.context, job_id=digest.id, tick_at=tick, holder="gone")
        clock.advance(minutes=1)
        assert await fire(digest) == SKIPPED
        clock.advance(seconds=jobs.LEASE_SECONDS)  # a restart catching up the missed run
        assert await fire(digest) is True
        [run] = rows(bot, JobRun)
        assert run.holder != "gone" and run.finished_at is not None


async def post_all(bots: list[Bot]) -> list[str]:
    """Deliveries about three deployments, stored through both replicas in turn."""
    sent: list[tuple[str, bytes, dict[str, str]]] = []
    for n, (state, sha) in enumerate(
        [("in_progress", SHA_A), ("success", SHA_A), ("in_progress", SHA_B), ("failure", SHA_B)]
    ):
        body = encode(deployment_status(state, sha=sha))
        sent.append(
            ("/webhooks/github", body, github_headers("deployment_status", body, delivery=f"g-{n}"))
        )
    for n, status in enumerate(["started", "succeeded"]):
        body = encode(generic_body(status))
        sent.append(
            ("/webhooks/generic", body, signed_headers(body, GENERIC_SECRET, delivery=f"p-{n}"))
        )
    for n, (path, body, headers) in enumerate(sent):
        answer = await bots[n % 2].post(path, body, headers)
        assert answer.json()["status"] == "accepted", answer.text
    return [
        headers.get("x-github-delivery") or headers["x-releasebot-delivery"]
        for _, _, headers in sent
    ]


async def test_two_replicas_apply_each_delivery_once_in_order(
    bot_factory: BotFactory, clock: FrozenClock, slack: FakeSlackWebApi
) -> None:
    async with replicas(bot_factory, clock) as (one, two):
        await post_all([one, two])
        applied = await asyncio.gather(one.runtime.applier.drain(), two.runtime.applier.drain())
        while any(d.outcome == "pending" for d in rows(one, WebhookDelivery)):
            applied += await asyncio.gather(
                one.runtime.applier.drain(), two.runtime.applier.drain()
            )
        assert sum(applied) == 6
        deliveries = rows(one, WebhookDelivery)
        assert [(d.outcome, d.attempts) for d in deliveries] == [("accepted", 1)] * 6
        states = {(d.service, d.sha): d.state for d in rows(one, Deployment)}
        # In arrival order per service and environment, whichever replica applied them.
        assert states == {
            ("checkout", SHA_A): "verifying",
            ("checkout", SHA_B): "failed",
            ("payments-batch", SHA_A): "succeeded",
        }
        with one.runtime.db.read() as session:
            assert audit.verify_chain(session)[1] is None
        await asyncio.gather(one.send_outbox(), two.send_outbox())
        assert len(slack.messages("#checkout-deploys")) == 2  # one per deployment


async def test_a_web_replica_runs_no_background_loop_and_a_worker_does(
    bot_factory: BotFactory, clock: FrozenClock
) -> None:
    def loops() -> set[str]:
        return {t.get_name() for t in asyncio.all_tasks()} & {"applier", "outbox-worker"}

    overrides = Overrides(clock=clock, start_scheduler=False, run_outbox_worker=True)
    async with bot_factory(env={"RELEASEBOT_ROLE": "web"}, overrides=overrides):
        assert loops() == set()
    async with bot_factory(env={"RELEASEBOT_ROLE": "worker"}, overrides=overrides):
        assert loops() == {"applier", "outbox-worker"}
    with pytest.raises(SystemExit):
        main(["serve", "--role", "everything"])
