"""When the pipeline goes ahead without Slack: a CI event that shows a deployment moving
while its gate still waits ends the gate, and the event is applied afterwards.

    close = pipeline_close(gate_status="pending", ci_status="in_progress", decided_by=None)
    close.status        # "approved": the pipeline went ahead
    close.target_state  # "approved": the deployment may now follow the CI event
    close.reason        # "superseded by the pipeline: it reported the deployment in progress"

A review taken on the code host (GitHub's `deployment_review`: someone approved or rejected
the waiting job in GitHub's UI) decides the gate as the reviewer did, "decided in GitHub by
<login>". A rejection always does (the job failed; stopping is always safe). An approval does
only when releasebot does not itself hold the job (`holds_the_job`: its protection rule
waits for releasebot's answer): GitHub's reviewers passing their own rule do not pass
releasebot's, so that gate keeps waiting for its approvers.

An approval left waiting that way is still recorded and told (`left_waiting`,
`review_left_waiting_note`): "approved in GitHub by octocat; releasebot's gate still needs
...". A review names every environment it covered (`each_reviewed_environment`): each one's
gate of that run is decided by it.

A CI system that reports the deployment running or succeeded has gone ahead, so the gate is
closed as approved and the deployment moves to approved, from where the CI event walks on. A
failure while the gate waits means the deployment never ran (rejected by a reviewer or
another protection rule, or the run was cancelled): the gate and the deployment end as
rejected, since a deployment only starts after its gate. A `pending` report says nothing
new, so the gate keeps waiting.

Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final

from bot.domain import states
from bot.domain.events import DeployEvent
from bot.domain.gates.decisions import APPROVED, PENDING, REJECTED

BY_THE_PIPELINE: Final = "superseded by the pipeline"

REJECTS_WHAT_WAITS: Final = frozenset({"gitlab_deployment_approval"})
"""Deployers whose code host may hold a deployment of a promoted commit waiting for approval
(GitLab's protected environments): rejecting or expiring the promotion's gate rejects that
deployment too, so it does not stay blocked; the deployer says what it found."""

# CI-reported deployment state -> (gate status, deployment state the gate close moves to).
ENDS_A_PENDING_GATE: Final[dict[str, tuple[str, str]]] = {
    states.IN_PROGRESS: (APPROVED, states.APPROVED),
    states.SUCCEEDED: (APPROVED, states.APPROVED),
    states.FAILED: (REJECTED, states.REJECTED),
}

_SAID: Final = {
    states.IN_PROGRESS: "in progress",
    states.SUCCEEDED: "succeeded",
    states.FAILED: "failed",
}


@dataclass(frozen=True)
class PipelineClose:
    """How a gate ends when the pipeline has decided: its status, the deployment state the
    close moves to, and the reason shown and audited."""

    status: str
    target_state: str
    reason: str


REVIEWED: Final[dict[str, tuple[str, str]]] = {
    "approved": (APPROVED, states.APPROVED),
    "rejected": (REJECTED, states.REJECTED),
}


def pipeline_close(
    *,
    gate_status: str,
    ci_status: str,
    decided_by: str | None,
    host: str = "GitHub",
    review: str | None = None,
    comment: str | None = None,
    holds_the_job: bool = False,
) -> PipelineClose | None:
    """How a CI event reporting `ci_status` ends a gate in `gate_status`, or None when it
    does not (the gate is closed already, or the report shows nothing moving).

    `decided_by` is the person the event names as having decided on the code host, if any:
    the reason then says "decided in GitHub by <login>". `review` ("approved", "rejected")
    is a review taken on the code host, with the reviewer's `comment`; an approval leaves a
    gate that `holds_the_job` waiting."""
    if gate_status != PENDING:
        return None
    if review is not None:
        return _reviewed(review, decided_by, host, comment, holds_the_job)
    if ci_status not in ENDS_A_PENDING_GATE:
        return None
    status, target = ENDS_A_PENDING_GATE[ci_status]
    return PipelineClose(status, target, _reason(ci_status, decided_by, host))


def _reviewed(
    review: str, decided_by: str | None, host: str, comment: str | None, holds_the_job: bool
) -> PipelineClose | None:
    if review not in REVIEWED or (review == "approved" and holds_the_job):
        return None
    status, target = REVIEWED[review]
    who = f" by {decided_by}" if decided_by else ""
    said = f"decided in {host}{who}: {review} in review"
    return PipelineClose(status, target, f"{said}: {comment}" if comment else said)


def _reason(ci_status: str, decided_by: str | None, host: str) -> str:
    said = f"it reported the deployment {_SAID[ci_status]}"
    if decided_by:
        return f"decided in {host} by {decided_by}: {said}"
    return f"{BY_THE_PIPELINE}: {said}"


LEFT_WAITING_WHY: Final = (
    "releasebot's own protection rule holds this job, so GitHub's reviewers do not pass its "
    "gate (its quorum, self-approval ban and freezes)"
)


def left_waiting(review: str | None, holds_the_job: bool) -> bool:
    """Whether a review on the code host is an approval that leaves releasebot's gate
    waiting (recorded as such, not applied)."""
    return review == "approved" and holds_the_job


def review_left_waiting_note(host: str, reviewer: str, progress: str | None) -> str:
    """The thread line of an approval on the code host that left the gate waiting."""
    needs = f"its own approvals ({progress})" if progress else "its own approvals"
    return (
        f"approved in {host} by {reviewer}; releasebot's gate still needs {needs}: "
        f"{host}'s reviewers do not pass releasebot's protection rule"
    )


REVIEWED_ENVIRONMENTS: Final = "environments"
"""The DeployEvent extra of a review that covered several environments: their names, one per
line, the event's own environment first."""


def each_reviewed_environment(event: DeployEvent) -> list[DeployEvent]:
    """The event once per environment a review covered (its own environment first); any other
    event as it is."""
    names = [n for n in event.extra.get(REVIEWED_ENVIRONMENTS, "").split("\n") if n]
    if len(names) < 2:
        return [event]
    return [replace(event, target=replace(event.target, environment=name)) for name in names]
