"""Bolt middleware: acknowledging buttons at once, and answering each Slack event once."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from slack_bolt.response import BoltResponse

from bot.usecases import UseCases

log = logging.getLogger("releasebot.slack")

Middleware = Callable[..., Awaitable[BoltResponse | None]]


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
