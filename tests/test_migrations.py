"""Alembic migrations: one head, `upgrade head` builds exactly the models, and back again.

Every database here starts empty (`database_url_factory(migrated=False)`), so the schema
under test is the one the migrations build, never `create_all`. The same tests run on
PostgreSQL when RELEASEBOT_TEST_DATABASE_URL is set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

import bot.store.tables  # noqa: F401  (registers the tables on SQLModel.metadata)
from bot import migrate
from bot.cli import main
from bot.store.db import make_engine

EXIT_OK, EXIT_FAIL = 0, 1


@pytest.fixture
def empty_url(database_url_factory: Callable[..., str]) -> str:
    return database_url_factory(migrated=False)


@pytest.fixture
def empty_engine(empty_url: str) -> Iterator[Engine]:
    engine = make_engine(empty_url)
    yield engine
    engine.dispose()


def schema_drift(engine: Engine) -> list[object]:
    """What autogenerate would still write: the difference between the database and the models."""
    with engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn), SQLModel.metadata))


def table_names(engine: Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def model_tables() -> set[str]:
    return set(SQLModel.metadata.tables)


def test_the_migration_history_has_exactly_one_head() -> None:
    heads = ScriptDirectory.from_config(migrate.alembic_config()).get_heads()
    assert len(heads) == 1, f"several heads, merge them: {heads}"
    assert heads[0] == migrate.head()


def test_upgrade_head_on_an_empty_database_builds_exactly_the_models(
    empty_engine: Engine,
) -> None:
    assert migrate.current(empty_engine) is None

    migrate.upgrade(empty_engine)

    assert migrate.current(empty_engine) == migrate.head()
    assert model_tables() <= table_names(empty_engine)
    assert schema_drift(empty_engine) == []


def test_upgrading_a_current_database_again_changes_nothing(empty_engine: Engine) -> None:
    migrate.upgrade(empty_engine)
    migrate.upgrade(empty_engine)  # what `serve` does on every start

    assert migrate.current(empty_engine) == migrate.head()
    assert schema_drift(empty_engine) == []


def test_downgrade_base_removes_every_table_and_upgrade_head_rebuilds_them(
    empty_engine: Engine,
) -> None:
    migrate.upgrade(empty_engine)

    migrate.downgrade(empty_engine, "base")
    assert migrate.current(empty_engine) is None
    assert table_names(empty_engine) <= {"alembic_version"}

    migrate.upgrade(empty_engine)
    assert migrate.current(empty_engine) == migrate.head()
    assert schema_drift(empty_engine) == []


def test_db_current_reports_an_empty_database_as_behind_and_db_upgrade_brings_it_to_head(
    empty_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RELEASEBOT_DATABASE_URL", empty_url)
    head = migrate.head()
    assert head is not None

    assert main(["db", "current"]) == EXIT_FAIL
    out = capsys.readouterr().out
    assert "empty" in out and "behind" in out and head in out

    assert main(["db", "upgrade"]) == EXIT_OK
    assert head in capsys.readouterr().out

    assert main(["db", "current"]) == EXIT_OK
    out = capsys.readouterr().out
    assert head in out and "behind" not in out

    engine = make_engine(empty_url)
    try:
        assert schema_drift(engine) == []
    finally:
        engine.dispose()


def test_a_rollback_lock_stored_before_0002_keeps_stopping_only_automatic_promotion(
    empty_engine: Engine,
) -> None:
    migrate.upgrade(empty_engine, "0001")
    with empty_engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO environment_lock (service, environment, reason, locked_by, locked_at)"
                " VALUES ('checkout', 'production', 'rolled back', 'U0RM1', :at)"
            ),
            {"at": "2026-12-01T10:00:00.000000+00:00"},
        )

    migrate.upgrade(empty_engine)

    with empty_engine.connect() as conn:
        holds = conn.execute(sa.text("SELECT holds FROM environment_lock")).scalar_one()
    assert holds == "automatic"
    assert schema_drift(empty_engine) == []
