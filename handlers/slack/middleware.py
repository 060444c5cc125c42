"""Before and around Bolt: screening what reaches `/slack/events`, acknowledging buttons at
once, and answering each Slack event once."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from starlette.requests import Request
from starlette.types import Message

from bot.logs import current_ids
from bot.usecases import UseCases
from handlers.inbound import BadInput, check_string, load_json
from handlers.slack.shape import check_payload
from handlers.webhooks.verify import Refused, read_body

log = logging.getLogger("releasebot.slack")

Middleware = Callable[..., Awaitable[BoltResponse | None]]

_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"v0=[0-9a-f]{1,128}")
# Bolt's own answer to a request whose signature does not hold.
INVALID_REQUEST = "invalid request"


@dataclass(frozen=True)
class Screened:
    """A request fit for Bolt; `events_api`: it is an Events API delivery (event_callback)."""

    request: Request
    events_api: bool


async def screened(request: Request, *, limit: int) -> Screened:
    """The request as Bolt may see it, its body read within `limit` bytes and checked.

    Bolt parses the body before it checks the signature, and takes the timestamp header for
    a number; so here, first: a timestamp or signature header that is not what Slack sends
    is refused with 401 as any bad signature is, a body over the limit with 413, and a body
    Bolt could not parse safely (not UTF-8, JSON nested too deep or holding text that cannot
    be stored, a payload not in Slack's shape, a form field with a NUL) with 400.
    """
    timestamp = request.headers.get("x-slack-request-timestamp")
    signature = request.headers.get("x-slack-signature")
    if (timestamp is not None and not _TIMESTAMP.fullmatch(timestamp)) or (
        signature is not None and not _SIGNATURE.fullmatch(signature)
    ):
        raise Refused(401, INVALID_REQUEST)
    body = await read_body(request, limit=limit)
    try:
        # Bolt's reading of the header (`extract_content_type`): its part before any `;`.
        content_type = request.headers.get("content-type") or ""
        kind = _check_body(body, content_type.split(";")[0] or None)
    except BadInput as exc:
        raise Refused(400, str(exc)) from None
    return Screened(_replayed(request, body), events_api=kind == "event_callback")


def _check_body(body: bytes, content_type: str | None) -> object:
    """Check the body the way Bolt will read it (`slack_bolt.request.internals.parse_body`);
    the payload's `type`, if it is JSON."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadInput("body is not UTF-8") from None
    if not text:
        return None
    if text.startswith("\ufeff"):
        raise BadInput("body starts with a byte order mark")
    if content_type == "application/json" or text.startswith("{"):
        return check_payload(load_json(body))
    fields = dict(parse_qsl(text, keep_blank_values=True))
    if "payload" in text and "payload" in fields:
        return check_payload(load_json(fields["payload"].encode("utf-8")))
    for name, value in fields.items():
        check_string(name, what="a form field's name")
        check_string(value, what=f"form field {name[:40]}")
    return None


async def answer_errors(
    error: Exception, request: AsyncBoltRequest, response: BoltResponse | None
) -> BoltResponse | None:
    """Bolt's error handler, for a listener or middleware that raised.

    Acknowledged already (or an Events API delivery, which is always acknowledged), the
    failure was in the work after it: logged, and Slack gets the acknowledgement (when it is
    still waiting, with process_before_response). Before any
    acknowledgement it is the unexpected: logged with the request id and answered as the app
    answers every unexpected error, a 500 `{"error": "internal error", "request_id": ...}`.
    """
    request_id = str(current_ids().get("request_id") or "")
    acked: BoltResponse | None = getattr(request.context.ack, "response", None)
    if acked is None and request.body.get("type") == "event_callback":
        # Slack's events are acknowledged whatever their listener does (at once, without
        # process_before_response): a failing reply to one is the work after the ack.
        acked = BoltResponse(status=200, body="")
    if acked is not None:
        log.error(
            "a Slack listener failed after acknowledging (request %s)", request_id, exc_info=error
        )
        return acked if response is not None else None
    log.error("unexpected error handling a Slack request (request %s)", request_id, exc_info=error)
    if response is None:
        return None
    return BoltResponse(
        status=500,
        body=json.dumps({"error": "internal error", "request_id": request_id}),
        headers={"content-type": "application/json"},
    )


def _replayed(request: Request, body: bytes) -> Request:
    """A request over the same scope whose body, read already, is `body`."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return await request.receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(request.scope, receive)


async def ack_first(ack: Any, next_: Callable[[], Awaitable[None]]) -> None:
    """For listeners whose first step is a plain `await ack()`: acknowledge here instead.

    Without process_before_response, Bolt starts the listener as a task and then polls every
    10 ms for its ack before answering Slack; acknowledged already, it answers at once, so
    the listener's work (and that of other clicks arriving together) no longer runs ahead
    of the answer. The listener's own `ack()` stays: a second plain ack sets the same
    answer, which is sent already (or, with process_before_response, sent after it).
    """
    await ack()
    await next_()


ACK_FIRST = [ack_first]


def once_per_event(usecases: UseCases) -> Middleware:
    """Global middleware: an Events API delivery whose `event_id` was answered before (Slack's
    retry, `X-Slack-Retry-Num`, on this replica or another) is acknowledged with 200 and
    goes no further. Should the database not answer, the event is answered anyway: twice
    is better than never."""

    async def answer_once(
        body: Mapping[str, Any], resp: BoltResponse, next_: Callable[[], Awaitable[None]]
    ) -> BoltResponse | None:
        event_id = body.get("event_id") if body.get("type") == "event_callback" else None
        if isinstance(event_id, str) and event_id:
            event = body.get("event")
            event_type = str(event.get("type") or "") if isinstance(event, Mapping) else ""
            try:
                first = await usecases.first_slack_delivery(
                    event_id=event_id, event_type=event_type or "?"
                )
            except Exception:
                log.exception("could not tell whether Slack event %s was answered", event_id)
                first = True
            if not first:
                log.info("Slack event %s (%s) answered already", event_id, event_type)
                return BoltResponse(status=200, body="")
        await next_()
        return resp

    return answer_once
