"""Inbound webhook checks: body size, content type and signatures, all before parsing."""

from __future__ import annotations

import hmac
import logging
from typing import Any
from urllib.parse import parse_qs

from pydantic import SecretStr
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bot.domain.ingest import IngestResult
from bot.usecases import UseCases
from handlers.inbound import BadInput, load_json
from handlers.inbound import delivery_id as checked_delivery_id
from integrations.payloads import PayloadError

log = logging.getLogger(__name__)


class Refused(Exception):
    """The request is refused before anything is stored; carries the HTTP answer."""

    def __init__(self, status: int, error: str) -> None:
        self.status = status
        self.error = error
        super().__init__(error)

    def response(self) -> JSONResponse:
        return JSONResponse({"error": self.error}, status_code=self.status)


async def signed_body(
    request: Request, usecases: UseCases, *, secret: SecretStr | None, header: str
) -> bytes:
    """The body within the size limit, its HMAC-SHA256 signature in `header` checked."""
    body = await read_body(request, limit=usecases.settings.max_body_bytes)
    check_hmac_signature(
        secret=secret.get_secret_value() if secret else None,
        body=body,
        header_value=request.headers.get(header.lower()),
        header=header,
    )
    return body


async def token_body(
    request: Request, usecases: UseCases, *, secret: SecretStr | None, header: str
) -> bytes:
    """The body within the size limit, once the shared token in `header` matched."""
    check_token(
        secret=secret.get_secret_value() if secret else None,
        given=request.headers.get(header.lower()),
        header=header,
    )
    return await read_body(request, limit=usecases.settings.max_body_bytes)


def refusal(usecases: UseCases, provider: str, error: Refused | PayloadError) -> Response:
    """The answer to a refused delivery (a payload that does not parse is a 400), counted."""
    refused = error if isinstance(error, Refused) else Refused(400, str(error))
    log.warning("%s webhook refused with %s: %s", provider, refused.status, refused.error)
    usecases.metrics.webhooks.labels(provider, f"refused_{refused.status}").inc()
    return refused.response()


def accepted(result: IngestResult) -> JSONResponse:
    """202 with what recording the delivery did: accepted, duplicate or ignored (and why)."""
    answer: dict[str, str] = {"status": result.status, "delivery": result.delivery}
    if result.detail:
        answer["detail"] = result.detail
    return JSONResponse(answer, status_code=202)


async def read_body(request: Request, *, limit: int) -> bytes:
    """The raw body, refused with 413 as soon as it is known to exceed `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise Refused(413, f"body exceeds {limit} bytes")
        except ValueError:
            raise Refused(400, "invalid Content-Length") from None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Refused(413, f"body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def hmac_sha256_hex(secret: bytes, body: bytes) -> str:
    return hmac.digest(secret, body, "sha256").hex()  # one call into OpenSSL


def check_hmac_signature(
    *, secret: str | None, body: bytes, header_value: str | None, header: str
) -> None:
    """`header_value` must be `sha256=<hex HMAC-SHA256(secret, body)>`; compared in constant time.

    With no secret configured every request is refused: an unsigned route is never open.
    """
    if not secret:
        raise Refused(401, f"webhook secret not configured: set the secret to accept {header}")
    if not header_value:
        raise Refused(401, f"missing {header} header")
    expected = "sha256=" + hmac_sha256_hex(secret.encode("utf-8"), body)
    if not hmac.compare_digest(expected.encode("ascii"), header_value.strip().encode("utf-8")):
        raise Refused(401, f"invalid {header} signature")


def check_token(*, secret: str | None, given: str | None, header: str) -> None:
    if not secret:
        raise Refused(401, f"webhook token not configured: set the token to accept {header}")
    if not given:
        raise Refused(401, f"missing {header} header")
    if not hmac.compare_digest(secret.encode("utf-8"), given.encode("utf-8")):
        raise Refused(401, f"invalid {header}")


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def decode_json(body: bytes, *, form_field: str | None = None, content_type: str) -> Any:
    """JSON from `application/json`, or from one form field (GitHub's `payload=`)."""
    if content_type == "application/json" or content_type.endswith("+json"):
        raw = body
    elif form_field is not None and content_type == "application/x-www-form-urlencoded":
        try:
            fields = parse_qs(body.decode("utf-8"), strict_parsing=False)
        except UnicodeDecodeError:
            raise Refused(400, "form body is not UTF-8") from None
        values = fields.get(form_field)
        if not values:
            raise Refused(400, f"form body has no {form_field} field")
        raw = values[0].encode("utf-8")
    else:
        accepted = "application/json" + (
            " or application/x-www-form-urlencoded" if form_field else ""
        )
        raise Refused(415, f"unsupported content type {content_type or '(none)'}: use {accepted}")
    try:
        return load_json(raw)
    except BadInput as exc:
        raise Refused(400, str(exc)) from None


def delivery_id(value: str, *, header: str) -> str:
    """The delivery id from `header`, whole, or Refused(400) when it is too long to keep."""
    try:
        return checked_delivery_id(value, header=header)
    except BadInput as exc:
        raise Refused(400, str(exc)) from None
