"""A webhook delivery as the handlers hand it over, and what recording it answered."""

from __future__ import annotations

from dataclasses import dataclass

from bot.domain.events import DeployEvent

ACCEPTED = "accepted"
DUPLICATE = "duplicate"
IGNORED = "ignored"


@dataclass(frozen=True)
class IngestResult:
    status: str  # accepted | duplicate | ignored
    delivery: str
    deployment_id: int | None = None
    detail: str | None = None


@dataclass(frozen=True)
class ShaLookup:
    """An event whose full sha the worker still has to fetch from the code host.

    `event.sha` holds the short sha the webhook carried until the lookup replaces it.
    """

    provider: str
    project: str
    deployment_id: int
    event: DeployEvent


@dataclass(frozen=True)
class Delivery:
    provider: str
    delivery_id: str
    event: str
    body: bytes
