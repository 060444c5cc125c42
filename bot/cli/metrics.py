"""`releasebot metrics`: DORA and release-health metrics, overall and per configured service,
in the terminal."""

from __future__ import annotations

import argparse
from datetime import datetime

from bot.cli.common import EXIT_ERROR, EXIT_FAIL, EXIT_OK, config_or_report, say, settings_for, warn
from bot.store.db import Database, make_engine


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from bot.domain.dora import DEFAULT_YEAR, years

    metrics_cmd = commands.add_parser(
        "metrics",
        help="DORA and release-health metrics per service and overall, with the DORA cluster",
    )
    metrics_cmd.add_argument("--service", help="one service (default: overall and each one)")
    metrics_cmd.add_argument(
        "--days", type=_metrics_days, default=30, help="the last N days (default 30)"
    )
    metrics_cmd.add_argument(
        "--year",
        type=int,
        choices=years(),
        default=DEFAULT_YEAR,
        help=f"DORA report year of the cluster thresholds (default {DEFAULT_YEAR})",
    )
    metrics_cmd.add_argument(
        "--at", type=_metrics_at, help="as of this ISO 8601 time (default: now)"
    )
    metrics_cmd.add_argument("--config", help="config file (default: $RELEASEBOT_CONFIG)")
    metrics_cmd.set_defaults(func=cmd_metrics)


def _metrics_days(value: str) -> int:
    from bot.domain.dora import MAX_DAYS

    if not value.isdigit() or not 1 <= int(value) <= MAX_DAYS:
        raise argparse.ArgumentTypeError(f"must be a whole number of days, 1 to {MAX_DAYS}")
    return int(value)


def _metrics_at(value: str) -> datetime:
    from datetime import UTC

    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an ISO 8601 time") from None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def cmd_metrics(args: argparse.Namespace) -> int:
    """`metrics`: DORA metrics, overall and per configured service (or one), as a table."""
    from datetime import UTC

    from sqlalchemy.exc import SQLAlchemyError

    from bot.services import dora, seed_metrics

    settings = settings_for(args)
    config = config_or_report(settings)
    if config is None:
        return EXIT_FAIL
    if args.service is not None and args.service not in config.services:
        warn(f"warning: {args.service} is not in {settings.config_path}; showing its history")
    now = args.at or datetime.now(UTC)
    services = None if args.service is not None else sorted(config.services)
    db = Database(make_engine(settings.database_url))
    try:
        with db.read() as session:
            rows = dora.report(
                session,
                now=now,
                service=args.service,
                windows=(args.days,),
                services=services,
                production=dora.Production.of(config),
            )
            seed = seed_metrics.report(
                session,
                now=now,
                days=args.days,
                service=args.service,
                services=services,
                production=dora.Production.of(config),
            )
    except SQLAlchemyError as exc:
        warn(f"cannot read the database: {type(exc).__name__}: {exc}".splitlines()[0])
        return EXIT_ERROR
    finally:
        db.dispose()
    say(dora.heading(rows, now=now, year=args.year))
    say(dora.table_text(rows, year=args.year))
    say(dora.verdict_line(rows[0], year=args.year))
    say(dora.legend(args.year))
    say(dora.seed_table_text(seed))
    say(dora.seed_legend())
    return EXIT_OK
