"""Alembic, configured in code: upgrade and current for the CLI, `serve` and the tests.

The migration scripts live in the repository's top-level `migrations/` directory; an
installed wheel carries the same files as `bot/migrations` (see setup.py).
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Engine

_PACKAGE = Path(__file__).resolve().parent


def migrations_dir(package: Path = _PACKAGE) -> Path:
    """`bot/migrations` when installed from a wheel, else the checkout's `migrations/`."""
    installed = package / "migrations"
    if (installed / "env.py").is_file():
        return installed
    return package.parent / "migrations"


MIGRATIONS = migrations_dir()
_PG_LOCK_ID = 7_200_311  # advisory lock so replicas starting together upgrade one at a time


def alembic_config(engine: Engine | None = None) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if engine is not None:
        cfg.attributes["engine"] = engine
    return cfg


def head() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_lock(:id)"), {"id": _PG_LOCK_ID})
            conn.commit()
        try:
            cfg = alembic_config(engine)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
            conn.commit()
        finally:
            if engine.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": _PG_LOCK_ID})
                conn.commit()


def downgrade(engine: Engine, revision: str) -> None:
    with engine.connect() as conn:
        cfg = alembic_config(engine)
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)
        conn.commit()
