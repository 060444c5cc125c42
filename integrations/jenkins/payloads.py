"""Jenkins Notification plugin payloads -> DeployEvent (pure functions; no I/O).

The plugin posts one JSON document per build phase:

    {"name": "deploy-checkout", "url": "job/deploy-checkout/",
     "build": {"full_url": "...", "number": 18, "phase": "STARTED|COMPLETED|FINALIZED",
               "status": "SUCCESS|FAILURE|ABORTED|UNSTABLE", "scm": {"commit", "branch", "url"},
               "parameters": {"ENVIRONMENT": "production"}}}

`status` is absent while the build runs. FINALIZED follows COMPLETED with the same status
(after post-build steps); it lands on the state COMPLETED already reached, so it is harmless.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from bot.domain import states
from bot.domain.events import DeployEvent, DeployTarget
from integrations.payloads import (
    PayloadError,
    get_path,
    optional_str,
    require_mapping,
    require_sha,
    require_str,
)

PHASES = frozenset({"QUEUED", "STARTED", "COMPLETED", "FINALIZED"})
FINISHED_PHASES = frozenset({"COMPLETED", "FINALIZED"})

# build.status of a finished build -> our state; None means the build did nothing to track.
RESULT: dict[str, str | None] = {
    "SUCCESS": states.SUCCEEDED,
    "FAILURE": states.FAILED,
    "ABORTED": states.FAILED,
    "UNSTABLE": states.FAILED,
    "NOT_BUILT": None,
}

# Build parameters that name the environment a job deploys to, first match wins.
ENVIRONMENT_PARAMETERS = ("ENVIRONMENT", "DEPLOY_ENV")
VERSION_PARAMETERS = ("VERSION",)


@dataclass(frozen=True)
class Parsed:
    """What a delivery means, and the delivery id it derives when the sender set none.

    `delivery` hashes (job url or name, build number, phase, status): one per phase of a build.
    """

    event: DeployEvent | None
    note: str | None = None
    delivery: str = ""


def parse(payload: Any) -> Parsed:
    """Turn one Notification plugin delivery into a DeployEvent; PayloadError when malformed."""
    body = require_mapping(payload, "")
    name = require_str(body, "name")
    build = require_mapping(body, "build")
    number = require_str(body, "build.number")
    phase = require_str(body, "build.phase").upper()
    result = optional_str(build, "status")
    delivery = _delivery_id(optional_str(body, "url") or name, number, phase, result)
    if phase not in PHASES:
        return Parsed(None, f"build phase {phase!r} is not tracked", delivery)

    status: str | None
    if phase == "QUEUED":
        status = states.PENDING
    elif phase == "STARTED":
        status = states.IN_PROGRESS
    else:
        if result is None:
            raise PayloadError("build.status")
        if result.upper() not in RESULT:
            raise PayloadError("build.status", f"has an unknown value {result!r}")
        status = RESULT[result.upper()]
        if status is None:
            return Parsed(None, f"build {result}: nothing to track", delivery)

    parameters = get_path(build, "parameters")
    return Parsed(
        DeployEvent(
            target=DeployTarget(
                provider="jenkins",
                job=name,
                environment=_parameter(parameters, ENVIRONMENT_PARAMETERS),
            ),
            sha=require_sha(body, "build.scm.commit"),
            status=status,
            source_event="jenkins.notification",
            external_id=f"build:{name}#{number}",
            ref=optional_str(build, "scm.branch"),
            version=_parameter(parameters, VERSION_PARAMETERS),
            url=optional_str(build, "full_url"),
            description=f"{name} #{number}",
        ),
        delivery=delivery,
    )


def _parameter(parameters: Any, names: tuple[str, ...]) -> str | None:
    if not isinstance(parameters, dict):
        return None
    for name in names:
        value = optional_str(parameters, name)
        if value:
            return value
    return None


def _delivery_id(job: str, number: str, phase: str, result: str | None) -> str:
    key = json.dumps([job, number, phase, result], separators=(",", ":"))
    return "jenkins-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:40]
