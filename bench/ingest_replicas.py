"""Webhook ingest on PostgreSQL with the roles split: N `--role web` replicas and workers.

    .venv/bin/python bench/ingest_replicas.py                  # a throwaway cluster (root only)
    .venv/bin/python bench/ingest_replicas.py --database-url postgresql+psycopg://...
    options: --webs 2 --workers 1 --count 3000 --concurrency 32 --steady-count 100
             --steady-rate 10 --durable --keep --json

What `bench/ingest.py` does for one process on SQLite, for the shape a platform team runs at
scale: `--webs` processes of `releasebot serve --role web` and `--workers` of `--role worker` (one
by default) on one PostgreSQL database, the stand-in Slack of `bench/ingest.py` in a process
of its own. The same signed GitHub `deployment_status` deliveries are spread over the web
replicas (each deployment's two statuses to the same one, `--concurrency` in flight in
all); reported: throughput over the whole burst, latency percentiles, the answers, and how
long the workers then took to apply every delivery and send every outbox row. Then, as in
`bench/ingest.py`, `--steady-count` new deployments at `--steady-rate` per second to the
first web replica, and the webhook-to-Slack-message latency of each: a worker does the
work, so this is how fast the web's word reaches it.

The database is a new one on `--database-url` (dropped afterwards), or a throwaway cluster
made with initdb (as in `bench/reliability.py`; `--durable` keeps PostgreSQL's fsync and
synchronous commit on, as a production server has them; without it both are off).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest import (  # noqa: E402
    TARGET_P99_MS,
    LoadResult,
    Server,
    build_requests,
    control_client,
    run_load,
    start_fake_slack,
    start_releasebot,
    steady_latency,
    wait_for_drain,
    wait_until_up,
)
from reliability import fresh_database, own_cluster, why_no_cluster  # noqa: E402
from support import out  # noqa: E402

TARGET_THROUGHPUT = 1500.0  # deliveries/s, two web replicas and a worker on PostgreSQL


@contextlib.contextmanager
def database(args: argparse.Namespace, workdir: Path) -> Iterator[tuple[str, str]]:
    """A migrated empty database's URL, and what it runs on."""
    if args.database_url:
        with fresh_database(args.database_url, workdir) as url:
            yield url, "PostgreSQL at --database-url"
        return
    reason = why_no_cluster()
    if reason is not None:
        raise SystemExit(f"no throwaway PostgreSQL cluster here ({reason}): give --database-url")
    with own_cluster(durable=args.durable) as cluster, fresh_database(cluster.url, workdir) as url:
        kind = "fsync and synchronous_commit on" if args.durable else "fsync off"
        yield url, f"throwaway PostgreSQL cluster ({kind})"


def start(
    workdir: Path, name: str, role: str, url: str, slack: Server, *, nice: int = 0
) -> Server:
    directory = workdir / name
    directory.mkdir()
    server = start_releasebot(
        directory,
        wrap=["nice", "-n", str(nice)] if nice else [],
        extra_env={
            "RELEASEBOT_DATABASE_URL": url,
            "RELEASEBOT_ROLE": role,
            "SLACK_BOT_TOKEN": "xoxb-bench",
            "RELEASEBOT_SLACK_API_URL": f"{slack.base_url}/api/",
        },
    )
    server.name = name
    return server


def merged(results: list[LoadResult], seconds: float) -> LoadResult:
    total = LoadResult(count=sum(r.count for r in results), seconds=seconds, latencies_ms=[])
    for result in results:
        total.latencies_ms.extend(result.latencies_ms)
        total.statuses.update(result.statuses)
        total.outcomes.update(result.outcomes)
        total.errors.extend(result.errors)
    return total


async def load(webs: list[Server], args: argparse.Namespace, count: int, base: int) -> LoadResult:
    """`count` deliveries over the web replicas, each deployment's statuses to one of them."""
    jobs = build_requests(
        count, concurrency=args.concurrency, seed=secrets.token_hex(12), base_id=base
    )
    shares: list[list[Any]] = [[] for _ in webs]
    for job in jobs:
        shares[job.deployment % len(webs)].append(job)
    per_web = max(1, args.concurrency // len(webs))
    began = time.perf_counter()
    loads = [
        run_load("aiohttp", web.base_url, share, per_web)
        for web, share in zip(webs, shares, strict=True)
    ]
    results = await asyncio.gather(*loads)
    return merged(list(results), time.perf_counter() - began)


async def bench(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    with database(args, workdir) as (url, kind):
        slack = start_fake_slack(workdir)
        servers = [slack]
        try:
            webs = [start(workdir, f"web{i + 1}", "web", url, slack) for i in range(args.webs)]
            workers = [
                start(workdir, f"worker{i + 1}", "worker", url, slack, nice=args.worker_nice)
                for i in range(args.workers)
            ]
            worker = workers[0]
            servers += [*webs, *workers]
            async with control_client() as client:
                await wait_until_up(client, slack, "/")
                for server in [*webs, *workers]:
                    await wait_until_up(client, server, "/readyz")
                await load(webs, args, args.warmup, 10_000_000)
                await wait_for_drain(client, worker, args.drain_timeout)
                burst = await load(webs, args, args.count, 20_000_000)
                drained, pending, dead = await wait_for_drain(client, worker, args.drain_timeout)
                steady = (
                    await steady_latency(args, client, webs[0], "github", f"{slack.base_url}/api/")
                    if args.steady_count
                    else None
                )
        finally:
            for server in reversed(servers):
                server.stop()
    return {
        "database": kind,
        "webs": args.webs,
        "workers": args.workers,
        "count": args.count,
        "concurrency": args.concurrency,
        "burst": burst.summary(),
        "drain_seconds": None if drained is None else round(drained, 2),
        "pending_after_burst": pending,
        "dead": dead,
        "steady": steady,
    }


def report(figures: dict[str, Any]) -> None:
    burst = figures["burst"]
    latency = burst["latency_ms"]
    rate = burst["throughput_per_s"]
    out(
        f"\nwebhook ingest on {figures['database']}: {figures['webs']} x `serve --role web` + "
        f"{figures['workers']} x `--role worker`, {figures['count']} signed GitHub deliveries, "
        f"{figures['concurrency']} in flight over all webs"
    )
    verdict = "PASS" if rate >= TARGET_THROUGHPUT else "MISS"
    out(f"  throughput     {rate:8.0f}/s   target >= {TARGET_THROUGHPUT:.0f}/s  {verdict}")
    for name in ("p50", "p95", "p99", "max"):
        target = f"  target <= {TARGET_P99_MS:.0f} ms" if name == "p99" else ""
        verdict = ("  PASS" if latency[name] <= TARGET_P99_MS else "  MISS") if target else ""
        out(f"  latency {name:4}  {latency[name]:8.1f} ms{target}{verdict}")
    out(f"  answers        {burst['statuses']} {burst['outcomes']}")
    drained = figures["drain_seconds"]
    out(
        f"  worker drain   {'timed out' if drained is None else f'{drained:.1f} s'} after the "
        f"burst ({figures['pending_after_burst']} deliveries and outbox rows pending then, "
        f"{figures['dead']} dead)"
    )
    steady = figures["steady"]
    if steady is not None and not steady["messages_found"]:
        out("  webhook to Slack message: no message found")
    elif steady is not None:
        latency = steady["latency_ms"]
        verdict = "PASS" if steady["target"]["met"] else "MISS"
        out(
            f"  webhook to Slack message, {steady['deliveries']} at {steady['rate_per_s']}/s: "
            f"p50 {latency['p50']:.0f} ms, p95 {latency['p95']:.0f} ms "
            f"(target p95 <= {steady['target']['p95_ms']:.0f} ms) {verdict}; "
            f"{steady['messages_found']} messages found"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="a PostgreSQL server to make a database on")
    parser.add_argument("--webs", type=int, default=2, help="web replicas (default 2)")
    parser.add_argument("--workers", type=int, default=1, help="worker replicas (default 1)")
    parser.add_argument(
        "--worker-nice",
        type=int,
        default=0,
        help="run the worker at this lower CPU priority (nice), as when the web replicas "
        "have cores of their own (default 0: all share the machine alike)",
    )
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32, help="in flight, all webs")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--drain-timeout", type=float, default=300.0)
    parser.add_argument(
        "--steady-count", type=int, default=100, help="deployments after the burst (0: none)"
    )
    parser.add_argument("--steady-rate", type=float, default=10.0, help="per second")
    parser.set_defaults(client="aiohttp")  # the load generator `bench/ingest.py` uses
    parser.add_argument("--durable", action="store_true", help="throwaway cluster with fsync on")
    parser.add_argument("--keep", action="store_true", help="keep the logs' directory")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.webs < 1 or args.workers < 1:
        parser.error("--webs and --workers take at least 1")
    workdir = Path(tempfile.mkdtemp(prefix="releasebot-replicas-"))
    try:
        figures = asyncio.run(bench(args, workdir))
    except RuntimeError as exc:
        out(f"the benchmark could not run: {exc}")
        return 1
    finally:
        if args.keep:
            out(f"kept {workdir}")
        else:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
    report(figures)
    if args.json:
        out(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    raise SystemExit(main())
