"""Release summary rendering benchmark: Block Kit messages of realistic size.

    .venv/bin/python bench/render.py [--count 10000] [--json]

Target ("Performance targets" of the summaries issue): <= 2 ms per summary.

Renders `--count` release messages with the built-in Jinja2 templates
(`bot.render.Renderer.release_message`, what the outbox worker calls for every post and
edit) from views shaped like production ones: 1 to 60 commits with multi-line messages
carrying mrkdwn to escape (`<`, `>`, `&`, mentions), a diff summary, a risk score with
five reasons, a pending gate with its progress line and expiry, verification progress and,
for a tenth of them, a freeze notice. A tenth are 250-commit releases with long messages
(GitHub's compare cap). The views are built before the clock starts, as the worker reads
them from the database in batches; only rendering is timed.

In the same run it times `json.dumps` of each rendered message (what sending it costs at
the least) as the baseline, and prints the ratio. Exit status 0 whenever the benchmark ran.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bot.render import Renderer  # noqa: E402
from bot.services.release_views import ReleaseView  # noqa: E402

TARGET_MS = 2.0
NOW = datetime(2026, 11, 17, 10, 0, tzinfo=UTC)
SUBJECTS = [
    "Fix rounding of refunds in <CheckoutTotal> & tax lines",
    "Bump grpcio from 1.62.0 to 1.64.1",
    "Retry payment capture on 503 from the PSP (see <!here> thread)",
    "Migrations: add index on orders(created_at)",
    "Feature flag `new_cart` on for 10% of EU traffic",
    'Revert "Cache exchange rates for 10 minutes"',
]
REASONS = [
    "1,284 lines changed across 37 files (large change)",
    "touches sensitive paths: migrations/, Dockerfile",
    "deploying on a Friday after 16:00",
    "CI needed 2 retries before passing",
    "checkout failed 2 of its last 10 production deploys",
]


def out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def commit(rng: random.Random, i: int, *, long: bool) -> dict[str, Any]:
    subject = rng.choice(SUBJECTS)
    body = ("Longer explanation of the change, wrapped at 72 columns. " * (20 if long else 2))[:-1]
    sha = f"{rng.getrandbits(160):040x}"
    return {
        "sha": sha,
        "message": f"{subject} (#{1000 + i})\n\n{body}",
        "author": rng.choice(["Alice Example", "Bob <bob@acme>", "dependabot[bot]"]),
        "author_login": "alice",
        "committer_login": "web-flow",
        "authored_at": (NOW - timedelta(hours=i)).isoformat(),
        "url": f"https://github.com/acme/checkout/commit/{sha}",
    }


def views(count: int, seed: int = 7) -> list[ReleaseView]:
    rng = random.Random(seed)
    base = ReleaseView(
        deployment_id=0,
        service="checkout",
        environment="production",
        sha="0" * 40,
        version=None,
        ref="main",
        state="awaiting_approval",
        attempt=1,
        deployer="octocat",
        ci_url="https://github.com/acme/checkout/actions/runs/1",
        description=None,
        created_at=NOW,
        updated_at=NOW,
        commits=None,
        risk=None,
        channel="C0CHECKOUT",
        ts="1763373600.000100",
    )
    made = []
    for n in range(count):
        big = n % 10 == 0
        commits = [commit(rng, i, long=big) for i in range(250 if big else rng.randint(1, 60))]
        made.append(
            replace(
                base,
                deployment_id=n + 1,
                sha=f"{rng.getrandbits(160):040x}",
                version=f"v2.{n // 100}.{n % 100}",
                state=rng.choice(["awaiting_approval", "in_progress", "verifying", "verified"]),
                commits=commits,
                diff={
                    "additions": rng.randint(1, 5000),
                    "deletions": rng.randint(0, 2000),
                    "files": rng.randint(1, 300),
                    "total_commits": len(commits),
                    "truncated": big,
                    "url": "https://github.com/acme/checkout/compare/a...b",
                },
                risk={
                    "score": rng.randint(0, 100),
                    "level": rng.choice(["low", "medium", "high", "critical"]),
                    "factors": [
                        {"name": f"factor{i}", "points": 10, "reason": r}
                        for i, r in enumerate(REASONS)
                    ],
                },
                freeze="Black Friday freeze until 2026-11-30 (<@U0RELMGR1>)"
                if n % 10 == 5
                else None,
                gate_id=n + 1,
                gate_status="pending",
                gate_progress="1 of 2 approvals: waiting for someone from S0SREGRPS",
                gate_expires_at=NOW + timedelta(hours=4),
                verification={"total": 5, "passed": 2, "failed": [], "pending": 3, "cancelled": 0},
                promote_to=None,
                can_roll_back=True,
            )
        )
    return made


def timed(fn: Any, items: list[Any]) -> list[float]:
    spent = []
    for item in items:
        began = time.perf_counter()
        fn(item)
        spent.append((time.perf_counter() - began) * 1000)
    return spent


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be positive")

    renderer = Renderer(public_url="https://releasebot.example.com")
    items = views(args.count)
    renderer.release_message(items[0])  # templates compiled once, as in a running server
    rendered: list[tuple[str, list[dict[str, Any]]]] = []

    def render(view: ReleaseView) -> None:
        rendered.append(renderer.release_message(view))

    render_ms = timed(render, items)
    encode_ms = timed(lambda message: json.dumps(message[1]), rendered)
    blocks = [len(message[1]) for message in rendered]
    sizes = [len(json.dumps(message[1])) for message in rendered]
    mean = statistics.fmean(render_ms)
    results = {
        "count": args.count,
        "render_ms": {
            "mean": round(mean, 3),
            "p50": round(pct(render_ms, 50), 3),
            "p99": round(pct(render_ms, 99), 3),
            "max": round(max(render_ms), 3),
        },
        "json_dumps_ms_mean": round(statistics.fmean(encode_ms), 4),
        "render_vs_json_dumps": round(mean / statistics.fmean(encode_ms), 1),
        "blocks_max": max(blocks),
        "message_bytes": {"p50": int(pct(sizes, 50)), "max": max(sizes)},
        "target": {"mean_ms": TARGET_MS, "met": mean <= TARGET_MS},
    }
    if args.json:
        out(json.dumps(results, indent=2))
        return 0
    r = results["render_ms"]
    out(f"rendered {args.count} release messages (a tenth with 250 commits)")
    out(
        f"per summary: mean {r['mean']} ms, p50 {r['p50']} ms, p99 {r['p99']} ms, max {r['max']} ms"
    )
    out(
        f"baseline json.dumps of the same blocks: {results['json_dumps_ms_mean']} ms "
        f"(rendering is {results['render_vs_json_dumps']}x that)"
    )
    out(
        f"blocks per message <= {results['blocks_max']}; message size p50 "
        f"{results['message_bytes']['p50']} B, max {results['message_bytes']['max']} B"
    )
    out(f"target mean <= {TARGET_MS} ms: {'PASS' if results['target']['met'] else 'MISS'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
