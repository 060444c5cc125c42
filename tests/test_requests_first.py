"""While requests arrive, the background work of the process (the applier, the outbox worker)
gives way to them: a burst is answered at the speed of storing, a burst on top of a
backlog too, and under a sustained load the work takes turns with the requests, so
neither is starved."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bot.config import Config
from bot.domain.ingest import Delivery
from bot.domain.messages import DirectMessage
from bot.metrics import Metrics
from bot.outbox_worker import OutboxWorker
from bot.ports import PostedMessage
from bot.render import Renderer
from bot.requests_first import LONGEST_HOLD_SECONDS, QUIET_SECONDS, Arrivals, RequestsFirst
from bot.services import applier, outbox
from bot.services.delivery_work import Work
from bot.services.ingest import store_one, to_store
from bot.store.db import Database
from bot.usecases.apply import BUSY_BATCH, Applier
from handlers.routes import RequestMetrics
from integrations.github import payloads
from tests.conftest import BotFactory
from tests.fakes import FrozenClock
from tests.helpers import SHA_A, deployment_status, encode

WAIT = 10.0  # seconds a test waits for the background work to get somewhere before it fails


# --- the rule -------------------------------------------------------------------------------


def test_a_burst_is_held_back_until_requests_let_up() -> None:
    policy = RequestsFirst(quiet=0.02, longest=2.0)
    policy.arrivals.stored(10.000)
    assert policy.hold(10.005)  # a delivery stored 5 ms ago: wait for a quiet moment
    assert policy.busy(10.005)  # (and the step after it is kept small)
    policy.arrivals.stored(10.010)
    assert policy.hold(10.015)
    assert not policy.hold(10.031)  # 21 ms without a delivery: go on, a full step
    assert not policy.busy(10.031)


def test_a_request_being_answered_holds_the_work_back_until_it_goes_stale() -> None:
    """A request is counted from its start, not from its delivery's store: a slow process,
    storing seldom, is not mistaken for a quiet one. But one begun two seconds ago no
    longer counts: a client that sends its headers and then nothing holds nothing back."""
    policy = RequestsFirst(quiet=0.02, longest=2.0)
    request = policy.arrivals.started(10.0)
    assert policy.hold(10.0)
    assert policy.hold(10.5)  # nothing stored for 500 ms, but a request waits
    policy.arrivals.finished(request)
    assert not policy.hold(10.6)
    assert policy.arrivals.in_flight == 0

    policy.arrivals.started(20.0)  # never finished
    assert policy.hold(20.1)
    assert policy.requested(20.1)
    assert not policy.hold(22.1)
    assert not policy.requested(22.1)
    assert policy.arrivals.in_flight == 1  # still open, no longer holding anything back


def test_past_the_longest_hold_the_work_and_the_requests_take_turns() -> None:
    policy = RequestsFirst(quiet=0.02, longest=2.0, longest_pause=0.1)

    def hold(now: float) -> bool:  # a sustained load: a request just begun at every look
        policy.arrivals.started(now)
        return policy.hold(now)

    assert hold(10.0)
    assert hold(11.99)
    assert not hold(12.0)  # held back two seconds: a step now
    assert policy.busy(12.0)  # a small one
    policy.ran(12.0, 12.03)  # the step took 30 ms: the requests get as long
    assert hold(12.031)
    assert hold(12.059)
    assert not hold(12.061)
    policy.ran(12.061, 13.061)  # a step that waited a second (on a lock, on Slack)
    assert hold(13.16)  # costs the requests' turn 100 ms, not a second
    assert not hold(13.162)


def test_once_drained_or_quiet_as_long_the_next_burst_is_held_back_anew() -> None:
    policy = RequestsFirst(quiet=0.02, longest=2.0)

    def burst(start: float, end: float) -> list[bool]:
        """A delivery stored every 10 ms from `start` to `end`, and the work's look at each."""
        holds = []
        for step in range(round((end - start) / 0.01) + 1):
            now = start + step * 0.01
            policy.arrivals.stored(now)
            holds.append(policy.hold(now + 0.001))
        return holds

    holds = burst(10.0, 12.5)
    assert all(holds[:199]) and not any(holds[201:])  # held back two seconds, then turns
    policy.drained(12.6)  # the backlog worked off in a quiet moment
    holds = burst(12.7, 15.0)  # a new burst after it: held back anew
    assert all(holds[:199]) and not any(holds[201:])

    policy.drained(15.0)  # worked off while requests keep arriving ...
    assert not any(burst(15.01, 15.5))  # ... is no new burst: no new two-second hold
    assert not policy.hold(16.0)  # quiet, not for long
    assert not any(burst(16.01, 16.5))  # the same burst going on
    assert not policy.hold(18.0)  # quiet for two seconds ...
    assert all(burst(18.6, 19.0))  # ... so this is a new burst, held back anew


def test_a_steady_trickle_is_worked_as_it_arrives() -> None:
    policy = RequestsFirst(quiet=0.02, longest=2.0)
    policy.arrivals.stored(10.0)
    assert not policy.hold(10.1)  # ten a second: each one finds a quiet moment
    assert not policy.busy(10.1)


# --- what counts as a request ----------------------------------------------------------------


async def test_a_post_counts_as_a_request_arriving_while_it_is_answered_a_read_does_not() -> None:
    arrivals = Arrivals()
    seen: list[tuple[str, int]] = []

    async def look(request: Request) -> JSONResponse:
        seen.append((request.method, arrivals.in_flight))
        return JSONResponse({})

    async def fail(request: Request) -> JSONResponse:
        seen.append((request.method, arrivals.in_flight))
        raise RuntimeError("boom")

    app = Starlette(
        routes=[
            Route("/look", look, methods=["GET", "POST"]),
            Route("/fail", fail, methods=["POST"]),
        ],
        middleware=[Middleware(RequestMetrics, metrics=Metrics(), arrivals=arrivals)],
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bot") as client:
        assert (await client.post("/look")).status_code == 200
        assert (await client.get("/look")).status_code == 200
        assert (await client.post("/fail")).status_code == 500
    assert seen == [("POST", 1), ("GET", 0), ("POST", 1)]
    assert arrivals.in_flight == 0  # each counted out, the failed one too


# --- the applier ----------------------------------------------------------------------------


def store_deliveries(db: Database, clock: FrozenClock, config: Config, count: int) -> None:
    """`count` GitHub deliveries of one deployment's statuses, stored as a web replica would."""
    for index in range(count):
        state = "in_progress" if index % 2 == 0 else "success"
        body = deployment_status(
            state, sha=f"{index // 2 + 1:040x}", deployment_id=1000 + index // 2
        )
        parsed = payloads.parse("deployment_status", body)
        delivery = Delivery("github", f"delivery-{index}", "deployment_status", encode(body))
        item = to_store(
            now=clock.now(), config=config, delivery=delivery, work=Work(event=parsed.event)
        )
        db.write(lambda session, item=item: store_one(session, item))


def pending(db: Database) -> int:
    with db.read() as session:
        return applier.backlog(session).pending


def test_a_batch_ends_where_a_request_comes_in_and_the_rest_waits_its_turn(
    db: Database, clock: FrozenClock, example_config: Config
) -> None:
    store_deliveries(db, clock, example_config, 3)

    def request_arrived() -> bool:
        return True

    done = db.write(
        lambda s: applier.apply_due(
            s,
            now=clock.now(),
            config=example_config,
            limit=16,
            max_attempts=3,
            stop=request_arrived,
        )
    )
    assert (done.applied, done.claimed) == (1, 3)  # still a backlog: the applier goes on
    assert pending(db) == 2
    done = db.write(
        lambda s: applier.apply_due(
            s, now=clock.now(), config=example_config, limit=16, max_attempts=3
        )
    )
    assert done.applied == 2 and pending(db) == 0


class Watched(Arrivals):
    """This process's arrivals as a test drives and watches them. `looked` is set once the
    background work has looked `enough` times (it then holds back, or has gone on); with
    `streaming`, every look finds a request just begun (a sustained load); `mid_batch` runs
    when a batch first asks, between two deliveries, whether a request came in."""

    def __init__(
        self,
        *,
        enough: int = 3,
        streaming: bool = False,
        mid_batch: Callable[[Watched, float], None] | None = None,
    ) -> None:
        super().__init__()
        self.enough = enough
        self.streaming = streaming
        self.mid_batch = mid_batch
        self.looks = 0
        self.looked = asyncio.Event()
        self._loop = asyncio.get_running_loop()

    def busy(
        self, now: float, *, quiet: float = QUIET_SECONDS, stale: float = LONGEST_HOLD_SECONDS
    ) -> bool:
        if quiet == 0.0 and self.mid_batch is not None:  # asked by a batch, in its thread
            self.mid_batch(self, now)
            self.mid_batch = None
        self.looks += 1
        if self.looks >= self.enough:
            self._loop.call_soon_threadsafe(self.looked.set)
        if self.streaming:
            self.started(now)
        return super().busy(now, quiet=quiet, stale=stale)


class Turns(RequestsFirst):
    """The rule as it runs, its answers written down: ("hold", held?) at each look, and
    "ran" after each step."""

    def __init__(self, arrivals: Arrivals, *, longest: float) -> None:
        super().__init__(arrivals, longest=longest)
        self.log: list[tuple[str, bool] | str] = []

    def hold(self, now: float) -> bool:
        held = super().hold(now)
        self.log.append(("hold", held))
        return held

    def ran(self, started: float, ended: float) -> None:
        super().ran(started, ended)
        self.log.append("ran")


def held_back(metrics: Metrics, work: str) -> float:
    """`releasebot_held_back_seconds` for `work`, as /metrics shows it."""
    value = metrics.registry.get_sample_value("releasebot_held_back_seconds_total", {"work": work})
    return value or 0.0


def paused_between_steps(log: list[tuple[str, bool] | str]) -> bool:
    """Whether, after every step but the last, the work held back at least once before
    taking the next one."""
    between = " ".join("ran" if entry == "ran" else str(entry[1]) for entry in log)
    stretches = between.split("ran")[1:-1]  # the looks between two steps
    return bool(stretches) and all("True" in stretch for stretch in stretches)


@contextlib.asynccontextmanager
async def running(worker: Applier | OutboxWorker) -> AsyncIterator[None]:
    """`worker.run()` in a task for the block, stopped (and awaited) after it."""
    task = asyncio.create_task(worker.run(poll_seconds=60))
    try:
        yield
    finally:
        worker.stop()
        await task


def an_applier(
    db: Database,
    clock: FrozenClock,
    config: Config,
    requests: RequestsFirst,
    woken: Callable[[], None],
    metrics: Metrics | None = None,
) -> Applier:
    return Applier(
        db=db,
        clock=clock,
        config=config,
        metrics=metrics or Metrics(),
        wake_outbox=woken,
        max_attempts=3,
        requests=requests,
    )


async def test_the_applier_applies_nothing_while_a_request_of_a_burst_is_answered(
    db: Database, clock: FrozenClock, example_config: Config
) -> None:
    store_deliveries(db, clock, example_config, 2)
    arrivals = Watched()
    applied = asyncio.Event()
    metrics = Metrics()
    requests = RequestsFirst(arrivals)
    worker = an_applier(db, clock, example_config, requests, applied.set, metrics)
    request = arrivals.started(time.monotonic())
    async with running(worker):
        await asyncio.wait_for(arrivals.looked.wait(), WAIT)
        assert pending(db) == 2  # it looked three times and held back each time
        arrivals.finished(request)
        await asyncio.wait_for(applied.wait(), WAIT)
        assert pending(db) == 0
    assert held_back(metrics, "applier") >= 2 * QUIET_SECONDS  # shown in /metrics


async def test_a_batch_a_click_cuts_short_goes_on_once_the_click_is_answered(
    db: Database, clock: FrozenClock, example_config: Config
) -> None:
    """No delivery is stored meanwhile, so nothing wakes the applier: it goes on by itself,
    not at its next poll (a minute here)."""
    store_deliveries(db, clock, example_config, 6)
    clicks: list[int] = []
    arrivals = Watched(enough=10**9, mid_batch=lambda a, now: clicks.append(a.started(now)))
    applied = asyncio.Event()
    worker = an_applier(db, clock, example_config, RequestsFirst(arrivals), applied.set)
    async with running(worker):
        await asyncio.wait_for(applied.wait(), WAIT)
        assert pending(db) == 5  # the click came in after the first delivery
        applied.clear()
        arrivals.enough = arrivals.looks + 3
        await asyncio.wait_for(arrivals.looked.wait(), WAIT)
        assert pending(db) == 5  # held back while the click is answered
        arrivals.finished(clicks[0])
        await asyncio.wait_for(applied.wait(), WAIT)
        assert pending(db) == 0


async def test_under_a_sustained_load_the_applier_takes_small_turns_and_is_not_starved(
    db: Database, clock: FrozenClock, example_config: Config
) -> None:
    store_deliveries(db, clock, example_config, BUSY_BATCH + 2)
    batches: list[int] = []
    done = asyncio.Event()

    def woken() -> None:
        batches.append(BUSY_BATCH + 2 - pending(db))
        if not pending(db):
            done.set()

    arrivals = Watched(streaming=True)  # a request just begun at every look
    requests = Turns(arrivals, longest=0.05)
    worker = an_applier(db, clock, example_config, requests, woken)
    async with running(worker):
        await asyncio.wait_for(done.wait(), WAIT)
    assert batches == [BUSY_BATCH, BUSY_BATCH + 2]  # small batches, one per turn
    assert requests.log.count("ran") == 2
    assert paused_between_steps(requests.log)  # the requests had their turn in between


# --- the outbox worker -----------------------------------------------------------------------


@dataclass
class PostingSlack:
    posts: list[str] = field(default_factory=list)
    posted: asyncio.Event = field(default_factory=asyncio.Event)

    async def post_message(self, *, channel: str, text: str, **_: Any) -> PostedMessage:
        self.posts.append(text)
        self.posted.set()
        return PostedMessage(channel=channel, ts=f"1700000000.{len(self.posts):06d}")

    async def update_message(self, **_: Any) -> None:
        raise AssertionError("nothing here is edited")

    async def find_message(self, **_: Any) -> PostedMessage | None:
        return None


def an_outbox_worker(
    db: Database,
    clock: FrozenClock,
    config: Config,
    slack: PostingSlack,
    requests: RequestsFirst,
    metrics: Metrics | None = None,
) -> OutboxWorker:
    return OutboxWorker(
        db=db,
        clock=clock,
        config=config,
        slack=slack,
        renderer=Renderer(),
        metrics=metrics or Metrics(),
        min_interval=0.0,  # claims as soon as woken: only the rule holds it back
        requests=requests,
    )


async def test_the_outbox_worker_sends_nothing_while_a_request_of_a_burst_is_answered(
    db: Database, clock: FrozenClock, example_config: Config
) -> None:
    message = DirectMessage(user_id="U0RM1", text="checkout waits for your approval")
    db.write(lambda s: outbox.enqueue_many(s, [message], now=clock.now()))
    arrivals = Watched()
    slack = PostingSlack()
    metrics = Metrics()
    worker = an_outbox_worker(db, clock, example_config, slack, RequestsFirst(arrivals), metrics)
    request = arrivals.started(time.monotonic())
    async with running(worker):
        await asyncio.wait_for(arrivals.looked.wait(), WAIT)
        assert slack.posts == []  # it looked three times and held back each time
        arrivals.finished(request)
        await asyncio.wait_for(slack.posted.wait(), WAIT)
        assert slack.posts == ["checkout waits for your approval"]
    assert held_back(metrics, "outbox") >= 2 * QUIET_SECONDS  # shown in /metrics


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


async def test_under_a_sustained_load_the_outbox_worker_sends_in_small_turns_until_done(
    db: Database, clock: FrozenClock, example_config: Config
) -> None:
    texts = [f"reminder {n}" for n in range(10)]
    messages = [DirectMessage(user_id="U0RM1", text=text) for text in texts]  # one message key
    db.write(lambda s: outbox.enqueue_many(s, messages, now=clock.now()))
    arrivals = Watched(streaming=True)  # a request just begun at every look
    requests = Turns(arrivals, longest=0.05)
    slack = PostingSlack()
    worker = an_outbox_worker(db, clock, example_config, slack, requests)
    async with running(worker):  # its poll is a minute: it has to wake itself between turns
        while True:
            slack.posted.clear()
            if len(slack.posts) >= len(texts):
                break
            await asyncio.wait_for(slack.posted.wait(), WAIT)
    assert slack.posts == texts  # in order
    assert requests.log.count("ran") >= 3  # 4 rows a turn at most
    assert paused_between_steps(requests.log)


class Drains(RequestsFirst):
    """The rule, told when each claim takes its turn (`busy`), and writing down at each
    `drained` (the backlog worked off) whether `unsent()` said a message was still unsent."""

    def __init__(self, arrivals: Arrivals, unsent: Callable[[], bool]) -> None:
        super().__init__(arrivals)
        self.unsent = unsent
        self.claims = 0
        self.claimed_again = asyncio.Event()  # a second claim came
        self.drains: list[bool] = []
        self.worked_off = asyncio.Event()

    def busy(self, now: float) -> bool:
        self.claims += 1
        if self.claims >= 2:
            self.claimed_again.set()
        return super().busy(now)

    def drained(self, now: float) -> None:
        super().drained(now)
        self.drains.append(self.unsent())
        self.worked_off.set()


@dataclass
class HeldSlack(PostingSlack):
    """Slack that takes each post in, then answers only once the test lets it."""

    entered: asyncio.Event = field(default_factory=asyncio.Event)
    answer: asyncio.Event = field(default_factory=asyncio.Event)

    async def post_message(self, *, channel: str, text: str, **kw: Any) -> PostedMessage:
        self.entered.set()
        await self.answer.wait()
        return await super().post_message(channel=channel, text=text, **kw)


async def test_the_outbox_backlog_is_worked_off_only_once_no_message_is_still_being_sent(
    db: Database, clock: FrozenClock, example_config: Config
) -> None:
    texts = ["first reminder", "second reminder"]  # one message key: sent one after the other
    messages = [DirectMessage(user_id="U0RM1", text=text) for text in texts]
    db.write(lambda s: outbox.enqueue_many(s, messages, now=clock.now()))
    slack = HeldSlack()
    requests = Drains(Watched(), unsent=lambda: len(slack.posts) < len(texts))
    worker = an_outbox_worker(db, clock, example_config, slack, requests)
    async with running(worker):
        await asyncio.wait_for(slack.entered.wait(), WAIT)  # the first is being sent
        worker.wake()  # a claim now finds nothing: the second waits for the first
        await asyncio.wait_for(requests.claimed_again.wait(), WAIT)
        slack.answer.set()
        await asyncio.wait_for(requests.worked_off.wait(), WAIT)
    assert slack.posts == texts
    # Worked off only once both were sent, never while one was in flight or waiting for it.
    assert requests.drains and not any(requests.drains)
