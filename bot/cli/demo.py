"""`releasebot demo`: the whole flow on one laptop, with no Slack workspace and no CI.

It serves releasebot on embedded defaults (SQLite, the example config, the local Slack
sandbox) beside small stand-ins for the outside world on loopback (the GitHub API, the
checkout service's /healthz, Prometheus, Grafana's annotations and PagerDuty), then plays a
realistic story into it with signed webhooks: a staging deploy that verifies and promotes
itself, a production gate, a refused self-approval, an approval, a failed verification and
the automatic rollback.
Clicks are yours to make in the sandbox (or the story makes them with `--auto`).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import logging
import math
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.cli.common import EXIT_OK

log = logging.getLogger("releasebot.demo")


PREVIOUS = "4f2b6c1d9e8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c"
RELEASE = "9e602444f49b8b69c3a9a51fa97a115f3d323508"
AUTHOR = "octo-owner"  # U0OWNER01's GitHub login in the example config's identities


@dataclass
class World:
    """What the stand-ins have seen, and how the checkout service feels right now."""

    healthy: bool = True
    dispatches: list[dict[str, Any]] = field(default_factory=list)
    pages: list[dict[str, Any]] = field(default_factory=list)
    annotations: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def outside_world(world: World) -> Starlette:
    """GitHub's API, PagerDuty's Events API, /healthz, Prometheus and Grafana's annotations,
    in one small app."""

    async def healthz(_: Request) -> Response:
        if world.healthy:
            return JSONResponse({"status": "ok"})
        return JSONResponse({"status": "down", "error": "database connections exhausted"}, 500)

    async def prometheus(_: Request) -> Response:
        value = "0.002" if world.healthy else "0.31"
        return JSONResponse(
            {
                "status": "success",
                "data": {
                    "resultType": "vector",
                    "result": [{"metric": {"job": "checkout"}, "value": [time.time(), value]}],
                },
            }
        )

    async def compare(request: Request) -> Response:
        head = request.path_params["spec"].split("...")[-1]
        return JSONResponse(_comparison(head))

    async def commit(request: Request) -> Response:
        return JSONResponse({**_commit(request.path_params["sha"], 0), "files": _files()})

    async def pulls(_: Request) -> Response:
        return JSONResponse([])  # the demo's commits were pushed, not merged from a pull request

    async def dispatch(request: Request) -> Response:
        body = json.loads(await request.body())  # never await while holding the lock
        with world.lock:
            world.dispatches.append(body)
        return Response(status_code=204)

    async def runs(_: Request) -> Response:
        return JSONResponse({"total_count": 0, "workflow_runs": []})

    async def page(request: Request) -> Response:
        body = json.loads(await request.body())
        with world.lock:
            world.pages.append(body)
        return JSONResponse(
            {"status": "success", "message": "Event processed", "dedup_key": body.get("dedup_key")},
            status_code=202,
        )

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/api/v1/query", prometheus, methods=["GET", "POST"]),
            *_observability_routes(world),
            Route("/repos/acme/checkout/compare/{spec:path}", compare),
            Route("/repos/acme/checkout/commits/{sha}", commit),
            Route("/repos/acme/checkout/commits/{sha}/pulls", pulls),
            Route(
                "/repos/acme/checkout/actions/workflows/{name}/dispatches",
                dispatch,
                methods=["POST"],
            ),
            Route("/repos/acme/checkout/actions/workflows/{name}/runs", runs),
            Route("/v2/enqueue", page, methods=["POST"]),
            Route("/v2/change/enqueue", page, methods=["POST"]),
        ]
    )


def _observability_routes(world: World) -> list[Route]:
    """Prometheus range queries that follow the world's health, and Grafana's annotations."""

    async def prometheus_range(request: Request) -> Response:
        params = request.query_params
        start, end, step = (float(params[key]) for key in ("start", "end", "step"))
        return JSONResponse(
            {
                "status": "success",
                "data": {
                    "resultType": "matrix",
                    "result": [
                        {
                            "metric": {},
                            "values": _series(params["query"], world.healthy, start, end, step),
                        }
                    ],
                },
            }
        )

    async def annotate(request: Request) -> Response:
        body = json.loads(await request.body())
        with world.lock:
            world.annotations.append(body)
            number = len(world.annotations)
        return JSONResponse({"id": number, "message": "Annotation added"})

    async def close_region(request: Request) -> Response:
        body = json.loads(await request.body())
        with world.lock:
            world.annotations.append({**body, "id": int(request.path_params["id"])})
        return JSONResponse({"message": "Annotation patched"})

    return [
        Route("/api/v1/query_range", prometheus_range, methods=["GET", "POST"]),
        Route("/api/annotations", annotate, methods=["POST"]),
        Route("/api/annotations/{id:int}", close_region, methods=["PATCH"]),
    ]


def _series(query: str, healthy: bool, start: float, end: float, step: float) -> list[list[Any]]:
    """A range query's samples: p99 latency in seconds for a latency query, else the error
    ratio, each wavering a little around how the services feel now."""
    if "duration" in query:
        level = 0.12 if healthy else 0.9
    else:
        level = 0.002 if healthy else 0.31
    count = int((end - start) // step) + 1
    return [[start + n * step, f"{level * (1 + 0.05 * math.sin(n)):.6f}"] for n in range(count)]


def _commit(sha: str, n: int) -> dict[str, Any]:
    messages = [
        "Cache the payment provider's token",
        "Tune the connection pool <script>",
        "Bump the base image in the Dockerfile",
    ]
    return {
        "sha": sha if n == 0 else hashlib.sha1(f"{sha}{n}".encode()).hexdigest(),
        "html_url": f"https://github.com/acme/checkout/commit/{sha}",
        "commit": {
            "message": messages[n % len(messages)],
            "author": {"name": "Olga Owner", "date": "2026-11-20T08:30:00Z"},
        },
        "author": {"login": AUTHOR},
        "committer": {"login": AUTHOR},
    }


def _files() -> list[dict[str, Any]]:
    return [
        {"filename": "Dockerfile", "status": "modified", "additions": 1200, "deletions": 300},
        {"filename": "app/payments.py", "status": "modified", "additions": 420, "deletions": 80},
    ]


def _comparison(head: str) -> dict[str, Any]:
    return {
        "html_url": "https://github.com/acme/checkout/compare",
        "total_commits": 3,
        "commits": [_commit(head, n) for n in (2, 1, 0)],
        "files": _files(),
    }


def serve(app: Any, host: str, port: int) -> uvicorn.Server:
    server = uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name=f"demo-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"could not start a server on {host}:{port}")
        time.sleep(0.05)
    return server


@dataclass
class Story:
    """Signed webhooks and sandbox clicks, played against the running bot."""

    base: str
    secret: str
    world: World
    auto: bool
    say: Callable[[str], None]
    timeout: float = 600.0

    def github(self, event: str, body: dict[str, Any]) -> None:
        raw = json.dumps(body).encode()
        signature = "sha256=" + hmac.new(self.secret.encode(), raw, hashlib.sha256).hexdigest()
        response = httpx.post(
            f"{self.base}/webhooks/github",
            content=raw,
            headers={
                "content-type": "application/json",
                "x-github-event": event,
                "x-github-delivery": secrets.token_hex(8),
                "x-hub-signature-256": signature,
            },
        )
        response.raise_for_status()

    def deployment_status(self, state: str, sha: str, deployment_id: int) -> None:
        self.github(
            "deployment_status",
            {
                "action": "created",
                "deployment_status": {
                    "state": state,
                    "environment": "production",
                    "target_url": f"https://github.com/acme/checkout/actions/runs/{deployment_id}",
                },
                "deployment": {
                    "id": deployment_id,
                    "sha": sha,
                    "ref": "main",
                    "environment": "production",
                    "creator": {"login": "deploy-bot"},
                },
                "repository": {"full_name": "acme/checkout"},
                "sender": {"login": "deploy-bot"},
            },
        )

    def staging_run(self, sha: str) -> None:
        self.github(
            "workflow_run",
            {
                "action": "completed",
                "workflow_run": {
                    "id": 7001,
                    "path": ".github/workflows/deploy-staging.yml",
                    "head_sha": sha,
                    "head_branch": "main",
                    "status": "completed",
                    "conclusion": "success",
                    "run_attempt": 1,
                    "html_url": "https://github.com/acme/checkout/actions/runs/7001",
                    "actor": {"login": AUTHOR},
                },
                "repository": {"full_name": "acme/checkout"},
                "sender": {"login": AUTHOR},
            },
        )

    def gate(self) -> dict[str, Any] | None:
        """The production gate of the release, as the bot's sandbox shows its buttons."""
        auth = {"authorization": "Bearer xoxb-sandbox"}
        listed = httpx.post(f"{self.base}/sandbox/api/conversations.list", headers=auth).json()
        # History takes a channel id, as in Slack: the id of #checkout-deploys, once posted to.
        ids = [c["id"] for c in listed.get("channels", []) if c.get("name") == "checkout-deploys"]
        if not ids:
            return None
        api = httpx.post(
            f"{self.base}/sandbox/api/conversations.history",
            data={"channel": ids[0], "limit": "50"},
            headers=auth,
        ).json()
        for message in api.get("messages", []):
            for block in message.get("blocks") or []:
                for element in block.get("elements", []) if block.get("type") == "actions" else []:
                    if element.get("action_id") == "release_approve":
                        return {"ts": message["ts"], "gate": element["value"]}
        return None

    def click(self, user: str, action_id: str, value: str, ts: str) -> None:
        httpx.post(
            f"{self.base}/sandbox/act",
            data={
                "as": user,
                "channel": "#checkout-deploys",
                "ts": ts,
                "action_id": action_id,
                "value": value,
                "block_id": "demo",
            },
            follow_redirects=False,
        )

    def wait(self, what: str, check: Callable[[], Any], *, forever: bool = False) -> Any:
        deadline = float("inf") if forever else time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            found = check()
            if found:
                return found
            time.sleep(1)
        raise TimeoutError(f"the demo waited too long for {what}")

    def play(self) -> None:
        say = self.say
        say("1/6 production already runs 4f2b6c1 (the previous release)")
        self.deployment_status("success", PREVIOUS, 100)
        say(
            "2/6 GitHub Actions deploys 9e60244 to staging; its health checks run now and "
            "in 30 s, then it promotes itself to production's gate"
        )
        self.staging_run(RELEASE)
        gate = self.wait("the production gate", self.gate)
        say("3/6 production waits for one release manager (medium risk: a Dockerfile change)")
        if self.auto:
            say("    Olga, who wrote the change, clicks Approve: refused (no self-approval)")
            self.click("U0OWNER01", "release_approve", gate["gate"], gate["ts"])
            time.sleep(2)
            say("    Rita, a release manager, approves")
            self.click("U0RELMGR1", "release_approve", gate["gate"], gate["ts"])
            time.sleep(3)
            if not self.world.dispatches:  # a riskier release also needs the SRE seat
                say("    the risk is high: Sam from SRE approves too")
                self.click("U0SRE0001", "release_approve", gate["gate"], gate["ts"])
        else:
            say(
                "    In the sandbox: act as Olga and click Approve (she wrote it: refused), then "
                "act as Rita and click Approve"
            )
        self.wait("the approval", lambda: self.world.dispatches, forever=not self.auto)
        say("4/6 approved: GitHub's deploy-production.yml was dispatched; the pipeline runs")
        self.world.healthy = False
        self.deployment_status("in_progress", RELEASE, 200)
        self.deployment_status("success", RELEASE, 200)
        say(
            "5/6 9e60244 is live, and /healthz answers 500: verification fails, on-call is "
            "paged, and production rolls back by policy"
        )
        self.wait("the rollback", lambda: len(self.world.dispatches) > 1)
        self.world.healthy = True
        self.deployment_status("success", PREVIOUS, 300)
        say(
            "6/6 the pipeline redeployed 4f2b6c1; its verification runs now. Automatic "
            "promotion to production stays locked until someone unlocks it."
        )


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = commands.add_parser(
        "demo", help="run the bot with the local Slack sandbox and play a release story into it"
    )
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument("--database", default="releasebot-demo.db", help="SQLite file (recreated)")
    demo.add_argument("--auto", action="store_true", help="make the story's clicks too")
    demo.add_argument("--no-story", action="store_true", help="only serve; send events yourself")
    demo.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    run_demo(
        host=args.host,
        port=args.port,
        database=Path(args.database),
        auto=args.auto,
        play=not args.no_story,
    )
    return EXIT_OK


def run_demo(*, host: str, port: int, database: Path, auto: bool, play: bool = True) -> None:
    """Serve the bot with the sandbox and the outside world's stand-ins; play the story."""
    from bot.app import Overrides, create_app
    from bot.settings import load_settings

    world = World()
    serve(outside_world(world), "127.0.0.1", 9310)  # /healthz, as examples/releasebot.yaml says
    serve(outside_world(world), "127.0.0.1", 9390)  # Prometheus
    github_port = _free_port()
    serve(outside_world(world), "127.0.0.1", github_port)
    if database.exists():
        database.unlink()
    secret = secrets.token_hex(16)
    config = Path(__file__).resolve().parents[2] / "examples" / "releasebot.yaml"
    base = f"http://{host}:{port}"
    environ = {
        **{k: v for k, v in os.environ.items() if k.startswith("RELEASEBOT_LOG")},
        "RELEASEBOT_CONFIG": os.environ.get("RELEASEBOT_CONFIG", str(config)),
        "RELEASEBOT_DATABASE_URL": f"sqlite:///{database}",
        "RELEASEBOT_PUBLIC_URL": base,
        "GITHUB_WEBHOOK_SECRET": secret,
        "GITHUB_TOKEN": "demo-token",
        "GITHUB_API_URL": f"http://127.0.0.1:{github_port}",
        "PAGERDUTY_EVENTS_URL": f"http://127.0.0.1:{github_port}",
    }
    os.environ["PD_CHECKOUT_ROUTING_KEY"] = "demo-routing-key"
    # Deploy markers (the example's search service) go to the stand-in's Grafana annotations.
    os.environ["GRAFANA_URL"] = f"http://127.0.0.1:{github_port}"
    os.environ["GRAFANA_TOKEN"] = "demo-grafana-token"
    # The story runs against stand-ins: doctor's start-up checks would only report the
    # example config's unset secrets.
    app = create_app(load_settings(environ), overrides=Overrides(startup_checks=False))
    server = serve(app, host, port)

    def say(line: str) -> None:
        print(f"[demo {datetime.now(UTC):%H:%M:%S}] {line}", flush=True)  # noqa: T201

    say(f"releasebot is running: open {base}/sandbox (Slack) and {base}/ (dashboard)")
    try:
        if play:
            Story(base=base, secret=secret, world=world, auto=auto, say=say).play()
            say("the story is over; the bot keeps running. Ctrl-C to stop.")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.should_exit = True


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
