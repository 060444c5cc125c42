"""Audit export benchmark: 1,000,000 records streamed out in bounded memory.

    .venv/bin/python bench/audit_export.py                       # 1,000,000 records, jsonl, SQLite
    .venv/bin/python bench/audit_export.py --count 200000 --format csv
    .venv/bin/python bench/audit_export.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres

Target (issue "A trail nobody can quietly rewrite", item 5): `releasebot audit export`
streams, so exporting a million records needs about the memory of exporting ten thousand.

A child process seeds a fresh, migrated database with `--count` chained records (each hash
computed as `audit.append` computes it), so the seeding's own memory stays out of this
process. This process then exports, through `bot.services.audit_export.export_chunks` (what
the CLI writes to stdout), first the oldest `--baseline` records (`--until`), then all of
them, to a sink that only counts bytes. After each it prints records/s and this process's
peak RSS (`resource.getrusage(RUSAGE_SELF).ru_maxrss`): the peak is a high-water mark, so
the second figure is the most the whole export ever held. Bounded means the two are close.

Exit status 0 whenever the benchmark ran, whatever the figures; 1 when it could not run.
This is a benchmark, not a test: nothing in `tests/` runs it.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import sqlalchemy as sa  # noqa: E402
from support import bench_database, out  # noqa: E402

from bot import migrate  # noqa: E402
from bot.domain.audit import GENESIS_HASH, canonical_json, format_at, record_hash  # noqa: E402
from bot.services.audit_export import export_chunks  # noqa: E402
from bot.store.db import Database, make_engine  # noqa: E402
from bot.store.tables import AuditEvent  # noqa: E402

START = datetime(2026, 1, 1, tzinfo=UTC)
CHUNK = 10_000


def seed(url: str, count: int) -> None:
    """`count` chained records, one a second from START, written CHUNK at a time."""
    engine = make_engine(url)
    migrate.upgrade(engine)
    table = AuditEvent.__table__  # type: ignore[attr-defined]
    prev = GENESIS_HASH
    with engine.begin() as conn:
        for first in range(1, count + 1, CHUNK):
            rows = []
            for seq in range(first, min(first + CHUNK, count + 1)):
                details = {"from": "deploying", "to": "verifying", "note": f"step {seq}"}
                fields: dict[str, Any] = {
                    "seq": seq,
                    "at": format_at(START + timedelta(seconds=seq)),
                    "actor": "releasebot",
                    "action": "deployment.state_changed",
                    "subject": f"deployment:{seq % 5000 + 1}",
                }
                digest = record_hash(prev_hash=prev, details=details, **fields)
                rows.append(
                    {
                        **fields,
                        "details": canonical_json(details),
                        "prev_hash": prev,
                        "hash": digest,
                    }
                )
                prev = digest
            conn.execute(sa.insert(table), rows)
    engine.dispose()


class Sink:
    """Where the export goes: counts what it is given and keeps nothing."""

    def __init__(self) -> None:
        self.bytes = 0

    def write(self, text: str) -> None:
        self.bytes += len(text.encode("utf-8"))


def export(db: Database, fmt: str, until: datetime | None) -> dict[str, float]:
    sink = Sink()
    started = time.perf_counter()
    with db.read() as session:
        for chunk in export_chunks(session, fmt=fmt, until=until):
            sink.write(chunk)
    seconds = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if sys.platform == "darwin":
        peak_kb //= 1024  # macOS reports bytes
    return {"seconds": seconds, "bytes": sink.bytes, "peak_rss_mb": peak_kb / 1024}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--baseline", type=int, default=10_000)
    parser.add_argument("--format", choices=["json", "jsonl", "csv"], default="jsonl")
    parser.add_argument("--database-url", help="a PostgreSQL server (default: a SQLite file)")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    with bench_database(args.database_url, keep=args.keep, prefix="rb-bench-export-") as url:
        started = time.perf_counter()
        child = multiprocessing.get_context("spawn").Process(target=seed, args=(url, args.count))
        child.start()
        child.join()
        if child.exitcode != 0:
            out("seeding failed")
            return 1
        out(f"seeded {args.count:,} chained records in {time.perf_counter() - started:.1f} s")
        db = Database(make_engine(url))
        try:
            until = START + timedelta(seconds=args.baseline + 1)
            results = {
                "baseline": {"records": args.baseline, **export(db, args.format, until)},
                "full": {"records": args.count, **export(db, args.format, None)},
            }
        finally:
            db.dispose()
    if args.json:
        out(json.dumps({"format": args.format, **results}, indent=2))
        return 0
    for name, figures in results.items():
        rate = figures["records"] / figures["seconds"] if figures["seconds"] else 0.0
        out(
            f"{name:>8}: {figures['records']:>9,} records  {rate:>9,.0f} records/s  "
            f"{figures['bytes'] / 1e6:8.1f} MB written  peak RSS {figures['peak_rss_mb']:6.1f} MB"
        )
    growth = results["full"]["peak_rss_mb"] - results["baseline"]["peak_rss_mb"]
    out(f"peak RSS grew {growth:.1f} MB from {args.baseline:,} to {args.count:,} records")
    return 0


if __name__ == "__main__":
    sys.exit(main())
