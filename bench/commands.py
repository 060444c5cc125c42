"""Slash-command benchmark: `/release status` and `/release history` over a long history.

    .venv/bin/python bench/commands.py                         # 20,000 deployments, SQLite
    .venv/bin/python bench/commands.py --deployments 100000 --repeat 100
    .venv/bin/python bench/commands.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres

Target ("Performance targets" of the issue): `status` and `history` answer in <= 50 ms.

What is timed is everything the listener does after its ack, except the HTTP post of the
answer to Slack's `response_url`: parsing the text, the read queries (in a worker thread, as
`Runtime.read` runs them) and building the Block Kit answer (`handlers.slack.commands.answer`).
The database is a fresh one (a SQLite file in a temp dir, or a new database on the
PostgreSQL server given, dropped afterwards unless `--keep`), migrated, then seeded with
`--deployments` deployments of the example config's services (most of them checkout to
production, one a minute, a seventh of them failed) and `--gates` open approval gates. On
PostgreSQL the seed ends with ANALYZE, as autovacuum would after such a load: without
statistics the planner expects one row and sorts every deployment of the service.

Each command runs `--warmup` times unmeasured, then `--repeat` times; the table shows p50,
p95 and max per command with PASS/MISS of p95 against 50 ms. Exit status 0 whenever the
benchmark ran, whatever the figures; 1 when it could not run. Nothing in `tests/` runs it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import sqlalchemy as sa  # noqa: E402
from support import bench_database  # noqa: E402

from bot import migrate  # noqa: E402
from bot.config import Config, load_config  # noqa: E402
from bot.metrics import Metrics  # noqa: E402
from bot.outbox_worker import OutboxWorker  # noqa: E402
from bot.ports import PostedMessage, SlackUser  # noqa: E402
from bot.render import Renderer  # noqa: E402
from bot.runtime import Runtime  # noqa: E402
from bot.settings import load_settings  # noqa: E402
from bot.store.db import Database, make_engine  # noqa: E402
from bot.store.tables import Deployment, Gate, Release  # noqa: E402
from handlers.slack.commands import Command, History, Usage, answer, parse  # noqa: E402

EXAMPLE_CONFIG = REPO_ROOT / "examples" / "releasebot.yaml"
TARGET_MS = 50.0
NOW = datetime(2026, 11, 17, 10, 0, tzinfo=UTC)


def out(text: str = "", *, err: bool = False) -> None:
    stream = sys.stderr if err else sys.stdout
    stream.write(text + "\n")
    stream.flush()


class FixedClock:
    def now(self) -> datetime:
        return NOW


class NoSlack:
    """The outbox worker is never run here; this only satisfies its constructor."""

    async def post_message(self, *, channel: str, text: str, **_: Any) -> PostedMessage:
        return PostedMessage(channel=channel, ts="0.000001")

    async def update_message(self, *, channel: str, ts: str, text: str, **_: Any) -> None:
        return None


class Directory:
    """The viewer is a release manager; nobody else is in any group."""

    def __init__(self, members: dict[str, frozenset[str]]) -> None:
        self.members = members

    async def user(self, user_id: str) -> SlackUser:
        return SlackUser(id=user_id)

    async def group_members(self, group_id: str) -> frozenset[str]:
        return self.members.get(group_id, frozenset())


@dataclass
class Result:
    name: str
    text: str
    timings_ms: list[float]

    def percentile(self, p: float) -> float:
        ordered = sorted(self.timings_ms)
        return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]

    def row(self) -> dict[str, Any]:
        return {
            "command": self.name,
            "runs": len(self.timings_ms),
            "p50_ms": round(statistics.median(self.timings_ms), 2),
            "p95_ms": round(self.percentile(95), 2),
            "max_ms": round(max(self.timings_ms), 2),
            "target_ms": TARGET_MS,
            "pass": self.percentile(95) <= TARGET_MS,
        }


def seed(db: Database, config: Config, *, deployments: int, gates: int) -> None:
    """Releases and deployments written in bulk: 60 % checkout production, 20 % checkout
    staging, the rest spread over the other services' production."""
    others = [name for name in config.services if name != "checkout"]
    targets: list[tuple[str, str]] = []
    for i in range(deployments):
        share = i % 10
        if share < 6:
            targets.append(("checkout", "production"))
        elif share < 8:
            targets.append(("checkout", "staging"))
        else:
            targets.append((others[i % len(others)], "production"))
    start = NOW - timedelta(minutes=deployments + gates + 1)
    releases: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    for i, (service, environment) in enumerate(targets):
        at = start + timedelta(minutes=i)
        sha = f"{i + 1:040x}"
        releases.append(
            {"id": i + 1, "service": service, "sha": sha, "version": f"v1.{i}", "created_at": at}
        )
        state = "failed" if i % 7 == 0 else "verified"
        rows.append(
            {
                "id": i + 1,
                "release_id": i + 1,
                "service": service,
                "environment": environment,
                "sha": sha,
                "attempt": 1,
                "state": state,
                "row_version": 1,
                "source": "bench",
                "deployer": "ci-bot",
                "ci_retries": 0,
                "risk": {"level": "low", "score": 10},
                "created_at": at,
                "updated_at": at,
                "deployed_at": at if state != "failed" else None,
            }
        )
    gate_rows: list[dict[str, Any]] = []
    requirement = {
        "mode": "quorum",
        "rules": [{"approvers": ["S0RELMGRS"], "count": 1}],
        "risk_level": "medium",
    }
    for g in range(gates):
        n = deployments + g + 1
        at = start + timedelta(minutes=n)
        sha = f"{n:040x}"
        releases.append(
            {"id": n, "service": "ledger", "sha": sha, "version": None, "created_at": at}
        )
        rows.append(
            {
                **rows[0],
                "id": n,
                "release_id": n,
                "service": "ledger",
                "environment": "production",
                "sha": sha,
                "state": "awaiting_approval",
                "risk": {"level": "medium", "score": 40},
                "created_at": at,
                "updated_at": at,
                "deployed_at": None,
            }
        )
        gate_rows.append(
            {
                "deployment_id": n,
                "sha": sha,
                "status": "pending",
                "requirement": requirement,
                "row_version": 1,
                "context": {},
                "created_at": at,
                "progress": "0 of 1 approvals: waiting for 1 from S0RELMGRS",
            }
        )

    def write(session: Any) -> None:
        for table, batch in ((Release, releases), (Deployment, rows), (Gate, gate_rows)):
            for offset in range(0, len(batch), 5000):
                if batch[offset : offset + 5000]:
                    session.execute(sa.insert(table), batch[offset : offset + 5000])

    db.write(write)
    if not db.is_sqlite:
        # A bulk load leaves PostgreSQL without statistics until autovacuum's next analyze,
        # and it then plans for one row; a live database has them.
        with db.engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
            conn.commit()


async def measure(
    runtime: Runtime, name: str, command: Command | Usage, *, warmup: int, repeat: int
) -> Result:
    reply = None
    for _ in range(warmup):
        reply = await answer(runtime.usecases, command, user_id="U0RM1", command_name="/release")
    timings: list[float] = []
    for _ in range(repeat):
        started = time.perf_counter()
        reply = await answer(runtime.usecases, command, user_id="U0RM1", command_name="/release")
        timings.append((time.perf_counter() - started) * 1000)
    return Result(name, reply.text if reply else "", timings)


async def run(args: argparse.Namespace) -> list[Result]:
    with bench_database(
        args.database_url, keep=args.keep, prefix="releasebot-bench-commands-"
    ) as database_url:
        return await measure_all(args, database_url)


async def measure_all(args: argparse.Namespace, database_url: str) -> list[Result]:
    settings = load_settings(
        {
            "RELEASEBOT_DATABASE_URL": database_url,
            "RELEASEBOT_CONFIG": str(EXAMPLE_CONFIG),
            "RELEASEBOT_LOG_LEVEL": "WARNING",
        }
    )
    config = load_config(EXAMPLE_CONFIG)
    engine = make_engine(database_url)
    migrate.upgrade(engine)
    db = Database(engine)
    seeded = time.perf_counter()
    seed(db, config, deployments=args.deployments, gates=args.gates)
    kind = "PostgreSQL" if args.database_url else "SQLite"
    out(
        f"seeded {args.deployments:,} deployments and {args.gates} open gates in "
        f"{time.perf_counter() - seeded:.1f} s ({kind})",
        err=True,
    )
    clock = FixedClock()
    metrics = Metrics()
    runtime = Runtime.assemble(
        directory=Directory({"S0RELMGRS": frozenset({"U0RM1"})}),
        settings=settings,
        config=config,
        db=db,
        clock=clock,
        metrics=metrics,
        worker=OutboxWorker(
            db=db,
            clock=clock,
            config=config,
            slack=NoSlack(),
            renderer=Renderer(public_url=settings.public_url),
            metrics=metrics,
        ),
        runners={},
        migrations_head=migrate.head(),
    )
    deep = parse("history checkout production 10", config=config)
    assert isinstance(deep, History)
    cases: list[tuple[str, Command | Usage]] = [
        ("status", parse("status", config=config)),
        ("status checkout", parse("status checkout", config=config)),
        ("history checkout", parse("history checkout", config=config)),
        (
            "history checkout production 50",
            parse("history checkout production 50", config=config),
        ),
        (
            "history ... page 1,000 (offset 10,000)",
            History("checkout", "production", 10, 10_000),
        ),
        ("history ledger production", parse("history ledger production", config=config)),
        ("pending", parse("pending", config=config)),
    ]
    results = [
        await measure(runtime, name, command, warmup=args.warmup, repeat=args.repeat)
        for name, command in cases
    ]
    engine.dispose()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--deployments", type=int, default=20_000)
    parser.add_argument("--gates", type=int, default=30, help="open approval gates")
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--database-url", default=None, help="a PostgreSQL server (admin URL)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    try:
        results = asyncio.run(run(args))
    except (sa.exc.OperationalError, OSError) as error:
        out(f"could not run: {error}", err=True)
        return 1
    rows = [r.row() for r in results]
    if args.json:
        out(json.dumps({"deployments": args.deployments, "results": rows}, indent=2))
        return 0
    width = max(len(r["command"]) for r in rows)
    out(f"{'command':<{width}}  {'p50 ms':>8}  {'p95 ms':>8}  {'max ms':>8}  target")
    for r in rows:
        verdict = "PASS" if r["pass"] else "MISS"
        out(
            f"{r['command']:<{width}}  {r['p50_ms']:>8.2f}  {r['p95_ms']:>8.2f}  "
            f"{r['max_ms']:>8.2f}  p95 <= {TARGET_MS:.0f} ms: {verdict}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
