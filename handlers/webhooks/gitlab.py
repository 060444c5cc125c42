"""POST /webhooks/gitlab: check X-Gitlab-Token, parse, record, answer 202."""

from __future__ import annotations

import hashlib

from starlette.requests import Request
from starlette.responses import Response

from bot.config import Config
from bot.domain.events import DeployEvent
from bot.domain.ingest import Delivery, ShaLookup
from bot.domain.tracking import resolve
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
from integrations.gitlab import payloads
from integrations.payloads import PayloadError


async def gitlab_webhook(request: Request) -> Response:
    usecases: UseCases = request.state.usecases
    try:
        body = await token_body(
            request,
            usecases,
            secret=usecases.settings.gitlab_webhook_token,
            header="X-Gitlab-Token",
        )
        event_name = request.headers.get("x-gitlab-event")
        if not event_name:
            raise Refused(400, "missing X-Gitlab-Event header")
        checked_id = _delivery_id(request, event_name, body)
        data = decode_json(body, content_type=media_type(request))
        parsed = payloads.parse(event_name, data)
    except (Refused, PayloadError) as error:
        return refusal(usecases, "gitlab", error)

    delivery = Delivery(provider="gitlab", delivery_id=checked_id, event=event_name, body=body)
    if parsed.lookup is not None:
        # A Deployment Hook names its commit by a short sha: the worker fetches the full one
        # from the deployments API after this request has been answered.
        ref = parsed.lookup
        result = await usecases.record_delivery(
            delivery,
            None,
            lookup=ShaLookup(
                provider="gitlab",
                project=str(ref.project_id),
                deployment_id=ref.deployment_id,
                event=payloads.pending_event(ref),
            ),
        )
    elif parsed.waiting is not None:
        # A deploying job in `manual` may wait for approval: the worker asks GitLab which
        # deployment it is (`blocked`), unless the environment's gate is not GitLab's.
        job = parsed.waiting
        result = await usecases.record_delivery(
            delivery,
            None,
            lookup=ShaLookup(
                provider="gitlab",
                project=job.project,
                deployment_id=0,
                event=job.event,
                environment=job.environment,
            ),
        )
    else:
        result = await usecases.record_delivery(
            delivery, _tracked_first(usecases.config, parsed.events) or parsed.event, parsed.note
        )
    return accepted(result)


def _delivery_id(request: Request, event_name: str, body: bytes) -> str:
    """The id GitLab's retries of one event share.

    Idempotency-Key (GitLab 17.4+) stays the same across retries; X-Gitlab-Event-UUID comes
    next. Older self-managed GitLab sends neither: refusing those would get the hook disabled,
    so a resend of the same event with the same body counts as the same delivery.
    """
    key = request.headers.get("idempotency-key")
    given = key or request.headers.get("x-gitlab-event-uuid")
    if given:
        return delivery_id(given, header="Idempotency-Key" if key else "X-Gitlab-Event-UUID")
    digest = hashlib.sha256(event_name.encode("utf-8") + b"\n" + body).hexdigest()
    return "body-" + digest[:40]


def _tracked_first(config: Config, events: tuple[DeployEvent, ...]) -> DeployEvent | None:
    """Of a pipeline's environments, the first one a configured service tracks."""
    return next((event for event in events if resolve(config, event.target) is not None), None)
