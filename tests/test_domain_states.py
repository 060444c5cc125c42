"""The deployment state machine: the table of legal moves, CI walks, and what the DB keeps.

Table checks pin the shape DESIGN.md describes; property tests (hypothesis) throw random
sequences of CI reports at `ci_path` alone and then at `apply_event` on a real database,
and check that nothing but legal moves ever happens and that the audit chain holds.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterator
from functools import partial

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import col, select

from bot.domain import states
from bot.domain.errors import IllegalTransition
from bot.domain.events import DeployEvent, DeployTarget
from bot.services import audit
from bot.services.deployments import apply_event
from bot.store.db import Database
from bot.store.tables import AuditEvent, Deployment
from tests.fakes import FrozenClock

ALL_STATES = sorted(states.STATES)
CI_STATUSES = sorted(states.CI_REPORTED)
GATE_STATES = {states.AWAITING_APPROVAL, states.APPROVED}
HUMAN_OR_BOT_ONLY = states.STATES - states.CI_REPORTED
DEPLOYED = {
    states.IN_PROGRESS,
    states.SUCCEEDED,
    states.FAILED,
    states.VERIFYING,
    states.VERIFIED,
    states.VERIFICATION_FAILED,
}


def legal_pairs() -> Iterator[tuple[str, str]]:
    for current, targets in states.LEGAL_MOVES.items():
        for target in targets:
            yield current, target


def illegal_pairs() -> Iterator[tuple[str, str]]:
    for current, target in itertools.product(ALL_STATES, ALL_STATES):
        if target not in states.LEGAL_MOVES[current]:
            yield current, target


def reachable_from(start: str) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        for nxt in states.LEGAL_MOVES[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def walk(start: str, path: list[str]) -> list[tuple[str, str]]:
    """The consecutive (from, to) pairs of a walk that starts at `start`."""
    return list(itertools.pairwise([start, *path]))


# --- the table ---------------------------------------------------------------------------


def test_every_move_leads_to_a_known_state() -> None:
    for current, target in legal_pairs():
        assert states.is_state(target), f"{current} -> unknown state {target!r}"


def test_the_states_are_the_ones_the_design_names() -> None:
    assert states.STATES == {
        "pending",
        "awaiting_approval",
        "approved",
        "rejected",
        "expired",
        "in_progress",
        "succeeded",
        "failed",
        "verifying",
        "verified",
        "verification_failed",
        "rolling_back",
        "rolled_back",
        "rollback_failed",
        "superseded",
    }


def test_terminal_states_have_no_moves() -> None:
    terminal = {s for s, moves in states.LEGAL_MOVES.items() if not moves}
    assert terminal == {states.REJECTED, states.EXPIRED, states.ROLLED_BACK, states.SUPERSEDED}
    for state in terminal:
        for target in ALL_STATES:
            with pytest.raises(IllegalTransition):
                states.check_move(state, target)


def test_every_state_is_reachable_from_pending() -> None:
    assert reachable_from(states.PENDING) == states.STATES


def test_finished_deployments_can_at_most_be_rolled_back() -> None:
    for state in states.FINISHED:
        assert states.LEGAL_MOVES[state] <= {states.ROLLING_BACK}


def test_anything_that_was_deployed_can_be_rolled_back() -> None:
    for state in DEPLOYED:
        assert states.ROLLING_BACK in states.LEGAL_MOVES[state], state
    # A rollback ends rolled back, or failed when the pipeline refused it; then it may be
    # tried again (or its version comes back some other way).
    assert states.LEGAL_MOVES[states.ROLLING_BACK] == {states.ROLLED_BACK, states.ROLLBACK_FAILED}
    assert states.LEGAL_MOVES[states.ROLLBACK_FAILED] == {states.ROLLING_BACK, states.ROLLED_BACK}


def test_only_undeployed_or_unverified_states_can_be_superseded() -> None:
    """A newer version supersedes one still waiting to deploy, or one whose verification it
    interrupts; a verified or failed deployment keeps its outcome."""
    can_be_superseded = {s for s, moves in states.LEGAL_MOVES.items() if states.SUPERSEDED in moves}
    assert can_be_superseded == states.SUPERSEDABLE | {states.VERIFYING}
    assert not can_be_superseded & (DEPLOYED - {states.VERIFYING})


def test_a_gated_deployment_only_starts_after_approval() -> None:
    assert states.IN_PROGRESS not in states.LEGAL_MOVES[states.AWAITING_APPROVAL]
    leads_to_in_progress = {
        s for s, moves in states.LEGAL_MOVES.items() if states.IN_PROGRESS in moves
    }
    assert leads_to_in_progress == {states.PENDING, states.APPROVED}


@pytest.mark.parametrize(("current", "target"), sorted(legal_pairs()))
def test_check_move_accepts_every_legal_move(current: str, target: str) -> None:
    states.check_move(current, target)  # does not raise


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (states.SUCCEEDED, states.PENDING),
        (states.AWAITING_APPROVAL, states.IN_PROGRESS),
        (states.REJECTED, states.APPROVED),
        (states.PENDING, states.PENDING),
        (states.PENDING, "deployed"),
        ("nonsense", states.PENDING),
    ],
)
def test_check_move_refuses_an_illegal_move_naming_both_states(current: str, target: str) -> None:
    with pytest.raises(IllegalTransition) as refused:
        states.check_move(current, target)
    assert (refused.value.current, refused.value.target) == (current, target)
    assert current in str(refused.value) and target in str(refused.value)


def test_check_move_refuses_every_pair_outside_the_table() -> None:
    refused = 0
    for current, target in illegal_pairs():
        with pytest.raises(IllegalTransition):
            states.check_move(current, target)
        refused += 1
    assert refused == len(ALL_STATES) ** 2 - sum(len(m) for m in states.LEGAL_MOVES.values())


# --- CI walks ----------------------------------------------------------------------------


def test_a_ci_event_never_walks_through_a_gate_or_a_verification() -> None:
    for current, target in itertools.product(ALL_STATES, CI_STATUSES):
        path = states.ci_path(current, target)
        if path:
            assert not set(path) & HUMAN_OR_BOT_ONLY, (current, target, path)
            for source, nxt in walk(current, path):
                states.check_move(source, nxt)
            assert path[-1] == target


def test_a_ci_event_cannot_skip_a_waiting_gate() -> None:
    for target in (states.IN_PROGRESS, states.SUCCEEDED, states.FAILED):
        assert states.ci_path(states.AWAITING_APPROVAL, target) is None


def test_after_approval_ci_may_report_the_deploy() -> None:
    assert states.ci_path(states.APPROVED, states.IN_PROGRESS) == [states.IN_PROGRESS]
    assert states.ci_path(states.APPROVED, states.SUCCEEDED) == [
        states.IN_PROGRESS,
        states.SUCCEEDED,
    ]


def test_a_late_success_walks_through_in_progress() -> None:
    assert states.ci_path(states.PENDING, states.SUCCEEDED) == [
        states.IN_PROGRESS,
        states.SUCCEEDED,
    ]
    assert states.ci_path(states.PENDING, states.FAILED) == [states.IN_PROGRESS, states.FAILED]


def test_stale_and_non_ci_targets_have_no_path() -> None:
    assert states.ci_path(states.SUCCEEDED, states.IN_PROGRESS) is None
    assert states.ci_path(states.FAILED, states.SUCCEEDED) is None
    assert states.ci_path(states.PENDING, states.VERIFIED) is None
    assert states.ci_path(states.PENDING, states.APPROVED) is None
    assert states.ci_path(states.IN_PROGRESS, states.IN_PROGRESS) == []


@given(
    start=st.sampled_from(ALL_STATES),
    reports=st.lists(st.sampled_from(CI_STATUSES), max_size=20),
)
def test_any_sequence_of_ci_reports_walks_only_legal_moves(start: str, reports: list[str]) -> None:
    state = start
    for report in reports:
        path = states.ci_path(state, report)
        if path is None:
            continue  # stale: the deployment stays where it is
        for source, target in walk(state, path):
            states.check_move(source, target)
            assert target in states.CI_REPORTED
        state = path[-1] if path else state
        assert state == report
    assert states.is_state(state)


@given(reports=st.lists(st.sampled_from(CI_STATUSES), min_size=1, max_size=20))
def test_ci_reports_from_pending_never_move_a_deployment_backwards(reports: list[str]) -> None:
    order = [states.PENDING, states.IN_PROGRESS]
    state = states.PENDING
    for report in reports:
        path = states.ci_path(state, report)
        if path:
            before = order.index(state) if state in order else len(order)
            state = path[-1]
            after = order.index(state) if state in order else len(order)
            assert after > before, (report, path)


# --- through the database ----------------------------------------------------------------

SOURCES = [
    ("github", "github.deployment_status"),
    ("github", "github.workflow_run"),
    ("gitlab", "gitlab.deployment"),
    ("generic", "generic"),
]
ci_report = st.tuples(
    st.sampled_from(CI_STATUSES),
    st.integers(min_value=0, max_value=2),  # which of three versions
    st.sampled_from(SOURCES),
    st.sampled_from([None, "run-1", "run-2"]),  # the CI run; a new one may start an attempt
)
_examples = itertools.count()


def sha_of(example: int, version: int) -> str:
    return hashlib.sha1(f"example-{example}-version-{version}".encode()).hexdigest()


def ci_event(status: str, sha: str, source: tuple[str, str], run: str | None) -> DeployEvent:
    provider, source_event = source
    return DeployEvent(
        target=DeployTarget(provider=provider, repo="acme/checkout", environment="production"),
        sha=sha,
        status=status,
        source_event=source_event,
        external_id=run,
        actor="octocat",
        url=f"https://ci.example/{provider}/{run or 'unknown'}",
    )


def state_changes(db: Database) -> list[tuple[str, dict[str, str]]]:
    with db.read() as session:
        events = session.exec(
            select(AuditEvent)
            .where(AuditEvent.action == "deployment.state_changed")
            .order_by(col(AuditEvent.seq))
        ).all()
    return [(e.subject, json.loads(e.details)) for e in events]


def assert_invariants(db: Database) -> None:
    with db.read() as session:
        deployments = session.exec(select(Deployment)).all()
        checked, broken = audit.verify_chain(session)
    assert broken is None, broken
    for deployment in deployments:
        assert states.is_state(deployment.state), deployment.state
    replayed: dict[str, str] = {}
    for subject, change in state_changes(db):
        states.check_move(change["from"], change["to"])
        assert replayed.get(subject, states.PENDING) == change["from"], (subject, change)
        replayed[subject] = change["to"]
    for deployment in deployments:
        assert replayed.get(f"deployment:{deployment.id}", states.PENDING) == deployment.state


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(reports=st.lists(ci_report, min_size=1, max_size=12))
def test_random_ci_reports_through_the_database_keep_every_deployment_legal(
    db: Database, clock: FrozenClock, reports: list[tuple[str, int, tuple[str, str], str | None]]
) -> None:
    example = next(_examples)
    environment = f"env-{example}"  # each example deploys into its own environment
    for status, version, source, run in reports:
        clock.advance(minutes=1)
        now = clock.now()
        event = ci_event(status, sha_of(example, version), source, run)

        deployment, _changed = db.write(
            partial(apply_event, now=now, service="checkout", environment=environment, event=event)
        )

        assert deployment is not None
        assert states.is_state(deployment.state)
        assert_invariants(db)
