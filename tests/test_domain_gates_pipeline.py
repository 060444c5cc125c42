"""Which CI reports end a waiting gate, and into which status."""

from __future__ import annotations

import pytest

from bot.domain import states
from bot.domain.gates.pipeline import pipeline_close


@pytest.mark.parametrize(
    ("ci_status", "gate_status", "deployment_state"),
    [
        (states.IN_PROGRESS, "approved", states.APPROVED),
        (states.SUCCEEDED, "approved", states.APPROVED),
        (states.FAILED, "rejected", states.REJECTED),
    ],
)
def test_a_moving_deployment_ends_a_pending_gate(
    ci_status: str, gate_status: str, deployment_state: str
) -> None:
    close = pipeline_close(gate_status="pending", ci_status=ci_status, decided_by=None)
    assert close is not None
    assert (close.status, close.target_state) == (gate_status, deployment_state)
    assert close.reason.startswith("superseded by the pipeline: it reported the deployment ")
    # the close leaves the deployment where the CI event can walk on (or finished)
    assert states.ci_path(close.target_state, ci_status) is not None or close.status == "rejected"


def test_a_pending_report_or_a_closed_gate_changes_nothing() -> None:
    assert pipeline_close(gate_status="pending", ci_status=states.PENDING, decided_by=None) is None
    for closed in ("approved", "rejected", "expired", "superseded"):
        assert pipeline_close(gate_status=closed, ci_status="succeeded", decided_by=None) is None


def test_a_named_decider_is_said() -> None:
    close = pipeline_close(gate_status="pending", ci_status="in_progress", decided_by="octocat")
    assert close is not None and close.reason.startswith("decided in GitHub by octocat")
