"""`releasebot webhooks list` and `webhooks replay`: the stored deliveries and their outcome.

    releasebot webhooks list [--failed] [--since ISO] [--limit N]
    releasebot webhooks replay ID [ID ...] | --failed | --since ISO

`list` shows the newest deliveries first: id, when received, provider, event, outcome
(pending, accepted, ignored, failed), attempts and the last error. `--failed` shows the
ones given up on and the ones retrying after a failed attempt. `replay` puts deliveries
back to pending: the applier of a running releasebot (role `worker` or `all`) applies them
again within a second. Re-applying is harmless: an event a deployment has already seen
changes nothing and is recorded as ignored.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from bot.cli.common import EXIT_ERROR, EXIT_FAIL, EXIT_OK, say, settings_for, warn
from bot.services.applier import DeliveryRow
from bot.store.db import Database, make_engine
from bot.usecases import apply


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    webhooks = commands.add_parser("webhooks", help="stored webhook deliveries: list, replay")
    actions = webhooks.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="the newest deliveries and their outcome")
    listing.add_argument("--failed", action="store_true", help="failed and retrying only")
    listing.add_argument("--since", type=_when, help="received at or after (ISO 8601)")
    listing.add_argument("--limit", type=int, default=50)
    listing.set_defaults(func=cmd_list)
    replay = actions.add_parser("replay", help="apply deliveries again")
    replay.add_argument("ids", nargs="*", type=int, metavar="ID", help="delivery row ids")
    replay.add_argument("--failed", action="store_true", help="every failed or retrying one")
    replay.add_argument("--since", type=_when, help="every one received at or after (ISO 8601)")
    replay.set_defaults(func=cmd_replay)


def _when(value: str) -> datetime:
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {value!r}") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def cmd_list(args: argparse.Namespace) -> int:
    db = Database(make_engine(settings_for(args).database_url))
    try:
        rows = apply.deliveries(db, failed=args.failed, since=args.since, limit=args.limit)
    finally:
        db.dispose()
    for row in rows:
        say(_line(row))
    if not rows:
        say("no deliveries")
    return EXIT_OK


def cmd_replay(args: argparse.Namespace) -> int:
    if not (args.ids or args.failed or args.since):
        warn("name the deliveries to replay: ID ..., --failed or --since ISO")
        return EXIT_ERROR
    db = Database(make_engine(settings_for(args).database_url))
    try:
        replayed = apply.replay(db, ids=args.ids, failed=args.failed, since=args.since)
    finally:
        db.dispose()
    missing = sorted(set(args.ids) - set(replayed))
    if missing:
        warn(
            "not replayed (no such delivery, or nothing to apply): "
            + ", ".join(str(n) for n in missing)
        )
    say(f"{len(replayed)} deliveries queued to apply again" + _ids(replayed))
    return EXIT_FAIL if missing else EXIT_OK


def _ids(ids: list[int]) -> str:
    return ": " + ", ".join(str(n) for n in ids[:20]) + (" ..." if len(ids) > 20 else "")


def _line(row: DeliveryRow) -> str:
    parts = [
        str(row.id),
        row.received_at.isoformat(timespec="seconds"),
        row.provider,
        row.event,
        row.delivery_id,
        row.outcome,
        f"attempts={row.attempts}",
    ]
    if row.deployment_id is not None:
        parts.append(f"deployment={row.deployment_id}")
    if row.next_attempt_at is not None and row.error:
        parts.append(f"next={row.next_attempt_at.isoformat(timespec='seconds')}")
    if row.error:
        parts.append(f"error={row.error}")
    elif row.detail:
        parts.append(f"detail={row.detail}")
    return "  ".join(parts)
