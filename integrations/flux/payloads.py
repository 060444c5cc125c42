"""Flux notification-controller events (a `generic-hmac` Provider) -> DeployEvent (pure).

Flux posts its own event body, signed `X-Signature: sha256=<hex HMAC-SHA256 of the body>`
with the Provider's `token`:

    {"involvedObject": {"kind": "HelmRelease", "name": "payments-batch", "namespace": "prod"},
     "severity": "info", "reason": "UpgradeSucceeded", "message": "Helm upgrade succeeded ...",
     "timestamp": "2026-12-06T10:00:00Z", "reportingController": "helm-controller",
     "metadata": {"helm.toolkit.fluxcd.io/revision": "1.4.2",
                  "service": "payments-batch", "environment": "production"}}

- The service and environment are the Alert's `eventMetadata` keys `service` and
  `environment` when it sets them, else the object's name and namespace.
- The revision is the metadata key `revision` or `<group>/revision`: a Kustomization's
  `main@sha1:<sha>` (or `main/<sha>`) names a commit and its branch; a HelmRelease's chart
  version, or an OCI artifact's `sha256:<digest>`, names a version without a commit (the
  release is then keyed by that version). An `eventMetadata` key `version` (an image tag)
  names the version beside a commit.
- `severity: error` is a failed deploy; a success reason (`ReconciliationSucceeded`,
  `InstallSucceeded`, `UpgradeSucceeded`) a succeeded one; `Progressing` a started one;
  Helm's `RollbackSucceeded` (its remediation put the previous release back) a failed one.
  Any other event is noted and changes nothing.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from bot.domain import states
from bot.domain.events import DeployEvent, DeployTarget
from bot.domain.ingest import version_key
from integrations.payloads import PayloadError, require_mapping

SUCCEEDED_REASONS = frozenset({"ReconciliationSucceeded", "InstallSucceeded", "UpgradeSucceeded"})
FAILED_REASONS = frozenset({"RollbackSucceeded"})
STARTED_REASONS = frozenset({"Progressing"})
NAME_MAX = 200
MESSAGE_MAX = 2000

# `main@sha1:<sha>`, `main/<sha>`, `refs/heads/main@sha1:<sha>` or a bare sha.
_COMMIT = re.compile(r"^(?:(?P<ref>.+?)(?:@sha1:|/))?(?P<sha>[0-9a-f]{40})$")
# An OCI artifact: `latest@sha256:<digest>` or `sha256:<digest>`.
_DIGEST = re.compile(r"^(?:.+@)?(?P<digest>sha256:[0-9a-f]{64})$")


def parse(payload: Any) -> tuple[DeployEvent | None, str | None]:
    """(the event, None), or (None, why the delivery is about no deploy); raises
    PayloadError naming the field when the body is not a Flux event."""
    body = require_mapping(payload, "")
    involved = require_mapping(body, "involvedObject")
    kind = _text(involved, "kind", "involvedObject.")
    name = _text(involved, "name", "involvedObject.")
    namespace = _text(involved, "namespace", "involvedObject.")
    metadata = _metadata(body)
    status = _status(body)
    if status is None:
        return None, f"Flux event {_text(body, 'reason', '', required=False) or '?'} is no deploy"
    revision = _revision(metadata)
    if revision is None:
        return None, f"Flux event about {kind}/{namespace}/{name} carries no revision"
    sha, ref, version = _split(revision, metadata.get("version"))
    return (
        DeployEvent(
            target=DeployTarget(
                provider="generic",
                service=metadata.get("service") or name,
                environment=metadata.get("environment") or namespace,
            ),
            sha=sha,
            status=status,
            source_event=f"flux.{kind}",
            ref=ref,
            version=version,
            actor=_text(body, "reportingController", "", required=False) or "flux",
            description=_cut(_text(body, "message", "", required=False, limit=100_000)),
            occurred_at=_timestamp(body.get("timestamp")),
        ),
        None,
    )


def _status(body: Any) -> str | None:
    severity = _text(body, "severity", "")
    reason = _text(body, "reason", "", required=False) or ""
    if severity == "error" or reason in FAILED_REASONS:
        return states.FAILED
    if reason in SUCCEEDED_REASONS:
        return states.SUCCEEDED
    if reason in STARTED_REASONS:
        return states.IN_PROGRESS
    return None


def _revision(metadata: dict[str, str]) -> str | None:
    if metadata.get("revision"):
        return metadata["revision"]
    for key, value in metadata.items():
        if key.endswith("/revision") and value:
            return value
    return None


def _split(revision: str, tag: str | None) -> tuple[str, str | None, str | None]:
    """(the release key, the branch, the version) of a Flux revision."""
    commit = _COMMIT.match(revision.strip().lower())
    if commit is not None:
        return commit["sha"], commit["ref"], tag
    digest = _DIGEST.match(revision.strip().lower())
    version = tag or (digest["digest"] if digest is not None else revision.strip())
    if len(version) > NAME_MAX:
        raise PayloadError("metadata.revision", f"must be at most {NAME_MAX} characters")
    return version_key(version), None, version


def _metadata(body: Any) -> dict[str, str]:
    if body.get("metadata") is None:
        return {}
    found = require_mapping(body, "metadata")
    return {str(key): item for key, item in found.items() if isinstance(item, str)}


def _text(
    data: Any, key: str, where: str, *, required: bool = True, limit: int = NAME_MAX
) -> str | None:
    value = data.get(key)
    if value is None or value == "":
        if required:
            raise PayloadError(f"{where}{key}")
        return None
    if not isinstance(value, str):
        raise PayloadError(f"{where}{key}", "must be a string")
    if len(value) > limit:
        raise PayloadError(f"{where}{key}", f"must be at most {limit} characters")
    return value


def _cut(text: str | None) -> str | None:
    return text[:MESSAGE_MAX] if text else None


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise PayloadError("timestamp", "must be an RFC 3339 time") from None
    return when if when.tzinfo is not None else None
