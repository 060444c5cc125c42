"""`releasebot audit verify` throughput: the keyed chain next to the unkeyed one.

    .venv/bin/python bench/audit_verify.py                  # 100,000 records each, SQLite
    .venv/bin/python bench/audit_verify.py --count 20000    # a quick run
    .venv/bin/python bench/audit_verify.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres

Two fresh databases are seeded with `--count` records each, appended through
`bot.services.audit.append` (the path every state change takes): one without a key, one
under RELEASEBOT_AUDIT_KEY (HMAC-SHA256). Each is then verified by the real CLI entry,
`bot.cli.main(["audit", "verify"])`, timed from the call to its answer (engine start, the
walk of the whole chain, the report), best of `--repeat` runs (the first run of a process
also pays for imports and compiled statements). Printed: records per second for each and
the ratio keyed / unkeyed, measured in the same run.

Exit status 0 whenever the benchmark ran, whatever the figures; 1 when it could not run.
This is a benchmark, not a test: nothing in `tests/` runs it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from support import bench_database, out  # noqa: E402

from bot import migrate  # noqa: E402
from bot.cli import main  # noqa: E402
from bot.domain.audit import AuditKeys, parse_key  # noqa: E402
from bot.services import audit  # noqa: E402
from bot.store import deferred  # noqa: E402
from bot.store.db import Database, make_engine  # noqa: E402

KEY = "bench-1:bench-secret-0123456789abcdef"
BATCH = 2000


def seed(url: str, count: int, key: str | None) -> None:
    """`count` records appended through the audit service, in batches of BATCH."""
    engine = make_engine(url)
    migrate.upgrade(engine)
    db = Database(engine)
    keys = AuditKeys.of(parse_key(key, source="bench")) if key else AuditKeys()
    audit.use_keys(engine, keys)
    start = datetime(2026, 12, 1, tzinfo=UTC)
    done = 0
    while done < count:
        size = min(BATCH, count - done)

        def write(session: object, first: int = done, size: int = size) -> None:
            with deferred.deferred_inserts(session):  # type: ignore[arg-type]
                for n in range(first, first + size):
                    audit.append(
                        session,  # type: ignore[arg-type]
                        at=start + timedelta(seconds=n),
                        actor="github:ci-bot",
                        action="deployment.state_changed",
                        subject=f"deployment:{n // 4}",
                        details={"from": "pending", "to": "in_progress", "n": n},
                    )

        db.write(write)
        done += size
    db.dispose()


def timed_verify(url: str, key: str | None) -> tuple[float, int, str]:
    """Seconds `releasebot audit verify` took, its exit code and its first line."""
    os.environ["RELEASEBOT_DATABASE_URL"] = url
    os.environ.pop("RELEASEBOT_AUDIT_KEY", None)
    if key:
        os.environ["RELEASEBOT_AUDIT_KEY"] = key
    captured = io.StringIO()
    began = time.perf_counter()
    with contextlib.redirect_stdout(captured):
        code = main(["audit", "verify"])
    took = time.perf_counter() - began
    return took, code, captured.getvalue().splitlines()[0] if captured.getvalue() else ""


def run(count: int, database_url: str | None, as_json: bool, repeat: int) -> int:
    figures: dict[str, dict[str, float | int | str]] = {}
    for label, key in (("unkeyed", None), ("keyed", KEY)):
        with bench_database(database_url, keep=False, prefix=f"rb-audit-{label}-") as url:
            began = time.perf_counter()
            seed(url, count, key)
            seeded = time.perf_counter() - began
            runs = [timed_verify(url, key) for _ in range(repeat)]
            took, code, said = min(runs)
            if any(run[1] != 0 for run in runs):
                out(f"{label}: audit verify failed ({code}): {said}")
                return 1
            figures[label] = {
                "records": count,
                "seed_seconds": round(seeded, 2),
                "verify_seconds": round(took, 3),
                "records_per_second": round(count / took),
                "said": said,
            }
    ratio = float(figures["keyed"]["records_per_second"]) / float(
        figures["unkeyed"]["records_per_second"]
    )
    if as_json:
        out(json.dumps({**figures, "keyed_vs_unkeyed": round(ratio, 3)}, indent=2))
        return 0
    out(f"audit verify over {count:,} records ({'PostgreSQL' if database_url else 'SQLite'})")
    for label, figure in figures.items():
        out(
            f"  {label:8} {figure['records_per_second']:>10,} records/s "
            f"({figure['verify_seconds']} s; seeded in {figure['seed_seconds']} s)"
        )
    out(f"  keyed / unkeyed: {ratio:.2f}x")
    return 0


def cli() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--database-url", help="a PostgreSQL server (default: SQLite files)")
    parser.add_argument("--repeat", type=int, default=3, help="verify runs; the best counts")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    return run(args.count, args.database_url, args.json, max(1, args.repeat))


if __name__ == "__main__":
    raise SystemExit(cli())
