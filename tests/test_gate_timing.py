"""Gate timing rules: repeating reminders, escalation time, which expired gates can be asked
for again, and the config keys that drive them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from bot.config import GatePolicy
from bot.domain.gates.timing import (
    GateTimes,
    next_reminder,
    reminder_due,
    rerequest_refusal,
)

NOON = datetime(2026, 3, 9, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)


def policy(**keys: Any) -> GatePolicy:
    return GatePolicy.model_validate({"approvals": 1, "approvers": ["S0RELMGRS"], **keys})


def test_remind_after_alone_reminds_once() -> None:
    times = GateTimes.from_gate(policy(remind_after="1h"), NOON)
    assert times.remind_at == NOON + H and times.escalate_at is None
    assert not reminder_due(times.remind_at, None, NOON + H - timedelta(seconds=1))
    assert reminder_due(times.remind_at, None, NOON + H)
    assert next_reminder(NOON + H, None, NOON + H, times.expires_at) is None
    assert not reminder_due(times.remind_at, NOON + H, NOON + 3 * H)  # reminded already


def test_remind_every_repeats_on_its_schedule_until_expiry() -> None:
    gate = policy(remind_after="1h", remind_every="90m", expires_after="5h")
    times = GateTimes.from_gate(gate, NOON)
    assert next_reminder(NOON + H, 1.5 * H, NOON + H, times.expires_at) == NOON + 2.5 * H
    # a late sweep does not make up the reminders it missed
    assert next_reminder(NOON + H, 1.5 * H, NOON + 3 * H, times.expires_at) == NOON + 4 * H
    # the one after that would fall at 5h30m, after expiry at 5h
    assert next_reminder(NOON + H, 1.5 * H, NOON + 4 * H, times.expires_at) is None
    assert reminder_due(NOON + 2.5 * H, NOON + H, NOON + 2.5 * H)


def test_remind_every_without_remind_after_starts_after_one_interval() -> None:
    assert GateTimes.from_gate(policy(remind_every="1h"), NOON).remind_at == NOON + H


def test_escalation_time() -> None:
    times = GateTimes.from_gate(policy(escalate_after="2h30m", escalate_to=["S0ONCALL1"]), NOON)
    assert times.escalate_at == NOON + 2.5 * H


@pytest.mark.parametrize(
    "keys,problem",
    [
        ({"remind_every": "4h"}, "remind_every"),
        ({"escalate_after": "5h"}, "escalate_after"),
        ({"escalate_to": ["S0ONCALL1"]}, "escalate_to"),
        ({"escalate_after": "1h", "escalate_to": []}, "escalate_to"),
    ],
)
def test_timing_keys_are_checked(keys: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        policy(**keys)


@pytest.mark.parametrize(
    "kind", ["github_workflow", "gitlab_trigger", "argocd", "jenkins", "webhook"]
)
def test_a_promotion_releasebot_starts_can_be_asked_for_again(kind: str) -> None:
    assert rerequest_refusal(kind, {"on_approve": "promote"}) is None


@pytest.mark.parametrize(
    "kind,context,says",
    [
        ("github_protection_rule", {"callback_url": "x"}, "re-run its deployment job"),
        ("gitlab_deployment_approval", {}, "GitLab was told"),
        ("gitlab_deployment_approval", {"on_approve": "promote"}, "GitLab was told"),
        (None, {}, "gates API"),
        ("argocd", {}, "was told this gate expired"),
    ],
)
def test_a_pipeline_that_waited_cannot_be_asked_again(
    kind: str | None, context: dict[str, str], says: str
) -> None:
    refusal = rerequest_refusal(kind, context)
    assert refusal is not None and says in refusal
