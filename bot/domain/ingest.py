"""A webhook delivery as the handlers hand it over, and what recording it answered."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

from bot.domain.errors import DeliveryFailed
from bot.domain.events import DeployEvent
from bot.domain.messages import ResolveSha

VERSION_KEY_PREFIX = "v:"
KEY_MAX = 64  # the width of the `sha` columns

ACCEPTED = "accepted"
DUPLICATE = "duplicate"
IGNORED = "ignored"


def version_key(version: str) -> str:
    """What the `sha` columns hold for a release named by its version only (a Helm chart
    version, an image tag or digest, with no commit sha): `v:<version>`, at most 64
    characters. The gates API names such releases the same way, so a gate asked for by
    version and a deploy reported by version land on one release."""
    return (VERSION_KEY_PREFIX + version.strip())[:KEY_MAX]


def is_version_key(key: str) -> bool:
    """Whether a release key names a version rather than a commit sha."""
    return key.startswith(VERSION_KEY_PREFIX)


def revision_label(key: str, version: str | None = None) -> str:
    """How a release key is shown in a sentence: the short sha, else the version (the
    deployment's own when given, since a key may have been cut at 64 characters)."""
    if is_version_key(key):
        return version or key[len(VERSION_KEY_PREFIX) :]
    return key[:7]


def release_label(key: str, version: str | None = None) -> str:
    """How a release is named in a line of its own: `1.4.2 (f95f852)` for a commit with a
    version, the short sha alone, and the version alone (once) for a version key."""
    short = revision_label(key, version)
    return f"{version} ({short})" if version and has_sha(key) else short


class NamedRelease:
    """How a row that carries a release key (`sha`) and its `version` names the release:
    mixed into the read models the messages, commands and pages are built from."""

    sha: str
    version: str | None

    @property
    def short_sha(self) -> str:
        """The short sha, or the version of a release named by its version only."""
        return revision_label(self.sha, self.version)

    @property
    def has_commit(self) -> bool:
        """Whether the release is a commit (not a version reported without a sha)."""
        return has_sha(self.sha)

    @property
    def label(self) -> str:
        """`1.4.2 (f95f852)`, the short sha alone, or the version alone (no commit)."""
        return release_label(self.sha, self.version)


def has_sha(key: str | None) -> bool:
    """Whether a release key (or a base) is a commit sha the code host can compare."""
    return bool(key) and not is_version_key(key or "")


@dataclass(frozen=True)
class IngestResult:
    status: str  # accepted | duplicate | ignored
    delivery: str
    deployment_id: int | None = None
    detail: str | None = None


@dataclass(frozen=True)
class ShaLookup:
    """An event whose full sha the worker still has to fetch from the code host.

    `event.sha` holds the short sha the webhook carried until the lookup replaces it. With
    `environment` set (a GitLab job waiting in `manual`), the provider's deployment id is not
    known (`deployment_id` is 0): the lookup finds the newest deployment of that environment
    at `event.sha` that waits for approval, and `event.sha` is already the full sha.
    """

    provider: str
    project: str
    deployment_id: int
    event: DeployEvent
    environment: str | None = None


@dataclass(frozen=True)
class Delivery:
    provider: str
    delivery_id: str
    event: str
    body: bytes


class Found(Protocol):
    """What the code host said about a deployment (`bot.ports.ResolvedDeployment`)."""

    @property
    def id(self) -> int: ...

    @property
    def sha(self) -> str: ...

    @property
    def ref(self) -> str: ...

    @property
    def waits_for_approval(self) -> bool: ...


def resolved_event(message: ResolveSha, found: Found | None) -> tuple[DeployEvent, int | None]:
    """The event of a lookup once the code host answered, and the provider's id of the
    deployment when it still waits for approval (None: it does not, or no longer does).

    A deployment looked up by id must be at the webhook's short sha (else the delivery is
    refused for good), and whether it still waits is asked only when its event asks for a
    gate; a job's waiting deployment was looked up at the job's full sha, and when none
    waits the job's event is applied without a gate.
    """
    event = message.event
    if message.environment is not None:
        return event, found.id if found is not None and found.waits_for_approval else None
    if found is None or not found.sha.lower().startswith(event.sha.lower()):
        at = f"is at {found.sha[:12]}" if found is not None else "was not found"
        raise DeliveryFailed(
            f"{message.provider} deployment {message.deployment_id} {at}, not {event.sha}",
            retryable=False,
        )
    waits = event.gate is not None and found.waits_for_approval
    event = replace(event, sha=found.sha.lower(), ref=event.ref or found.ref)
    return event, message.deployment_id if waits else None
