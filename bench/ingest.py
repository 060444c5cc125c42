"""Webhook ingest benchmark: signed GitHub deployment_status deliveries against the real app.

    .venv/bin/python bench/ingest.py [--count 3000] [--concurrency 32] [--json]

Starts `python -m bot serve` (one uvicorn worker, SQLite file database in a temp dir, the
example config, GITHUB_WEBHOOK_SECRET set, no Slack token so messages go to the log, log level
WARNING) in a separate process, waits for /readyz, and sends `--count` signed deliveries with
`--concurrency` requests in flight over one pooled client (aiohttp by default: httpx's pool is
itself the bottleneck at 32 in flight, see bench/README.md). Each deployment gets an
`in_progress` status and later a `success` status, so half the deliveries start deployments
and half move them. The server answers each once it is stored; its applier applies them
after. It then waits until every delivery is applied and the outbox has sent every release
message (to the log, or to a fake Slack with `--slack fake`) and reports that drain time, and
the burst's time from the first delivery to the last Slack message.

In the same run it sends the same requests to a bare Starlette app (one route answering 202
JSON) served by the same uvicorn settings, and reports releasebot's throughput as a fraction
of it. It reports against the design's performance targets; it never fails on a miss (exit status 1
only when the benchmark itself could not run). This is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import httpx  # noqa: E402

from tests.helpers import (  # noqa: E402
    EXAMPLE_CONFIG,
    GENERIC_SECRET,
    GITHUB_SECRET,
    GITLAB_TOKEN,
    deployment_status,
    encode,
    generic_body,
    github_headers,
    gitlab_headers,
    gitlab_job,
    signed_headers,
)

TARGET_THROUGHPUT = 1000.0  # deliveries/s
TARGET_P99_MS = 25.0
TARGET_RATIO = 0.3
DRAIN_POLL_SECONDS = 0.2  # how often /readyz is read while waiting for the drain
TARGET_BURST_S = 10.0  # 3,000 deliveries: the last Slack message after the first delivery
HOST = "127.0.0.1"
PATH = "/webhooks/github"
# The providers a run can load, and the route each posts to. The bare app answers on all.
PROVIDERS = {"github": PATH, "gitlab": "/webhooks/gitlab", "generic": "/webhooks/generic"}
# What the bare server and `releasebot serve` both hand to uvicorn.run (see bot/cli/serve.py).
UVICORN_SETTINGS: dict[str, Any] = {"log_level": "warning", "access_log": False}
# Environment prefixes the bench clears so a developer's shell cannot change what is measured.
CLEARED_PREFIXES = ("SLACK_", "RELEASEBOT_", "GITHUB_", "GITLAB_", "ARGOCD_", "PAGERDUTY_")


# --- the bare app (served by this same file in a child process) --------------------------


def bare_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def accept(_: Request) -> JSONResponse:
        return JSONResponse({"status": "accepted"}, status_code=202)

    return Starlette(routes=[Route(path, accept, methods=["POST"]) for path in PROVIDERS.values()])


def serve_bare(port: int) -> None:
    import uvicorn

    uvicorn.run(bare_app(), host=HOST, port=port, **UVICORN_SETTINGS)


# --- servers -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    # SIGTERM drains `releasebot serve` and exits 0; a wrapped profiler needs SIGINT.
    stop_signal: int = signal.SIGINT

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """`stop_signal` to the server's process group: uvicorn shuts down cleanly, and a
        profiler wrapped around it (--py-spy-wrap, stopped with SIGINT) writes its output."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, self.stop_signal)
                self.process.wait(timeout=30)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux /proc), None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def cpu_ms_per_delivery(before: float | None, after: float | None, count: int) -> float | None:
    if before is None or after is None or count == 0:
        return None
    return round((after - before) * 1000 / count, 3)


def clean_environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(CLEARED_PREFIXES)}


def start_releasebot(
    workdir: Path, *, wrap: list[str], extra_env: dict[str, str] | None = None
) -> Server:
    """`python -m bot serve` on a fresh SQLite file in `workdir`, with the webhook secrets
    of every provider the bench loads (and `extra_env` on top)."""
    port = free_port()
    env = (
        clean_environ()
        | {
            "RELEASEBOT_DATABASE_URL": f"sqlite:///{workdir / 'releasebot.db'}",
            "RELEASEBOT_CONFIG": str(EXAMPLE_CONFIG),
            "RELEASEBOT_LOG_LEVEL": "WARNING",
            # The sandbox Slack is reached through the public URL (Bolt's own client).
            "RELEASEBOT_PUBLIC_URL": f"http://{HOST}:{port}",
            "GITHUB_WEBHOOK_SECRET": GITHUB_SECRET,
            "GITLAB_WEBHOOK_TOKEN": GITLAB_TOKEN,
            "RELEASEBOT_GENERIC_WEBHOOK_SECRET": GENERIC_SECRET,
            "PYTHONPATH": str(REPO_ROOT),
        }
        | (extra_env or {})
    )
    log_path = workdir / "releasebot.log"
    command = [*wrap, sys.executable, "-m", "bot", "serve", "--host", HOST, "--port", str(port)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    stop_signal = signal.SIGINT if wrap else signal.SIGTERM
    return Server("releasebot", process, port, log_path, stop_signal)


BOT_TOKEN = "xoxb-bench"


def serve_fake_slack(port: int) -> None:
    """A stand-in Slack Web API (the sandbox directory's people and groups) under uvicorn,
    stamping messages with the real time."""
    import uvicorn

    from integrations.sandbox.client import make_sandbox

    uvicorn.run(make_sandbox(clock=time.time).app(), host=HOST, port=port, **UVICORN_SETTINGS)


def start_fake_slack(workdir: Path) -> Server:
    """The stand-in Slack in a process of its own, as Slack is to a real deployment."""
    port = free_port()
    log_path = workdir / "slack.log"
    command = [sys.executable, str(Path(__file__).resolve()), "--serve-fake-slack", str(port)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=clean_environ() | {"PYTHONPATH": str(REPO_ROOT)},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return Server("slack", process, port, log_path)


def start_bare(workdir: Path) -> Server:
    port = free_port()
    log_path = workdir / "bare.log"
    command = [sys.executable, str(Path(__file__).resolve()), "--serve-bare", str(port)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=clean_environ(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return Server("bare", process, port, log_path)


async def wait_until_up(
    client: httpx.AsyncClient, server: Server, path: str, timeout: float = 60.0
) -> float:
    """Poll `path` until it answers (200 for /readyz, anything for the bare app)."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"{server.name} exited with status {server.process.returncode}:\n"
                + server.log_tail()
            )
        try:
            response = await client.get(server.base_url + path, timeout=2.0)
            if path != "/readyz" or response.status_code == 200:
                return time.perf_counter() - started
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.02)
    raise RuntimeError(
        f"{server.name} did not come up within {timeout:.0f}s:\n" + server.log_tail()
    )


# --- load ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    body: bytes
    headers: dict[str, str]
    deployment: int  # index of the deployment it is about
    first: bool  # the in_progress status that starts that deployment
    path: str = PATH


def build_requests(
    count: int, *, concurrency: int, seed: str, base_id: int, provider: str = "github"
) -> list[Job]:
    """`count` deliveries: "running" then "succeeded" for count/2 deployments.

    The success of a deployment is queued 2*concurrency places after its in_progress, so the
    load mixes creates and moves the way a busy CI would; the sender also waits for the
    in_progress answer before sending its success (almost never an actual wait).
    """
    deployments = (count + 1) // 2
    lag = max(2 * concurrency, 1)
    make = DELIVERIES[provider]
    firsts = [make(True, i, seed, base_id) for i in range(deployments)]
    seconds = [make(False, i, seed, base_id) for i in range(deployments)]
    ordered: list[Job] = []
    for i in range(deployments + lag):
        if i < deployments:
            ordered.append(firsts[i])
        if i >= lag:
            ordered.append(seconds[i - lag])
    return ordered[:count]


def _github(first: bool, index: int, seed: str, base_id: int) -> Job:
    """A GitHub deployment_status for checkout in production."""
    state = "in_progress" if first else "success"
    body = deployment_status(
        state,
        repo="acme/checkout",
        environment="production",
        sha=f"{seed}{index:016x}",  # 24 + 16 = 40 hex digits, distinct per deployment
        deployment_id=base_id + index,  # GitHub's deployment id, distinct per deployment
    )
    body["deployment_status"]["id"] = 2 * (base_id + index) + (state != "in_progress")
    raw = encode(body)
    return Job(raw, github_headers("deployment_status", raw), index, first)


def _gitlab(first: bool, index: int, seed: str, base_id: int) -> Job:
    """A GitLab Job Hook (the published fixture) for ledger's production environment."""
    body = gitlab_job(
        "running" if first else "success",
        repo="acme/ledger",
        environment="production",
        sha=f"{seed}{index:016x}",
        build_id=base_id + index,
    )
    raw = encode(body)
    return Job(raw, gitlab_headers("Job Hook"), index, first, PROVIDERS["gitlab"])


def _generic(first: bool, index: int, seed: str, base_id: int) -> Job:
    """A signed generic delivery for payments-batch in production, with its one commit."""
    sha = f"{seed}{index:016x}"
    body = generic_body(
        "started" if first else "succeeded",
        sha=sha,
        version=f"v2.{index}.0",
        commits=[
            {
                "sha": sha,
                "message": f"Batch payouts, part {index}",
                "author": "Alice",
                "timestamp": "2026-11-16T15:04:05+01:00",
            }
        ],
    )
    raw = encode(body)
    delivery = f"bench-{base_id + index}-{'started' if first else 'succeeded'}"
    headers = signed_headers(raw, GENERIC_SECRET, delivery=delivery)
    return Job(raw, headers, index, first, PROVIDERS["generic"])


DELIVERIES = {"github": _github, "gitlab": _gitlab, "generic": _generic}


@dataclass
class LoadResult:
    count: int
    seconds: float
    latencies_ms: list[float]
    statuses: Counter[int] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        rank = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))  # nearest
        return ordered[rank]

    @property
    def all_202(self) -> bool:
        return set(self.statuses) == {202} and self.statuses[202] == self.count

    def summary(self) -> dict[str, Any]:
        return {
            "deliveries": self.count,
            "seconds": round(self.seconds, 3),
            "throughput_per_s": round(self.throughput, 1),
            "latency_ms": {
                "p50": round(self.percentile(50), 2),
                "p95": round(self.percentile(95), 2),
                "p99": round(self.percentile(99), 2),
                "max": round(max(self.latencies_ms, default=float("nan")), 2),
            },
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "outcomes": dict(sorted(self.outcomes.items())),
            "all_202": self.all_202,
            "errors": self.errors[:5],
        }


class Poster(ABC):
    """The load generator's HTTP client: POST a body, return (status, parsed JSON or None)."""

    name = ""

    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency

    @abstractmethod
    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]: ...

    @abstractmethod
    async def aclose(self) -> None: ...


class AiohttpPoster(Poster):
    """aiohttp.ClientSession with a pooled TCPConnector (limit = concurrency)."""

    name = "aiohttp"

    def __init__(self, concurrency: int) -> None:
        import aiohttp

        super().__init__(concurrency)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency),
            timeout=aiohttp.ClientTimeout(total=30),
            trust_env=False,
        )

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
        async with self._session.post(url, data=body, headers=headers) as response:
            raw = await response.read()
            return response.status, _json_or_none(raw)

    async def aclose(self) -> None:
        await self._session.close()


class HttpxPoster(Poster):
    """httpx.AsyncClient with a connection pool (max_connections = concurrency).

    Slow as a load generator beyond ~8 requests in flight (its pool takes an anyio lock and
    rechecks every connection per request: encode/httpx#3215), so it is not the default.
    """

    name = "httpx"

    def __init__(self, concurrency: int) -> None:
        super().__init__(concurrency)
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        self._client = httpx.AsyncClient(limits=limits, timeout=30.0, trust_env=False)

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
        response = await self._client.post(url, content=body, headers=headers)
        return response.status_code, _json_or_none(response.content)

    async def aclose(self) -> None:
        await self._client.aclose()


def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


POSTERS: dict[str, type[Poster]] = {"aiohttp": AiohttpPoster, "httpx": HttpxPoster}


async def run_load(kind: str, base_url: str, requests: list[Job], concurrency: int) -> LoadResult:
    started_deployments: dict[int, asyncio.Event] = {
        r.deployment: asyncio.Event() for r in requests if r.first
    }
    queue: asyncio.Queue[Job] = asyncio.Queue()
    for request in requests:
        queue.put_nowait(request)
    result = LoadResult(count=len(requests), seconds=0.0, latencies_ms=[])
    poster = POSTERS[kind](concurrency)

    async def worker() -> None:
        while True:
            try:
                request = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            gate = started_deployments.get(request.deployment)
            if not request.first and gate is not None:
                await gate.wait()
            sent = time.perf_counter()
            try:
                status, answer = await poster.post(
                    base_url + request.path, request.body, request.headers
                )
            except Exception as exc:  # connection refused, reset, timeout: all counted
                result.latencies_ms.append((time.perf_counter() - sent) * 1000)
                result.statuses[0] += 1
                if len(result.errors) < 5:
                    result.errors.append(f"{type(exc).__name__}: {exc}")
            else:
                result.latencies_ms.append((time.perf_counter() - sent) * 1000)
                result.statuses[status] += 1
                outcome = answer.get("status") if isinstance(answer, dict) else None
                result.outcomes[str(outcome) if outcome else "(no status)"] += 1
                if status != 202 and len(result.errors) < 5:
                    result.errors.append(f"{status}: {str(answer)[:200]}")
            finally:
                if request.first and gate is not None:
                    gate.set()

    try:
        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        result.seconds = time.perf_counter() - began
    finally:
        await poster.aclose()
    return result


def control_client() -> httpx.AsyncClient:
    """For /readyz polls and the like, never for the load."""
    return httpx.AsyncClient(timeout=httpx.Timeout(30.0), trust_env=False)


async def outbox_pending(
    client: httpx.AsyncClient, server: Server, *, deliveries: bool = True
) -> tuple[int, int]:
    """Work still to do before the last Slack message: deliveries stored but not applied
    yet (the applier's backlog) plus outbox rows not sent; and the dead outbox rows."""
    response = await client.get(server.base_url + "/readyz", timeout=10.0)
    report = response.json()
    outbox = report.get("outbox") or {}
    stored = (report.get("dependencies") or {}).get("deliveries") or {}
    pending = int(outbox.get("pending", -1)) + (int(stored.get("pending", 0)) if deliveries else 0)
    return pending, int(outbox.get("dead", 0))


async def wait_for_drain(
    client: httpx.AsyncClient, server: Server, timeout: float, *, deliveries: bool = True
) -> tuple[float | None, int, int]:
    """Seconds until /readyz shows no delivery left to apply and no pending outbox row
    (None on timeout)."""
    started = time.perf_counter()
    pending_at_start, dead = await outbox_pending(client, server, deliveries=deliveries)
    pending = pending_at_start
    while pending != 0:
        if time.perf_counter() - started > timeout:
            return None, pending_at_start, dead
        # Not faster: each /readyz reads the backlogs, work the server would not do otherwise.
        await asyncio.sleep(DRAIN_POLL_SECONDS)
        pending, dead = await outbox_pending(client, server, deliveries=deliveries)
    return time.perf_counter() - started, pending_at_start, dead


# --- the run -------------------------------------------------------------------------------


async def bench(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """One load per provider asked for, each on a fresh server and database."""
    results: dict[str, Any] = {
        "config": {
            "count": args.count,
            "concurrency": args.concurrency,
            "warmup": args.warmup,
            "database": "sqlite (file, WAL)",
            "uvicorn": UVICORN_SETTINGS | {"workers": 1},
            "client": args.client,
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "providers": args.providers,
            "role": args.role,
            "on_backlog_s": args.on_backlog,
        },
        "providers": {},
    }
    for provider in args.providers:
        run_dir = workdir / provider
        run_dir.mkdir()
        results["providers"][provider] = await bench_provider(args, run_dir, provider)
    return results


SERVICES = {"github": "checkout", "gitlab": "ledger", "generic": "payments-batch"}
TARGET_TO_SLACK_P95_MS = 500.0


async def steady_latency(
    args: argparse.Namespace,
    client: httpx.AsyncClient,
    server: Server,
    provider: str,
    slack_api: str,
) -> dict[str, Any]:
    """Webhook to Slack message, one new deployment at a time at `--steady-rate` per second:
    each message's ts (the Slack API's clock) minus the time its delivery was answered."""
    from bot.config import load_config

    channel = load_config(EXAMPLE_CONFIG).channel_for(SERVICES[provider])
    poster = POSTERS[args.client](1)
    answered: dict[str, float] = {}
    try:
        for n in range(args.steady_count):
            # a fresh random sha each, so the 7 digits a message shows tell them apart
            job = DELIVERIES[provider](True, 0, secrets.token_hex(12), 700_000_000 + n)
            sha = _sha_of(job.body)
            began = time.perf_counter()
            status, _ = await poster.post(server.base_url + job.path, job.body, job.headers)
            if status == 202:
                answered[sha[:7]] = time.time()
            await asyncio.sleep(max(0.0, 1 / args.steady_rate - (time.perf_counter() - began)))
    finally:
        await poster.aclose()
    await wait_for_drain(client, server, args.drain_timeout)
    auth = {"authorization": f"Bearer {BOT_TOKEN}"}
    listed = (await client.post(slack_api + "conversations.list", headers=auth)).json()
    # History takes a channel id, as in Slack: the id of the configured #name.
    channel_id = next(
        (c["id"] for c in listed.get("channels", []) if f"#{c.get('name')}" == channel), channel
    )
    history = (
        await client.post(
            slack_api + "conversations.history",
            data={"channel": channel_id, "limit": "999"},
            headers=auth,
        )
    ).json()
    latencies = []
    for message in history.get("messages", []):
        for short, at in answered.items():
            if f"({short})" in str(message.get("text", "")):
                latencies.append((float(message["ts"]) - at) * 1000)
                break
    latencies.sort()
    found = LoadResult(count=len(latencies), seconds=0.0, latencies_ms=latencies)
    p95 = found.percentile(95) if latencies else float("nan")
    return {
        "deliveries": args.steady_count,
        "rate_per_s": args.steady_rate,
        "messages_found": len(latencies),
        "latency_ms": {
            "p50": round(found.percentile(50), 1) if latencies else None,
            "p95": round(p95, 1) if latencies else None,
            "max": round(latencies[-1], 1) if latencies else None,
        },
        "target": {"p95_ms": TARGET_TO_SLACK_P95_MS, "met": bool(latencies) and p95 <= 500},
    }


def _sha_of(body: bytes) -> str:
    data = json.loads(body)
    return str(data.get("sha") or data["deployment"]["sha"])


async def bench_provider(args: argparse.Namespace, workdir: Path, provider: str) -> dict[str, Any]:
    def build(count: int, base_id: int) -> list[Job]:
        return build_requests(
            count,
            concurrency=args.concurrency,
            seed=secrets.token_hex(12),
            base_id=base_id,
            provider=provider,
        )

    requests = build(args.count, 900_000_000)
    warmup = build(args.warmup, 800_000_000)
    results: dict[str, Any] = {}
    wrap = shlex.split(args.py_spy_wrap)

    async with control_client() as client:
        slack: Server | None = None
        env: dict[str, str] = {}
        if args.slack == "fake":
            slack = start_fake_slack(workdir)
            await wait_until_up(client, slack, "/api/api.test")
            env = {
                "SLACK_BOT_TOKEN": BOT_TOKEN,
                "SLACK_SIGNING_SECRET": "bench-slack-signing-secret",
                "RELEASEBOT_SLACK_API_URL": f"{slack.base_url}/api/",
            }
        env.update(dict(item.split("=", 1) for item in args.env))
        applies = args.role != "web"  # a web server stores; nothing applies what it stored
        if not applies:
            env["RELEASEBOT_ROLE"] = args.role
        # releasebot
        server = start_releasebot(workdir, wrap=wrap, extra_env=env)
        slack_api = f"{slack.base_url}/api/" if slack else f"{server.base_url}/sandbox/api/"
        try:
            startup = await wait_until_up(client, server, "/readyz")
            if warmup:
                await run_load(args.client, server.base_url, warmup, args.concurrency)
                await wait_for_drain(client, server, args.drain_timeout, deliveries=applies)
            cpu_start = None if wrap else cpu_seconds(server.process.pid)
            releasebot = await run_load(args.client, server.base_url, requests, args.concurrency)
            cpu_load = None if wrap else cpu_seconds(server.process.pid)
            if args.on_backlog is not None and applies:
                results["on_backlog"] = await second_burst(
                    args, client, server, build(args.count, 700_000_000)
                )
            drain, pending_after_load, dead = await wait_for_drain(
                client, server, args.drain_timeout, deliveries=applies
            )
            cpu_drain = None if wrap else cpu_seconds(server.process.pid)
            if args.steady_count and applies:
                results["to_slack"] = await steady_latency(
                    args, client, server, provider, slack_api
                )
        finally:
            server.stop()
            if slack is not None:
                slack.stop()
        # uvicorn re-raises the signal it was stopped with after a clean shutdown
        if server.process.returncode not in (0, None, -signal.SIGTERM, -signal.SIGINT):
            raise RuntimeError(
                f"releasebot exited with {server.process.returncode}:\n" + server.log_tail()
            )
        results["releasebot"] = releasebot.summary() | {
            "startup_to_ready_s": round(startup, 3),
            # server process CPU (all threads) per delivery, during the load and including the
            # outbox drain that follows it
            "server_cpu_ms_per_delivery": cpu_ms_per_delivery(cpu_start, cpu_load, args.count),
            # (with --on-backlog, the drain follows both bursts: per delivery of the two)
            "server_cpu_ms_per_delivery_incl_drain": cpu_ms_per_delivery(
                cpu_start, cpu_drain, args.count * (2 if "on_backlog" in results else 1)
            ),
        }
        results["drain"] = {
            "pending_after_load": pending_after_load,
            "seconds": None if drain is None else round(drain, 3),
            # the burst: from the first delivery sent to the last Slack message posted
            "from_first_delivery_s": None
            if drain is None
            else round(releasebot.seconds + drain, 3),
            "dead": dead,
            "timed_out": drain is None,
        }

        # bare Starlette, same uvicorn settings, same requests
        bare_server = start_bare(workdir)
        try:
            await wait_until_up(client, bare_server, "/")
            if warmup:
                await run_load(args.client, bare_server.base_url, warmup, args.concurrency)
            bare_cpu_start = cpu_seconds(bare_server.process.pid)
            bare = await run_load(args.client, bare_server.base_url, requests, args.concurrency)
            bare_cpu_end = cpu_seconds(bare_server.process.pid)
        finally:
            bare_server.stop()
        results["bare"] = bare.summary() | {
            "server_cpu_ms_per_delivery": cpu_ms_per_delivery(
                bare_cpu_start, bare_cpu_end, args.count
            ),
        }

    ratio = releasebot.throughput / bare.throughput if bare.throughput else 0.0
    results["ratio"] = round(ratio, 3)
    results["targets"] = {
        "throughput": _target(releasebot.throughput, TARGET_THROUGHPUT, higher_is_better=True),
        "p99_ms": _target(releasebot.percentile(99), TARGET_P99_MS, higher_is_better=False),
        "ratio": _target(ratio, TARGET_RATIO, higher_is_better=True),
        "all_202": {"value": releasebot.all_202, "target": True, "met": releasebot.all_202},
    }
    return results


async def second_burst(
    args: argparse.Namespace, client: httpx.AsyncClient, server: Server, requests: list[Job]
) -> dict[str, Any]:
    """A burst sent `--on-backlog` seconds after the first, on top of what the server still
    has to apply and send: requests come first, a backlog or not."""
    await asyncio.sleep(args.on_backlog)
    pending, _ = await outbox_pending(client, server)
    load = await run_load(args.client, server.base_url, requests, args.concurrency)
    return load.summary() | {"pending_at_start": pending, "after_s": args.on_backlog}


def _target(value: float, target: float, *, higher_is_better: bool) -> dict[str, Any]:
    met = value >= target if higher_is_better else value <= target
    return {"value": round(value, 3), "target": target, "met": met}


def mark(met: bool) -> str:
    return "PASS" if met else "MISS"


def print_table(results: dict[str, Any]) -> None:
    cfg = results["config"]
    for provider, run in results["providers"].items():
        print_provider(cfg, provider, run)
    if len(results["providers"]) > 1:
        out = sys.stdout.write
        out("\nside by side (releasebot):\n")
        out(
            f"{'provider':10}{'deliv/s':>10}{'p50 ms':>10}{'p99 ms':>10}"
            f"{'CPU ms':>10}{'drain s':>10}\n"
        )
        for provider, run in results["providers"].items():
            rb, drain = run["releasebot"], run["drain"]
            cpu = rb["server_cpu_ms_per_delivery"]
            out(
                f"{provider:10}{rb['throughput_per_s']:>10.0f}{rb['latency_ms']['p50']:>10.1f}"
                f"{rb['latency_ms']['p99']:>10.1f}{'-' if cpu is None else f'{cpu:.2f}':>10}"
                f"{'-' if drain['seconds'] is None else drain['seconds']:>10}\n"
            )


def print_provider(cfg: dict[str, Any], provider: str, results: dict[str, Any]) -> None:
    rb, bare, t = results["releasebot"], results["bare"], results["targets"]
    drain = results["drain"]
    out = sys.stdout.write
    what = {
        "github": "GitHub deployment_status",
        "gitlab": "GitLab Job Hook",
        "generic": "generic webhook",
    }[provider]

    def row(label: str, mine: str, theirs: str, target: str = "", met: bool | None = None) -> None:
        verdict = "" if met is None else mark(met)
        out(f"{label:24}{mine:>12}{theirs:>12}   {target:10}{verdict}".rstrip() + "\n")

    out(
        f"\nwebhook ingest: {cfg['count']} signed {what} deliveries, "
        f"concurrency {cfg['concurrency']} ({cfg['client']}),\n{cfg['database']}, "
        f"one uvicorn worker, {cfg['cpus']} CPUs, Python {cfg['python']}\n\n"
    )
    row("", "releasebot", "bare", "target")
    row(
        "throughput (deliv/s)",
        f"{rb['throughput_per_s']:.0f}",
        f"{bare['throughput_per_s']:.0f}",
        f">= {TARGET_THROUGHPUT:.0f}",
        t["throughput"]["met"],
    )
    for q in ("p50", "p95", "p99", "max"):
        mine, theirs = f"{rb['latency_ms'][q]:.1f}", f"{bare['latency_ms'][q]:.1f}"
        if q == "p99":
            row(f"latency {q} (ms)", mine, theirs, f"<= {TARGET_P99_MS:.0f}", t["p99_ms"]["met"])
        else:
            row(f"latency {q} (ms)", mine, theirs)
    row(
        "all answers 202",
        "yes" if rb["all_202"] else "NO",
        "yes" if bare["all_202"] else "NO",
        "yes",
        t["all_202"]["met"],
    )
    row("ratio to bare", f"{results['ratio']:.2f}", "", f">= {TARGET_RATIO}", t["ratio"]["met"])
    out(f"\nreleasebot outcomes: {rb['outcomes']}; statuses: {rb['statuses']}\n")
    if rb["errors"]:
        out(f"first errors: {rb['errors']}\n")
    if rb["server_cpu_ms_per_delivery"] is not None:
        out(
            f"server CPU per delivery: releasebot {rb['server_cpu_ms_per_delivery']:.2f} ms "
            f"during the load ({rb['server_cpu_ms_per_delivery_incl_drain']:.2f} ms with the "
            f"outbox drain), bare {bare['server_cpu_ms_per_delivery']:.2f} ms\n"
        )
    out(f"startup to /readyz: {rb['startup_to_ready_s']:.2f} s\n")
    if drain["timed_out"]:
        out(
            f"webhook to Slack drain time: did not drain "
            f"({drain['pending_after_load']} pending after the load)\n"
        )
    else:
        out(
            f"webhook to Slack drain time: {drain['seconds']:.2f} s after the last answer "
            f"({drain['pending_after_load']} deliveries to apply and outbox rows pending then, "
            f"{drain['dead']} dead)\n"
        )
    again = results.get("on_backlog")
    if again:
        lat = again["latency_ms"]
        out(
            f"a second burst of {again['deliveries']}, {again['after_s']:g} s after the first, "
            f"on a backlog of {again['pending_at_start']} deliveries and outbox rows: "
            f"{again['throughput_per_s']:.0f}/s, p50 {lat['p50']} ms, p99 {lat['p99']} ms, "
            f"max {lat['max']} ms\n"
        )
    if cfg["role"] == "web":
        out("role web: deliveries were stored, none applied (the HTTP path alone)\n")
    elif again:
        out("(the drain above follows the second burst: it covers both)\n")
    elif not drain["timed_out"]:
        out(
            f"burst of {cfg['count']}: last Slack message {drain['from_first_delivery_s']:.2f} s "
            f"after the first delivery; target <= {TARGET_BURST_S:.0f} s: "
            f"{mark(drain['from_first_delivery_s'] <= TARGET_BURST_S)}\n"
        )
    steady = results.get("to_slack")
    if steady:
        lat = steady["latency_ms"]
        out(
            f"webhook to Slack message, {steady['deliveries']} new deployments at "
            f"{steady['rate_per_s']:g}/s: p50 {lat['p50']} ms, p95 {lat['p95']} ms, max "
            f"{lat['max']} ms ({steady['messages_found']} messages found); target p95 <= "
            f"{TARGET_TO_SLACK_P95_MS:.0f} ms: {mark(steady['target']['met'])}\n"
        )


def _providers(value: str) -> list[str]:
    chosen = list(PROVIDERS) if value == "all" else [p.strip() for p in value.split(",")]
    unknown = [p for p in chosen if p not in PROVIDERS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            f"unknown provider {', '.join(unknown)}: choose from {', '.join(PROVIDERS)} or all"
        )
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=3000, help="deliveries (default 3000)")
    parser.add_argument(
        "--concurrency", type=int, default=32, help="requests in flight (default 32)"
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=200,
        help="deliveries sent first and not measured (default 200)",
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=300.0,
        help="seconds to wait for the outbox to drain (default 300)",
    )
    parser.add_argument(
        "--client",
        choices=sorted(POSTERS),
        default="aiohttp",
        help="load generator HTTP client (default aiohttp; httpx's pool is "
        "itself the bottleneck at 32 in flight)",
    )
    parser.add_argument(
        "--provider",
        dest="providers",
        default="github",
        type=_providers,
        help="comma-separated providers to load, each on a fresh server: "
        f"{', '.join(PROVIDERS)} or all (default github)",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for the server, e.g. RELEASEBOT_OUTBOX_CONCURRENCY=8 (repeatable)",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the temp dir (database, server logs) and print its path",
    )
    parser.add_argument(
        "--py-spy-wrap",
        metavar="CMD",
        default="",
        help="prefix for the releasebot server command, for profiling, e.g. "
        "'py-spy record -o ingest.svg --'",
    )
    parser.add_argument(
        "--role",
        choices=["all", "web"],
        default="all",
        help="the server's role: all (default) stores and applies; web only stores, so the "
        "figures are the HTTP path alone (no drain is measured)",
    )
    parser.add_argument(
        "--slack",
        choices=["fake", "sandbox"],
        default="fake",
        help="a stand-in Slack Web API in its own process, as production talks to Slack "
        "(default), or the built-in sandbox, whose API calls the bot's process serves",
    )
    parser.add_argument(
        "--steady-count",
        type=int,
        default=100,
        help="after the burst, new deployments sent one at a time to time webhook to Slack "
        "message (default 100; 0 skips it)",
    )
    parser.add_argument(
        "--steady-rate", type=float, default=10.0, help="their rate per second (default 10)"
    )
    parser.add_argument(
        "--on-backlog",
        type=float,
        metavar="SECONDS",
        help="SECONDS after the burst, send a second one of --count deliveries while the "
        "first is still being applied and sent, and report its figures (the drain then "
        "covers both)",
    )
    parser.add_argument("--serve-bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--serve-fake-slack", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_bare is not None:
        serve_bare(args.serve_bare)
        return 0
    if args.serve_fake_slack is not None:
        serve_fake_slack(args.serve_fake_slack)
        return 0
    if args.count < 1 or args.concurrency < 1 or args.warmup < 0:
        parser.error("--count and --concurrency must be positive, --warmup not negative")

    workdir = Path(tempfile.mkdtemp(prefix="releasebot-bench-"))
    try:
        results = asyncio.run(bench(args, workdir))
    except RuntimeError as exc:
        sys.stderr.write(f"benchmark could not run: {exc}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    finally:
        if args.keep:
            sys.stderr.write(f"kept {workdir}\n")
        else:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        sys.stdout.write(json.dumps(results, indent=2) + "\n")
    else:
        print_table(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
