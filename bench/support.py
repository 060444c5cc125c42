"""What several benchmarks share: a fresh database to seed and measure."""

from __future__ import annotations

import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from bot.store.db import normalize_url


def out(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


@contextmanager
def bench_database(url: str | None, *, keep: bool, prefix: str) -> Iterator[str]:
    """A fresh database: a SQLite file in a temp dir named after `prefix`, or a new database
    on the PostgreSQL server `url` names (created here, dropped afterwards unless `keep`)."""
    if url is None:
        workdir = Path(tempfile.mkdtemp(prefix=prefix))
        try:
            yield f"sqlite:///{workdir / 'releasebot.db'}"
        finally:
            if keep:
                out(f"kept {workdir}")
            else:
                shutil.rmtree(workdir, ignore_errors=True)
        return
    server = make_url(normalize_url(url))
    if server.get_backend_name() != "postgresql":
        raise SystemExit(f"--database-url must be a PostgreSQL URL, not {server.drivername}")
    name = f"rb_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        try:
            yield server.set(database=name).render_as_string(hide_password=False)
        finally:
            if keep:
                out(f"kept database {name}")
            else:
                with admin.connect() as conn:
                    conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()
