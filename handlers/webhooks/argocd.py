"""POST /webhooks/argocd: check X-Releasebot-Token, parse our template's body, record, 202.

Argo CD notifications cannot sign a body, so the `service.webhook.releasebot` entry of
argocd-notifications-cm sends the shared secret in a header (docs/argocd-notifications.md).
"""

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
    token_body,
)
from integrations.argocd import payloads
from integrations.payloads import PayloadError


async def argocd_webhook(request: Request) -> Response:
    usecases: UseCases = request.state.usecases
    try:
        body = await token_body(
            request,
            usecases,
            secret=usecases.settings.argocd_webhook_secret,
            header="X-Releasebot-Token",
        )
        data = decode_json(body, content_type=media_type(request))
        parsed = payloads.parse(data)
        given_id = request.headers.get("x-releasebot-delivery")
        delivery = (
            delivery_id(given_id, header="X-Releasebot-Delivery") if given_id else parsed.delivery
        )
    except (Refused, PayloadError) as error:
        return refusal(usecases, "argocd", error)

    event_name = parsed.event.source_event if parsed.event else "argocd"
    result = await usecases.record_delivery(
        Delivery(provider="argocd", delivery_id=delivery, event=event_name, body=body),
        parsed.event,
        parsed.note,
    )
    return accepted(result)
