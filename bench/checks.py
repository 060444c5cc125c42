"""Pending-checks benchmark: 10,000 verification check runs due over ten minutes.

    .venv/bin/python bench/checks.py                          # 10,000 runs over 10 min, SQLite
    .venv/bin/python bench/checks.py --minutes 1 --count 2000 # a quick run
    .venv/bin/python bench/checks.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres

Design target ("Performance targets"): 10,000 pending checks, fire-time drift p99 <= 1 s,
RSS <= 250 MB.

In one process, as `releasebot serve` would hold them: a real `Runtime` (the database, the
`Verifier`, a real `OutboxWorker` sending Slack messages through the real sender to the
stand-in Slack Web API of `bench/support.py`, served on loopback from a thread of this
process, that accepts them at once) and a real APScheduler `AsyncIOScheduler` with the
production jobs from `bot.scheduling.register_jobs` (`checks.tick` every half second,
`outbox.tick`, `gates.sweep`, ...). Only the check runner is a fake: it answers "passed"
at once, so what is measured is the scheduling path (tick, claim, record, outbox), not a
health endpoint. The stand-in Slack's thread shares this process, so its CPU time and
memory count in the figures.

Before the clock starts, `--count` check runs (one `Check` each, ten per deployment of
checkout to production, each deployment `verifying` with a posted release message) are
inserted with due times spread evenly over `--minutes`. Fire-time drift is the real clock
when the runner is entered minus the run's `due_at`. Because `checks.tick` fires once per
`--tick` seconds (0.5 s in production), a run waits up to one tick for the next firing: the
tick alone puts p99 near 0.99 x tick, and everything the tick does (claim, gather) adds to
it. Peak RSS is this process's `ru_maxrss`; it includes every module the server imports.

Exit status 0 whenever the benchmark ran, whatever the figures; 1 when it could not run.
This is a benchmark, not a test: nothing in `tests/` runs it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import resource
import sys
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import sqlalchemy as sa  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlmodel import Session, col, select  # noqa: E402
from support import (  # noqa: E402
    StandInSlack,
    bench_database,
    migrated_database,
    out,
    seed_verifying_deployments,
    serve_slack,
    slack_sender,
)

import bot.app  # noqa: E402,F401  (every module the server imports counts towards its RSS)
from bot import migrate  # noqa: E402
from bot.config import Config, load_config  # noqa: E402
from bot.metrics import Metrics  # noqa: E402
from bot.outbox_worker import OutboxWorker  # noqa: E402
from bot.ports import CheckResult, SlackUser, SystemClock  # noqa: E402
from bot.render import Renderer  # noqa: E402
from bot.runtime import Runtime  # noqa: E402
from bot.scheduling import CHECKS_TICK_SECONDS, build_scheduler, register_jobs  # noqa: E402
from bot.services import verification  # noqa: E402
from bot.settings import load_settings  # noqa: E402
from bot.store.db import Database  # noqa: E402
from bot.store.tables import (  # noqa: E402
    Check,
    CheckRun,
    OutboxMessage,
)
from integrations.slack.sender import make_http_session  # noqa: E402

EXAMPLE_CONFIG = REPO_ROOT / "examples" / "releasebot.yaml"
TARGET_P99_DRIFT_S = 1.0
TARGET_RSS_MB = 250.0
RUNS_PER_DEPLOYMENT = 10
LEAD_SECONDS = 2.0  # between the end of seeding and the first due time
GRACE_SECONDS = 60.0  # after the last due time, before giving up on stragglers
INSERT_CHUNK = 1000
SLACK_TOKEN = "xoxb-bench-checks"


def rss_now_mb() -> float | None:
    """Resident set size right now (Linux /proc), None elsewhere."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB else


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


# --- the database --------------------------------------------------------------------------


def check_spec(name: str) -> dict[str, Any]:
    """A check's config section as `verification.plan` stores it (VerifyCheck.model_dump)."""
    return {
        "name": name,
        "http": {
            "url": "http://127.0.0.1:9310/healthz",
            "method": "GET",
            "expect_status": 200,
            "timeout": "2s",
        },
        "prometheus": None,
        "at": ["0s"],
    }


def seed_deployments(db: Database, *, count: int, now: datetime) -> list[tuple[int, str]]:
    """Deployments that are verifying, each with a posted release message; returns
    (deployment id, check name) for every run to plan, ten per deployment."""
    deployments = math.ceil(count / RUNS_PER_DEPLOYMENT)
    run_prefix = uuid.uuid4().hex[:6]
    planned: list[tuple[int, str]] = []
    step = INSERT_CHUNK // RUNS_PER_DEPLOYMENT
    for start in range(0, deployments, step):
        indexes = range(start, min(deployments, start + step))
        ids = seed_verifying_deployments(
            db,
            indexes,
            now=now,
            sha=lambda i: f"{run_prefix}{i:034x}",
            channel=lambda i: "#checkout-deploys",
        )
        for i, deployment_id in zip(indexes, ids, strict=True):
            planned.extend(
                (deployment_id, f"health-{i:05d}-{j}") for j in range(RUNS_PER_DEPLOYMENT)
            )
    return planned[:count]


def seed_checks(db: Database, planned: list[tuple[int, str]]) -> dict[str, int]:
    """One `Check` per run; returns check name -> check id."""
    ids: dict[str, int] = {}
    for start in range(0, len(planned), INSERT_CHUNK):
        chunk = planned[start : start + INSERT_CHUNK]

        def insert(session: Session, rows: list[tuple[int, str]] = chunk) -> dict[str, int]:
            session.execute(
                sa.insert(Check),
                [
                    {"deployment_id": d, "name": n, "kind": "http", "spec": check_spec(n)}
                    for d, n in rows
                ],
            )
            names = [n for _, n in rows]
            found = session.exec(
                select(Check.name, Check.id).where(col(Check.name).in_(names))
            ).all()
            return {name: check_id for name, check_id in found if check_id is not None}

        ids.update(db.write(insert))
    return ids


def seed_runs(
    db: Database, planned: list[tuple[int, str]], check_ids: Mapping[str, int], due: list[datetime]
) -> None:
    for start in range(0, len(planned), INSERT_CHUNK):
        rows = [
            {
                "check_id": check_ids[name],
                "deployment_id": deployment_id,
                "due_at": due[start + k],
                "status": verification.PENDING,
            }
            for k, (deployment_id, name) in enumerate(planned[start : start + INSERT_CHUNK])
        ]
        db.write(partial(_insert_runs, rows=rows))


def _insert_runs(session: Session, *, rows: list[dict[str, Any]]) -> None:
    session.execute(sa.insert(CheckRun), rows)


# --- the fake check runner -----------------------------------------------------------------


@dataclass
class InstantRunner:
    """Answers every check at once; records when each was entered, against its due time."""

    due: dict[str, datetime]
    drift: list[float] = field(default_factory=list)
    ran: Counter[str] = field(default_factory=Counter)

    async def run(self, check: Mapping[str, Any]) -> CheckResult:
        entered = datetime.now(UTC)
        name = str(check["name"])
        self.ran[name] += 1
        self.drift.append((entered - self.due[name]).total_seconds())
        return CheckResult(True, "HTTP 200 in 0 ms", {"status_code": 200, "latency_ms": 0})


class NoDirectory:
    """Nobody is in any group: the checks path never asks."""

    async def user(self, user_id: str) -> SlackUser:
        return SlackUser(id=user_id)

    async def group_members(self, group_id: str) -> frozenset[str]:
        return frozenset()


class SchedulerLog(logging.Handler):
    """Counts APScheduler's warnings about ticks it skipped or fired late."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.skipped = 0
        self.missed = 0

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "maximum number of running instances" in message:
            self.skipped += 1
        elif "was missed by" in message:
            self.missed += 1


# --- the run -------------------------------------------------------------------------------


def statuses(db: Database) -> Counter[str]:
    with db.read() as session:
        rows = session.exec(
            select(CheckRun.status, sa.func.count()).group_by(col(CheckRun.status))
        ).all()
    return Counter({status: int(n) for status, n in rows})


def outbox_backlog(db: Database) -> int:
    with db.read() as session:
        return int(
            session.exec(
                select(sa.func.count())
                .select_from(OutboxMessage)
                .where(col(OutboxMessage.status) == "pending")
            ).one()
        )


async def run(
    args: argparse.Namespace, database_url: str, slack: StandInSlack, slack_url: str
) -> dict[str, Any]:
    config: Config = load_config(EXAMPLE_CONFIG)
    settings = load_settings(
        {
            "RELEASEBOT_DATABASE_URL": database_url,
            "RELEASEBOT_CONFIG": str(EXAMPLE_CONFIG),
            "RELEASEBOT_LOG_LEVEL": "WARNING",
        }
    )
    db = migrated_database(database_url)
    engine = db.engine
    rss_before_seed = rss_now_mb()

    seed_started = time.perf_counter()
    now = datetime.now(UTC)
    planned = seed_deployments(db, count=args.count, now=now)
    check_ids = seed_checks(db, planned)
    span = timedelta(minutes=args.minutes)
    # Due times evenly spread over the span, from LEAD_SECONDS after seeding ends.
    start = datetime.now(UTC) + timedelta(seconds=LEAD_SECONDS)
    due = [start + span * ((k + 0.5) / len(planned)) for k in range(len(planned))]
    seed_runs(db, planned, check_ids, due)
    seeded_in = time.perf_counter() - seed_started
    if datetime.now(UTC) > due[0]:
        out("warning: seeding ran past the first due time; early runs start late")

    clock = SystemClock()
    http_session = make_http_session()
    runner = InstantRunner(due={name: due[k] for k, (_, name) in enumerate(planned)})
    metrics = Metrics()
    worker = OutboxWorker(
        db=db,
        clock=clock,
        config=config,
        slack=slack_sender(SLACK_TOKEN, slack_url, http_session),
        renderer=Renderer(public_url=settings.public_url),
        metrics=metrics,
    )
    runtime = Runtime.assemble(
        directory=NoDirectory(),
        settings=settings,
        config=config,
        db=db,
        clock=clock,
        metrics=metrics,
        worker=worker,
        runners={"http": runner, "prometheus": runner},
        migrations_head=migrate.head(),
    )
    scheduler_log = SchedulerLog()
    logging.getLogger("apscheduler").addHandler(scheduler_log)
    scheduler = build_scheduler()
    register_jobs(scheduler, runtime)  # the production jobs, checks.tick every 0.5 s
    if args.tick != CHECKS_TICK_SECONDS:
        scheduler.reschedule_job("checks.tick", trigger="interval", seconds=args.tick)
    worker_task = (
        asyncio.create_task(worker.run(poll_seconds=5.0), name="outbox-worker")
        if args.outbox
        else None
    )
    scheduler.start()
    cpu_before = time.process_time()
    out(
        f"seeded {len(planned)} pending check runs in {seeded_in:.1f} s; due from "
        f"{due[0]:%H:%M:%S} to {due[-1]:%H:%M:%S} UTC; checks.tick every {args.tick:g} s"
    )

    deadline = due[-1] + timedelta(seconds=GRACE_SECONDS)
    next_report = time.monotonic() + args.progress
    try:
        while datetime.now(UTC) < deadline:
            if sum(runner.ran.values()) >= len(planned):
                settled = statuses(db)
                if settled[verification.PENDING] + settled[verification.RUNNING] == 0:
                    break
            if time.monotonic() >= next_report:
                next_report += args.progress
                ran = sum(runner.ran.values())
                p99 = percentile(runner.drift, 99) if runner.drift else float("nan")
                out(
                    f"  {ran}/{len(planned)} ran, drift p99 so far {p99:.3f} s, "
                    f"RSS {rss_now_mb() or float('nan'):.0f} MB"
                )
            await asyncio.sleep(0.25)
    finally:
        scheduler.shutdown(wait=False)
        worker.stop()
        if worker_task is not None:
            await worker_task
        await http_session.close()
        logging.getLogger("apscheduler").removeHandler(scheduler_log)
    cpu_seconds = time.process_time() - cpu_before

    final = statuses(db)
    backlog = outbox_backlog(db)
    engine.dispose()
    drift = runner.drift
    twice = sum(1 for n in runner.ran.values() if n > 1)
    return {
        "database": make_url(database_url).get_backend_name(),
        "count": len(planned),
        "minutes": args.minutes,
        "tick_seconds": args.tick,
        "outbox_worker": args.outbox,
        "seeded_in_s": round(seeded_in, 2),
        "ran": sum(runner.ran.values()),
        "ran_more_than_once": twice,
        "statuses": dict(final),
        "outbox_pending_at_end": backlog,
        "slack_posted": slack.answers["chat.postMessage 200"],
        "slack_updated": slack.answers["chat.update 200"],
        "drift_p50_s": round(percentile(drift, 50), 3) if drift else None,
        "drift_p99_s": round(percentile(drift, 99), 3) if drift else None,
        "drift_max_s": round(max(drift), 3) if drift else None,
        "drift_min_s": round(min(drift), 3) if drift else None,
        "late_over_1s": sum(1 for d in drift if d > 1.0),
        "rss_after_imports_mb": round(rss_before_seed, 1) if rss_before_seed else None,
        "rss_end_mb": round(rss, 1) if (rss := rss_now_mb()) else None,
        "rss_peak_mb": round(peak_rss_mb(), 1),
        "cpu_seconds": round(cpu_seconds, 1),
        "ticks_skipped": scheduler_log.skipped,
        "ticks_missed": scheduler_log.missed,
    }


def verdict(ok: bool | None) -> str:
    return "n/a " if ok is None else ("PASS" if ok else "MISS")


def print_table(r: dict[str, Any]) -> None:
    p50, p99, peak = r["drift_p50_s"], r["drift_p99_s"], r["rss_peak_mb"]
    out()
    out(
        f"{r['count']} check runs over {r['minutes']:g} min on {r['database']}, "
        f"checks.tick every {r['tick_seconds']:g} s, "
        f"outbox worker {'on' if r['outbox_worker'] else 'off'}"
    )
    out(f"{'figure':<28} {'value':>12}   {'target':<10} verdict")
    out(f"{'fire-time drift p50':<28} {_s(p50):>12}   {'':<10}")
    p99_ok = None if p99 is None else p99 <= TARGET_P99_DRIFT_S
    out(f"{'fire-time drift p99':<28} {_s(p99):>12}   {'<= 1 s':<10} {verdict(p99_ok)}")
    out(f"{'fire-time drift max':<28} {_s(r['drift_max_s']):>12}")
    out(f"{'runs later than 1 s':<28} {r['late_over_1s']:>12}")
    out(f"{'peak RSS':<28} {peak:>9.1f} MB   {'<= 250 MB':<10} {verdict(peak <= TARGET_RSS_MB)}")
    after = r["rss_after_imports_mb"]
    if after is not None:
        out(f"{'  RSS after imports':<28} {after:>9.1f} MB")
    every_once = r["ran"] == r["count"] and r["ran_more_than_once"] == 0
    out(
        f"{'every run once':<28} {r['ran']:>7}/{r['count']:<4}   {'':<10} "
        f"{verdict(every_once)}{'' if every_once else ' (see statuses)'}"
    )
    out(f"{'run statuses':<28} {json.dumps(r['statuses'])}")
    out(f"{'outbox pending at the end':<28} {r['outbox_pending_at_end']:>12}")
    out(f"{'Slack posts / updates':<28} {r['slack_posted']:>5} / {r['slack_updated']:<5}")
    out(f"{'CPU while scheduling':<28} {r['cpu_seconds']:>10.1f} s")
    out(f"{'ticks skipped / late':<28} {r['ticks_skipped']:>5} / {r['ticks_missed']:<5}")


def _s(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f} s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=10_000, help="check runs (default 10000)")
    parser.add_argument(
        "--minutes", type=float, default=10.0, help="span of their due times (default 10)"
    )
    parser.add_argument(
        "--database-url",
        help="a PostgreSQL server URL (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/postgres)"
        "; a fresh database is created on it and dropped afterwards. Default: a SQLite file",
    )
    parser.add_argument(
        "--tick",
        type=float,
        default=CHECKS_TICK_SECONDS,
        help="checks.tick interval in s (production: 0.5)",
    )
    parser.add_argument(
        "--no-outbox",
        dest="outbox",
        action="store_false",
        help="do not run the outbox worker (measure the check path alone)",
    )
    parser.add_argument(
        "--progress", type=float, default=60.0, help="seconds between progress lines"
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args(argv)
    if args.count < 1 or args.minutes <= 0 or args.tick <= 0:
        parser.error("--count, --minutes and --tick must be positive")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        with (
            bench_database(
                args.database_url, keep=args.keep, prefix="releasebot-bench-checks-"
            ) as url,
            serve_slack(slack := StandInSlack(delay=0.0)) as slack_url,
        ):
            results = asyncio.run(run(args, url, slack, slack_url))
    except (sa.exc.SQLAlchemyError, OSError) as exc:
        sys.stderr.write(f"the benchmark could not run: {type(exc).__name__}: {exc}\n")
        return 1
    if args.json:
        out(json.dumps(results, indent=2))
    else:
        print_table(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
