"""The composition root: `create_app(settings)` builds the one Starlette app.

Its lifespan owns every resource (engine, Slack client, Bolt app, scheduler, outbox worker)
and hands them to the handlers as typed state; nothing is created at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypedDict

from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from starlette.applications import Starlette
from starlette.middleware import Middleware

from bot import migrate
from bot.config import Config, load_config
from bot.metrics import Metrics
from bot.outbox_worker import OutboxWorker
from bot.outside import OutsideWorld, Overrides, outside_world, senders
from bot.ports import (
    Clock,
    SlackDirectory,
    SlackSender,
    SystemClock,
)
from bot.render import Renderer
from bot.requests_first import Arrivals, RequestsFirst
from bot.runtime import Runtime
from bot.scheduling import start_background
from bot.settings import Settings, SettingsError
from bot.store.db import Database, make_engine
from bot.store.doorbell import doorbell_for
from bot.usecases import UseCases
from bot.usecases.doctor import Patient, log_findings
from handlers.routes import RequestMetrics, routes
from handlers.slack.app import build_bolt_app
from integrations.github.client import GitHubClient
from integrations.gitlab.client import GitLabClient
from integrations.sandbox.client import InProcessWebClient, make_sandbox
from integrations.sandbox.directory import group_names, load_directory
from integrations.sandbox.door import new_bot_token
from integrations.sandbox.pages import Sandbox
from integrations.sandbox.webapi import FakeSlackWebApi
from integrations.slack.directory import WebApiDirectory
from integrations.slack.logsender import LoggingSlackSender
from integrations.slack.sender import WebApiSlackSender, make_http_session, make_web_client

__all__ = ["Overrides", "SlackEdge", "State", "create_app"]  # Overrides: see bot.outside

log = logging.getLogger("releasebot")


class State(TypedDict):
    usecases: UseCases
    slack_handler: AsyncSlackRequestHandler
    sandbox: Sandbox | None


@dataclass(frozen=True)
class SlackEdge:
    """How this app talks to Slack: a real workspace, or the sandbox in process."""

    sandbox: FakeSlackWebApi | None
    client: Any  # our own Web API calls
    bolt_client: Any  # Bolt's calls (ephemeral answers, modals)
    sender: SlackSender


def create_app(settings: Settings, *, overrides: Overrides | None = None) -> Starlette:
    overrides = overrides or Overrides()
    config = overrides.config or load_config(settings.config_path)
    metrics = Metrics()
    arrivals = Arrivals()  # the requests being answered, which the background work lets first

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[State]:
        async with AsyncExitStack() as stack:
            engine = make_engine(settings.database_url)
            stack.callback(engine.dispose)
            await asyncio.to_thread(migrate.upgrade, engine)
            db = Database(engine)
            stack.callback(db.dispose)  # its writer connection too, before the engine
            clock = overrides.clock or SystemClock()
            slack = await _slack_edge(settings, overrides, clock, stack)
            world = await outside_world(settings, overrides, stack, clock)
            renderer = Renderer(template_dir=settings.templates_dir, public_url=settings.public_url)
            directory = overrides.directory or WebApiDirectory(slack.client)
            worker = _outbox_worker(
                settings,
                config,
                metrics,
                db,
                clock,
                slack,
                world,
                overrides,
                stack,
                renderer=renderer,
                directory=directory,
                arrivals=arrivals,
            )
            doorbell = doorbell_for(engine, role=settings.role)
            stack.push_async_callback(doorbell.aclose)
            runtime = Runtime.assemble(
                db=db,
                doorbell=doorbell,
                config=config,
                settings=settings,
                clock=clock,
                directory=directory,
                metrics=metrics,
                worker=worker,
                runners=world.runners,
                migrations_head=migrate.head(),
                scm=world.scm,
                arrivals=arrivals,
                apply_inline=overrides.apply_before_response
                if overrides.apply_before_response is not None
                else not overrides.run_outbox_worker,
            )
            usecases = runtime.usecases
            signing_secret = _signing_secret(settings)
            bolt = build_bolt_app(
                signing_secret=signing_secret,
                client=slack.bolt_client,
                slash_command=config.slack.slash_command,
                usecases=usecases,
                # In the sandbox nobody waits on Slack's 3 seconds: finish before answering,
                # so the page shows the result of a click at once.
                process_before_response=overrides.process_before_response
                or slack.sandbox is not None,
            )
            socket_mode = await _start_socket_mode(settings, bolt)
            if socket_mode is not None:
                stack.push_async_callback(socket_mode.close_async)
                runtime.context.links["slack"] = socket_mode.state
            app.state.stop_claiming = start_background(runtime, overrides, stack)
            _check_in_background(runtime, slack, world, overrides, stack)
            app.state.runtime = runtime  # for the CLI's demo and for tests that look inside
            log.info("releasebot ready: %d services configured", len(config.services))
            yield {
                "usecases": usecases,
                "slack_handler": AsyncSlackRequestHandler(bolt),
                "sandbox": _sandbox_pages(slack, settings, config, signing_secret),
            }

    return Starlette(
        routes=routes(),
        middleware=[Middleware(RequestMetrics, metrics=metrics, arrivals=arrivals)],
        lifespan=lifespan,
    )


def _outbox_worker(
    settings: Settings,
    config: Config,
    metrics: Metrics,
    db: Database,
    clock: Clock,
    slack: SlackEdge,
    world: OutsideWorld,
    overrides: Overrides,
    stack: AsyncExitStack,
    *,
    renderer: Renderer,
    directory: SlackDirectory,
    arrivals: Arrivals,
) -> OutboxWorker:
    """The worker that sends what the services queued, with every sender it knows; it
    gives way to the requests this process answers."""
    return OutboxWorker(
        db=db,
        clock=clock,
        config=config,
        slack=slack.sender,
        renderer=renderer,
        metrics=metrics,
        scm=dict(world.scm),
        lookups=dict(world.lookups),
        deployers=dict(world.deployers),
        pagers=dict(world.pagers),
        secrets=(overrides.environ if overrides.environ is not None else os.environ).get,
        public_url=settings.public_url,
        concurrency=settings.outbox_concurrency,
        lease=timedelta(seconds=settings.outbox_lease_seconds),
        more=senders(
            settings,
            config,
            slack.sender,
            db,
            clock,
            overrides,
            stack,
            renderer=renderer,
            directory=directory,
        ),
        requests=RequestsFirst(arrivals),
    )


def _check_in_background(
    runtime: Runtime,
    slack: SlackEdge,
    world: OutsideWorld,
    overrides: Overrides,
    stack: AsyncExitStack,
) -> None:
    """`releasebot doctor`'s checks, once, beside start-up (never in its way): findings logged."""
    if not (
        overrides.start_scheduler if overrides.startup_checks is None else overrides.startup_checks
    ):
        return
    patient = Patient(
        settings=runtime.settings,
        config=runtime.config,
        environ=overrides.environ if overrides.environ is not None else os.environ,
        slack=slack.client if slack.sandbox is None else None,
        apis={k: c for k, c in world.scm.items() if isinstance(c, GitHubClient | GitLabClient)},
        db=runtime.db,
        migrations_head=runtime.migrations_head,
    )

    task = asyncio.create_task(log_findings(patient, log), name="startup-checks")

    async def stop() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    stack.push_async_callback(stop)


async def _slack_edge(
    settings: Settings, overrides: Overrides, clock: Clock, stack: AsyncExitStack
) -> SlackEdge:
    try:
        settings.check_slack_tokens()  # a real token never falls back to the sandbox
    except SettingsError as exc:
        log.error("releasebot cannot start: %s", exc)
        raise
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    sandbox = (
        None
        if token
        else make_sandbox(settings.sandbox_directory, clock=lambda: clock.now().timestamp())
    )
    if sandbox is not None:
        log.warning(
            "SLACK_BOT_TOKEN is not set: Slack runs in the local sandbox at %s/sandbox, "
            "and every message is also written to this log",
            settings.public_url.rstrip("/"),
        )
    # Our own calls reach the sandbox in process; Bolt makes a client per request from its
    # base URL, so its calls (ephemeral answers, modals) go to the sandbox's HTTP API on
    # this server. Every Web API call over HTTP shares one session (its connections are
    # kept open), Bolt's per-request clients included.
    slack_http = make_http_session()
    stack.push_async_callback(slack_http.close)
    if sandbox is None:
        client = make_web_client(token, settings.slack_api_url, session=slack_http)
        sender = overrides.slack_sender or WebApiSlackSender(client)
        return SlackEdge(None, client, client, sender)
    bolt_client = make_web_client(
        new_bot_token(), settings.public_url.rstrip("/") + "/sandbox/api/", session=slack_http
    )
    own = InProcessWebClient(sandbox)
    sender = overrides.slack_sender or LoggingSlackSender(WebApiSlackSender(own))
    return SlackEdge(sandbox, own, bolt_client, sender)


def _sandbox_pages(
    slack: SlackEdge, settings: Settings, config: Config, signing_secret: str
) -> Sandbox | None:
    sandbox = slack.sandbox
    if sandbox is None:
        return None
    users, _ = load_directory(settings.sandbox_directory)
    return Sandbox(
        slack=sandbox,
        signing_secret=signing_secret,
        slash_command=config.slack.slash_command,
        people={uid: str(u.get("real_name") or uid) for uid, u in users.items()},
        groups=group_names(settings.sandbox_directory),
        default_channel=config.slack.default_channel,
        bot_token=slack.bolt_client.token,
    )


def _signing_secret(settings: Settings) -> str:
    if settings.slack_signing_secret is not None:
        return settings.slack_signing_secret.get_secret_value()
    # No secret configured: nothing from outside can be signed with this one, so
    # /slack/events refuses every request rather than accepting unsigned input.
    return secrets.token_hex(32)


async def _start_socket_mode(settings: Settings, bolt: Any) -> SocketModeConnection | None:
    """With both Slack tokens, Socket Mode: connecting starts in the background."""
    if not settings.slack_socket_mode or settings.slack_app_token is None:
        return None
    from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

    handler = AsyncSocketModeHandler(bolt, settings.slack_app_token.get_secret_value())
    connection = SocketModeConnection(handler)
    connection.start()
    return connection


class SocketModeConnection:
    """Slack's Socket Mode, connected in the background: start-up never waits on Slack.

    Each attempt asks Slack for a WebSocket URL (`apps.connections.open`, with the app
    token) and connects to it. A failed attempt is logged and retried after a wait that
    doubles from `first_wait` up to `longest_wait` seconds, for as long as the bot runs.
    Once connected, the Slack SDK reconnects by itself (with a fresh URL) whenever Slack
    closes or drops the socket, as it does routinely.
    """

    first_wait = 1.0
    longest_wait = 60.0
    attempt_timeout = 30.0  # one attempt: the URL, then the WebSocket handshake

    def __init__(self, handler: Any) -> None:
        self._handler = handler
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()  # set once the first connection is up
        self.attempts = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._connect(), name="slack-socket-mode")

    async def _connect(self) -> None:
        client = self._handler.client
        wait = self.first_wait
        while True:
            self.attempts += 1
            try:
                client.wss_uri = await client.issue_new_wss_url()
                await asyncio.wait_for(client.connect(), self.attempt_timeout)
            except Exception as exc:  # any failure: say so and try again later
                log.warning(
                    "Slack Socket Mode: connection attempt %d failed (%s: %s); retrying in %.1f s",
                    self.attempts,
                    type(exc).__name__,
                    exc,
                    wait,
                )
                await asyncio.sleep(wait)
                wait = min(wait * 2, self.longest_wait)
                continue
            log.info("connected to Slack in Socket Mode")
            self.connected.set()
            return

    def state(self) -> dict[str, Any]:
        """For /readyz: connected yet, and how many attempts it took (or is taking)."""
        return {"ok": self.connected.is_set(), "mode": "socket", "attempts": self.attempts}

    async def close_async(self) -> None:
        """Stop connecting, close the socket and the SDK's HTTP session."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._handler.close_async()
