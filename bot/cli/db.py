"""`releasebot db upgrade` and `db current`: the database's Alembic migrations."""

from __future__ import annotations

import argparse

from bot import migrate
from bot.cli.common import EXIT_FAIL, EXIT_OK, say, settings_for
from bot.store.db import make_engine


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    db = commands.add_parser("db", help="database migrations")
    db.add_argument("action", choices=["upgrade", "current"])
    db.set_defaults(func=cmd_db)


def cmd_db(args: argparse.Namespace) -> int:
    engine = make_engine(settings_for(args).database_url)
    try:
        if args.action == "upgrade":
            migrate.upgrade(engine)
            say(f"database at {migrate.current(engine)} (head)")
        else:
            current, head = migrate.current(engine), migrate.head()
            state = "current" if current == head else f"behind head {head}"
            say(f"{current or 'empty'} ({state})")
            return EXIT_OK if current == head else EXIT_FAIL
    finally:
        engine.dispose()
    return EXIT_OK
