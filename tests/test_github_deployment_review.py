"""A review taken in GitHub's UI (`deployment_review`) decides the releasebot gate of the same
run and environment, "decided in GitHub by <login>": the gate closes, the release message and
App Home stop offering the buttons, the audit trail names the reviewer, and the CI events
that follow are applied.

Everything goes through signed HTTP requests into the real app: GitHub's deliveries (the
`deployment_review` fixtures built from octokit's published example and schemas), the gates
API a job polls, Slack clicks, and a fake GitHub at the edge.
"""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlmodel import select

from bot.config import Config
from bot.config.loading import parse_config
from bot.services import audit
from bot.store.tables import AuditEvent, Deployment, Gate
from integrations.github import payloads
from integrations.sandbox.webapi import FakeSlackWebApi
from tests.conftest import Bot, BotFactory
from tests.fakes import FakeEdge, FakeGitHub, FrozenClock
from tests.helpers import (
    SHA_A,
    SHA_B,
    deployment_status,
    encode,
    example_config_data,
    fixture,
    github_headers,
)
from tests.slackflow import (
    CHANNEL,
    buttons,
    click,
    gated_env,
    gated_overrides,
    request_gate,
    the_gate,
    told,
)
from tests.test_app_home import open_home

TOKEN = "api-token-for-tests"
AUTH = {"authorization": f"Bearer {TOKEN}"}
MEDIUM = [{"filename": "Dockerfile", "status": "modified", "additions": 1600, "deletions": 400}]


@pytest.fixture
async def bot(
    bot_factory: BotFactory,
    clock: FrozenClock,
    edge: FakeEdge,
    app_private_key: str,
    github: FakeGitHub,
) -> AsyncIterator[Bot]:
    """The app with a GitHub App and the gates API; releases need one release manager."""
    github.commit_author = "someone-else"
    github.compare_files = MEDIUM
    env = gated_env(app_private_key, RELEASEBOT_API_TOKEN=TOKEN)
    async with bot_factory(env=env, overrides=gated_overrides(clock, edge)) as running:
        yield running


def review(action: str, *, sha: str = SHA_A, environment: str = "production") -> dict[str, Any]:
    """The fixture of `action`, pointed at checkout's production run of `sha`."""
    body = copy.deepcopy(fixture("github", f"deployment_review__{action}.json"))
    body["repository"]["full_name"] = "acme/checkout"
    body["workflow_run"]["head_sha"] = sha
    for job in [body["workflow_job_run"], *body.get("workflow_job_runs", [])]:
        job["environment"] = environment
    if "environment" in body:
        body["environment"] = environment
    return body


async def deliver(bot: Bot, event: str, body: dict[str, Any]) -> httpx.Response:
    raw = encode(body)
    answer = await bot.post("/webhooks/github", raw, github_headers(event, raw))
    await bot.send_outbox()
    return answer


async def ask_api_gate(bot: Bot) -> dict[str, Any]:
    """A job in the run asks releasebot through the gates API and polls for the answer."""
    fields = {"service": "checkout", "environment": "production", "version": "v5.0.0"}
    answer = await bot.http.post("/api/v1/gates", json={**fields, "sha": SHA_A}, headers=AUTH)
    assert answer.status_code == 201, answer.text
    await bot.send_outbox()
    gate: dict[str, Any] = answer.json()
    return gate


def deployments(bot: Bot) -> list[Deployment]:
    with bot.runtime.db.read() as session:
        return list(session.exec(select(Deployment).order_by(Deployment.id)).all())  # type: ignore[arg-type]


def audited(bot: Bot) -> list[tuple[str, str]]:
    with bot.runtime.db.read() as session:
        assert audit.verify_chain(session)[1] is None
        return [(e.action, e.actor) for e in session.exec(select(AuditEvent)).all()]


def gate_audit(bot: Bot, action: str) -> dict[str, Any]:
    with bot.runtime.db.read() as session:
        [event] = session.exec(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)
        ).all()
    details: dict[str, Any] = json.loads(event.details)
    return details


def the_message(slack: FakeSlackWebApi) -> dict[str, Any]:
    [message] = slack.messages(CHANNEL)
    return message


async def test_a_rejection_in_github_closes_the_gate_the_message_and_app_home(
    bot: Bot, slack: FakeSlackWebApi, github: FakeGitHub
) -> None:
    await request_gate(bot)
    assert "release_approve" in buttons(the_message(slack))

    answer = await deliver(bot, "deployment_review", review("rejected"))

    assert (answer.status_code, answer.json()["status"]) == (202, "accepted")
    gate = the_gate(bot)
    assert (gate.status, gate.decided_by) == ("rejected", "github:ilmax")
    assert gate.reason == (
        "decided in GitHub by ilmax: rejected in review: Not during the incident, please"
    )
    [deployment] = deployments(bot)
    assert deployment.state == "rejected"
    assert github.decisions() == []  # GitHub decided: nothing is carried back
    assert ("gate.rejected", "github:ilmax") in audited(bot)
    assert "decided in GitHub by ilmax" in gate_audit(bot, "gate.rejected")["reason"]
    message = the_message(slack)
    assert "release_approve" not in buttons(message)
    assert "decided in GitHub by ilmax" in json.dumps(message["blocks"])
    home = await open_home(bot, slack, "U0RM1")
    assert "release_approve" not in json.dumps(home)

    await click(bot, "U0RM1", "release_approve", gate.id or 0)  # a late click in Slack
    assert "this gate was already rejected" in told(slack, "U0RM1")
    assert the_gate(bot).status == "rejected"


async def test_an_approval_in_github_decides_a_gate_the_job_polls_and_ci_events_follow(
    bot: Bot, slack: FakeSlackWebApi
) -> None:
    asked = await ask_api_gate(bot)
    assert asked["status"] == "pending"

    answer = await deliver(bot, "deployment_review", review("approved"))

    assert answer.json()["status"] == "accepted"
    polled = (await bot.http.get(f"/api/v1/gates/{asked['id']}", headers=AUTH)).json()
    assert (polled["status"], polled["decided_by"]) == ("approved", "github:ilmax")
    assert polled["reason"] == (
        "decided in GitHub by ilmax: approved in review: Change ticket CHG-1042 signed off"
    )
    assert deployments(bot)[0].state == "approved"
    assert ("gate.approved", "github:ilmax") in audited(bot)
    assert "release_approve" not in buttons(the_message(slack))

    for state in ("in_progress", "success"):  # the job runs: GitHub reports it
        body = deployment_status(state, deployment_id=777, creator="ci-bot")
        assert (await deliver(bot, "deployment_status", body)).status_code == 202
    [deployment] = deployments(bot)
    assert deployment.state in ("succeeded", "verifying", "verified")
    assert the_gate(bot).decided_by == "github:ilmax"  # the later events left the gate be


async def test_an_approval_in_github_does_not_pass_releasebots_own_protection_rule(
    bot: Bot, slack: FakeSlackWebApi, github: FakeGitHub
) -> None:
    """GitHub's required reviewers passing their rule leave releasebot's rule (its gate, with
    its quorum, self-approval ban and freezes) waiting: no loophole through GitHub's UI."""
    await request_gate(bot)

    answer = await deliver(bot, "deployment_review", review("approved"))

    assert answer.json()["status"] == "ignored"
    assert the_gate(bot).status == "pending"
    assert github.decisions() == []
    assert "release_approve" in buttons(the_message(slack))
    await click(bot, "U0RM1", "release_approve", the_gate(bot).id or 0)
    assert the_gate(bot).status == "approved"
    assert [d["state"] for d in github.decisions()] == ["approved"]


async def test_a_review_of_a_run_releasebot_never_saw_changes_nothing(bot: Bot) -> None:
    answer = await deliver(bot, "deployment_review", review("rejected", sha=SHA_B))
    assert (answer.status_code, answer.json()["status"]) == (202, "ignored")
    assert deployments(bot) == []


async def test_a_review_being_requested_is_not_tracked(bot: Bot) -> None:
    await request_gate(bot)
    answer = await deliver(bot, "deployment_review", review("requested"))
    assert answer.json()["status"] == "ignored"
    assert the_gate(bot).status == "pending"


async def test_a_review_without_a_reviewed_environment_is_refused_and_changes_nothing(
    bot: Bot,
) -> None:
    await request_gate(bot)
    body = review("rejected")
    body.pop("workflow_job_run")
    body.pop("workflow_job_runs")
    answer = await deliver(bot, "deployment_review", body)
    assert answer.status_code == 400
    assert "workflow_job_runs" in answer.text
    assert the_gate(bot).status == "pending"


def test_the_published_shapes_parse_into_who_decided_and_where() -> None:
    approved = payloads.parse(
        "deployment_review", fixture("github", "deployment_review__approved.json")
    )
    assert approved.event is not None
    event = approved.event
    assert (event.target.repo, event.target.environment) == (
        "terraform-test-github/sample-app",
        "TST",
    )
    assert event.target.workflow == ".github/workflows/pr.yaml"
    assert (event.sha, event.decided_by) == ("5275a45b7e99c7fd7265b790392c10a74101a67a", "ilmax")
    assert (event.status, event.extra["review"]) == ("pending", "approved")
    rejected = payloads.parse(
        "deployment_review", fixture("github", "deployment_review__rejected.json")
    )
    assert rejected.event is not None and rejected.event.status == "failed"
    requested = payloads.parse(
        "deployment_review", fixture("github", "deployment_review__requested.json")
    )
    assert requested.event is None and requested.note


# --- an approval releasebot's own rule holds, and reviews of several environments -----------


def thread_lines(slack: FakeSlackWebApi) -> list[str]:
    """The text of each reply in the release message's thread."""
    message = the_message(slack)
    return [m["text"] for m in slack.thread(CHANNEL, message["ts"]) if m["ts"] != message["ts"]]


async def test_an_approval_left_waiting_is_audited_and_told_in_the_thread(
    bot: Bot, slack: FakeSlackWebApi
) -> None:
    await request_gate(bot)

    answer = await deliver(bot, "deployment_review", review("approved"))

    assert answer.json()["status"] == "ignored"  # the gate did not move
    assert the_gate(bot).status == "pending"
    assert ("gate.external_review_ignored", "github:ilmax") in audited(bot)
    details = gate_audit(bot, "gate.external_review_ignored")
    assert details["reviewer"] == "ilmax"
    assert details["comment"] == "Change ticket CHG-1042 signed off"
    assert "releasebot's own protection rule holds this job" in details["why"]
    assert (
        ":eyes: approved in GitHub by ilmax; releasebot's gate still needs its own approvals "
        "(0 of 1 approvals: waiting for 1 from S0RELMGRS): GitHub's reviewers do not pass "
        "releasebot's protection rule"
    ) in thread_lines(slack)
    assert "approved in GitHub by ilmax" not in json.dumps(the_message(slack)["blocks"])


def two_gated_environments() -> Config:
    """checkout's staging tracked by its GitHub environment and gated like production."""
    data = example_config_data()
    checkout = data["services"]["checkout"]["environments"]
    staging, production = checkout[0], checkout[1]
    staging["track"] = {"github_environment": "staging"}
    staging["gate"] = copy.deepcopy(production["gate"])
    return parse_config(data)


@pytest.fixture
async def two_gates(
    bot_factory: BotFactory,
    clock: FrozenClock,
    edge: FakeEdge,
    app_private_key: str,
    github: FakeGitHub,
) -> AsyncIterator[Bot]:
    github.commit_author = "someone-else"
    github.compare_files = MEDIUM
    env = gated_env(app_private_key, RELEASEBOT_API_TOKEN=TOKEN)
    overrides = gated_overrides(clock, edge, config=two_gated_environments())
    async with bot_factory(env=env, overrides=overrides) as running:
        yield running


def covering(action: str, *environments: str) -> dict[str, Any]:
    """A review of checkout's run at SHA_A covering a job in each of `environments`."""
    body = review(action)
    [job] = body["workflow_job_runs"]
    body["workflow_job_runs"] = [
        {**job, "id": job["id"] + i, "environment": name} for i, name in enumerate(environments)
    ]
    body["workflow_job_run"] = body["workflow_job_runs"][0]
    return body


async def ask_api_gate_in(bot: Bot, environment: str) -> dict[str, Any]:
    fields = {"service": "checkout", "environment": environment, "version": "v5.0.0"}
    answer = await bot.http.post("/api/v1/gates", json={**fields, "sha": SHA_A}, headers=AUTH)
    assert answer.status_code == 201, answer.text
    await bot.send_outbox()
    gate: dict[str, Any] = answer.json()
    return gate


def the_gate_of(bot: Bot, environment: str) -> str:
    """The status of the gate of `environment`'s deployment."""
    with bot.runtime.db.read() as session:
        [deployment] = session.exec(
            select(Deployment).where(Deployment.environment == environment)
        ).all()
        [gate] = session.exec(select(Gate).where(Gate.deployment_id == deployment.id)).all()
    return gate.status


async def polled(bot: Bot, gate: dict[str, Any]) -> tuple[str, str | None]:
    found = (await bot.http.get(f"/api/v1/gates/{gate['id']}", headers=AUTH)).json()
    return found["status"], found["decided_by"]


@pytest.mark.parametrize("action", ["approved", "rejected"])
async def test_a_review_covering_several_environments_decides_each_ones_gate(
    two_gates: Bot, action: str
) -> None:
    staging = await ask_api_gate_in(two_gates, "staging")
    production = await ask_api_gate_in(two_gates, "production")

    body = covering(action, "staging", "production")
    answer = await deliver(two_gates, "deployment_review", body)

    assert answer.json()["status"] == "accepted"
    assert await polled(two_gates, staging) == (action, "github:ilmax")
    assert await polled(two_gates, production) == (action, "github:ilmax")
    events = [a for a in audited(two_gates) if a[0] == f"gate.{action}"]
    assert events == [(f"gate.{action}", "github:ilmax")] * 2


async def test_a_review_covering_an_environment_with_no_gate_waiting_leaves_it_be(
    two_gates: Bot,
) -> None:
    production = await ask_api_gate_in(two_gates, "production")

    answer = await deliver(
        two_gates, "deployment_review", covering("rejected", "staging", "production")
    )

    assert answer.json()["status"] == "accepted"
    assert await polled(two_gates, production) == ("rejected", "github:ilmax")
    assert [d.environment for d in deployments(two_gates)] == ["production"]


async def test_one_review_passes_a_polled_gate_and_leaves_releasebots_own_rule_waiting(
    two_gates: Bot, slack: FakeSlackWebApi, github: FakeGitHub
) -> None:
    staging = await ask_api_gate_in(two_gates, "staging")
    await request_gate(two_gates)  # production: releasebot's protection rule holds the job

    answer = await deliver(
        two_gates, "deployment_review", covering("approved", "staging", "production")
    )

    assert answer.json()["status"] == "accepted"
    assert await polled(two_gates, staging) == ("approved", "github:ilmax")
    with two_gates.runtime.db.read() as session:
        waiting = session.exec(
            select(Deployment).where(Deployment.environment == "production")
        ).one()
    assert waiting.state == "awaiting_approval"
    assert github.decisions() == []
    assert ("gate.external_review_ignored", "github:ilmax") in audited(two_gates)
    assert len(github.decisions()) == 0 and the_gate_of(two_gates, "production") == "pending"
