"""Handing a screened `/slack/events` request to Bolt, with the form fields Bolt would drop.

Bolt reads a form body (`slack_bolt.request.internals.parse_body`) as an interactive
`payload=` field whenever the word "payload" occurs anywhere in it; when there is no such
field it reads the whole body as empty. A slash command whose text holds the word
(`/release status payload-api`, `/release freeze production 2h payload bug`) then reaches no
listener and is never answered. Here such a request keeps its raw body, so Bolt's own
signature check runs on exactly the bytes Slack signed, and gets the form's fields (and the
context Bolt builds from them) in place of the empty body. Every other body, a real
`payload=` among them, is read by Bolt as before.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from slack_bolt.adapter.starlette.async_handler import to_starlette_response
from slack_bolt.async_app import AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.request.async_internals import build_async_context
from slack_bolt.request.async_request import AsyncBoltRequest
from starlette.requests import Request
from starlette.responses import Response


def dropped_form(raw_body: str, content_type: str | None) -> dict[str, str] | None:
    """The fields of a form body that Bolt reads as empty: one holding the word "payload"
    without a `payload` field. None for every body Bolt reads right (JSON, a form without the
    word, an interactive `payload=` form)."""
    if content_type == "application/json" or raw_body.startswith("{"):
        return None
    if "payload" not in raw_body:
        return None
    fields = dict(parse_qsl(raw_body, keep_blank_values=True))
    return None if "payload" in fields else fields


class SlackRequest(AsyncBoltRequest):
    """Bolt's request over the raw body, read as Bolt reads it except for a form Bolt would
    drop (`dropped_form`): that one's body is its fields, its context built from them."""

    def __init__(
        self,
        *,
        body: str,
        query: dict[str, Any] | None = None,
        headers: dict[str, Any] | None = None,
        context: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(body=body, query=query, headers=headers, context=context)
        fields = dropped_form(self.raw_body, self.content_type) if not self.body else None
        if fields is not None:
            self.body = fields
            self.context = build_async_context(AsyncBoltContext(context or {}), fields)

    def to_copyable(self) -> AsyncBoltRequest:
        """A copy for work Bolt runs after answering, read the same way."""
        return SlackRequest(
            body=self.raw_body,
            query=dict(self.query),
            headers=dict(self.headers),
            context=self.context.to_copyable(),
        )


async def dispatch(app: AsyncApp, request: Request) -> Response:
    """Bolt's answer to a POST to `/slack/events`, as `AsyncSlackRequestHandler.handle` gives
    it, the body read through `SlackRequest`."""
    body = await request.body()
    answer = await app.async_dispatch(
        SlackRequest(
            body=body.decode("utf-8"),
            query=dict(request.query_params),
            headers=dict(request.headers),
        )
    )
    return to_starlette_response(answer)
