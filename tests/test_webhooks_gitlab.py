"""POST /webhooks/gitlab through the real app: token, parsing, dedup, Slack messages."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.app import Overrides
from bot.domain.events import GateRequest
from bot.domain.messages import ResolveSha
from bot.store.tables import Deployment, OutboxMessage, WebhookDelivery
from integrations.gitlab import payloads
from integrations.gitlab.client import GitLabDeployment
from integrations.gitlab.payloads import GitLabDeploymentRef
from integrations.payloads import PayloadError
from integrations.sandbox.webapi import FakeSlackWebApi
from tests.conftest import Bot, BotFactory
from tests.helpers import (
    GITLAB_TOKEN,
    SHA_A,
    encode,
    fixture,
    fixture_files,
    gitlab_headers,
    gitlab_job,
    rows,
)

EVENT_HEADER = {
    "pipeline_hook": "Pipeline Hook",
    "job_hook": "Job Hook",
    "deployment_hook": "Deployment Hook",
    "merge_request_hook": "Merge Request Hook",
}

# What each published payload means; a new fixture file needs an entry here.
EXPECTED: dict[str, dict[str, Any]] = {
    "pipeline_hook__docs-success": {
        # production's job was skipped (manual); staging's job is created, not yet run
        "environment": "staging",
        "status": "pending",
        "sha": "bcbb5ec396a2c0f828686f14fac9b80b780504f2",
        "repo": "gitlab-org/gitlab-test",
        "url": "http://example.com/gitlab-org/gitlab-test/-/pipelines/31",
        "actor": "root",
        "external_id": "job:379",
    },
    "pipeline_hook__go-gitlab-success": {"note": "production (skipped)"},
    "job_hook__go-gitlab-success": {
        "environment": "production",
        "status": "succeeded",
        "sha": "95d49d1efbd941908580e79d65e4b5ecaf4a8305",
        "repo": "jsmithy2/release-tools-fake",
        "url": "https://gitlab.com/jsmithy2/release-tools-fake/-/jobs/3580121225",
        "actor": "jsmithy2",
        "external_id": "job:3580121225",
    },
    "job_hook__go-gitlab-created": {"note": "no environment"},
    "deployment_hook__docs-success": {
        "lookup": GitLabDeploymentRef(
            project_id=30,
            project_path="root/test-deployment-webhooks",
            deployment_id=15,
            status="succeeded",
            environment="staging",
            short_sha="279484c0",
            url="http://10.126.0.2:3000/root/test-deployment-webhooks/-/jobs/796",
            actor="root",
            commit_url="http://10.126.0.2:3000/root/test-deployment-webhooks/-/commit/"
            "279484c09fbe69ededfced8c1bb6e6d24616b468",
            commit_title="Add new file",
            occurred_at=payloads._when("2021-04-28 21:50:00 +0200"),
        )
    },
    "deployment_hook__go-gitlab-success": {
        "lookup": GitLabDeploymentRef(
            project_id=30,
            project_path="root/test-deployment-webhooks",
            deployment_id=15,
            status="succeeded",
            environment="staging",
            short_sha="279484c0",
            url="http://10.126.0.2:3000/root/test-deployment-webhooks/-/jobs/796",
            actor="user1",
            commit_url="http://10.126.0.2:3000/root/test-deployment-webhooks/-/commit/"
            "279484c09fbe69ededfced8c1bb6e6d24616b468",
            commit_title="Add new file",
            occurred_at=payloads._when("2021-04-28 21:50:00 +0200"),
        )
    },
    "merge_request_hook__go-gitlab-open": {"note": "not tracked"},
}


@pytest.mark.parametrize("path", fixture_files("gitlab"), ids=lambda p: p.stem)
def test_every_published_gitlab_payload_parses(path: Path) -> None:
    expected = EXPECTED[path.stem]
    parsed = payloads.parse(EVENT_HEADER[path.stem.split("__")[0]], fixture("gitlab", path.name))
    if "lookup" in expected:
        assert parsed.event is None
        assert parsed.lookup == expected["lookup"]
        assert parsed.note == "deployment hook: full sha to be looked up"
    elif "note" in expected:
        assert parsed.event is None and parsed.lookup is None
        assert parsed.note is not None and expected["note"] in parsed.note
    else:
        event = parsed.event
        assert event is not None, parsed.note
        assert event.target.provider == "gitlab"
        assert (event.target.environment, event.status, event.sha) == (
            expected["environment"],
            expected["status"],
            expected["sha"],
        )
        assert (event.target.repo, event.url, event.actor, event.external_id) == (
            expected["repo"],
            expected["url"],
            expected["actor"],
            expected["external_id"],
        )


def test_the_fixture_table_covers_every_file() -> None:
    assert {p.stem for p in fixture_files("gitlab")} == set(EXPECTED)


def test_a_pipeline_reports_each_deploying_environment_with_its_own_job_status() -> None:
    body = fixture("gitlab", "pipeline_hook__docs-success.json")
    production = next(b for b in body["builds"] if b["name"] == "production")
    staging = next(b for b in body["builds"] if b["name"] == "staging")
    production["status"] = "manual"
    staging["status"] = "running"
    parsed = payloads.parse("Pipeline Hook", body)
    assert [(e.target.environment, e.status) for e in parsed.events] == [
        ("staging", "in_progress"),  # the job that moved comes first
        ("production", "pending"),
    ]
    assert parsed.event == parsed.events[0]


@pytest.mark.parametrize(
    ("action", "tracked"), [("start", True), (None, True), ("stop", False), ("prepare", False)]
)
def test_only_jobs_that_start_an_environment_deploy(action: str | None, tracked: bool) -> None:
    body = gitlab_job("success")
    if action is None:
        del body["environment"]["action"]
    else:
        body["environment"]["action"] = action
    parsed = payloads.parse("Job Hook", body)
    assert (parsed.event is not None) is tracked


def test_a_job_status_gitlab_adds_later_is_ignored_not_refused() -> None:
    parsed = payloads.parse("Job Hook", gitlab_job("waiting_for_something_new"))
    assert parsed.event is None
    assert parsed.note == "job status 'waiting_for_something_new' is not tracked"


def test_a_deployment_ref_becomes_an_event_once_the_full_sha_is_known() -> None:
    parsed = payloads.parse(
        "Deployment Hook", fixture("gitlab", "deployment_hook__docs-success.json")
    )
    assert parsed.lookup is not None
    event = payloads.event_for(
        parsed.lookup, sha="279484c09fbe69ededfced8c1bb6e6d24616b468", ref_name="main"
    )
    assert (event.target.repo, event.target.environment, event.status) == (
        "root/test-deployment-webhooks",
        "staging",
        "succeeded",
    )
    assert event.external_id == "deployment:15"
    with pytest.raises(PayloadError, match="short sha"):
        payloads.event_for(parsed.lookup, sha=SHA_A)


def test_a_blocked_deployment_asks_for_a_gate_decided_through_gitlab() -> None:
    body = fixture("gitlab", "deployment_hook__docs-success.json")
    body["status"] = "blocked"  # waiting for approval, as the Deployments API says it
    parsed = payloads.parse("Deployment Hook", body)
    assert parsed.lookup is not None and parsed.lookup.blocked
    event = payloads.pending_event(parsed.lookup)
    assert event.status == "pending"
    assert event.gate == GateRequest(
        decide_via="gitlab_deployment_approval",
        context={
            "gitlab_project": "30",
            "gitlab_environment": "staging",
            "gitlab_deployment_id": "15",
        },
    )
    finished = payloads.parse(
        "Deployment Hook", fixture("gitlab", "deployment_hook__docs-success.json")
    )
    assert finished.lookup is not None
    assert payloads.pending_event(finished.lookup).gate is None


def test_a_manual_job_may_be_a_deployment_waiting_for_approval() -> None:
    parsed = payloads.parse("Job Hook", gitlab_job("manual"))
    assert parsed.event is not None and parsed.event.gate is None
    waiting = parsed.waiting
    assert waiting is not None
    assert (waiting.project, waiting.environment) == ("31537070", "production")
    assert waiting.event.sha == SHA_A and waiting.event.status == "pending"
    assert waiting.event.gate == GateRequest(
        decide_via="gitlab_deployment_approval",
        context={"gitlab_project": "31537070", "gitlab_environment": "production"},
    )
    assert payloads.parse("Job Hook", gitlab_job("running")).waiting is None


def test_a_waiting_job_lookup_keeps_its_environment_in_the_outbox() -> None:
    parsed = payloads.parse("Job Hook", gitlab_job("manual"))
    assert parsed.waiting is not None
    message = ResolveSha("gitlab", "31537070", 0, parsed.waiting.event, "production")
    again = ResolveSha.from_payload(json.loads(json.dumps(message.to_payload())))
    assert again == message
    assert again.key == "lookup:gitlab:31537070:production"
    stored_before = {k: v for k, v in message.to_payload().items() if k != "environment"}
    assert ResolveSha.from_payload(stored_before).environment is None


@settings(max_examples=200, deadline=None)
@given(
    event=st.sampled_from(sorted(EVENT_HEADER.values())),
    body=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(
                st.sampled_from(
                    ["builds", "environment", "name", "status", "id", "sha", "project", "user"]
                ),
                inner,
                max_size=4,
            )
        ),
        max_leaves=12,
    ),
)
def test_any_json_either_parses_or_is_a_payload_error(event: str, body: Any) -> None:
    try:
        payloads.parse(event, body)
    except PayloadError:
        pass


# --- through the app ----------------------------------------------------------------------


@pytest.fixture
async def gitlab_bot(bot_factory: BotFactory) -> Any:
    async with bot_factory(env={"GITLAB_WEBHOOK_TOKEN": GITLAB_TOKEN}) as running:
        yield running


async def test_a_job_deploy_posts_one_message_then_edits_it(
    gitlab_bot: Bot, slack: FakeSlackWebApi
) -> None:
    body = encode(gitlab_job("running"))
    answer = await gitlab_bot.post("/webhooks/gitlab", body, gitlab_headers("Job Hook"))
    assert answer.status_code == 202
    assert answer.json()["status"] == "accepted"
    await gitlab_bot.send_outbox()
    [message] = slack.messages("#ledger-deploys")
    assert "Deploying" in message["text"]

    body = encode(gitlab_job("success"))
    answer = await gitlab_bot.post("/webhooks/gitlab", body, gitlab_headers("Job Hook"))
    assert answer.json()["status"] == "accepted"
    await gitlab_bot.send_outbox()

    [message] = slack.messages("#ledger-deploys")
    assert message["edited"] is True and "Deployed" in message["text"]
    [deployment] = rows(gitlab_bot, Deployment)
    assert (deployment.service, deployment.environment, deployment.state) == (
        "ledger",
        "production",
        "succeeded",
    )
    assert deployment.sha == SHA_A
    assert deployment.ci_url == "https://gitlab.example/acme/ledger/-/jobs/3580121225"
    assert deployment.deployer == "jsmithy2"


async def test_a_pipeline_is_tracked_through_the_environment_a_service_tracks(
    gitlab_bot: Bot, slack: FakeSlackWebApi
) -> None:
    body = fixture("gitlab", "pipeline_hook__docs-success.json")
    body["project"]["path_with_namespace"] = "acme/ledger"
    body["object_attributes"]["sha"] = SHA_A
    for build in body["builds"]:
        if build["name"] == "production":
            build["status"] = "manual"  # waits for a click; ledger tracks it
        if build["name"] == "staging":
            build["status"] = "running"  # moves first, but no service tracks it
    raw = encode(body)
    answer = await gitlab_bot.post("/webhooks/gitlab", raw, gitlab_headers("Pipeline Hook"))
    assert answer.json()["status"] == "accepted"
    await gitlab_bot.send_outbox()
    [deployment] = rows(gitlab_bot, Deployment)
    assert (deployment.service, deployment.environment, deployment.state) == (
        "ledger",
        "production",
        "pending",
    )
    assert len(slack.messages("#ledger-deploys")) == 1


class FakeGitLabDeployments:
    """GitLab's deployments API: the full sha of a deployment the hook named by a short one."""

    def __init__(self, sha: str) -> None:
        self.sha = sha
        self.calls: list[tuple[str | int, int]] = []

    async def deployment(self, project: str | int, deployment_id: int) -> GitLabDeployment:
        self.calls.append((project, deployment_id))
        return GitLabDeployment(id=deployment_id, sha=self.sha, ref="main", status="success")


def ledger_deployment_hook() -> bytes:
    body = fixture("gitlab", "deployment_hook__docs-success.json")
    body["project"]["path_with_namespace"] = "acme/ledger"
    body["environment"] = "production"
    return encode(body)


async def test_a_deployment_hook_is_applied_once_the_worker_has_the_full_sha(
    bot_factory: BotFactory, slack: FakeSlackWebApi, clock: Any
) -> None:
    full = "279484c09fbe69ededfced8c1bb6e6d24616b468"
    lookup = FakeGitLabDeployments(full)
    overrides = Overrides(
        clock=clock, start_scheduler=False, run_outbox_worker=False, lookups={"gitlab": lookup}
    )
    async with bot_factory(env={"GITLAB_WEBHOOK_TOKEN": GITLAB_TOKEN}, overrides=overrides) as bot:
        body = ledger_deployment_hook()
        answer = await bot.post(
            "/webhooks/gitlab", body, gitlab_headers("Deployment Hook", delivery="deploy-15")
        )
        assert answer.status_code == 202
        assert answer.json() == {
            "status": "accepted",
            "delivery": "deploy-15",
            "detail": "the full commit sha is being looked up",
        }
        assert rows(bot, Deployment) == []  # nothing waits on GitLab inside the request
        await bot.send_outbox()
        [deployment] = rows(bot, Deployment)
    assert lookup.calls == [("30", 15)]
    assert (deployment.service, deployment.environment, deployment.sha, deployment.state) == (
        "ledger",
        "production",
        full,
        "succeeded",
    )
    assert len(slack.messages("#ledger-deploys")) == 1


async def test_a_deployment_hook_whose_sha_does_not_match_changes_nothing(
    bot_factory: BotFactory, slack: FakeSlackWebApi, clock: Any
) -> None:
    lookup = FakeGitLabDeployments("9" * 40)
    overrides = Overrides(
        clock=clock, start_scheduler=False, run_outbox_worker=False, lookups={"gitlab": lookup}
    )
    async with bot_factory(env={"GITLAB_WEBHOOK_TOKEN": GITLAB_TOKEN}, overrides=overrides) as bot:
        body = ledger_deployment_hook()
        await bot.post("/webhooks/gitlab", body, gitlab_headers("Deployment Hook"))
        await bot.send_outbox()
        assert rows(bot, Deployment) == []
        ready = (await bot.http.get("/readyz")).json()
    assert ready["outbox"]["dead"] == 1
    assert slack.calls == []


async def test_a_deployment_hook_nobody_tracks_is_ignored(gitlab_bot: Bot) -> None:
    body = encode(fixture("gitlab", "deployment_hook__docs-success.json"))
    answer = await gitlab_bot.post("/webhooks/gitlab", body, gitlab_headers("Deployment Hook"))
    assert answer.json()["status"] == "ignored"
    assert (
        "no configured service tracks gitlab:root/test-deployment-webhooks"
        in (answer.json()["detail"])
    )


async def test_untracked_events_are_ignored(gitlab_bot: Bot) -> None:
    body = encode(fixture("gitlab", "merge_request_hook__go-gitlab-open.json"))
    answer = await gitlab_bot.post("/webhooks/gitlab", body, gitlab_headers("Merge Request Hook"))
    assert answer.status_code == 202 and answer.json()["status"] == "ignored"

    body = encode(gitlab_job("success", repo="someone/else"))
    answer = await gitlab_bot.post("/webhooks/gitlab", body, gitlab_headers("Job Hook"))
    assert answer.json()["status"] == "ignored"
    assert "no configured service" in answer.json()["detail"]
    assert rows(gitlab_bot, Deployment) == []


async def test_a_retried_delivery_is_a_duplicate(gitlab_bot: Bot, slack: FakeSlackWebApi) -> None:
    body = encode(gitlab_job("success"))
    first = await gitlab_bot.post(
        "/webhooks/gitlab", body, gitlab_headers("Job Hook", delivery="key-1")
    )
    retry = gitlab_headers("Job Hook", delivery="key-1")  # a new event UUID, the same key
    second = await gitlab_bot.post("/webhooks/gitlab", body, retry)
    await gitlab_bot.send_outbox()
    assert first.json() == {"status": "accepted", "delivery": "key-1"}
    assert second.json() == {"status": "duplicate", "delivery": "key-1"}
    assert len(rows(gitlab_bot, Deployment)) == 1
    assert len(slack.messages("#ledger-deploys")) == 1


async def test_without_an_idempotency_key_the_event_uuid_is_the_delivery(gitlab_bot: Bot) -> None:
    body = encode(gitlab_job("success"))
    headers = gitlab_headers("Job Hook")
    del headers["idempotency-key"]
    answer = await gitlab_bot.post("/webhooks/gitlab", body, headers)
    assert answer.json()["delivery"] == headers["x-gitlab-event-uuid"]

    # Older GitLab sends neither: the event name and body identify the delivery instead
    # (tests/test_gitlab_without_uuid.py), so the hook is not refused.
    del headers["x-gitlab-event-uuid"]
    answer = await gitlab_bot.post("/webhooks/gitlab", body, headers)
    assert answer.status_code == 202
    assert answer.json()["delivery"].startswith("body-")


# --- refused requests change nothing -------------------------------------------------------


async def assert_nothing_changed(bot: Bot, slack: FakeSlackWebApi) -> None:
    await bot.send_outbox()
    assert rows(bot, WebhookDelivery) == []
    assert rows(bot, Deployment) == []
    assert rows(bot, OutboxMessage) == []
    assert slack.calls == []


async def test_a_wrong_token_is_refused(gitlab_bot: Bot, slack: FakeSlackWebApi) -> None:
    body = encode(gitlab_job("success"))
    answer = await gitlab_bot.post(
        "/webhooks/gitlab", body, gitlab_headers("Job Hook", token="not the token")
    )
    assert answer.status_code == 401
    assert answer.json() == {"error": "invalid X-Gitlab-Token"}
    await assert_nothing_changed(gitlab_bot, slack)


async def test_a_missing_token_is_refused(gitlab_bot: Bot, slack: FakeSlackWebApi) -> None:
    body = encode(gitlab_job("success"))
    headers = gitlab_headers("Job Hook")
    del headers["x-gitlab-token"]
    answer = await gitlab_bot.post("/webhooks/gitlab", body, headers)
    assert answer.status_code == 401
    await assert_nothing_changed(gitlab_bot, slack)


async def test_without_a_configured_token_everything_is_refused(
    bot: Bot, slack: FakeSlackWebApi
) -> None:
    body = encode(gitlab_job("success"))
    answer = await bot.post("/webhooks/gitlab", body, gitlab_headers("Job Hook"))
    assert answer.status_code == 401
    assert "not configured" in answer.json()["error"]
    await assert_nothing_changed(bot, slack)


async def test_malformed_json_is_a_400(gitlab_bot: Bot, slack: FakeSlackWebApi) -> None:
    answer = await gitlab_bot.post(
        "/webhooks/gitlab", b'{"object_kind": ', gitlab_headers("Job Hook")
    )
    assert answer.status_code == 400
    assert "malformed JSON" in answer.json()["error"]
    await assert_nothing_changed(gitlab_bot, slack)


@pytest.mark.parametrize(
    ("event", "change", "error"),
    [
        ("Job Hook", lambda b: b.pop("sha"), "sha is required"),
        ("Job Hook", lambda b: b.update(sha="abc"), "sha must be a full commit sha"),
        ("Job Hook", lambda b: b["environment"].pop("name"), "environment.name is required"),
        ("Job Hook", lambda b: b.pop("build_status"), "build_status is required"),
        ("Pipeline Hook", lambda b: b["builds"][0].pop("id"), "builds[0].id is required"),
        ("Pipeline Hook", lambda b: b.pop("project"), "project.path_with_namespace is required"),
        ("Deployment Hook", lambda b: b.pop("deployment_id"), "deployment_id is required"),
        ("Deployment Hook", lambda b: b.update(short_sha="zz"), "short_sha must be a commit"),
    ],
)
async def test_a_missing_or_wrong_field_is_a_400_naming_it(
    gitlab_bot: Bot, slack: FakeSlackWebApi, event: str, change: Any, error: str
) -> None:
    source = {
        "Job Hook": gitlab_job("success"),
        "Pipeline Hook": fixture("gitlab", "pipeline_hook__docs-success.json"),
        "Deployment Hook": fixture("gitlab", "deployment_hook__docs-success.json"),
    }[event]
    payload = copy.deepcopy(source)
    change(payload)
    answer = await gitlab_bot.post("/webhooks/gitlab", encode(payload), gitlab_headers(event))
    assert answer.status_code == 400
    assert answer.json()["error"].startswith(error)
    await assert_nothing_changed(gitlab_bot, slack)


async def test_an_oversized_body_is_a_413(bot_factory: BotFactory, slack: FakeSlackWebApi) -> None:
    env = {"GITLAB_WEBHOOK_TOKEN": GITLAB_TOKEN, "RELEASEBOT_MAX_BODY_BYTES": "1024"}
    async with bot_factory(env=env) as bot:
        body = encode(gitlab_job("success"))
        assert len(body) > 1024
        answer = await bot.post("/webhooks/gitlab", body, gitlab_headers("Job Hook"))
        assert answer.status_code == 413
        await assert_nothing_changed(bot, slack)


async def test_a_wrong_content_type_is_a_415(gitlab_bot: Bot, slack: FakeSlackWebApi) -> None:
    headers = gitlab_headers("Job Hook")
    headers["content-type"] = "application/x-www-form-urlencoded"
    body = json.dumps(gitlab_job("success")).encode()
    answer = await gitlab_bot.post("/webhooks/gitlab", body, headers)
    assert answer.status_code == 415
    await assert_nothing_changed(gitlab_bot, slack)
