"""POST /webhooks/generic: verify X-Releasebot-Signature, parse, record, answer 202."""

from __future__ import annotations

import hashlib
from dataclasses import replace

from starlette.requests import Request
from starlette.responses import Response

from bot.domain.ingest import Delivery
from bot.ports import Comparison
from bot.usecases import UseCases
from handlers.webhooks.verify import (
    Refused,
    accepted,
    decode_json,
    delivery_id,
    media_type,
    refusal,
    signed_body,
)
from integrations.generic import payloads
from integrations.payloads import PayloadError


async def generic_webhook(request: Request) -> Response:
    usecases: UseCases = request.state.usecases
    try:
        body = await signed_body(
            request,
            usecases,
            secret=usecases.settings.generic_webhook_secret,
            header="X-Releasebot-Signature",
        )
        given_id = request.headers.get("x-releasebot-delivery")
        # Without X-Releasebot-Delivery, a byte-identical resend is the same delivery.
        delivery = (
            delivery_id(given_id, header="X-Releasebot-Delivery")
            if given_id
            else "body-" + hashlib.sha256(body).hexdigest()[:40]
        )
        data = decode_json(body, content_type=media_type(request))
        parsed = payloads.parse(data)
    except (Refused, PayloadError) as error:
        return refusal(usecases, "generic", error)

    event = parsed.event
    if event is not None and parsed.previous_sha:
        event = replace(event, extra={**event.extra, "previous_sha": parsed.previous_sha})
    result = await usecases.record_delivery(
        Delivery(provider="generic", delivery_id=delivery, event="deploy", body=body),
        event,
        parsed.note,
        commits=Comparison(
            commits=parsed.commits, files=(), total_commits=len(parsed.commits), truncated=False
        )
        if parsed.commits
        else None,
    )
    return accepted(result)
