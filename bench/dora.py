"""DORA metrics benchmark: 100,000 stored deployments, figures for 7, 30 and 90 days.

    .venv/bin/python bench/dora.py                      # SQLite file in a temp dir
    .venv/bin/python bench/dora.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres
    .venv/bin/python bench/dora.py --deployments 20000 --repeat 3   # a quick run
    .venv/bin/python bench/dora.py --index                           # also with a per-service index

Design target ("Performance targets"): DORA metrics over 100,000 stored deployments
<= 200 ms, on SQLite and on PostgreSQL.

1. Creates a fresh database (a SQLite file in a temp dir; with `--database-url` or
   RELEASEBOT_BENCH_DATABASE_URL, a new database on that PostgreSQL server, dropped
   afterwards unless `--keep`) and migrates it to the revision before the stored lead times;
   after the history is inserted, to head: the lead-time migration backfills
   `commit_lead_time` from it (timed), so the schema, its indexes and its rows are exactly
   what an upgraded installation has.
2. Bulk-inserts a history of `--deployments` deployments spread over the last 90 days:
   eight services shaped like examples/releasebot.yaml (half go staging -> production, half
   straight to production), busier and quieter ones, releases with 1-20 commits each
   (authored minutes to weeks before the release; stored as `assessment.store_comparison`
   stores them: the JSON of `commit_to_dict` on the release and the `commit_rows` rows in
   `release_commit`), about 10% of production deployments failed (failed, failed
   verification, rolled back with the restoring deployment), incident.opened/resolved audit
   records for most of the verification failures and rollbacks, and one
   deployment.state_changed audit record per deployment as filler.
3. Runs, each `--repeat` times with a fresh session: `metrics()` overall and for one
   service over 7, 30 and 90 days, `report()` of each window (overall + every service, as
   the digest and `/release metrics` ask), and `report()` of 7/30/90 days together (what
   `releasebot metrics` without --days prints).
   Prints p50 and max per case, PASS/MISS of the p50 against 200 ms, and where the time of
   the 90-day overall figure goes (counts, lead time, recovery).
4. With `--index`, adds the per-service index the schema does without (the per-service
   reads range-scan the time-led ix_deployment_env_deployed instead) and measures again.
5. As the baseline, in the same run (unless `--no-baseline`): the overall median lead time
   computed as it was before lead times were stored (every commit of the window's releases
   joined to the release's first production deployment, subtracted and sorted per report).

Exit status 0 whenever the benchmark ran, whatever the figures; 1 when it could not run.
This is a benchmark, not a test: nothing in `tests/` runs it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import sqlalchemy as sa  # noqa: E402
from sqlalchemy.engine import Engine  # noqa: E402
from support import bench_database, out  # noqa: E402

from bot import migrate  # noqa: E402
from bot.domain import states  # noqa: E402
from bot.domain.audit import format_at  # noqa: E402
from bot.domain.dora import format_hours, format_rate, median_of_sorted  # noqa: E402
from bot.ports import Commit  # noqa: E402
from bot.services import assessment, dora, dora_history, seed_metrics  # noqa: E402
from bot.store.db import Database, make_engine  # noqa: E402
from bot.store.tables import AuditEvent, Deployment, Release, ReleaseCommit  # noqa: E402

TARGET_MS = 200.0
BEFORE_LEAD_TIMES = "0003"  # the revision before commit_lead_time
SPAN_DAYS = 90
CHUNK = 2000
# (service, environments in order, share of the deployments)
SERVICES: tuple[tuple[str, tuple[str, ...], float], ...] = (
    ("checkout", ("staging", "production"), 0.22),
    ("storefront", ("production",), 0.18),
    ("search", ("staging", "production"), 0.14),
    ("accounts", ("staging", "production"), 0.12),
    ("inventory", ("production",), 0.11),
    ("notifications", ("staging", "production"), 0.10),
    ("ledger", ("production",), 0.07),
    ("payments-batch", ("production",), 0.06),
)
# What becomes of a production deployment: about 10% are failures.
PRODUCTION_OUTCOMES = (
    (0.04, states.FAILED),
    (0.02, states.VERIFICATION_FAILED),
    (0.04, states.ROLLED_BACK),
)
WORDS = (
    "fix add update remove refactor bump handle retry cache guard timeout payment cart "
    "order search index token session metrics log config flag migration test docs"
).split()
AUTHORS = ("Alice Example", "Bob Builder", "Chen Wei", "Dana Scully", "Eve Online", "Femi Ade")
PROPOSED_INDEX = "ix_bench_deployment_env_service_deployed"
PROPOSED_INDEX_SQL = (
    f"CREATE INDEX {PROPOSED_INDEX} ON deployment "
    "(environment, service, deployed_at, state, release_id)"
)


# --- the database --------------------------------------------------------------------------


# --- the history ---------------------------------------------------------------------------


@dataclass
class History:
    releases: list[dict[str, Any]] = field(default_factory=list)
    release_commits: list[dict[str, Any]] = field(default_factory=list)
    deployments: list[dict[str, Any]] = field(default_factory=list)
    audit: list[dict[str, Any]] = field(default_factory=list)
    commits: int = 0


def _sha(rng: random.Random) -> str:
    return f"{rng.getrandbits(160):040x}"


def _commit(rng: random.Random, *, service: str, released: datetime) -> Commit:
    sha = _sha(rng)
    # Lead times of commits: log-normal, median about 9 hours, tail into weeks.
    age = timedelta(minutes=min(60 * 24 * 60, rng.lognormvariate(math.log(540), 1.4)))
    first = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9)))
    body = " ".join(rng.choice(WORDS) for _ in range(rng.choice((0, 0, 8, 25, 60))))
    author = rng.choice(AUTHORS)
    return Commit(
        sha=sha,
        message=first + ("\n\n" + body if body else ""),
        author=author,
        author_login=author.split()[0].lower(),
        committer_login="web-flow",
        authored_at=released - age,
        url=f"https://github.com/acme/{service}/commit/{sha}",
    )


def build_history(count: int, *, now: datetime, seed: int) -> History:
    """About `count` deployments (it stops at exactly `count`), oldest first."""
    rng = random.Random(seed)
    history = History()
    start = now - timedelta(days=SPAN_DAYS)
    per_release = {name: len(envs) * 1.08 for name, envs, _ in SERVICES}
    events: list[tuple[datetime, str, tuple[str, ...]]] = []
    for name, envs, share in SERVICES:
        releases = int(1.1 * count * share / per_release[name]) + 1  # trimmed below
        for _ in range(releases):
            offset = rng.random() * (SPAN_DAYS * 86_400 - 8 * 3600)
            events.append((start + timedelta(seconds=offset), name, envs))
    events.sort(key=lambda e: e[0])
    attempts: dict[tuple[str, str, str], int] = {}
    last_good: dict[tuple[str, str], str] = {}
    deployments: list[dict[str, Any]] = []
    # (at, action, the deployment it is about, details); ids are given once trimmed
    audit: list[tuple[datetime, str, dict[str, Any], dict[str, Any]]] = []

    def deploy(
        *,
        release_id: int,
        service: str,
        env: str,
        sha: str,
        created: datetime,
        state: str,
        deployed: datetime | None,
        finished: datetime | None,
        rollback_to: str | None = None,
    ) -> dict[str, Any]:
        key = (service, env, sha)
        attempts[key] = attempts.get(key, 0) + 1
        row = {
            "release_id": release_id,
            "service": service,
            "environment": env,
            "sha": sha,
            "attempt": attempts[key],
            "state": state,
            "row_version": 4,
            "source": "github",
            "external_id": str(rng.getrandbits(40)),
            "ci_url": f"https://github.com/acme/{service}/actions/runs/{rng.getrandbits(34)}",
            "deployer": rng.choice(AUTHORS).split()[0].lower(),
            "description": None,
            "ci_retries": 0,
            "rollback_to": rollback_to,
            "risk": {
                "score": rng.randint(0, 90),
                "level": rng.choice(("low", "medium", "high")),
                "factors": [{"name": "size", "points": 4, "reason": "12 lines in 2 files"}],
            },
            "assessment_note": None,
            "created_at": created,
            "updated_at": finished or deployed or created,
            "deployed_at": deployed,
            "finished_at": finished,
        }
        deployments.append(row)
        audit.append(
            (
                finished or deployed or created,
                "deployment.state_changed",
                row,
                {"from": "in_progress", "to": state, "source": "github"},
            )
        )
        return row

    for created, service, envs in events:
        sha = _sha(rng)
        release_id = len(history.releases) + 1
        commits = [
            _commit(rng, service=service, released=created) for _ in range(rng.randint(1, 20))
        ]
        history.commits += len(commits)
        # What assessment.store_comparison writes: the JSON on the release and the rows.
        history.release_commits.extend(assessment.commit_rows(release_id, commits))
        history.releases.append(
            {
                "id": release_id,
                "service": service,
                "sha": sha,
                "version": f"v{release_id // 100}.{release_id % 100}.0",
                "ref": "main",
                "created_at": created,
                "base_sha": last_good.get((service, "production")),
                "commits": [assessment.commit_to_dict(c) for c in commits],
                "diff": {
                    "additions": rng.randint(1, 800),
                    "deletions": rng.randint(0, 400),
                    "files": rng.randint(1, 30),
                    "paths": [f"src/{rng.choice(WORDS)}/{rng.choice(WORDS)}.py" for _ in range(8)],
                    "total_commits": len(commits),
                    "truncated": False,
                    "url": f"https://github.com/acme/{service}/compare/a...b",
                },
                "commits_source": "scm",
            }
        )
        at = created
        for env in envs:
            at += timedelta(minutes=rng.uniform(2, 240 if env == "production" else 30))
            ran = at + timedelta(minutes=rng.uniform(2, 12))
            outcome = states.VERIFIED
            if env == "production":
                roll = rng.random()
                for share, state in PRODUCTION_OUTCOMES:
                    if roll < share:
                        outcome = state
                        break
                    roll -= share
            elif rng.random() < 0.05:
                outcome = states.FAILED
            if outcome == states.FAILED:
                deploy(
                    release_id=release_id,
                    service=service,
                    env=env,
                    sha=sha,
                    created=at,
                    state=states.FAILED,
                    deployed=None,
                    finished=ran,
                )
                if env != "production" or rng.random() < 0.5:
                    at = ran + timedelta(minutes=rng.uniform(10, 120))  # retried: runs again
                    ran = at + timedelta(minutes=rng.uniform(2, 12))
                    outcome = states.VERIFIED
                else:
                    break  # abandoned; a later release fixes forward
            if outcome == states.VERIFIED:
                deploy(
                    release_id=release_id,
                    service=service,
                    env=env,
                    sha=sha,
                    created=at,
                    state=states.VERIFIED,
                    deployed=ran,
                    finished=ran + timedelta(minutes=15),
                )
                last_good[(service, env)] = sha
                continue
            detected = ran + timedelta(minutes=rng.uniform(1, 15))
            recovered = detected + timedelta(minutes=rng.lognormvariate(math.log(45), 1.0))
            previous = last_good.get((service, env))
            if outcome == states.ROLLED_BACK and previous is not None:
                bad = deploy(
                    release_id=release_id,
                    service=service,
                    env=env,
                    sha=sha,
                    created=at,
                    state=states.ROLLED_BACK,
                    deployed=ran,
                    finished=recovered,
                    rollback_to=previous,
                )
                prior = next(r for r in reversed(history.releases) if r["sha"] == previous)
                deploy(
                    release_id=prior["id"],
                    service=service,
                    env=env,
                    sha=previous,
                    created=detected + timedelta(minutes=1),
                    state=states.VERIFIED,
                    deployed=recovered,
                    finished=recovered + timedelta(minutes=15),
                )
            else:
                bad = deploy(
                    release_id=release_id,
                    service=service,
                    env=env,
                    sha=sha,
                    created=at,
                    state=states.VERIFICATION_FAILED,
                    deployed=ran,
                    finished=detected,
                )
            if rng.random() < 0.8:  # the rest were handled by hand: no incident record
                audit.append((detected, "incident.opened", bad, {}))
                if outcome == states.ROLLED_BACK and previous is not None:
                    closed = recovered + timedelta(minutes=5)
                    seconds = int((closed - detected).total_seconds())
                    audit.append((closed, "incident.resolved", bad, {"recovery_seconds": seconds}))
            break
    history.deployments = _trim(deployments, count, rng)
    for number, row in enumerate(history.deployments, start=1):
        row["id"] = number
    audit.sort(key=lambda e: e[0])
    for at, action, row, details in audit:
        if "id" not in row:
            continue  # trimmed
        if action.startswith("incident."):
            details = {
                **details,
                "dedup_key": f"releasebot/{row['service']}/production/{row['id']}",
            }
        seq = len(history.audit) + 1
        history.audit.append(
            {
                "seq": seq,
                "at": format_at(at),
                "actor": "releasebot",
                "action": action,
                "subject": f"deployment:{row['id']}",
                "details": json.dumps(details, sort_keys=True, separators=(",", ":")),
                "prev_hash": f"{seq - 1:064x}",
                "hash": f"{seq:064x}",
            }
        )
    return history


def _trim(
    deployments: list[dict[str, Any]], count: int, rng: random.Random
) -> list[dict[str, Any]]:
    """Exactly `count` deployments, oldest first: drops surplus successful staging
    deployments (nothing refers to them), then successful production ones, at random."""
    surplus = len(deployments) - count
    if surplus > 0:
        for env in ("staging", "production"):
            plain = [
                i
                for i, row in enumerate(deployments)
                if row["environment"] == env and row["state"] == states.VERIFIED
            ]
            for i in rng.sample(plain, min(surplus, len(plain))):
                deployments[i] = {}
                surplus -= 1
            deployments = [row for row in deployments if row]
            if surplus <= 0:
                break
    deployments.sort(key=lambda row: row["created_at"])
    return deployments[:count]


def insert_history(engine: Engine, history: History) -> float:
    started = time.perf_counter()
    with engine.begin() as conn:
        for table, rows in (
            (Release.__table__, history.releases),
            (ReleaseCommit.__table__, history.release_commits),
            (Deployment.__table__, history.deployments),
            (AuditEvent.__table__, history.audit),
        ):
            for i in range(0, len(rows), CHUNK):
                conn.execute(sa.insert(table), rows[i : i + CHUNK])
        if engine.dialect.name == "postgresql":
            for table in ("release", "deployment"):
                conn.exec_driver_sql(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT MAX(id) FROM {table}))"
                )
    _vacuum(engine)
    return time.perf_counter() - started


def _vacuum(engine: Engine, table: str = "") -> None:
    """On PostgreSQL, fresh statistics and the visibility map that index-only scans need, as
    autovacuum would have made by the time a history this long exists. On SQLite nothing:
    the app never runs ANALYZE, so its planner works without statistics, and so does this."""
    if engine.dialect.name != "postgresql":
        return
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f"VACUUM ANALYZE {table}".strip())


# --- measuring -----------------------------------------------------------------------------


@dataclass
class Case:
    name: str
    runs_ms: list[float]
    note: str = ""

    @property
    def p50(self) -> float:
        return statistics.median(self.runs_ms)

    @property
    def max(self) -> float:
        return max(self.runs_ms)


def timed(db: Database, fn: Callable[[Any], Any], repeat: int) -> tuple[list[float], Any]:
    runs: list[float] = []
    result: Any = None
    for _ in range(repeat):
        started = time.perf_counter()
        with db.read() as session:
            result = fn(session)
        runs.append((time.perf_counter() - started) * 1000)
    return runs, result


def measure(db: Database, *, now: datetime, repeat: int, service: str) -> list[Case]:
    cases: list[Case] = []
    timed(db, lambda s: dora.metrics(s, now=now, days=30), 1)  # warm the caches once
    for days in dora.WINDOWS:
        runs, row = timed(db, lambda s, d=days: dora.metrics(s, now=now, days=d), repeat)
        cases.append(
            Case(
                f"metrics() overall, {days} days",
                runs,
                f"{row.deployments} deploys, lead {format_hours(row.lead_time_median_hours)}"
                f", CFR {format_rate(row.change_failure_rate)}, "
                f"recovery {format_hours(row.recovery_median_hours)}",
            )
        )
    for days in dora.WINDOWS:
        runs, row = timed(
            db, lambda s, d=days: dora.metrics(s, now=now, days=d, service=service), repeat
        )
        cases.append(Case(f"metrics() {service}, {days} days", runs, f"{row.deployments} deploys"))
    for days in dora.WINDOWS:
        runs, rows = timed(db, lambda s, d=days: dora.report(s, now=now, windows=(d,)), repeat)
        cases.append(Case(f"report() {days} days, all", runs, f"{len(rows)} rows"))
    runs, rows = timed(db, lambda s: dora.report(s, now=now), repeat)
    cases.append(Case("report() 7/30/90 days, all", runs, f"{len(rows)} rows"))
    return cases


def breakdown(db: Database, *, now: datetime, days: int) -> dict[str, float]:
    """Milliseconds of each read of `metrics()` for `days`, overall (one run each)."""
    parts: dict[str, float] = {}
    starts = dora_history.window_starts(now, [days])
    for name, read in (
        ("counts", dora_history.read_counts),
        ("lead time", dora_history.read_lead_times),
        ("recovery", dora_history.read_recoveries),
    ):
        history = dora_history.History(windows=(days,))
        with db.read() as session:
            started = time.perf_counter()
            dora_history.no_jit(session)
            read(session, history, now=now, starts=starts, service=None)
            parts[name] = (time.perf_counter() - started) * 1000
    return parts


def seed_breakdown(db: Database, *, now: datetime, days: int, repeat: int) -> dict[str, float]:
    """p50 milliseconds of each release-health read over `days`, overall, and of the whole
    `seed_metrics.report()` (overall and every service)."""
    start = now - timedelta(days=days)
    scope = seed_metrics.BY_NAME
    reads: list[tuple[str, Callable[[Any], Any]]] = [
        ("verification", lambda s: seed_metrics.verifications(
            s, start=start, now=now, service=None, production=scope)),
        ("staging to production", lambda s: seed_metrics.promotion_waits(
            s, start=start, now=now, service=None, production=scope)),
        ("rollbacks", lambda s: seed_metrics.rollbacks(
            s, start=start, now=now, service=None, production=scope)),
        ("pipelines", lambda s: seed_metrics.pipelines(s, start=start, now=now, service=None)),
        ("SLO", lambda s: seed_metrics.slo_measurements(s, start=start, now=now, service=None)),
        ("report()", lambda s: seed_metrics.report(s, now=now, days=days)),
    ]  # fmt: skip
    return {name: statistics.median(timed(db, read, repeat)[0]) for name, read in reads}


# --- the old computation, as the baseline: every commit joined and sorted per report -------


def old_lead_median(session: Any, *, now: datetime, days: int) -> float | None:
    """The median lead time (seconds) of every service over `days` as it was computed before
    the lead times were stored: each release's first production deployment in the window
    joined to all its `release_commit` rows, subtracted in SQL, sorted in Python."""
    dep: Any = Deployment.__table__  # type: ignore[attr-defined]
    earlier = dep.alias("earlier")
    commit: Any = ReleaseCommit.__table__  # type: ignore[attr-defined]
    start = now - timedelta(days=days)
    deployed_before = (
        sa.select(sa.literal(1))
        .where(earlier.c.release_id == dep.c.release_id)
        .where(earlier.c.environment == "production")
        .where(earlier.c.deployed_at < dep.c.deployed_at)
        .exists()
    )
    first_at = sa.func.min(dep.c.deployed_at)
    dialect = session.get_bind().dialect
    if dialect.name == "sqlite":
        at_us: Any = sa.func.unixepoch(first_at) * 1_000_000 + sa.cast(
            sa.func.substr(first_at, 21, 6), sa.Integer
        )
    else:
        at_us = sa.cast(sa.extract("epoch", first_at) * 1_000_000, sa.BigInteger)
    first = (
        sa.select(dep.c.release_id, at_us.label("deployed_us"))
        .where(dep.c.environment == "production")
        .where(dep.c.deployed_at > start, dep.c.deployed_at <= now)
        .where(~deployed_before)
        .group_by(dep.c.release_id, dep.c.service)
        .subquery()
    )
    gather = sa.func.json_group_array if dialect.name == "sqlite" else sa.func.json_agg
    query = (
        sa.select(gather(first.c.deployed_us - commit.c.authored_us, type_=sa.JSON))
        .select_from(first.join(commit, commit.c.release_id == first.c.release_id))
        .where(commit.c.authored_us.is_not(None))
    )
    micros = session.execute(query).scalar() or []
    leads = sorted(max(us, 0) / 1e6 for us in micros)
    return median_of_sorted(leads)


def measure_old(db: Database, *, now: datetime, repeat: int) -> list[Case]:
    cases: list[Case] = []
    for days in dora.WINDOWS:
        runs, value = timed(db, lambda s, d=days: old_lead_median(s, now=now, days=d), repeat)
        hours = None if value is None else value / 3600
        cases.append(
            Case(f"old lead median overall, {days} days", runs, f"median {format_hours(hours)}")
        )
    return cases


def print_cases(title: str, cases: list[Case]) -> None:
    out(title)
    width = max(len(c.name) for c in cases)
    for case in cases:
        verdict = "PASS" if case.p50 <= TARGET_MS else "MISS"
        out(
            f"  {case.name.ljust(width)}  p50 {case.p50:7.1f} ms  max {case.max:7.1f} ms  "
            f"{verdict}  {case.note}"
        )


def run(args: argparse.Namespace, url: str) -> dict[str, Any]:
    now = datetime.now(UTC).replace(microsecond=0)
    engine = make_engine(url)
    db = Database(engine)
    results: dict[str, Any] = {"backend": engine.dialect.name, "target_ms": TARGET_MS}
    try:
        migrate.upgrade(engine, BEFORE_LEAD_TIMES)
        started = time.perf_counter()
        history = build_history(args.deployments, now=now, seed=args.seed)
        built = time.perf_counter() - started
        inserted = insert_history(engine, history)
        started = time.perf_counter()
        migrate.upgrade(engine)  # the lead-time migration backfills from the history
        backfilled = time.perf_counter() - started
        _vacuum(engine)
        production = sum(1 for d in history.deployments if d["environment"] == "production")
        failures = sum(
            1
            for d in history.deployments
            if d["environment"] == "production" and d["state"] in dora.FAILURE_STATES
        )
        out(
            f"{engine.dialect.name}: {len(history.deployments)} deployments ({production} to "
            f"production, {failures} failed), {len(history.releases)} releases with "
            f"{history.commits} commits, {len(history.audit)} audit records; built in "
            f"{built:.1f} s, inserted in {inserted:.1f} s, lead times backfilled by the "
            f"migration in {backfilled:.1f} s"
        )
        results["data"] = {
            "deployments": len(history.deployments),
            "production": production,
            "failures": failures,
            "releases": len(history.releases),
            "commits": history.commits,
            "audit": len(history.audit),
            "backfill_s": round(backfilled, 1),
        }
        del history
        service = SERVICES[0][0]
        cases = measure(db, now=now, repeat=args.repeat, service=service)
        parts = breakdown(db, now=now, days=90)
        seed = seed_breakdown(db, now=now, days=90, repeat=args.repeat)
        print_cases(f"schema at migrations head ({engine.dialect.name}):", cases)
        out("  where the 90-day overall time goes: " + _parts(parts))
        out("  seed metrics, 90 days overall (p50): " + _parts(seed))
        results["head"] = {
            "cases": [_case(c) for c in cases],
            "breakdown_90d_ms": parts,
            "seed_metrics_90d_ms": seed,
        }
        if args.index:
            with engine.begin() as conn:
                conn.exec_driver_sql(PROPOSED_INDEX_SQL)
            _vacuum(engine, "deployment")
            cases = measure(db, now=now, repeat=args.repeat, service=service)
            parts = breakdown(db, now=now, days=90)
            print_cases(f"with {PROPOSED_INDEX_SQL}:", cases)
            out("  where the 90-day overall time goes: " + _parts(parts))
            results["indexed"] = {
                "index": PROPOSED_INDEX_SQL,
                "cases": [_case(c) for c in cases],
                "breakdown_90d_ms": parts,
            }
        if not args.no_baseline:
            cases = measure_old(db, now=now, repeat=args.repeat)
            print_cases("baseline: the lead time joined and sorted per report, as before:", cases)
            results["baseline"] = {"cases": [_case(c) for c in cases]}
    finally:
        db.dispose()
    return results


def _parts(parts: dict[str, float]) -> str:
    return ", ".join(f"{name} {ms:.1f} ms" for name, ms in parts.items())


def _case(case: Case) -> dict[str, Any]:
    return {
        "name": case.name,
        "p50_ms": round(case.p50, 1),
        "max_ms": round(case.max, 1),
        "pass": case.p50 <= TARGET_MS,
        "note": case.note,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--deployments", type=int, default=100_000, help="(default 100000)")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each case (default 5)")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("RELEASEBOT_BENCH_DATABASE_URL") or None,
        help="a PostgreSQL server URL (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/postgres)"
        "; a fresh database is created on it and dropped afterwards. Default: a SQLite file",
    )
    parser.add_argument(
        "--index", action="store_true", help=f"then measure again with {PROPOSED_INDEX}"
    )
    parser.add_argument(
        "--no-baseline",
        action="store_true",
        help="skip timing the lead time computed the old way (every commit joined and sorted)",
    )
    parser.add_argument("--seed", type=int, default=20261117)
    parser.add_argument("--json", action="store_true", help="also print the results as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args(argv)
    if args.deployments < 1 or args.repeat < 1:
        parser.error("--deployments and --repeat must be positive")
    try:
        with bench_database(
            args.database_url, keep=args.keep, prefix="releasebot-bench-dora-"
        ) as url:
            results = run(args, url)
    except (sa.exc.SQLAlchemyError, OSError) as exc:
        sys.stderr.write(f"the benchmark could not run: {type(exc).__name__}: {exc}\n")
        return 1
    if args.json:
        out(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
