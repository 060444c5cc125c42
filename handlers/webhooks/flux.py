"""POST /webhooks/flux: Flux's `generic-hmac` notification Provider, accepted as Flux sends it.

Flux signs its own event body with `X-Signature: sha256=<hex HMAC-SHA256 of the body>`,
keyed with the Provider's `token`, which is releasebot's generic webhook secret
(`RELEASEBOT_GENERIC_WEBHOOK_SECRET`): one secret for every pipeline that reports deploys
itself. The generic webhook's own body and header stay as they are; Flux gets this route.
Flux sends no delivery id, so a byte-identical resend is the same delivery.
"""

from __future__ import annotations

import hashlib

from starlette.requests import Request
from starlette.responses import Response

from bot.domain.ingest import Delivery
from bot.usecases import UseCases
from handlers.webhooks.verify import (
    Refused,
    accepted,
    decode_json,
    media_type,
    refusal,
    signed_body,
)
from integrations.flux import payloads
from integrations.payloads import PayloadError

SIGNATURE_HEADER = "X-Signature"


async def flux_webhook(request: Request) -> Response:
    usecases: UseCases = request.state.usecases
    try:
        body = await signed_body(
            request,
            usecases,
            secret=usecases.settings.generic_webhook_secret,
            header=SIGNATURE_HEADER,
        )
        data = decode_json(body, content_type=media_type(request))
        event, note = payloads.parse(data)
    except (Refused, PayloadError) as error:
        return refusal(usecases, "flux", error)

    delivery = "body-" + hashlib.sha256(body).hexdigest()[:40]
    result = await usecases.record_delivery(
        Delivery(provider="flux", delivery_id=delivery, event="event", body=body), event, note
    )
    return accepted(result)
