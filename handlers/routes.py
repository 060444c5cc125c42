"""Every HTTP route of the app; handlers are thin: verify, parse, one call, fast answer."""

from __future__ import annotations

import logging
import time
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bot.logs import REQUEST_ID_HEADER, log_context, request_id_from
from bot.metrics import Metrics
from bot.requests_first import Arrivals
from bot.usecases import UseCases
from bot.usecases.availability import RETRY_AFTER_SECONDS, database_unavailable
from handlers.api import create_gate, get_gate
from handlers.dashboard import (
    audit_log,
    deployment_detail,
    deployment_evidence,
    dora_page,
    evidence_page,
    overview_page,
    static_file,
)
from handlers.sandbox_door import sandbox_door
from handlers.slack.bolt_request import dispatch
from handlers.slack.middleware import screened
from handlers.webhooks.argocd import argocd_webhook
from handlers.webhooks.flux import flux_webhook
from handlers.webhooks.generic import generic_webhook
from handlers.webhooks.github import github_webhook
from handlers.webhooks.gitlab import gitlab_webhook
from handlers.webhooks.jenkins import jenkins_webhook
from handlers.webhooks.verify import Refused
from integrations.sandbox.pages import routes as sandbox_routes

log = logging.getLogger(__name__)


async def healthz(_: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    usecases: UseCases = request.state.usecases
    report = await usecases.readiness()
    return JSONResponse(report, status_code=200 if report["ready"] else 503)


async def metrics(request: Request) -> Response:
    usecases: UseCases = request.state.usecases
    exposition = await usecases.metrics_exposition()
    return Response(exposition, media_type=CONTENT_TYPE_LATEST)


async def slack_events(request: Request) -> Response:
    handler: AsyncSlackRequestHandler = request.state.slack_handler
    usecases: UseCases = request.state.usecases
    try:
        checked = await screened(request, limit=usecases.settings.max_body_bytes)
    except Refused as refused:
        return refused.response()
    # Not `handler.handle`: Bolt would read a slash command whose text says "payload" as an
    # empty body (handlers/slack/bolt_request.py).
    answer = await dispatch(handler.app, checked.request)
    if checked.events_api and answer.status_code == 404:
        # An event no listener takes is still acknowledged (its id is noted, so Slack's
        # retries of it are answered at once); a 404 would only make Slack send it again.
        return Response(status_code=200)
    return answer


async def signing_key(request: Request) -> Response:
    """The public key that verifies signed evidence packs and checkpoints (PEM in JSON)."""
    usecases: UseCases = request.state.usecases
    key = usecases.signing_public_key()
    if key is None:
        return JSONResponse(
            {"error": "no signing key is configured (RELEASEBOT_SIGNING_KEY is not set)"},
            status_code=404,
        )
    return JSONResponse(key)


async def not_found(_: Request) -> Response:
    return PlainTextResponse("not found", status_code=404)


def routes() -> list[BaseRoute]:
    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/.well-known/releasebot-signing-key", signing_key, methods=["GET"]),
        Route("/slack/events", slack_events, methods=["POST"]),
        Route("/webhooks/github", github_webhook, methods=["POST"]),
        Route("/webhooks/gitlab", gitlab_webhook, methods=["POST"]),
        Route("/webhooks/argocd", argocd_webhook, methods=["POST"]),
        Route("/webhooks/jenkins", jenkins_webhook, methods=["POST"]),
        Route("/webhooks/generic", generic_webhook, methods=["POST"]),
        Route("/webhooks/flux", flux_webhook, methods=["POST"]),
        Route("/api/v1/gates", create_gate, methods=["POST"]),
        Route("/api/v1/gates/{gate_id}", get_gate, methods=["GET"]),
        Route("/", overview_page, methods=["GET"]),
        Route("/deployments/{deployment_id}", deployment_detail, methods=["GET"]),
        Route("/deployments/{deployment_id}/evidence.json", deployment_evidence, methods=["GET"]),
        Route("/deployments/{deployment_id}/evidence.html", evidence_page, methods=["GET"]),
        Route("/releases/{release_id}/evidence.html", evidence_page, methods=["GET"]),
        Route("/audit", audit_log, methods=["GET"]),
        Route("/dora", dora_page, methods=["GET"]),
        Route("/static/{path:path}", static_file, methods=["GET"]),
        *sandbox_routes(slack_events, sandbox_door),
    ]


class RequestMetrics:
    """Pure ASGI middleware timing every request by route template and status class, and the
    one place an unexpected exception is answered: a 500 `{"error": "internal error",
    "request_id": ...}`, logged with its traceback and the same request id.

    Each request gets a request id (the caller's `X-Request-Id` when it is a plain token of
    at most 128 characters, else a new one): every line logged while it is handled carries
    it, and the response echoes it in `X-Request-Id`.

    A POST (a webhook, Slack's events and clicks over HTTP, the gate API) counts in
    `arrivals` while it is answered: the background work of the process gives way to it
    (`bot.requests_first`). Reads (pages, probes, `/metrics`) do not.
    """

    def __init__(self, app: ASGIApp, *, metrics: Metrics, arrivals: Arrivals | None = None) -> None:
        self.app = app
        self.metrics = metrics
        self.arrivals = arrivals or Arrivals()
        # The latency histogram's child per (route, method, status class), looked up once.
        self._latency: dict[tuple[str, str, str], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        request_id = request_id_from(_header(scope, REQUEST_ID_BYTES))
        echoed = (REQUEST_ID_BYTES, request_id.encode("latin-1"))
        status_sent = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, status_sent
            if message["type"] == "http.response.start":
                status = message["status"]
                status_sent = True
                headers = message.get("headers", ())
                message["headers"] = [h for h in headers if h[0] != REQUEST_ID_BYTES] + [echoed]
            await send(message)

        posted = scope.get("method") == "POST"
        arrival = self.arrivals.started(time.monotonic()) if posted else None
        try:
            with log_context(request_id=request_id):
                try:
                    await self.app(scope, receive, send_wrapper)
                except Exception as error:
                    answer = _unexpected(error, scope, request_id)
                    if not status_sent:  # else the connection is closed unfinished
                        await answer(scope, receive, send_wrapper)
        finally:
            if arrival is not None:
                self.arrivals.finished(arrival)
            self._observe(scope, status, time.perf_counter() - started)

    def _observe(self, scope: Scope, status: int, seconds: float) -> None:
        key = (
            getattr(scope.get("route"), "path", "unmatched"),
            scope.get("method", ""),
            f"{status // 100}xx",
        )
        child = self._latency.get(key)
        if child is None:
            child = self._latency[key] = self.metrics.request_latency.labels(*key)
        child.observe(seconds)


def _header(scope: Scope, name: bytes) -> str | None:
    """The first value of the header `name` (lower case, as ASGI gives names), or None."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


REQUEST_ID_BYTES = REQUEST_ID_HEADER.encode("latin-1")


def _unexpected(error: Exception, scope: Scope, request_id: str) -> JSONResponse:
    """The answer to an exception no handler expected: 503 with Retry-After while the
    database cannot be reached (nothing was stored; the sender tries again), else a 500,
    logged with its traceback."""
    where = f"{scope.get('method', '')} {scope.get('path', '')} (request {request_id})"
    if database_unavailable(error):
        log.warning("database unavailable answering %s: %s", where, type(error).__name__)
        return JSONResponse(
            {"error": "database unavailable; try again", "request_id": request_id},
            status_code=503,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    log.exception("unexpected error answering %s", where)
    return JSONResponse({"error": "internal error", "request_id": request_id}, status_code=500)
