"""Slack interaction benchmark: how fast button clicks are acknowledged under a burst.

    .venv/bin/python bench/clicks.py [--rounds 20] [--concurrency 50] [--json]

Target ("Performance targets" of the design): interaction ack p99 <= 150 ms with 50
concurrent clicks. Slack shows the user an error when the app does not answer within 3 s,
so the figure is the HTTP answer time of POST /slack/events, signed as Slack signs it.

Starts `python -m bot serve` (one uvicorn worker, SQLite file in a temp dir, the example
config, the sandbox Slack since no bot token is set, SLACK_SIGNING_SECRET set) as
bench/ingest.py does. Each round opens a production gate for a new release of checkout (a
signed GitHub `deployment_protection_rule` delivery, which supersedes the previous round's
gate), waits until the sandbox shows its Approve button, then fires `--concurrency` clicks
at once: approvals by each person of the sandbox directory (a release manager, an SRE, the
change's author, a stranger: accepted, refused and "already decided" answers all happen) and
Reject clicks that open the reason modal. The listeners' work (deciding the gate in the
database, answering ephemerally, views.open) runs after the ack, in the same process, so it
competes with the next acks the way it would in production.

By default the bot talks to a stand-in Slack Web API served from its own process (real
HTTP on loopback, SLACK_BOT_TOKEN set), as production talks to Slack over the network:
the bot's process then does exactly the work it does in production. `--slack sandbox`
uses the built-in sandbox instead, whose Slack API calls (ephemeral answers, modals) are
handled by the bot's own process and so add to its load.

In the same run it sends the same signed bodies to a bare Starlette endpoint under the same
uvicorn settings and prints releasebot's p99 against it. Exit status 0 whenever the
benchmark ran, whatever the figures; 1 when it could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import httpx  # noqa: E402
from ingest import (  # noqa: E402
    BOT_TOKEN,
    AiohttpPoster,
    LoadResult,
    Server,
    start_bare,
    start_fake_slack,
    start_releasebot,
    wait_until_up,
)
from ingest import PATH as BARE_PATH  # noqa: E402

from tests.helpers import (  # noqa: E402
    encode,
    github_headers,
    slack_headers,
)
from tests.slackflow import CHANNEL, protection_rule  # noqa: E402

TARGET_P99_MS = 150.0
SIGNING_SECRET = "bench-slack-signing-secret"
# (user, action): who clicks what, cycled over the burst.
CLICKS = [
    ("U0RELMGR1", "release_approve"),  # a release manager: approves (first one wins)
    ("U0SRE0001", "release_approve"),  # an SRE: counts towards a quorum, else already decided
    ("U0OWNER01", "release_approve"),  # the change's author: refused, no self-approval
    ("U0STRANGR", "release_approve"),  # not an approver: refused
    ("U0RELMGR1", "release_reject"),  # opens the reason modal
]


def click_body(user: str, action_id: str, gate: str, message_ts: str, n: int) -> bytes:
    payload = {
        "type": "block_actions",
        "team": {"id": "T0SANDBOX"},
        "user": {"id": user},
        "api_app_id": "A0RELBOT",
        "trigger_id": f"bench-{n}-{time.monotonic_ns()}",
        "channel": {"id": CHANNEL},
        "container": {"type": "message", "channel_id": CHANNEL, "message_ts": message_ts},
        "message": {"ts": message_ts},
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": "bench",
                "value": gate,
                "action_ts": str(time.time()),
            }
        ],
    }
    return urlencode({"payload": json.dumps(payload)}).encode()


def release_sha(n: int) -> str:
    """Round n's sha: its first 7 digits (what the message shows) differ every round."""
    return f"{n + 1:07x}".ljust(40, "0")


async def open_gate(
    client: httpx.AsyncClient, server: Server, slack_api: str, n: int, timeout: float
) -> Any:
    """A new release of checkout waits at production's gate; returns (gate id, message ts)."""
    sha = release_sha(n)
    body = encode(protection_rule(sha=sha, run=5000 + n))
    headers = github_headers("deployment_protection_rule", body)
    answer = await client.post(server.base_url + "/webhooks/github", content=body, headers=headers)
    answer.raise_for_status()
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        found = await _approve_button(client, slack_api, sha_prefix=sha[:7])
        if found:
            return found
        await asyncio.sleep(0.05)
    raise RuntimeError(f"no Approve button appeared for round {n}:\n{server.log_tail()}")


async def _approve_button(
    client: httpx.AsyncClient, slack_api: str, *, sha_prefix: str
) -> tuple[str, str] | None:
    auth = {"authorization": f"Bearer {BOT_TOKEN}"}
    listed = (await client.post(slack_api + "conversations.list", headers=auth)).json()
    # History takes a channel id, as in Slack: the id of the configured #name.
    channel_id = next(
        (c["id"] for c in listed.get("channels", []) if f"#{c.get('name')}" == CHANNEL), CHANNEL
    )
    history = (
        await client.post(
            slack_api + "conversations.history",
            data={"channel": channel_id, "limit": "20"},
            headers=auth,
        )
    ).json()
    for message in history.get("messages", []):
        if sha_prefix not in json.dumps(message.get("blocks") or []):
            continue
        for block in message.get("blocks") or []:
            if block.get("type") != "actions":
                continue
            for element in block.get("elements", []):
                if element.get("action_id") == "release_approve":
                    return str(element["value"]), str(message["ts"])
    return None


async def burst(poster: AiohttpPoster, url: str, bodies: list[bytes], result: LoadResult) -> None:
    async def one(body: bytes) -> None:
        # signed at send time, as Slack does; the timestamp must be fresh
        headers = slack_headers(
            body, content_type="application/x-www-form-urlencoded", secret=SIGNING_SECRET
        )
        sent = time.perf_counter()
        try:
            status, _ = await poster.post(url, body, headers)
        except Exception as exc:  # counted, never hidden
            status = 0
            if len(result.errors) < 5:
                result.errors.append(f"{type(exc).__name__}: {exc}")
        result.latencies_ms.append((time.perf_counter() - sent) * 1000)
        result.statuses[status] += 1

    await asyncio.gather(*(one(body) for body in bodies))


def bodies_for(round_no: int, gate: str, ts: str, concurrency: int) -> list[bytes]:
    return [
        click_body(*CLICKS[i % len(CLICKS)], gate=gate, message_ts=ts, n=round_no * 1000 + i)
        for i in range(concurrency)
    ]


async def bench(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    releasebot = LoadResult(count=args.rounds * args.concurrency, seconds=0.0, latencies_ms=[])
    rounds: list[list[bytes]] = []
    # GitHub calls (commit lists, the protection-rule callback) go to a closed port and are
    # retried by the outbox, off the measured path.
    env = {"SLACK_SIGNING_SECRET": SIGNING_SECRET, "GITHUB_API_URL": "http://127.0.0.1:9"}
    slack: Server | None = None
    async with httpx.AsyncClient(timeout=30.0, trust_env=False) as client:
        if args.slack == "fake":
            slack = start_fake_slack(workdir)
            await wait_until_up(client, slack, "/api/api.test")
            slack_api = f"{slack.base_url}/api/"
            env |= {"SLACK_BOT_TOKEN": BOT_TOKEN, "RELEASEBOT_SLACK_API_URL": slack_api}
        server = start_releasebot(workdir, wrap=[], extra_env=env)
        if slack is None:
            slack_api = f"{server.base_url}/sandbox/api/"
        try:
            startup = await wait_until_up(client, server, "/readyz")
            poster = AiohttpPoster(args.concurrency)
            try:
                for n in range(args.warmup + args.rounds):
                    gate, ts = await open_gate(client, server, slack_api, n, timeout=30.0)
                    bodies = bodies_for(n, gate, ts, args.concurrency)
                    if n < args.warmup:
                        unmeasured = LoadResult(count=0, seconds=0.0, latencies_ms=[])
                        await burst(poster, server.base_url + "/slack/events", bodies, unmeasured)
                        continue
                    rounds.append(bodies)
                    began = time.perf_counter()
                    await burst(poster, server.base_url + "/slack/events", bodies, releasebot)
                    releasebot.seconds += time.perf_counter() - began
            finally:
                await poster.aclose()
        finally:
            server.stop()
            if slack is not None:
                slack.stop()

        bare = LoadResult(count=releasebot.count, seconds=0.0, latencies_ms=[])
        bare_server = start_bare(workdir)
        try:
            await wait_until_up(client, bare_server, "/")
            poster = AiohttpPoster(args.concurrency)
            try:
                for bodies in rounds:
                    began = time.perf_counter()
                    await burst(poster, bare_server.base_url + BARE_PATH, bodies, bare)
                    bare.seconds += time.perf_counter() - began
            finally:
                await poster.aclose()
        finally:
            bare_server.stop()

    p99 = releasebot.percentile(99)
    return {
        "config": {
            "rounds": args.rounds,
            "concurrency": args.concurrency,
            "warmup_rounds": args.warmup,
            "slack": args.slack,
        },
        "startup_to_ready_s": round(startup, 3),
        "releasebot": _summary(releasebot, ok_status=200),
        "bare": _summary(bare, ok_status=202),
        "p99_vs_bare": round(p99 / bare.percentile(99), 2) if bare.latencies_ms else None,
        "target": {"p99_ms": TARGET_P99_MS, "met": p99 <= TARGET_P99_MS},
    }


def _summary(result: LoadResult, *, ok_status: int) -> dict[str, Any]:
    return {
        "clicks": len(result.latencies_ms),
        "all_answered": result.statuses.get(ok_status, 0) == len(result.latencies_ms),
        "statuses": {str(k): v for k, v in sorted(result.statuses.items())},
        "latency_ms": {
            "p50": round(result.percentile(50), 1),
            "p95": round(result.percentile(95), 1),
            "p99": round(result.percentile(99), 1),
            "max": round(max(result.latencies_ms, default=float("nan")), 1),
        },
        "errors": result.errors[:5],
    }


def out(text: str = "", *, err: bool = False) -> None:
    (sys.stderr if err else sys.stdout).write(text + "\n")


def print_table(results: dict[str, Any]) -> None:
    config = results["config"]
    out(
        f"Slack interaction ack: {config['rounds']} rounds of {config['concurrency']} "
        f"concurrent clicks, Slack: {config['slack']} "
        f"(startup to /readyz {results['startup_to_ready_s']} s)"
    )
    out(f"{'':12} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8}  answered")
    for name in ("releasebot", "bare"):
        row = results[name]
        lat = row["latency_ms"]
        out(
            f"{name:12} {lat['p50']:8.1f} {lat['p95']:8.1f} {lat['p99']:8.1f} {lat['max']:8.1f}"
            f"  {row['statuses']}"
        )
        for error in row["errors"]:
            out(f"  error: {error}")
    target = results["target"]
    mark = "PASS" if target["met"] else "MISS"
    out(
        f"p99 {results['releasebot']['latency_ms']['p99']} ms vs target <= "
        f"{target['p99_ms']:.0f} ms: {mark}; {results['p99_vs_bare']}x the bare endpoint's p99"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured rounds first")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--slack",
        choices=["fake", "sandbox"],
        default="fake",
        help="a stand-in Slack in its own process (default), or the built-in sandbox",
    )
    parser.add_argument("--keep", action="store_true", help="keep the database and server log")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="releasebot-bench-clicks-"))
    try:
        results = asyncio.run(bench(args, tmp))
    except RuntimeError as exc:
        out(f"the benchmark could not run: {exc}", err=True)
        return 1
    finally:
        if args.keep:
            out(f"kept {tmp}", err=True)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        out(json.dumps(results, indent=2))
    else:
        print_table(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
