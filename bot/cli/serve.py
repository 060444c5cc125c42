"""`releasebot serve`: the bot under uvicorn (migrations applied first, scheduler started).

`--role web|worker|all` (or `RELEASEBOT_ROLE`) splits the process
(see `bot.scheduling.start_background`):
web serves HTTP and stores deliveries; worker applies them, sends the outbox and runs the
scheduler; all, the default, does both.

SIGTERM (or Ctrl-C) drains: the listening socket closes, no outbox row or check run is
claimed any more, and requests, sends and checks in flight get `RELEASEBOT_SHUTDOWN_GRACE_SECONDS`
(default 20) to finish; what is still running then is cancelled and its claims are given back.
After a drain on SIGTERM the process exits with status 0.
"""

from __future__ import annotations

import argparse
import gc
import logging
import math
import signal
from types import FrameType
from typing import TYPE_CHECKING, Any

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
from bot.settings import Settings, SettingsError
from integrations.sandbox.door import reach_warning

if TYPE_CHECKING:
    import uvicorn
    from starlette.applications import Starlette


GC_THRESHOLDS = (20_000, 50, 100)  # young, middle, old: see cmd_serve


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser("serve", help="run the bot (applies migrations first)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--config", help="config file (default: $RELEASEBOT_CONFIG)")
    serve.add_argument(
        "--role",
        choices=["web", "worker", "all"],
        help="web: HTTP and storing deliveries; worker: the applier, outbox worker and "
        "scheduler; all: both (default: $RELEASEBOT_ROLE, else all)",
    )
    serve.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from bot.app import create_app

    try:
        settings = settings_for(args)
        if args.role:
            settings = settings.model_copy(update={"role": args.role})
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
    warn_if_sandbox_reachable(settings, args.host)
    # What is loaded by now (modules, the config) stays for the life of the server: frozen,
    # the collector's full passes no longer walk it all (each stalled the event loop, and
    # every request waiting on it, for ~100 ms).
    gc.collect()
    gc.freeze()
    # A request or a write allocates thousands of short-lived objects (parsed JSON, ORM
    # rows), nearly all freed by reference counting: a young-generation pass every 700
    # allocations (the default) mostly walks live ones. Rarer passes cut the CPU of a
    # webhook by a tenth (bench/README.md), with no growth in memory measured.
    gc.set_threshold(*GC_THRESHOLDS)
    # In JSON, uvicorn's own lines go through the same handler (no log config of its own).
    extra: dict[str, Any] = {"log_config": None} if settings.log_format == "json" else {}
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level=settings.log_level.lower(),
        access_log=False,
        **extra,
        # uvicorn takes whole seconds; the app cuts its own work at the exact grace.
        timeout_graceful_shutdown=math.ceil(settings.shutdown_grace_seconds),
    )
    # uvicorn raises the signal again once it has shut down; a drained SIGTERM ends here.
    previous = signal.signal(signal.SIGTERM, _exit_ok)
    try:
        _draining_server(config, app).run()
    finally:
        signal.signal(signal.SIGTERM, previous)
    return EXIT_OK


def warn_if_sandbox_reachable(settings: Settings, host: str) -> None:
    """Log a warning when the sandbox is on and the server listens beyond loopback."""
    token = settings.dashboard_token
    message = reach_warning(
        host,
        sandbox_on=not (settings.slack_bot_token and settings.slack_bot_token.get_secret_value()),
        token_set=bool(token and token.get_secret_value()),
        public=settings.sandbox_public,
    )
    if message:
        logging.getLogger("releasebot").warning(message)


def _exit_ok(_sig: int, _frame: FrameType | None) -> None:
    raise SystemExit(EXIT_OK)


def _draining_server(config: uvicorn.Config, app: Starlette) -> uvicorn.Server:
    """uvicorn's server, telling the app to stop claiming work the moment a signal arrives
    (uvicorn notices it within a tenth of a second, then waits for the requests in flight)."""
    import uvicorn

    class DrainingServer(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            super().handle_exit(sig, frame)
            stop_claiming = getattr(app.state, "stop_claiming", None)
            if stop_claiming is not None:
                stop_claiming()

    return DrainingServer(config)
