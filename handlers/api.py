"""POST /api/v1/gates and GET /api/v1/gates/{id}: approval gates for any CI, bearer token.

    POST {"service": "payments-batch", "environment": "production", "version": "v2.3.0",
          "sha": "<40 hex, optional>", "requested_by": "alice", "url": "https://ci/run/42"}
    -> 201 (a gate was opened) or 200 (the pending or approved gate of that release, or
       "approved" with no gate when the environment has none), body = the gate's status,
       header `Location: $RELEASEBOT_PUBLIC_URL/api/v1/gates/{id}` when there is a gate
    GET -> 200 the gate's status, 404 {"error": "gate 7 not found"}

Every status also carries `pipeline_status`, the gate's status in the words a polling
pipeline stage reads (Spinnaker's webhook stage with "wait for completion" reads it through
its status JSON path, `$.pipeline_status`): `RUNNING` while pending, `SUCCEEDED` once
approved, `TERMINAL` once rejected or expired, `CANCELED` once superseded.

Every call needs `Authorization: Bearer $RELEASEBOT_API_TOKEN` (constant-time compare); with
no token configured the API is disabled and answers 401.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bot.domain.errors import Conflict, InvalidRequest
from bot.usecases import UseCases
from handlers.webhooks.verify import Refused, decode_json, media_type, read_body

PIPELINE_STATUS = {
    "pending": "RUNNING",
    "approved": "SUCCEEDED",
    "rejected": "TERMINAL",
    "expired": "TERMINAL",
    "superseded": "CANCELED",
}

NAME_MAX = 100
TEXT_MAX = 200
URL_MAX = 2000


@dataclass(frozen=True)
class GateAsk:
    service: str
    environment: str
    version: str
    sha: str | None
    requested_by: str | None
    url: str | None


def check_bearer(request: Request, usecases: UseCases) -> None:
    token = usecases.settings.api_token
    secret = token.get_secret_value() if token is not None else ""
    if not secret:
        raise Refused(401, "the API is disabled: set RELEASEBOT_API_TOKEN")
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise Refused(401, "missing Authorization: Bearer <token> header")
    if not hmac.compare_digest(secret.encode("utf-8"), given.strip().encode("utf-8")):
        raise Refused(401, "invalid API token")


def _unauthorized(refused: Refused) -> Response:
    answer = refused.response()
    if refused.status == 401:
        answer.headers["WWW-Authenticate"] = "Bearer"
    return answer


def _text(body: dict[str, Any], key: str, *, limit: int, required: bool) -> str | None:
    value = body.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise Refused(400, f"{key} is required")
        return None
    if not isinstance(value, str):
        raise Refused(400, f"{key} must be a string")
    value = value.strip()
    if len(value) > limit:
        raise Refused(400, f"{key} must be at most {limit} characters")
    return value


def parse_ask(data: Any) -> GateAsk:
    """The request body, or Refused(400) naming the first field that is missing or wrong."""
    if not isinstance(data, dict):
        raise Refused(400, "body must be a JSON object")
    service = _text(data, "service", limit=NAME_MAX, required=True)
    environment = _text(data, "environment", limit=NAME_MAX, required=True)
    version = _text(data, "version", limit=TEXT_MAX, required=True)
    assert service is not None and environment is not None and version is not None
    url = _text(data, "url", limit=URL_MAX, required=False)
    if url is not None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise Refused(400, "url must be an http or https URL")
    return GateAsk(
        service=service,
        environment=environment,
        version=version,
        sha=_text(data, "sha", limit=TEXT_MAX, required=False),
        requested_by=_text(data, "requested_by", limit=TEXT_MAX, required=False),
        url=url,
    )


async def create_gate(request: Request) -> Response:
    usecases: UseCases = request.state.usecases
    try:
        check_bearer(request, usecases)
        body = await read_body(request, limit=usecases.settings.max_body_bytes)
        ask = parse_ask(decode_json(body, content_type=media_type(request)))
    except Refused as refused:
        return _unauthorized(refused)

    try:
        status, created = await usecases.request_gate(
            service=ask.service,
            environment=ask.environment,
            version=ask.version,
            sha=ask.sha,
            requested_by=ask.requested_by,
            url=ask.url,
        )
    except Conflict as exc:
        return JSONResponse({"error": str(exc)}, status_code=409)
    except InvalidRequest as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    answer = JSONResponse(with_pipeline_status(status), status_code=201 if created else 200)
    if status.get("id") is not None:
        # Where to poll the gate (Spinnaker's webhook stage: "status URL from Location").
        base = usecases.settings.public_url.rstrip("/")
        answer.headers["Location"] = f"{base}/api/v1/gates/{status['id']}"
    return answer


async def get_gate(request: Request) -> Response:
    usecases: UseCases = request.state.usecases
    try:
        check_bearer(request, usecases)
    except Refused as refused:
        return _unauthorized(refused)
    raw = str(request.path_params["gate_id"])
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        return JSONResponse({"error": f"gate {raw[:40]} not found"}, status_code=404)
    gate_id = int(raw)

    status = await usecases.gate_status(gate_id)
    if status is None:
        return JSONResponse({"error": f"gate {gate_id} not found"}, status_code=404)
    return JSONResponse(with_pipeline_status(status))


def with_pipeline_status(status: dict[str, Any]) -> dict[str, Any]:
    """The gate's status, with `pipeline_status` added for pipelines that poll it."""
    return {**status, "pipeline_status": PIPELINE_STATUS.get(str(status["status"]), "RUNNING")}
