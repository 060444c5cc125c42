"""Reliability scenarios against `releasebot serve` on loopback: nothing lost, nothing doubled.

    .venv/bin/python bench/reliability.py [--scale 1] [--only hostile,kill] [--json]
    .venv/bin/python bench/reliability.py --database-url postgresql+psycopg://postgres@host/postgres
    .venv/bin/python bench/reliability.py --own-postgres      # a throwaway cluster of its own

Each scenario starts `python -m bot serve` (this checkout's code) on a free loopback port
with a fresh database (a SQLite file, or a new database on the PostgreSQL server given),
and a stand-in Slack Web API on loopback (the sandbox's fake, behind a switch that can make
it fail or slow). It sends signed GitHub `deployment_status` deliveries (an `in_progress`
then a `success` for each deployment), waits until /readyz shows nothing left to apply or
send, and then reads the database and the fake Slack:

- attempted: requests sent (valid and, in the hostile mix, hostile ones);
- accepted: answered 2xx;
- lost: a valid delivery answered 2xx but never applied, or a deployment never shown in
  Slack (no top-level post), or left in the wrong state;
- duplicated: a deployment with more than one top-level Slack post, a thread line posted
  twice, or a delivery applied twice;
- 5xx: answers 500-599 (during the PostgreSQL restart a valid delivery answered 5xx is
  sent again, as an operator would with GitHub's "Redeliver"; every 5xx answer counts).

The scenarios:

1. hostile: valid deliveries interleaved with hostile bodies (JSON nested 50,000 deep, a
   lone surrogate, a 300-character delivery id, a bad signature, malformed JSON);
2. outage: Slack answers 429/500/503 for some seconds mid-run, then recovers;
3. kill: SIGKILL of the server during a stream of deliveries (Slack answering slowly, so
   posts are in flight), a restart, and the rest of the stream;
4. pg-restart: a PostgreSQL restart mid-stream, on a throwaway cluster this script starts
   (initdb and pg_ctl as the postgres user; never the server of --database-url);
5. replicas: two servers on one PostgreSQL database, deliveries split between them (the
   `in_progress` and `success` of one deployment often go to different replicas);
6. slow-slack: every Slack call answered after 2-5 s.

Exit status 1 when any scenario shows lost, duplicated or 5xx above 0 (or could not run).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import httpx  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from ingest import (  # noqa: E402
    Job,
    Server,
    build_requests,
    control_client,
    outbox_pending,
    start_releasebot,
    wait_until_up,
)
from starlette.requests import ClientDisconnect  # noqa: E402
from starlette.responses import JSONResponse  # noqa: E402
from starlette.types import Receive, Scope, Send  # noqa: E402
from support import out  # noqa: E402

from bot import migrate  # noqa: E402
from bot.store.db import make_engine, normalize_url  # noqa: E402
from integrations.sandbox.client import make_sandbox  # noqa: E402
from integrations.sandbox.webapi import FakeSlackWebApi  # noqa: E402
from tests.helpers import GITHUB_SECRET, github_signature  # noqa: E402
from tests.servers import serve_in_thread  # noqa: E402

SCENARIOS = ("hostile", "outage", "kill", "pg-restart", "replicas", "slow-slack")
SLACK_TOKEN = "xoxb-reliability"
SIGNING_SECRET = "reliability-signing-secret"
DRAIN_SECONDS = 120.0
SEND_DEADLINE_SECONDS = 90.0  # how long one delivery is redelivered while the server is away
# One service, one environment, no gate and no checks: each deployment is a Slack post that
# opens (in_progress) and ends (success), so what is measured is delivery and posting alone.
CONFIG = """\
slack:
  default_channel: "#deploys"
services:
  checkout:
    repo: "github:acme/checkout"
    channel: "#checkout-deploys"
    environments:
      - name: production
        track: { github_environment: "production" }
"""
APPLIED = ("accepted", "ignored", "duplicate")
# Where a deployment that got its success ends: or superseded, when a newer deployment of the
# same service and environment started before that success arrived.
FINAL_STATES = ("succeeded", "superseded")


# --- the stand-in Slack ------------------------------------------------------------------


class ChaosSlack:
    """The sandbox's fake Slack Web API, behind a switch: an outage answers every call with
    429, 500 or 503 in turn (before the call is carried out); a delay answers every call
    after a random time in [low, high] seconds (after carrying it out: a process killed
    meanwhile never learns its post was stored)."""

    def __init__(self) -> None:
        self.fake: FakeSlackWebApi = make_sandbox(clock=time.time)
        self.outage_until = 0.0
        self.delay = (0.0, 0.0)
        self.refused: Counter[int] = Counter()

    def app(self) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
        inner = self.fake.app()
        statuses = (429, 500, 503)

        async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http" and time.monotonic() < self.outage_until:
                status = statuses[sum(self.refused.values()) % len(statuses)]
                self.refused[status] += 1
                headers = {"Retry-After": "1"} if status == 429 else {}
                error = "ratelimited" if status == 429 else "service_unavailable"
                answer = JSONResponse({"ok": False, "error": error}, status, headers=headers)
                await answer(scope, receive, send)
                return
            low, high = self.delay
            if high > 0:
                await asyncio.sleep(random.uniform(low, high))
            with contextlib.suppress(ClientDisconnect):  # a caller killed mid-call
                await inner(scope, receive, send)

        return asgi

    def posts(self) -> tuple[Counter[int], int]:
        """Top-level posts per deployment id (from their metadata), and thread lines posted
        twice (the same text twice in one thread)."""
        per_deployment: Counter[int] = Counter()
        doubled_lines = 0
        for channel in self.fake.channels():
            for message in self.fake.messages(channel):
                payload = (message.get("metadata") or {}).get("event_payload") or {}
                if "deployment_id" in payload:
                    per_deployment[int(payload["deployment_id"])] += 1
                lines = Counter(r["text"] for r in self.fake.thread(channel, message["ts"])[1:])
                doubled_lines += sum(n - 1 for n in lines.values() if n > 1)
        return per_deployment, doubled_lines


# --- databases -----------------------------------------------------------------------------


@dataclass
class Cluster:
    """A throwaway PostgreSQL cluster in a temp dir, run as the postgres user."""

    bin_dir: Path
    directory: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def pg_ctl(self, *args: str) -> None:
        command = [str(self.bin_dir / "pg_ctl"), "-D", str(self.directory / "data"), *args]
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *command],
            cwd="/",
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    durable: bool = False  # fsync and synchronous commit on, as a production server has them

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 "
            "-c max_connections=200"
            + ("" if self.durable else " -c fsync=off -c synchronous_commit=off")
        )
        log = str(self.directory / "postgres.log")
        self.pg_ctl("-l", log, "-o", options, "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self.pg_ctl("-m", mode, "-w", "stop")


def why_no_cluster() -> str | None:
    """Why this machine cannot run a throwaway cluster, or None when it can."""
    if os.geteuid() != 0:
        return "needs root to run initdb as the postgres user"
    if shutil.which("runuser") is None:
        return "no runuser"
    try:
        import pwd

        pwd.getpwnam("postgres")
    except KeyError:
        return "no postgres user (initdb refuses root)"
    if not sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        return "no /usr/lib/postgresql/*/bin/initdb"
    return None


@contextlib.contextmanager
def own_cluster(*, durable: bool = False) -> Iterator[Cluster]:
    from ingest import free_port

    bin_dir = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))[-1].parent
    directory = Path(tempfile.mkdtemp(prefix="relbench-pg-"))
    shutil.chown(directory, "postgres")
    cluster = Cluster(bin_dir, directory, free_port(), durable)
    try:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(bin_dir / "initdb"), "-D",
             str(directory / "data"), "-A", "trust", "-U", "postgres", "-E", "UTF8",
             "--no-locale", "--no-sync"],
            cwd="/", check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        cluster.start()
        yield cluster
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            cluster.stop("immediate")
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def fresh_database(server_url: str | None, workdir: Path) -> Iterator[str]:
    """A migrated empty database: a SQLite file in `workdir`, or `relbench_<pid>_<n>` on the
    PostgreSQL server `server_url` (dropped afterwards)."""
    if server_url is None:
        url = f"sqlite:///{Path(tempfile.mkdtemp(prefix='db-', dir=workdir)) / 'releasebot.db'}"
        engine = make_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
        yield url
        return
    server = sa.engine.make_url(normalize_url(server_url))
    name = f"relbench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = server.set(database=name).render_as_string(hide_password=False)
    try:
        engine = make_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
        yield url
    finally:
        for _ in range(20):
            try:
                with admin.connect() as conn:
                    conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                break
            except sa.exc.OperationalError:
                time.sleep(0.5)  # the cluster may still be coming back after a restart
        admin.dispose()


# --- load and what came of it ----------------------------------------------------------------


@dataclass
class Sent:
    job: Job
    delivery: str
    status: int | None = None  # the final answer (None: never answered)
    answers: list[int] = field(default_factory=list)
    valid: bool = True


@dataclass
class Figures:
    scenario: str
    attempted: int = 0
    accepted: int = 0
    lost: int = 0
    duplicated: int = 0
    five_xx: int = 0
    redelivered: int = 0  # valid deliveries sent again after a 5xx (the PostgreSQL restart)
    seconds: float = 0.0
    drain_seconds: float | None = None
    notes: list[str] = field(default_factory=list)
    skipped: str | None = None

    @property
    def ok(self) -> bool:
        return self.skipped is None and self.lost == 0 and self.duplicated == 0 and not self.five_xx


def valid_jobs(count: int, base_id: int) -> list[Job]:
    """`count` signed GitHub deployment_status deliveries (in_progress, later success)."""
    seed = uuid.uuid4().hex[:24]
    return build_requests(count, concurrency=4, seed=seed, base_id=base_id, provider="github")


def hostile_jobs(count: int) -> list[Job]:
    """Bodies an attacker (or a broken proxy) sends: each must get a 4xx, never a 5xx."""
    deep = b"[" * 50_000 + b"]" * 50_000
    surrogate = b'{"action": "created", "deployment_status": {"state": "\\ud800"}, "x": "\\udfff"}'
    kinds: list[tuple[bytes, dict[str, str]]] = []
    for body in (deep, surrogate, b'{"deployment_status": ', b"\xff\xfe not json"):
        kinds.append((body, _github_headers(body, str(uuid.uuid4()))))
    long_body = b'{"zen": "Keep it logically awesome."}'
    kinds.append((long_body, _github_headers(long_body, "d" * 300)))
    bad = b'{"zen": "Design for failure."}'
    kinds.append(
        (bad, _github_headers(bad, str(uuid.uuid4())) | {"x-hub-signature-256": "sha256=0"})
    )
    jobs = []
    for n in range(count):
        body, headers = kinds[n % len(kinds)]
        jobs.append(Job(body, dict(headers), -1, False, "/webhooks/github"))
    return jobs


def _github_headers(body: bytes, delivery: str) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "x-github-event": "deployment_status",
        "x-github-delivery": delivery,
        "x-hub-signature-256": github_signature(body, GITHUB_SECRET),
    }


class Load:
    """Sends jobs at `rate` per second with a few in flight; a `success` waits for its
    `in_progress` to be answered. A delivery that finds no server (killed, restarting), or
    with `redeliver_5xx` is answered 5xx, is sent again with the same delivery id, as
    GitHub's "Redeliver" would, until SEND_DEADLINE_SECONDS."""

    def __init__(self, urls: list[str], rate: float, *, redeliver_5xx: bool = False) -> None:
        self.urls = urls
        self.rate = rate
        self.redeliver_5xx = redeliver_5xx
        self.sent: list[Sent] = []
        self.redelivered = 0

    async def run(self, jobs: list[Job], valid: list[bool]) -> None:
        firsts: dict[int, asyncio.Event] = {}
        limits = httpx.Limits(max_connections=16)
        async with httpx.AsyncClient(timeout=30.0, trust_env=False, limits=limits) as client:
            tasks = []
            started = time.perf_counter()
            for n, (job, ok) in enumerate(zip(jobs, valid, strict=True)):
                delay = started + n / self.rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                sent = Sent(job, job.headers["x-github-delivery"], valid=ok)
                self.sent.append(sent)
                if ok and job.first:
                    firsts[job.deployment] = asyncio.Event()
                wait_on = None if (job.first or not ok) else firsts.get(job.deployment)
                url = self.urls[n % len(self.urls)]
                tasks.append(asyncio.create_task(self._send(client, url, sent, wait_on, firsts)))
            await asyncio.gather(*tasks)

    async def _send(
        self,
        client: httpx.AsyncClient,
        url: str,
        sent: Sent,
        wait_on: asyncio.Event | None,
        firsts: dict[int, asyncio.Event],
    ) -> None:
        if wait_on is not None:
            await wait_on.wait()
        deadline = time.perf_counter() + SEND_DEADLINE_SECONDS
        try:
            while time.perf_counter() < deadline:
                try:
                    answer = await client.post(
                        url + sent.job.path, content=sent.job.body, headers=sent.job.headers
                    )
                except httpx.TransportError:
                    await asyncio.sleep(0.2)
                    continue
                sent.answers.append(answer.status_code)
                sent.status = answer.status_code
                if answer.status_code >= 500 and self.redeliver_5xx and sent.valid:
                    self.redelivered += 1
                    await asyncio.sleep(0.3)
                    continue
                return
        finally:
            if sent.valid and sent.job.first:
                firsts[sent.job.deployment].set()


async def wait_drained(servers: list[Server], timeout: float) -> float | None:
    """Seconds until every server's /readyz shows no delivery to apply and no outbox row
    pending (None when it did not happen within `timeout`)."""
    started = time.perf_counter()
    quiet = 0
    async with control_client() as client:
        while time.perf_counter() - started < timeout:
            try:
                pending = [(await outbox_pending(client, s))[0] for s in servers]
            except (httpx.HTTPError, ValueError):
                pending = [-1]
            quiet = quiet + 1 if all(p == 0 for p in pending) else 0
            if quiet >= 3:  # three quiet polls in a row: nothing is in between two stages
                return time.perf_counter() - started
            await asyncio.sleep(0.2)
    return None


def judge(figures: Figures, load: Load, url: str, slack: ChaosSlack) -> None:
    """Fill lost and duplicated from the database and the fake Slack."""
    figures.attempted = len(load.sent)
    figures.accepted = sum(1 for s in load.sent if s.status is not None and 200 <= s.status < 300)
    figures.five_xx = sum(1 for s in load.sent for a in s.answers if a >= 500)
    figures.redelivered = load.redelivered
    answered = Counter(a for s in load.sent if s.valid for a in s.answers)
    if set(answered) - {200, 202}:
        figures.notes.append(f"valid deliveries answered {dict(sorted(answered.items()))}")
    hostile = Counter(a for s in load.sent if not s.valid for a in s.answers)
    if hostile:
        figures.notes.append(f"hostile bodies answered {dict(sorted(hostile.items()))}")
    for s in load.sent:
        if not s.valid and s.status is not None and 200 <= s.status < 300:
            figures.notes.append(f"hostile body accepted: {s.job.body[:40]!r}")
    engine = make_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT delivery_id, outcome, deployment_id, applied_at FROM webhook_delivery"
                " WHERE provider = 'github'"
            )
        ).all()
        states: dict[int, str] = {
            int(row.id): str(row.state)
            for row in conn.execute(sa.text("SELECT id, state FROM deployment"))
        }
        unsent = conn.execute(
            sa.text(
                "SELECT id, key, kind, status, attempts, next_attempt_at, last_error"
                " FROM outbox_message WHERE status != 'sent' ORDER BY id"
            )
        ).all()
    engine.dispose()
    for row in unsent[:5]:
        figures.notes.append(
            f"outbox {row.id} {row.kind} ({row.key}) {row.status} after {row.attempts}"
            f" attempts, next {row.next_attempt_at}: {(row.last_error or '')[:120]}"
        )
    if len(unsent) > 5:
        figures.notes.append(f"... {len(unsent)} outbox rows not sent")
    by_delivery: dict[str, list[Any]] = {}
    for row in rows:
        by_delivery.setdefault(row.delivery_id, []).append(row)
    posts, doubled_lines = slack.posts()
    deployments: dict[int, set[int]] = {}
    for s in load.sent:
        if not s.valid or s.status not in (200, 202):
            continue
        stored = by_delivery.get(s.delivery, [])
        applied = [r for r in stored if r.applied_at is not None and r.outcome in APPLIED]
        if not applied:
            figures.lost += 1
            figures.notes.append(f"{s.delivery}: stored {[r.outcome for r in stored]}")
            continue
        if len(applied) > 1:
            figures.duplicated += len(applied) - 1
            figures.notes.append(f"{s.delivery} applied {len(applied)} times")
        deployments.setdefault(s.job.deployment, set()).update(
            r.deployment_id for r in applied if r.deployment_id is not None
        )
    for index, ids in sorted(deployments.items()):
        if len(ids) != 1:
            figures.duplicated += max(0, len(ids) - 1)
            figures.notes.append(f"deployment #{index} recorded as {sorted(ids)}")
        for deployment_id in ids:
            shown = posts.get(deployment_id, 0)
            if shown == 0:
                figures.lost += 1
                figures.notes.append(f"deployment {deployment_id} never posted to Slack")
            elif shown > 1:
                figures.duplicated += shown - 1
                figures.notes.append(f"deployment {deployment_id}: {shown} top-level posts")
            if states.get(deployment_id) not in FINAL_STATES:
                figures.lost += 1
                figures.notes.append(
                    f"deployment {deployment_id} ended {states.get(deployment_id)}"
                )
    if doubled_lines:
        figures.duplicated += doubled_lines
        figures.notes.append(f"{doubled_lines} thread lines posted twice")


# --- the scenarios ---------------------------------------------------------------------------


@dataclass
class Context:
    scale: float
    database_url: str | None
    workdir: Path
    cluster_reason: str | None
    config: Path
    lease: float | None = None  # RELEASEBOT_OUTBOX_LEASE_SECONDS (None: the server's default)
    servers: list[Server] = field(default_factory=list)

    def n(self, count: int) -> int:
        return max(2, int(count * self.scale))


def start(ctx: Context, url: str, slack_url: str, **extra: str) -> Server:
    workdir = Path(tempfile.mkdtemp(prefix="serve-", dir=ctx.workdir))
    env = {
        "RELEASEBOT_DATABASE_URL": url,
        "RELEASEBOT_CONFIG": str(ctx.config),
        "SLACK_BOT_TOKEN": SLACK_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "RELEASEBOT_SLACK_API_URL": f"{slack_url}/api/",
        **({"RELEASEBOT_OUTBOX_LEASE_SECONDS": str(ctx.lease)} if ctx.lease else {}),
        **extra,
    }
    server = start_releasebot(workdir, wrap=[], extra_env=env)
    ctx.servers.append(server)
    return server


async def up(server: Server) -> None:
    async with control_client() as client:
        await wait_until_up(client, server, "/readyz", timeout=90.0)


async def run_scenario(
    ctx: Context,
    name: str,
    body: Callable[[Figures, str, ChaosSlack, str], Awaitable[Load]],
    *,
    postgres: str | None = None,
) -> Figures:
    figures = Figures(name)
    slack = ChaosSlack()
    started = time.perf_counter()
    with (
        serve_in_thread(slack.app()) as slack_url,
        fresh_database(postgres or ctx.database_url, ctx.workdir) as url,
    ):
        try:
            load = await body(figures, url, slack, slack_url)
            judge(figures, load, url, slack)
        finally:
            slack.delay = (0.0, 0.0)
            for server in ctx.servers:
                server.stop()
            ctx.servers.clear()
    figures.seconds = round(time.perf_counter() - started, 1)
    return figures


def scenario_hostile(ctx: Context) -> Callable[..., Awaitable[Load]]:
    async def body(figures: Figures, url: str, slack: ChaosSlack, slack_url: str) -> Load:
        server = start(ctx, url, slack_url)
        await up(server)
        valid = valid_jobs(ctx.n(300), base_id=10_000)
        hostile = hostile_jobs(ctx.n(100))
        jobs: list[Job] = []
        flags: list[bool] = []
        for n, job in enumerate(valid):
            jobs.append(job)
            flags.append(True)
            if n % 3 == 2 and hostile:
                jobs.append(hostile.pop())
                flags.append(False)
        jobs += hostile
        flags += [False] * len(hostile)
        load = Load([server.base_url], rate=150.0)
        await load.run(jobs, flags)
        figures.drain_seconds = await wait_drained([server], DRAIN_SECONDS)
        return load

    return body


def scenario_outage(ctx: Context) -> Callable[..., Awaitable[Load]]:
    async def body(figures: Figures, url: str, slack: ChaosSlack, slack_url: str) -> Load:
        server = start(ctx, url, slack_url)
        await up(server)
        load = Load([server.base_url], rate=40.0)
        outage = 10.0 * ctx.scale

        async def outage_mid_run() -> None:
            await asyncio.sleep(1.0)
            slack.outage_until = time.monotonic() + outage

        await asyncio.gather(load.run(valid_jobs(ctx.n(300), 20_000), [True] * ctx.n(300)),
                             outage_mid_run())  # fmt: skip
        await asyncio.sleep(max(0.0, slack.outage_until - time.monotonic()))
        figures.drain_seconds = await wait_drained([server], DRAIN_SECONDS)
        figures.notes.append(
            f"Slack refused {sum(slack.refused.values())} calls for {outage:.0f} s "
            f"({dict(sorted(slack.refused.items()))}); drained {figures.drain_seconds} s after"
        )
        return load

    return body


def scenario_kill(ctx: Context) -> Callable[..., Awaitable[Load]]:
    async def body(figures: Figures, url: str, slack: ChaosSlack, slack_url: str) -> Load:
        slack.delay = (0.05, 0.4)  # posts in flight when the process dies
        server = start(ctx, url, slack_url, RELEASEBOT_OUTBOX_LEASE_SECONDS=str(ctx.lease or 5))
        await up(server)
        load = Load([server.base_url], rate=40.0)
        count = ctx.n(300)

        async def kill_and_restart() -> None:
            for _ in range(max(1, int(2 * ctx.scale))):
                await asyncio.sleep(2.5)
                victim = ctx.servers[-1]
                os.killpg(victim.process.pid, signal.SIGKILL)
                victim.process.wait()
                figures.notes.append(f"SIGKILL after {len(load.sent)} deliveries sent")
                again = start_on_port(ctx, url, slack_url, victim.port)
                await up(again)

        await asyncio.gather(load.run(valid_jobs(count, 30_000), [True] * count),
                             kill_and_restart())  # fmt: skip
        figures.drain_seconds = await wait_drained([ctx.servers[-1]], DRAIN_SECONDS)
        return load

    return body


def start_on_port(ctx: Context, url: str, slack_url: str, port: int) -> Server:
    """A restart on the same port (the load keeps sending to one address), with the short
    lease of the scenario: rows the killed process held are taken over within seconds."""
    import ingest

    original = ingest.free_port
    ingest.free_port = lambda: port
    try:
        return start(ctx, url, slack_url, RELEASEBOT_OUTBOX_LEASE_SECONDS=str(ctx.lease or 5))
    finally:
        ingest.free_port = original


def scenario_pg_restart(ctx: Context, cluster: Cluster) -> Callable[..., Awaitable[Load]]:
    async def body(figures: Figures, url: str, slack: ChaosSlack, slack_url: str) -> Load:
        server = start(ctx, url, slack_url)
        await up(server)
        load = Load([server.base_url], rate=25.0, redeliver_5xx=True)
        count = ctx.n(200)

        async def restart() -> None:
            await asyncio.sleep(2.0)
            await asyncio.to_thread(cluster.stop, "fast")
            await asyncio.sleep(2.0)
            await asyncio.to_thread(cluster.start)
            figures.notes.append("PostgreSQL stopped for 2 s mid-stream, then started")

        await asyncio.gather(load.run(valid_jobs(count, 40_000), [True] * count), restart())
        figures.drain_seconds = await wait_drained([server], DRAIN_SECONDS)
        return load

    return body


def scenario_replicas(ctx: Context) -> Callable[..., Awaitable[Load]]:
    async def body(figures: Figures, url: str, slack: ChaosSlack, slack_url: str) -> Load:
        first = start(ctx, url, slack_url)
        second = start(ctx, url, slack_url)
        await asyncio.gather(up(first), up(second))
        load = Load([first.base_url, second.base_url], rate=60.0)
        count = ctx.n(300)
        await load.run(valid_jobs(count, 50_000), [True] * count)
        figures.drain_seconds = await wait_drained([first, second], DRAIN_SECONDS)
        return load

    return body


def scenario_slow_slack(ctx: Context) -> Callable[..., Awaitable[Load]]:
    async def body(figures: Figures, url: str, slack: ChaosSlack, slack_url: str) -> Load:
        server = start(ctx, url, slack_url)
        await up(server)
        slack.delay = (2.0, 5.0)
        # Few deployments: their posts share one channel, and Slack allows about one post a
        # second there (the limiter keeps 4 in flight), so 60 posts take a minute at best.
        load = Load([server.base_url], rate=20.0)
        count = ctx.n(40)
        await load.run(valid_jobs(count, 60_000), [True] * count)
        figures.drain_seconds = await wait_drained([server], DRAIN_SECONDS)
        calls = Counter(call.method for call in slack.fake.calls)
        figures.notes.append(f"{calls.total()} Slack calls at 2-5 s each: {dict(calls)}")
        return load

    return body


async def run_all(ctx: Context, only: list[str], cluster: Cluster | None) -> list[Figures]:
    results: list[Figures] = []
    postgres = ctx.database_url is not None
    for name in only:
        out(f"-- {name}")
        if name == "pg-restart" and (not postgres or cluster is None):
            reason = "needs --database-url or --own-postgres" if not postgres else ""
            reason = reason or f"no throwaway cluster to restart ({ctx.cluster_reason})"
            results.append(Figures(name, skipped=reason))
            print_row(results[-1])
            continue
        if name == "replicas" and not postgres:
            results.append(Figures(name, skipped="PostgreSQL only (--database-url)"))
            print_row(results[-1])
            continue
        if name == "pg-restart" and cluster is not None:
            figures = await run_scenario(
                ctx, name, scenario_pg_restart(ctx, cluster), postgres=cluster.url
            )
        else:
            make = {
                "hostile": scenario_hostile,
                "outage": scenario_outage,
                "kill": scenario_kill,
                "replicas": scenario_replicas,
                "slow-slack": scenario_slow_slack,
            }[name]
            figures = await run_scenario(ctx, name, make(ctx))
        results.append(figures)
        print_row(figures)
    return results


HEADER = (
    f"{'scenario':<12} {'attempted':>9} {'accepted':>9} {'lost':>5} {'dup':>5} {'5xx':>5} "
    f"{'drain s':>8} {'total s':>8}"
)


def print_row(f: Figures) -> None:
    if f.skipped:
        out(f"{f.scenario:<12} skipped: {f.skipped}")
        return
    drain = "never" if f.drain_seconds is None else f"{f.drain_seconds:.1f}"
    out(
        f"{f.scenario:<12} {f.attempted:>9} {f.accepted:>9} {f.lost:>5} {f.duplicated:>5} "
        f"{f.five_xx:>5} {drain:>8} {f.seconds:>8.1f}"
        + (f"   ({f.redelivered} redelivered after a 5xx)" if f.redelivered else "")
    )
    for note in f.notes[:8]:
        out(f"    {note}")
    if len(f.notes) > 8:
        out(f"    ... {len(f.notes) - 8} more")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--scale", type=float, default=1.0, help="longer runs (default 1)")
    parser.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenarios")
    parser.add_argument("--database-url", help="a PostgreSQL server to create databases on")
    parser.add_argument(
        "--own-postgres",
        action="store_true",
        help="start a throwaway PostgreSQL cluster and run every scenario on it",
    )
    parser.add_argument(
        "--lease",
        type=float,
        help="RELEASEBOT_OUTBOX_LEASE_SECONDS for every server (default: the server's own; "
        "5 in the kill scenario, so a killed process's rows are taken over quickly)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the logs and SQLite files")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(only) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenarios {unknown}; choose from {', '.join(SCENARIOS)}")
    reason = why_no_cluster()
    wants_cluster = args.own_postgres or (args.database_url and "pg-restart" in only)
    if args.own_postgres and reason:
        parser.error(f"--own-postgres: {reason}")
    workdir = Path(tempfile.mkdtemp(prefix="relbench-"))
    try:
        with contextlib.ExitStack() as stack:
            cluster = stack.enter_context(own_cluster()) if wants_cluster and not reason else None
            url = cluster.url if args.own_postgres and cluster else args.database_url
            config = workdir / "releasebot.yaml"
            config.write_text(CONFIG)
            ctx = Context(args.scale, url, workdir, reason, config, args.lease)
            out(f"releasebot from {REPO_ROOT}; database: {'PostgreSQL' if url else 'SQLite'}")
            out(HEADER)
            results = asyncio.run(run_all(ctx, only, cluster))
    finally:
        if args.keep:
            out(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    out("\n" + HEADER)
    for figures in results:
        print_row(figures)
    if args.json:
        out(json.dumps([asdict(f) for f in results], indent=2))
    failed = [f.scenario for f in results if f.skipped is None and not f.ok]
    if failed:
        out(f"\nFAILED: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
