"""A long fuzzing run of every inbound edge, for releases (the suite runs a bounded one).

    .venv/bin/python bench/fuzz_inbound.py                     # 500 examples per edge
    .venv/bin/python bench/fuzz_inbound.py --examples 5000 --edge github --edge slack-click
    .venv/bin/python bench/fuzz_inbound.py --database-url postgresql://localhost/postgres

The strategies are those of `tests/test_fuzz_inbound.py` (`tests/fuzzing.py`): real payloads
mutated with hostile values, raw bodies and odd headers, each signed correctly. The real app
runs in process over ASGI with a fresh database, the fake Slack Web API on loopback and fakes
for GitHub and the other outside APIs. Every request must be answered 2xx or 4xx, a 4xx must
store nothing, what is stored must fit its column (as PostgreSQL demands), and /healthz must
still answer. It prints, per edge, the examples tried, the statuses seen and any violation
(hypothesis shrinks the first one it finds and prints it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import threading
from collections import Counter
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
from asgi_lifespan import LifespanManager  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from support import bench_database, out  # noqa: E402

from bot import migrate  # noqa: E402
from bot.app import Overrides, create_app  # noqa: E402
from bot.settings import load_settings  # noqa: E402
from bot.store.db import make_engine  # noqa: E402
from integrations.sandbox.webapi import FakeSlackWebApi  # noqa: E402
from tests.fakes import FakeEdge, FrozenClock  # noqa: E402
from tests.fuzzing import EDGES, FUZZ_ENV, Inbound  # noqa: E402
from tests.helpers import (  # noqa: E402
    EXAMPLE_CONFIG,
    GITHUB_SECRET,
    SLACK_GROUPS,
    SLACK_SIGNING_SECRET,
    SLACK_TOKEN,
    SLACK_USERS,
)
from tests.servers import serve_in_thread  # noqa: E402
from tests.test_fuzz_inbound import row_counts, unstorable  # noqa: E402

T = TypeVar("T")


class Running:
    """The app's lifespan and an ASGI client, on an event loop of their own (a thread), so
    hypothesis's synchronous examples can send requests into it."""

    def __init__(self, env: dict[str, str]) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.env = env
        self.http: httpx.AsyncClient | None = None
        self.runtime: Any = None

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    async def start(self) -> None:
        overrides = Overrides(
            clock=FrozenClock(),
            start_scheduler=False,
            run_outbox_worker=False,
            process_before_response=True,
            http_transport=FakeEdge().transport,
            environ={},
        )
        app = create_app(load_settings(self.env), overrides=overrides)
        self._lifespan = LifespanManager(app)
        manager = await self._lifespan.__aenter__()
        self.runtime = app.state.runtime
        transport = httpx.ASGITransport(app=manager.app)
        self.http = httpx.AsyncClient(transport=transport, base_url="http://bot")

    async def stop(self) -> None:
        if self.http is not None:
            await self.http.aclose()
        await self._lifespan.__aexit__(None, None, None)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


def private_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def fuzz_edge(running: Running, name: str, examples: int) -> tuple[Counter[int], list[str]]:
    """Run `examples` examples against one edge; the statuses and the violations found."""
    statuses: Counter[int] = Counter()
    violations: list[str] = []

    async def exchange(inbound: Inbound) -> None:
        assert running.http is not None
        engine = running.runtime.db.engine
        before = row_counts(engine)
        headers = {k.encode(): v.encode("latin-1") for k, v in inbound.headers.items()}
        answer = await running.http.post(inbound.path, content=inbound.body, headers=headers)
        statuses[answer.status_code] += 1
        if not 200 <= answer.status_code < 500:
            violations.append(f"{answer.status_code} for {inbound!r}: {answer.text[:200]}")
        elif answer.status_code >= 400 and row_counts(engine) != before:
            violations.append(f"a {answer.status_code} stored something: {inbound!r}")
        problems = unstorable(engine)
        if problems:
            violations.append(f"unstorable for PostgreSQL {problems}: {inbound!r}")
        if (await running.http.get("/healthz")).status_code != 200:
            violations.append(f"/healthz stopped answering after {inbound!r}")
        assert not violations, violations[-1]

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(inbound=EDGES[name])
    def example(inbound: Inbound) -> None:
        running.run(exchange(inbound))

    # A failing example is recorded in `violations` (hypothesis prints the shrunk one); the
    # run goes on to the next edge either way.
    with contextlib.suppress(AssertionError, ExceptionGroup):
        example()
    return statuses, violations


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--examples", type=int, default=500, help="examples per edge")
    parser.add_argument("--edge", action="append", choices=sorted(EDGES), help="(repeatable)")
    parser.add_argument("--database-url", help="a PostgreSQL server (default: SQLite)")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()
    edges = args.edge or sorted(EDGES)
    logging.disable(logging.CRITICAL)  # refusals are logged by design; the table says enough

    fake = FakeSlackWebApi(users=SLACK_USERS, usergroups=SLACK_GROUPS)
    failed = False
    with (
        bench_database(args.database_url, keep=args.keep, prefix="fuzz-") as url,
        serve_in_thread(fake.app()) as slack_url,
    ):
        engine = make_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
        env = {
            "RELEASEBOT_DATABASE_URL": url,
            "RELEASEBOT_CONFIG": str(EXAMPLE_CONFIG),
            "RELEASEBOT_PUBLIC_URL": "https://releasebot.example",
            "SLACK_BOT_TOKEN": SLACK_TOKEN,
            "SLACK_SIGNING_SECRET": SLACK_SIGNING_SECRET,
            "RELEASEBOT_SLACK_API_URL": f"{slack_url}/api/",
            "GITHUB_WEBHOOK_SECRET": GITHUB_SECRET,
            "GITHUB_APP_ID": "1234",
            "GITHUB_APP_PRIVATE_KEY": private_key(),
            **FUZZ_ENV,
        }
        running = Running(env)
        running.run(running.start())
        try:
            out(f"{'edge':<18} {'tried':>6}  statuses")
            for name in edges:
                statuses, violations = fuzz_edge(running, name, args.examples)
                seen = ", ".join(f"{code}: {n}" for code, n in sorted(statuses.items()))
                out(f"{name:<18} {sum(statuses.values()):>6}  {seen}")
                for violation in violations[:3]:
                    failed = True
                    out(f"  VIOLATION {violation[:600]}")
        finally:
            running.run(running.stop())
            running.close()
    out("no violations" if not failed else "violations found (see above)")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
