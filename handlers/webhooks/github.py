"""POST /webhooks/github: verify X-Hub-Signature-256, parse, record, answer 202."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from bot.domain.ingest import Delivery
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
from integrations.github import payloads
from integrations.payloads import PayloadError


async def github_webhook(request: Request) -> Response:
    usecases: UseCases = request.state.usecases
    try:
        body = await signed_body(
            request,
            usecases,
            secret=usecases.settings.github_webhook_secret,
            header="X-Hub-Signature-256",
        )
        event_name = request.headers.get("x-github-event")
        given_id = request.headers.get("x-github-delivery")
        if not event_name:
            raise Refused(400, "missing X-GitHub-Event header")
        if not given_id:
            raise Refused(400, "missing X-GitHub-Delivery header")
        delivery = delivery_id(given_id, header="X-GitHub-Delivery")
        data = decode_json(body, form_field="payload", content_type=media_type(request))
        parsed = payloads.parse(event_name, data)
    except (Refused, PayloadError) as error:
        return refusal(usecases, "github", error)

    result = await usecases.record_delivery(
        Delivery(provider="github", delivery_id=delivery, event=event_name, body=body),
        parsed.event,
        parsed.note,
    )
    return accepted(result)
