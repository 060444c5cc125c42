"""POST /webhooks/jenkins: check the signature (or bearer token), parse, record, answer 202.

Two ways to authenticate, both against JENKINS_WEBHOOK_SECRET and compared in constant time:
`X-Releasebot-Signature: sha256=<hex HMAC-SHA256 of the body>` when the sender can sign, else
`Authorization: Bearer <secret>`. A request carrying a signature is judged by it alone.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from bot.domain.ingest import Delivery
from bot.usecases import UseCases
from handlers.webhooks.verify import (
    Refused,
    accepted,
    check_hmac_signature,
    check_token,
    decode_json,
    delivery_id,
    media_type,
    read_body,
    refusal,
)
from integrations.jenkins import payloads
from integrations.payloads import PayloadError

SIGNATURE_HEADER = "X-Releasebot-Signature"


async def jenkins_webhook(request: Request) -> Response:
    usecases: UseCases = request.state.usecases
    settings = usecases.settings
    secret = settings.jenkins_webhook_secret
    try:
        body = await read_body(request, limit=settings.max_body_bytes)
        _authenticate(request, body, secret.get_secret_value() if secret else None)
        data = decode_json(body, content_type=media_type(request))
        parsed = payloads.parse(data)
        given_id = request.headers.get("x-releasebot-delivery")
        delivery = (
            delivery_id(given_id, header="X-Releasebot-Delivery") if given_id else parsed.delivery
        )
    except (Refused, PayloadError) as error:
        return refusal(usecases, "jenkins", error)

    result = await usecases.record_delivery(
        Delivery(provider="jenkins", delivery_id=delivery, event="build", body=body),
        parsed.event,
        parsed.note,
    )
    return accepted(result)


def _authenticate(request: Request, body: bytes, secret: str | None) -> None:
    signature = request.headers.get(SIGNATURE_HEADER.lower())
    authorization = request.headers.get("authorization")
    if signature is not None or authorization is None:
        check_hmac_signature(
            secret=secret, body=body, header_value=signature, header=SIGNATURE_HEADER
        )
        return
    scheme, _, token = authorization.partition(" ")
    if secret and scheme.lower() != "bearer":
        raise Refused(401, "invalid Authorization: use Bearer <token>")
    check_token(secret=secret, given=token.strip(), header="Authorization")
