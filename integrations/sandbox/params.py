"""Reading a Web API call the way Slack does: its parameters, its token, and their limits."""

from __future__ import annotations

import contextlib
import copy
import json
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request

from integrations.sandbox.store import ApiError, Json

__all__ = [
    "CHANNEL_PREFIXES",
    "JSON_ENCODED_FIELDS",
    "MAX_MESSAGE_BLOCKS",
    "MAX_MODAL_TITLE_CHARS",
    "MAX_VIEW_BLOCKS",
    "bearer_token",
    "blocks_of",
    "channel_of",
    "content_of",
    "flag",
    "limit_of",
    "metadata_of",
    "read_params",
    "text_param",
    "ts_param",
]

MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
MAX_TEXT_CHARS = 40_000
MAX_MODAL_TITLE_CHARS = 24
DEFAULT_HISTORY_LIMIT = 100
MAX_HISTORY_LIMIT = 999

CHANNEL_PREFIXES = ("#", "C", "G", "D", "U", "W")  # a user id posts a direct message, as Slack does
"""Channel names the fake accepts: `#name`, or public (C…) and private (G…) channel ids."""

JSON_ENCODED_FIELDS = ("blocks", "attachments", "view", "metadata")
"""Fields that clients send as JSON strings inside form-encoded bodies."""


async def read_params(request: Request) -> tuple[Json, str | None]:
    """Query and body parameters merged, plus the Slack error code if the body is unreadable."""
    params: Json = dict(request.query_params)
    body = await request.body()
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    error: str | None = None
    if body.strip():
        if media_type == "application/json":
            try:
                payload = json.loads(body)
            except ValueError:
                payload = None
            if isinstance(payload, dict):
                params.update(payload)
            else:
                error = "invalid_json"
        elif media_type in ("application/x-www-form-urlencoded", ""):
            try:
                params.update(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
            except UnicodeDecodeError:
                error = "invalid_form_data"
        else:
            error = "invalid_form_data"
    for name in JSON_ENCODED_FIELDS:
        value = params.get(name)
        if isinstance(value, str) and value.strip():
            # A value that is not JSON is left as a string; the method reports it as invalid.
            with contextlib.suppress(ValueError):
                params[name] = json.loads(value)
    return params, error


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    if authorization is None:
        return None
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return None
    return credentials.strip()


def text_param(params: Json, name: str) -> str | None:
    """A non-empty string parameter, or None."""
    value = params.get(name)
    return value if isinstance(value, str) and value else None


def flag(params: Json, name: str) -> bool:
    """A boolean parameter as Slack reads it: true, "true" or "1"."""
    value = params.get(name)
    if isinstance(value, str):
        return value.lower() in ("1", "true")
    return value is True or value == 1


def limit_of(params: Json) -> int:
    """The `limit` of a history read, clamped to what Slack allows."""
    value = params.get("limit")
    try:
        limit = int(value) if value is not None else DEFAULT_HISTORY_LIMIT
    except (TypeError, ValueError):
        raise ApiError("invalid_limit") from None
    return max(1, min(limit, MAX_HISTORY_LIMIT))


def metadata_of(params: Json) -> Json | None:
    """Message metadata as Slack takes it: an `event_type` string and an `event_payload`
    object; `invalid_metadata_format` otherwise."""
    value = params.get("metadata")
    if value is None or value == "":
        return None
    if (
        not isinstance(value, dict)
        or not isinstance(value.get("event_type"), str)
        or not value["event_type"]
        or not isinstance(value.get("event_payload"), dict)
    ):
        raise ApiError("invalid_metadata_format")
    return {
        "event_type": value["event_type"],
        "event_payload": copy.deepcopy(value["event_payload"]),
    }


def ts_param(params: Json, name: str) -> float | None:
    """A timestamp bound (`oldest`, `latest`) as seconds; `invalid_ts_<name>` if unreadable."""
    value = params.get(name)
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ApiError(f"invalid_ts_{name}") from None


def channel_of(params: Json) -> str:
    """The `channel` parameter; `channel_not_found` unless it looks like a channel."""
    channel = text_param(params, "channel")
    if channel is None or not channel.startswith(CHANNEL_PREFIXES):
        raise ApiError("channel_not_found")
    return channel


def content_of(params: Json) -> tuple[str, list[Json]]:
    """The text and blocks of a message, checked against the limits Slack enforces."""
    text = params.get("text")
    if text is not None and not isinstance(text, str):
        raise ApiError("invalid_arguments", "[ERROR] text must be a string [json-pointer:/text]")
    blocks = blocks_of(params.get("blocks"), limit=MAX_MESSAGE_BLOCKS, error="invalid_blocks")
    if not text and not blocks:
        raise ApiError("no_text")
    if text is not None and len(text) > MAX_TEXT_CHARS:
        raise ApiError("msg_too_long")
    return text or "", blocks


def blocks_of(value: Any, *, limit: int, error: str) -> list[Json]:
    """A copy of a list of blocks; `error` if it is not one or holds more than `limit`."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(
        isinstance(block, dict) and isinstance(block.get("type"), str) for block in value
    ):
        raise ApiError(
            error, "[ERROR] must be an array of blocks with a type [json-pointer:/blocks]"
        )
    if len(value) > limit:
        raise ApiError(error, f"[ERROR] no more than {limit} items allowed [json-pointer:/blocks]")
    return copy.deepcopy(value)
