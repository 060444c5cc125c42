"""`releasebot serve`: the bot under uvicorn (migrations applied first, scheduler started)."""

from __future__ import annotations

import argparse
import gc
from typing import Any

from bot.cli.common import (
    EXIT_FAIL,
    EXIT_OK,
    report_invalid_config,
    secret_values,
    settings_for,
    warn,
)
from bot.domain.errors import ConfigError
from bot.logs import configure_logging
from bot.settings import SettingsError


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser("serve", help="run the bot (applies migrations first)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--config", help="config file (default: $RELEASEBOT_CONFIG)")
    serve.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from bot.app import create_app

    try:
        settings = settings_for(args)
    except SettingsError as exc:
        warn(f"releasebot cannot start: {exc}")
        return EXIT_FAIL
    configure_logging(
        level=settings.log_level, fmt=settings.log_format, secrets=secret_values(settings)
    )
    try:
        settings.check_slack_tokens()
        app = create_app(settings)
    except ConfigError as exc:
        report_invalid_config(settings.config_path, exc)
        return EXIT_FAIL
    except SettingsError as exc:
        warn(f"releasebot cannot start: {exc}")
        return EXIT_FAIL
    # What is loaded by now (modules, the config) stays for the life of the server: frozen,
    # the collector's full passes no longer walk it all (each stalled the event loop, and
    # every request waiting on it, for ~100 ms).
    gc.collect()
    gc.freeze()
    # In JSON, uvicorn's own lines go through the same handler (no log config of its own).
    extra: dict[str, Any] = {"log_config": None} if settings.log_format == "json" else {}
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=settings.log_level.lower(),
        access_log=False,
        **extra,
    )
    return EXIT_OK
