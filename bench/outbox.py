"""Outbox benchmark: the real `OutboxWorker` against a slow, then failing, Slack on loopback.

    .venv/bin/python bench/outbox.py                 # time scaled by 0.5: about 2.5 minutes
    .venv/bin/python bench/outbox.py --scale 1       # real time (5 s per call, 45 s outage)
    .venv/bin/python bench/outbox.py --concurrency 1 8 80 100 --outage-concurrency 8 80
    .venv/bin/python bench/outbox.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres

Targets (issue "Nothing lost, nothing doubled", item 4): with Slack answering each call in
5 s, >= 15 calls/s; after a 45 s outage (429 with Retry-After 1-5 s, 500, 503) with ~900
calls queued, the last call sent within 60 s of Slack's recovery.

In one process: a real `OutboxWorker` (its `run` loop, as `releasebot serve` runs it, with
the shared `SlackLimiter`, lanes per message and lease renewal) on a fresh database, sending
through the real `WebApiSlackSender` (slack_sdk over aiohttp, one pooled session) to a
stand-in Slack Web API served on 127.0.0.1 from a thread of its own. The stand-in answers
`chat.postMessage`, `chat.update` and `conversations.history`/`replies` after a set delay,
or with the outage's failures. The rows are real: deployments of 20 services' releases, each
with a posted release message in one of `--channels` channels, and for each a thread line
(`chat.postMessage` in the thread) then an edit of the release message (`chat.update`).

Time is scaled by `--scale`: the stand-in's delays and the outage last `scale` x their
nominal length in real time, and the worker runs on a clock that goes 1/scale times as fast
as the wall clock, so its backoffs, Retry-After waits and leases shrink alike. Figures are
given in nominal (unscaled) seconds. What does not shrink (database writes, the event
loop's own work) makes a scaled run slightly pessimistic, never flattering.

1. Throughput: for each `--concurrency`, `--backlog` deployments (two calls each) are queued,
   the worker runs, and the calls Slack completed during `--window` nominal seconds after a
   `--warmup` are counted (default concurrencies 1, 8, 80 and 100). Concurrency 1 is the
   old one-call-at-a-time behaviour, the baseline of the same run. With 5 s per call, `n`
   calls in flight complete at most n/5 calls/s: 15/s needs 75 or more.
2. Outage: the worker runs while Slack fails every call for `--outage` nominal seconds
   (a third each: 429 with Retry-After 1-5 s, 500 `internal_error`, 503
   `service_unavailable`), answered after `--outage-delay`, and `--outage-calls` calls are
   queued evenly over it; then Slack answers every call after `--outage-delay`. Reported: how
   far out rows had been pushed at recovery, and the time from recovery to the last call sent.

Exit status 0 whenever the benchmark ran, whatever the figures. Not run by the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import sqlalchemy as sa  # noqa: E402
from support import (  # noqa: E402
    StandInSlack,
    bench_database,
    migrated_database,
    out,
    seed_verifying_deployments,
    serve_slack,
    slack_sender,
)

from bot.config import Config, load_config  # noqa: E402
from bot.domain.messages import Message, ReleaseMessageUpdate, TemplateLine  # noqa: E402
from bot.metrics import Metrics  # noqa: E402
from bot.outbox_worker import OutboxWorker  # noqa: E402
from bot.render import Renderer  # noqa: E402
from bot.services import outbox  # noqa: E402
from bot.store.db import Database  # noqa: E402
from bot.store.tables import OutboxMessage  # noqa: E402
from integrations.slack.sender import (  # noqa: E402
    make_http_session,
)

EXAMPLE_CONFIG = REPO_ROOT / "examples" / "releasebot.yaml"
TOKEN = "xoxb-bench-outbox"
TARGET_RATE = 15.0  # calls/s with Slack at 5 s per call
TARGET_DRAIN = 60.0  # seconds from recovery to the last call sent


class ScaledClock:
    """The worker's clock: nominal time, running 1/scale times as fast as the wall clock."""

    def __init__(self, scale: float) -> None:
        self._scale = scale
        self._start = datetime.now(UTC)
        self._t0 = time.monotonic()

    def now(self) -> datetime:
        return self._start + timedelta(seconds=(time.monotonic() - self._t0) / self._scale)

    def nominal(self, real_seconds: float) -> float:
        return real_seconds / self._scale


def seed_deployments(db: Database, *, count: int, channels: int, offset: int) -> list[int]:
    """`count` deployments, each with a posted release message in one of `channels`."""
    return seed_verifying_deployments(
        db,
        range(offset, offset + count),
        now=datetime.now(UTC),
        sha=lambda i: f"{i:040x}",
        channel=lambda i: f"C0BENCH{i % channels:03d}",
    )


def queue_calls(db: Database, deployment_ids: list[int], now: datetime) -> None:
    """For each deployment a thread line, then an edit of its release message: two calls."""
    messages: list[Message] = []
    for deployment_id in deployment_ids:
        note = {"icon": ":eyes:", "text": f"bench note for deployment {deployment_id}"}
        messages.append(TemplateLine(deployment_id, "note.txt.j2", note))
        messages.append(ReleaseMessageUpdate(deployment_id))
    db.write(lambda s: outbox.enqueue_many(s, messages, now=now))


def counts(db: Database) -> dict[str, int]:
    table = OutboxMessage.__table__  # type: ignore[attr-defined]
    with db.read() as session:
        rows = session.connection().execute(
            sa.select(table.c.status, sa.func.count()).group_by(table.c.status)
        )
        return {str(status): int(n) for status, n in rows}


def pending_rows(db: Database, clock: ScaledClock, limit: int = 5) -> list[dict[str, Any]]:
    """The first rows still pending (when the drain did not finish): what they wait for."""
    table = OutboxMessage.__table__  # type: ignore[attr-defined]
    with db.read() as session:
        rows = session.connection().execute(
            sa.select(table)
            .where(table.c.status == outbox.PENDING)
            .order_by(table.c.id)
            .limit(limit)
        )
        return [
            {
                "id": row.id,
                "kind": row.kind,
                "attempts": row.attempts,
                "due_in_s": round((_aware(row.next_attempt_at) - clock.now()).total_seconds(), 1),
                "leased": row.claimed_until is not None,
                "last_error": row.last_error,
            }
            for row in rows
        ]


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def furthest_retry(db: Database, clock: ScaledClock) -> tuple[float, int]:
    """How far (nominal seconds) the latest pending row is scheduled, and the most attempts."""
    table = OutboxMessage.__table__  # type: ignore[attr-defined]
    with db.read() as session:
        latest, attempts = (
            session.connection()
            .execute(
                sa.select(
                    sa.func.max(table.c.next_attempt_at), sa.func.max(table.c.attempts)
                ).where(table.c.status == outbox.PENDING)
            )
            .one()
        )
    if latest is None:
        return 0.0, int(attempts or 0)
    if latest.tzinfo is None:
        latest = latest.replace(tzinfo=UTC)
    return (latest - clock.now()).total_seconds(), int(attempts or 0)


@contextlib.asynccontextmanager
async def running_worker(
    db: Database, config: Config, base_url: str, clock: ScaledClock, concurrency: int, scale: float
) -> Any:
    session = make_http_session()
    sender = slack_sender(TOKEN, base_url, session)
    worker = OutboxWorker(
        db=db,
        clock=clock,
        config=config,
        slack=sender,
        renderer=Renderer(),
        metrics=Metrics(),
        concurrency=concurrency,
    )
    task = asyncio.create_task(worker.run(poll_seconds=5.0 * scale))
    try:
        yield worker
    finally:
        worker.stop()
        try:
            await asyncio.wait_for(task, timeout=30)
        except TimeoutError:
            pass
        await session.close()


async def throughput(
    args: argparse.Namespace, config: Config, concurrency: int
) -> dict[str, float]:
    slack = StandInSlack(delay=args.delay * args.scale)
    with (
        bench_database(args.database_url, keep=False, prefix="rb-bench-outbox-") as url,
        serve_slack(slack) as base_url,
    ):
        db = migrated_database(url)
        try:
            clock = ScaledClock(args.scale)
            ids = seed_deployments(db, count=args.backlog, channels=args.channels, offset=0)
            queue_calls(db, ids, clock.now())
            async with running_worker(db, config, base_url, clock, concurrency, args.scale):
                await asyncio.sleep(args.warmup * args.scale)
                start = time.monotonic()
                await asyncio.sleep(args.window * args.scale)
                end = time.monotonic()
            done = [t for t, _ in slack.done if start <= t < end]
            rate = len(done) / clock.nominal(end - start)
        finally:
            db.engine.dispose()
    return {"concurrency": concurrency, "calls": len(done), "rate": rate}


async def outage(args: argparse.Namespace, config: Config, concurrency: int) -> dict[str, Any]:
    scale = args.scale
    slack = StandInSlack(delay=args.outage_delay * scale, failing=True)
    deployments = max(1, args.outage_calls // 2)
    with (
        bench_database(args.database_url, keep=False, prefix="rb-bench-outbox-") as url,
        serve_slack(slack) as base_url,
    ):
        db = migrated_database(url)
        try:
            clock = ScaledClock(scale)
            ids = seed_deployments(db, count=deployments, channels=args.channels, offset=0)
            steps = max(1, int(args.outage))
            chunks = [ids[i::steps] for i in range(steps)]
            async with running_worker(db, config, base_url, clock, concurrency, scale):
                began = time.monotonic()
                for i, chunk in enumerate(chunks):
                    await asyncio.to_thread(queue_calls, db, chunk, clock.now())
                    pause = began + (i + 1) * args.outage / steps * scale - time.monotonic()
                    if pause > 0:
                        await asyncio.sleep(pause)
                failed_calls = sum(slack.answers.values())
                pushed, attempts = await asyncio.to_thread(furthest_retry, db, clock)
                pending_at_recovery = (await asyncio.to_thread(counts, db)).get(outbox.PENDING, 0)
                slack.failing = False
                slack.done.clear()
                recovered = time.monotonic()
                deadline = recovered + args.drain_timeout * scale
                drained: float | None = None
                while time.monotonic() < deadline:
                    if (await asyncio.to_thread(counts, db)).get(outbox.PENDING, 0) == 0:
                        last = max((t for t, _ in slack.done), default=recovered)
                        drained = clock.nominal(last - recovered)
                        break
                    await asyncio.sleep(0.1)
            final = counts(db)
            stuck = [] if drained is not None else pending_rows(db, clock)
        finally:
            db.engine.dispose()
    return {
        "concurrency": concurrency,
        "calls_queued": deployments * 2,
        "failed_answers_during_outage": failed_calls,
        "pending_at_recovery": pending_at_recovery,
        "furthest_retry_at_recovery_s": round(pushed, 1),
        "most_attempts": attempts,
        "drain_s": None if drained is None else round(drained, 1),
        "statuses": final,
        "pending_rows": stuck,
        "answers": dict(sorted(slack.answers.items())),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--scale", type=float, default=0.5, help="real/nominal time (0.35-1)")
    parser.add_argument("--concurrency", type=int, nargs="*", default=[1, 8, 100])
    parser.add_argument("--outage-concurrency", type=int, nargs="*", default=[100])
    parser.add_argument("--channels", type=int, default=20)
    parser.add_argument("--delay", type=float, default=5.0, help="seconds Slack takes per call")
    parser.add_argument("--backlog", type=int, default=400, help="deployments (2 calls each)")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--outage", type=float, default=45.0)
    parser.add_argument("--outage-calls", type=int, default=900)
    parser.add_argument("--outage-delay", type=float, default=0.2)
    parser.add_argument("--drain-timeout", type=float, default=300.0)
    parser.add_argument("--database-url", default=None, help="PostgreSQL server (else SQLite)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not 0.35 <= args.scale <= 1.0:
        parser.error("--scale must be between 0.35 and 1 (leases are renewed in real time)")
    return args


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    config = load_config(EXAMPLE_CONFIG)
    results: dict[str, Any] = {"scale": args.scale, "throughput": [], "outage": []}
    scaled = "" if args.scale == 1 else f" (time scaled by {args.scale}: figures are nominal)"
    out(f"Outbox benchmark{scaled}")
    out(f"Slack answers each call in {args.delay:g} s; {args.channels} channels")
    for concurrency in args.concurrency:
        result = await throughput(args, config, concurrency)
        results["throughput"].append(result)
        out(
            f"  concurrency {concurrency:>3}: {result['rate']:6.2f} calls/s "
            f"({result['calls']} calls in {args.window:g} s)"
        )
    base = next((r["rate"] for r in results["throughput"] if r["concurrency"] == 1), None)
    for result in results["throughput"]:
        ratio = f"{result['rate'] / base:5.1f}x concurrency 1" if base else ""
        verdict = "PASS" if result["rate"] >= TARGET_RATE else "MISS"
        out(f"  concurrency {result['concurrency']:>3}: {verdict} (>= {TARGET_RATE:g}/s)  {ratio}")
    for concurrency in args.outage_concurrency:
        out(
            f"Outage: {args.outage:g} s of 429 (Retry-After 1-5 s)/500/503, "
            f"{args.outage_calls} calls queued over it, concurrency {concurrency}"
        )
        result = await outage(args, config, concurrency)
        results["outage"].append(result)
        drain = result["drain_s"]
        verdict = "PASS" if drain is not None and drain <= TARGET_DRAIN else "MISS"
        out(f"  failed answers during the outage: {result['failed_answers_during_outage']}")
        out(
            f"  at recovery: {result['pending_at_recovery']} pending, the latest due in "
            f"{result['furthest_retry_at_recovery_s']:g} s, most attempts {result['most_attempts']}"
        )
        shown = "not drained" if drain is None else f"{drain:g} s"
        out(f"  recovery to the last call sent: {shown}  {verdict} (<= {TARGET_DRAIN:g} s)")
        out(f"  rows by status: {result['statuses']}")
        for row in result["pending_rows"]:
            out(f"  still pending: {row}")
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    results = asyncio.run(main_async(args))
    if args.json:
        out(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
