"""Every deployer driven from a real click: a signed Slack request into the app (Bolt's own
signature check), the real database and outbox worker, and a fake at the network edge that
answers like the real API, errors included (tests/fake_deployers.py).

- GitHub protection rule: Approve on the gate GitHub asked for; POST the run's callback URL.
- GitHub workflow: Roll back (the button, then its modal); POST .../workflows/x/dispatches.
- Argo CD: Promote, `/release rollback`; POST .../sync, or GET the app then .../rollback.
- Jenkins: Promote, then Approve on its gate; POST /job/a/job/b/buildWithParameters.
- Webhook: Promote, then Approve on its gate; POST the team's URL, signed.

GitLab's deployers have tests of their own.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import httpx
import pytest
from sqlmodel import col, select

from bot.config import Config, parse_config
from bot.services import audit
from bot.settings import load_settings
from bot.store.tables import AuditEvent, Deployment, Gate, OutboxMessage, ReleaseMessage
from integrations.deployers.registry import build_deployers, close_all
from integrations.deployers.webhook import sign
from integrations.http import RetryPolicy
from integrations.sandbox.webapi import FakeSlackWebApi
from tests.conftest import TEST_SECRETS, Bot, BotFactory
from tests.fake_deployers import (
    ARGOCD_TOKEN,
    ARGOCD_URL,
    HOOK_SECRET,
    JENKINS_API_TOKEN,
    JENKINS_PASSWORD,
    JENKINS_URL,
    JENKINS_USER,
    DeployEdge,
    github_error,
)
from tests.fakes import FrozenClock
from tests.helpers import (
    GENERIC_SECRET,
    SHA_A,
    SHA_B,
    deployment_status,
    encode,
    example_config_data,
    generic_body,
    github_headers,
    signed_headers,
)
from tests.slackflow import (
    CALLBACK,
    buttons,
    click,
    gated_env,
    gated_overrides,
    request_gate,
    submit_reason,
    told,
)
from tests.test_slash_commands import Slash

MEDIUM_RISK = [
    {"filename": "Dockerfile", "status": "modified", "additions": 1600, "deletions": 400}
]
CALLBACK_PATH = "/repos/acme/checkout/actions/runs/4242/deployment_protection_rule"
DISPATCH_PATH = "/repos/acme/checkout/actions/workflows/deploy-production.yml/dispatches"
JENKINS_JOB = "/job/billing/job/deploy-production"
HOOK_SECRETS = {**TEST_SECRETS, "PAYMENTS_DEPLOY_HOOK_SECRET": HOOK_SECRET}


def deployers_config() -> Config:
    """The example config, with every deployer reachable by a click:

    - storefront gets a staging environment; both are synced by Argo CD (production has no
      gate, so a promotion starts the sync at once);
    - payments-batch gets a staging environment; production is gated and deploys through
      its webhook;
    - billing is new: staging, then a gated production built by a Jenkins job;
    - every environment of theirs may also be reported through POST /webhooks/generic.
    """
    data = example_config_data()
    services = data["services"]
    storefront = services["storefront"]
    [production] = storefront["environments"]
    production["track"]["generic"] = True
    staging = {
        "name": "staging",
        "track": {"generic": True},
        "deploy": {"argocd": {"app": "storefront-staging"}},
    }
    storefront["environments"] = [staging, production]
    payments = services["payments-batch"]
    payments["environments"].insert(0, {"name": "staging", "track": {"generic": True}})
    services["billing"] = {
        "repo": "github:acme/billing",
        "channel": "#billing-deploys",
        "environments": [
            {"name": "staging", "track": {"generic": True}},
            {
                "name": "production",
                "track": {"generic": True},
                "gate": {"approvals": 1, "approvers": ["S0RELMGRS"]},
                "deploy": {"jenkins": {"job": "billing/deploy-production"}},
            },
        ],
    }
    return parse_config(data)


def deployers_env(app_private_key: str, **extra: str) -> dict[str, str]:
    wanted = {
        "ARGOCD_URL": ARGOCD_URL,
        "ARGOCD_TOKEN": ARGOCD_TOKEN,
        "JENKINS_URL": JENKINS_URL,
        "JENKINS_USER": JENKINS_USER,
        "JENKINS_API_TOKEN": JENKINS_API_TOKEN,
        "RELEASEBOT_GENERIC_WEBHOOK_SECRET": GENERIC_SECRET,
    }
    return gated_env(app_private_key, **{**wanted, **extra})


class RecordingSleep:
    """The waits between in-place retries, recorded instead of slept."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def edge() -> DeployEdge:
    """Replaces slackflow's edge: GitHub, Argo CD, Jenkins and the webhook receiver."""
    fake = DeployEdge()
    fake.github.compare_files = list(MEDIUM_RISK)  # gates ask a person, not auto-approve
    fake.argocd.add_app("storefront-staging", SHA_B)
    fake.argocd.add_app("storefront-prod", SHA_B, SHA_A, SHA_B)
    fake.jenkins.jobs.add(JENKINS_JOB)
    return fake


Start = Callable[..., Any]


@pytest.fixture
def start(
    bot_factory: BotFactory,
    environ: dict[str, str],
    clock: FrozenClock,
    edge: DeployEdge,
    app_private_key: str,
) -> Start:
    """`async with start(**env) as bot:` the app with every deployer configured. With
    `sleep`, the deployers are built by the same registry but wait through `sleep` between
    in-place retries, so a test can see them without waiting."""

    @asynccontextmanager
    async def run(sleep: RecordingSleep | None = None, **extra: str) -> AsyncIterator[Bot]:
        env = deployers_env(app_private_key, **extra)
        overrides = replace(
            gated_overrides(clock, edge, config=deployers_config()), environ=HOOK_SECRETS
        )
        own: dict[str, Any] = {}
        if sleep is not None:
            settings = load_settings({**environ, **env})
            own = build_deployers(
                settings,
                secret_lookup=HOOK_SECRETS.get,
                transport=edge.transport,
                retry=RetryPolicy(sleep=sleep),
                jenkins_url=settings.jenkins_url,
                jenkins_user=settings.jenkins_user,
                jenkins_api_token=JENKINS_API_TOKEN,
            )
            overrides = replace(overrides, deployers=own)
        try:
            async with bot_factory(env=env, overrides=overrides) as bot:
                yield bot
        finally:
            await close_all(own)

    return run


@pytest.fixture
async def bot(start: Start) -> AsyncIterator[Bot]:
    async with start() as running:
        yield running


# --- helpers -------------------------------------------------------------------------------


async def report(bot: Bot, service: str, environment: str, sha: str, version: str) -> None:
    """The CI reports a finished deploy through the generic webhook."""
    body = encode(
        generic_body(
            "succeeded",
            service=service,
            environment=environment,
            sha=sha,
            version=version,
            previous_sha=None,
        )
    )
    answer = await bot.post("/webhooks/generic", body, signed_headers(body, GENERIC_SECRET))
    assert answer.json()["status"] == "accepted", answer.text
    await bot.send_outbox()


async def github_deployed(bot: Bot, sha: str, deployment_id: int) -> None:
    body = encode(deployment_status("success", sha=sha, deployment_id=deployment_id))
    answer = await bot.post("/webhooks/github", body, github_headers("deployment_status", body))
    assert answer.status_code == 202, answer.text
    await bot.send_outbox()


def deployment(bot: Bot, service: str, environment: str) -> Deployment:
    """The newest deployment of `service` in `environment`."""
    with bot.runtime.db.read() as session:
        found = session.exec(
            select(Deployment)
            .where(Deployment.service == service)
            .where(Deployment.environment == environment)
            .order_by(col(Deployment.id).desc())
        ).first()
    assert found is not None, f"no deployment of {service} in {environment}"
    return found


def gate_of(bot: Bot, deployment_id: int | None) -> Gate:
    with bot.runtime.db.read() as session:
        gate = session.exec(select(Gate).where(Gate.deployment_id == deployment_id)).one()
    return gate


def release_message(bot: Bot, slack: FakeSlackWebApi, of: Deployment) -> dict[str, Any]:
    with bot.runtime.db.read() as session:
        where = session.get(ReleaseMessage, of.id)
    assert where is not None
    [message] = [m for m in slack.messages(where.channel) if m["ts"] == where.ts]
    return message


def thread_lines(bot: Bot, slack: FakeSlackWebApi, of: Deployment) -> list[str]:
    """The replies in the thread of a deployment's release message."""
    message = release_message(bot, slack, of)
    return [str(reply["text"]) for reply in slack.thread(message["channel"], message["ts"])[1:]]


def approval_line(message: dict[str, Any]) -> str:
    [line] = [
        b["text"]["text"]
        for b in message["blocks"]
        if b["type"] == "section" and b.get("text", {}).get("text", "").startswith("*Approval*")
    ]
    return str(line)


def audited(bot: Bot, action: str) -> list[dict[str, Any]]:
    with bot.runtime.db.read() as session:
        assert audit.verify_chain(session)[1] is None
        events = session.exec(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)
        ).all()
        return [dict(json.loads(e.details)) for e in events]


def deployer_rows(bot: Bot) -> list[OutboxMessage]:
    with bot.runtime.db.read() as session:
        return list(
            session.exec(select(OutboxMessage).where(OutboxMessage.kind == "deployer.execute"))
        )


async def later(bot: Bot, clock: FrozenClock, **delta: float) -> None:
    """Time passes and the worker runs again: what was due to be retried is retried."""
    clock.advance(**delta)
    await bot.send_outbox()


async def promote_and_approve(
    bot: Bot, slack: FakeSlackWebApi, service: str, sha: str = SHA_A
) -> Deployment:
    """Staging has `sha`; a release manager promotes it, another approves production's gate."""
    await report(bot, service, "staging", sha, "v2.4.0")
    staging = deployment(bot, service, "staging")
    assert staging.state == "succeeded"
    await click(bot, "U0RM1", "release_promote", staging.id or 0)
    assert f"promoting {sha[:7]} to production" in told(slack, "U0RM1")
    production = deployment(bot, service, "production")
    assert production.state == "awaiting_approval"
    assert deployer_rows(bot) == []  # nothing starts before the gate is passed
    await click(bot, "U0RM2", "release_approve", gate_of(bot, production.id).id or 0)
    return deployment(bot, service, "production")


def assert_refused_once(bot: Bot, kind: str, action: str, *errors: str) -> None:
    """The call failed for good: one dead row, audited with the API's words."""
    [row] = deployer_rows(bot)
    assert (row.status, row.attempts) == ("dead", 1)
    [failed] = audited(bot, "deployer.failed")
    assert (failed["kind"], failed["action"]) == (kind, action)
    for error in errors:
        assert error in failed["error"]
    assert audited(bot, "deployer.called") == []


# --- GitHub: the deployment protection rule ----------------------------------------------------


async def test_approve_sends_the_decision_to_githubs_protection_rule_callback(
    bot: Bot, slack: FakeSlackWebApi, edge: DeployEdge
) -> None:
    await request_gate(bot)
    production = deployment(bot, "checkout", "production")
    await click(bot, "U0RM1", "release_approve", gate_of(bot, production.id).id or 0)

    [call] = edge.github.calls("POST", "/deployment_protection_rule")
    assert str(call.url) == CALLBACK
    assert call.headers["authorization"] == "Bearer ghs_installation"
    assert call.headers["x-github-api-version"] == "2022-11-28"
    body = json.loads(call.content)
    assert set(body) == {"environment_name", "state", "comment"}
    assert (body["environment_name"], body["state"]) == ("production", "approved")
    assert body["comment"].startswith("Approved in Slack by ")
    assert edge.github.calls("POST", "/app/installations/42/access_tokens")

    assert ":white_check_mark:" in approval_line(release_message(bot, slack, production))
    [line] = [t for t in thread_lines(bot, slack, production) if "protection rule" in t]
    assert line.startswith(":gear: Github protection rule: approve sent.")
    assert "approved the GitHub deployment protection rule for production" in line
    assert "https://github.com/acme/checkout/actions/runs/4242" in line
    [called] = audited(bot, "deployer.called")
    assert (called["kind"], called["action"]) == ("github_protection_rule", "approve")


@pytest.mark.parametrize(
    ("status", "message", "explained"),
    [
        (422, "No pending deployment protection rule found", "GitHub refused the decision"),
        (403, "Resource not accessible by integration", "needs Deployments read and write"),
        (404, "Not Found", "the workflow run or its protection rule was not found"),
    ],
)
async def test_a_decision_github_refuses_is_shown_refused_and_not_sent_again(
    bot: Bot,
    slack: FakeSlackWebApi,
    edge: DeployEdge,
    clock: FrozenClock,
    status: int,
    message: str,
    explained: str,
) -> None:
    edge.github.callback_answers.append(github_error(status, message))
    await request_gate(bot)
    production = deployment(bot, "checkout", "production")
    await click(bot, "U0RM1", "release_approve", gate_of(bot, production.id).id or 0)

    line = approval_line(release_message(bot, slack, production))
    assert line.startswith("*Approval*\n:warning: The pipeline refused the approval by <@U0RM1>")
    assert ":white_check_mark:" not in line and str(status) in line
    thread = "\n".join(thread_lines(bot, slack, production))
    assert "Could not approve through github protection rule" in thread
    assert message in thread and explained in thread
    assert_refused_once(bot, "github_protection_rule", "approve", str(status), explained)

    await later(bot, clock, hours=1)  # a refusal is final: nothing is sent again
    assert len(edge.github.calls("POST", "/deployment_protection_rule")) == 1


async def test_a_rate_limited_callback_is_retried_when_github_says_and_then_lands(
    bot: Bot, slack: FakeSlackWebApi, edge: DeployEdge, clock: FrozenClock
) -> None:
    limited = github_error(403, "You have exceeded a secondary rate limit.")
    limited.headers["retry-after"] = "60"
    edge.github.callback_answers.append(limited)
    await request_gate(bot)
    production = deployment(bot, "checkout", "production")
    await click(bot, "U0RM1", "release_approve", gate_of(bot, production.id).id or 0)

    [row] = deployer_rows(bot)
    assert (row.status, row.attempts) == ("pending", 1)  # waits as long as GitHub asked
    assert audited(bot, "deployer.failed") == []
    assert not [t for t in thread_lines(bot, slack, production) if "protection rule" in t]

    await later(bot, clock, seconds=30)  # too early: GitHub is not asked again yet
    assert len(edge.github.calls("POST", "/deployment_protection_rule")) == 1
    await later(bot, clock, seconds=32)
    first, second = edge.github.calls("POST", "/deployment_protection_rule")
    assert first.content == second.content  # the same decision
    assert [r.status for r in deployer_rows(bot)] == ["sent"]
    [line] = [t for t in thread_lines(bot, slack, production) if "protection rule" in t]
    assert line.startswith(":gear: Github protection rule: approve sent.")
    assert ":white_check_mark:" in approval_line(release_message(bot, slack, production))


# --- GitHub: workflow dispatch -----------------------------------------------------------------


async def roll_back_checkout(bot: Bot, slack: FakeSlackWebApi) -> Deployment:
    """SHA_A then SHA_B reached production; a release manager rolls SHA_B back."""
    await github_deployed(bot, SHA_A, 1)
    await github_deployed(bot, SHA_B, 2)
    bad = deployment(bot, "checkout", "production")
    assert bad.sha == SHA_B
    await click(bot, "U0RM1", "release_rollback", bad.id or 0)
    await submit_reason(bot, slack, "U0RM1", "checkout errors doubled")
    return deployment(bot, "checkout", "production")


async def test_roll_back_dispatches_the_deploy_workflow_with_the_good_sha(
    bot: Bot, slack: FakeSlackWebApi, edge: DeployEdge
) -> None:
    run = "https://github.com/acme/checkout/actions/runs/9001"
    edge.github.dispatch_answers.append(
        httpx.Response(200, json={"workflow_run_id": 9001, "run_url": run, "html_url": run})
    )
    bad = await roll_back_checkout(bot, slack)
    assert (bad.state, bad.rollback_to) == ("rolling_back", SHA_A)

    [call] = edge.github.dispatches()
    assert call.url.path == DISPATCH_PATH
    assert call.headers["authorization"] == "Bearer ghs_installation"
    body = json.loads(call.content)
    assert (body["ref"], body["return_run_details"]) == ("main", True)
    inputs = body["inputs"]
    assert set(inputs) == {"environment", "request_id", "sha", "version", "action"}
    assert (inputs["action"], inputs["sha"], inputs["environment"]) == (
        "rollback",
        SHA_A,
        "production",
    )
    [called] = audited(bot, "deployer.called")
    assert inputs["request_id"] == called["request_id"]

    [line] = [t for t in thread_lines(bot, slack, bad) if "Github workflow" in t]
    assert line.startswith(":gear: Github workflow: rollback sent.")
    assert "dispatched deploy-production.yml on main to rollback checkout" in line
    assert "(run 9001)" in line and run in line


@pytest.mark.parametrize(
    ("status", "message", "explained"),
    [
        (422, 'Unexpected inputs provided: ["request_id"]', "check ref 'main' and the workflow"),
        (404, "Not Found", "workflow deploy-production.yml not found"),
    ],
)
async def test_a_dispatch_github_refuses_is_shown_as_failed_and_not_sent_again(
    bot: Bot,
    slack: FakeSlackWebApi,
    edge: DeployEdge,
    clock: FrozenClock,
    status: int,
    message: str,
    explained: str,
) -> None:
    edge.github.dispatch_answers.append(github_error(status, message))
    bad = await roll_back_checkout(bot, slack)

    thread = "\n".join(thread_lines(bot, slack, bad))
    assert "Could not rollback through github workflow" in thread
    assert message in thread
    assert explained in thread
    assert "rollback sent" not in thread
    assert_refused_once(bot, "github_workflow", "rollback", str(status), explained)

    await later(bot, clock, hours=1)  # a dispatch is never repeated blind
    assert len(edge.github.dispatches()) == 1


# --- Argo CD -----------------------------------------------------------------------------------


async def test_promote_into_an_ungated_environment_syncs_the_argocd_application(
    bot: Bot, slack: FakeSlackWebApi, edge: DeployEdge
) -> None:
    await report(bot, "storefront", "staging", SHA_A, "v3.1.0")
    staging = deployment(bot, "storefront", "staging")
    await click(bot, "U0RM1", "release_promote", staging.id or 0)
    assert "promoting f95f852 to production" in told(slack, "U0RM1")

    [sync] = edge.argocd.calls("POST", "/sync")
    assert sync.url.path == "/api/v1/applications/storefront-prod/sync"
    assert sync.headers["authorization"] == f"Bearer {ARGOCD_TOKEN}"
    assert json.loads(sync.content) == {"revision": SHA_A, "prune": False}
    assert edge.argocd.calls("POST", "/rollback") == []

    production = deployment(bot, "storefront", "production")
    [line] = [t for t in thread_lines(bot, slack, production) if "Argocd" in t]
    assert line.startswith(":gear: Argocd: promote sent.")
    assert "Argo CD is syncing storefront-prod to f95f852" in line
    assert f"{ARGOCD_URL}/applications/storefront-prod" in line
    [called] = audited(bot, "deployer.called")
    assert (called["kind"], called["action"]) == ("argocd", "promote")


async def test_release_rollback_rolls_argocd_back_to_the_history_entry_of_the_good_sha(
    bot: Bot,
    slack: FakeSlackWebApi,
    edge: DeployEdge,
    slack_server: tuple[FakeSlackWebApi, str],
    clock: FrozenClock,
) -> None:
    await report(bot, "storefront", "production", SHA_A, "v3.0.0")
    clock.advance(hours=1)
    await report(bot, "storefront", "production", SHA_B, "v3.1.0")
    slash = Slash(bot, slack, slack_server[1])
    reply = await slash("U0RM1", "rollback storefront production -- checkout page is blank")
    assert "rolling production back to f95f852" in json.dumps(reply)

    [get] = edge.argocd.calls("GET")
    assert get.url.path == "/api/v1/applications/storefront-prod"
    [rollback] = edge.argocd.calls("POST", "/rollback")
    assert rollback.headers["authorization"] == f"Bearer {ARGOCD_TOKEN}"
    assert json.loads(rollback.content) == {"id": 2}  # the history entry that deployed SHA_A
    assert edge.argocd.calls("POST", "/sync") == []

    bad = deployment(bot, "storefront", "production")
    assert bad.sha == SHA_B and bad.state == "rolling_back"
    [line] = [t for t in thread_lines(bot, slack, bad) if "Argocd" in t]
    assert line.startswith(":gear: Argocd: rollback sent.")
    assert "rolling storefront-prod back to f95f852 (history id 2)" in line


async def test_argocd_refusing_the_token_on_the_app_is_shown_as_failed_not_retried(
    bot: Bot, slack: FakeSlackWebApi, edge: DeployEdge, clock: FrozenClock
) -> None:
    edge.argocd.forbidden.add("storefront-prod")
    await report(bot, "storefront", "staging", SHA_A, "v3.1.0")
    await click(bot, "U0RM1", "release_promote", deployment(bot, "storefront", "staging").id or 0)

    production = deployment(bot, "storefront", "production")
    thread = "\n".join(thread_lines(bot, slack, production))
    assert "Could not promote through argocd" in thread
    assert "permission denied: applications, sync, default/storefront-prod" in thread
    assert "the token may not act on storefront-prod" in thread
    assert "promote sent" not in thread
    assert ARGOCD_TOKEN not in thread
    assert_refused_once(bot, "argocd", "promote", "403", "permission denied")
    await later(bot, clock, hours=1)
    assert len(edge.argocd.calls("POST", "/sync")) == 1


async def test_argocd_with_auto_sync_refuses_a_rollback_and_says_what_to_do(
    bot: Bot,
    slack: FakeSlackWebApi,
    edge: DeployEdge,
    slack_server: tuple[FakeSlackWebApi, str],
    clock: FrozenClock,
) -> None:
    edge.argocd.automated.add("storefront-prod")
    await report(bot, "storefront", "production", SHA_A, "v3.0.0")
    clock.advance(hours=1)
    await report(bot, "storefront", "production", SHA_B, "v3.1.0")
    await Slash(bot, slack, slack_server[1])("U0RM1", "rollback storefront production -- blank")

    bad = deployment(bot, "storefront", "production")
    thread = "\n".join(thread_lines(bot, slack, bad))
    assert "Could not rollback through argocd" in thread
    assert "rollback cannot be initiated when auto-sync is enabled" in thread
    assert "disable auto-sync on storefront-prod" in thread
    assert_refused_once(bot, "argocd", "rollback", "400", "auto-sync is enabled")
    await later(bot, clock, hours=1)
    assert len(edge.argocd.calls("POST", "/rollback")) == 1


async def test_argocd_busy_with_another_operation_is_retried_after_30_seconds(
    bot: Bot, slack: FakeSlackWebApi, edge: DeployEdge, clock: FrozenClock
) -> None:
    edge.argocd.busy.add("storefront-prod")
    await report(bot, "storefront", "staging", SHA_A, "v3.1.0")
    await click(bot, "U0RM1", "release_promote", deployment(bot, "storefront", "staging").id or 0)
    production = deployment(bot, "storefront", "production")
    [row] = deployer_rows(bot)
    assert (row.status, row.attempts) == ("pending", 1)
    assert "another operation is already in progress" in (row.last_error or "")
    assert not [t for t in thread_lines(bot, slack, production) if "argocd" in t.lower()]

    edge.argocd.busy.clear()  # Argo CD finished the other sync
    await later(bot, clock, seconds=31)
    assert len(edge.argocd.calls("POST", "/sync")) == 2
    [line] = [t for t in thread_lines(bot, slack, production) if "Argocd" in t]
    assert line.startswith(":gear: Argocd: promote sent.")
    assert audited(bot, "deployer.failed") == []


# --- Jenkins -----------------------------------------------------------------------------------


async def test_approving_a_promotion_builds_the_jenkins_job_and_links_the_build(
    bot: Bot, slack: FakeSlackWebApi, edge: DeployEdge
) -> None:
    production = await promote_and_approve(bot, slack, "billing")

    [build] = edge.jenkins.build_requests()
    assert build.url.path == f"{JENKINS_JOB}/buildWithParameters"
    credentials = base64.b64encode(f"{JENKINS_USER}:{JENKINS_API_TOKEN}".encode()).decode()
    assert build.headers["authorization"] == f"Basic {credentials}"
    [params] = edge.jenkins.builds
    [called] = audited(bot, "deployer.called")
    assert params == {
        "REQUEST_ID": called["request_id"],
        "SHA": SHA_A,
        "VERSION": "v2.4.0",
        "ACTION": "promote",
        "ENVIRONMENT": "production",
    }
    assert [r.url.path for r in edge.jenkins.requests][-1] == "/queue/item/4701/api/json"

    assert ":white_check_mark:" in approval_line(release_message(bot, slack, production))
    [line] = [t for t in thread_lines(bot, slack, production) if "Jenkins" in t]
    assert line.startswith(":gear: Jenkins: promote sent. Jenkins started build #57")
    assert f"{JENKINS_URL}{JENKINS_JOB}/57/" in line


@pytest.mark.parametrize(
    ("token", "may_build", "status", "said"),
    [
        (JENKINS_PASSWORD, True, 403, "No valid crumb was included in the request"),
        ("not-the-token", True, 401, "Invalid password/token for user: releasebot"),
        (JENKINS_API_TOKEN, False, 403, "releasebot is missing the Job/Build permission"),
    ],
)
async def test_a_build_jenkins_refuses_is_shown_refused_on_the_gate_and_not_retried(
    start: Start,
    slack: FakeSlackWebApi,
    edge: DeployEdge,
    clock: FrozenClock,
    token: str,
    may_build: bool,
    status: int,
    said: str,
) -> None:
    edge.jenkins.may_build = may_build
    async with start(JENKINS_API_TOKEN=token) as bot:
        production = await promote_and_approve(bot, slack, "billing")

        line = approval_line(release_message(bot, slack, production))
        assert line.startswith(
            "*Approval*\n:warning: The pipeline refused the approval by <@U0RM2>"
        )
        thread = "\n".join(thread_lines(bot, slack, production))
        assert "Could not promote through jenkins" in thread and said in thread
        assert token not in thread
        assert_refused_once(bot, "jenkins", "promote", str(status), said)
        await later(bot, clock, hours=1)  # a build request is never repeated
        assert len(edge.jenkins.build_requests()) == 1
        assert edge.jenkins.builds == []


# --- a deploy webhook --------------------------------------------------------------------------


async def test_approving_a_promotion_posts_a_signed_request_to_the_deploy_webhook(
    bot: Bot, slack: FakeSlackWebApi, edge: DeployEdge
) -> None:
    production = await promote_and_approve(bot, slack, "payments-batch")

    [call] = edge.receiver.requests
    assert str(call.url) == "http://127.0.0.1:9320/deploy"
    assert call.headers["x-releasebot-signature"] == sign(HOOK_SECRET, call.content)
    [called] = audited(bot, "deployer.called")
    assert call.headers["x-releasebot-delivery"] == called["request_id"]
    body = json.loads(call.content)
    assert set(body) == {
        "action",
        "service",
        "environment",
        "sha",
        "version",
        "request_id",
        "reason",
        "actor",
    }
    assert (body["action"], body["service"], body["environment"]) == (
        "promote",
        "payments-batch",
        "production",
    )
    assert (body["sha"], body["version"], body["actor"]) == (SHA_A, "v2.4.0", "U0RM2")

    assert ":white_check_mark:" in approval_line(release_message(bot, slack, production))
    [line] = [t for t in thread_lines(bot, slack, production) if "Webhook" in t]
    assert line.startswith(":gear: Webhook: promote sent.")
    assert "to 127.0.0.1:9320 (HTTP 202)" in line


async def test_a_webhook_answering_500_is_retried_with_the_same_delivery_until_it_lands(
    start: Start, slack: FakeSlackWebApi, edge: DeployEdge, clock: FrozenClock
) -> None:
    sleep = RecordingSleep()
    edge.receiver.answers = [500, 500, 500]
    async with start(sleep=sleep) as bot:
        production = await promote_and_approve(bot, slack, "payments-batch")

        assert len(edge.receiver.requests) == 3  # tried in place, then handed back
        assert sleep.calls == [0.5, 1.0]
        [row] = deployer_rows(bot)
        assert (row.status, row.attempts) == ("pending", 1)
        assert "500" in (row.last_error or "")
        assert audited(bot, "deployer.failed") == []  # not failed: it will be tried again
        assert not [t for t in thread_lines(bot, slack, production) if "webhook" in t.lower()]
        assert "refused" not in approval_line(release_message(bot, slack, production))

        await later(bot, clock, minutes=5)
        assert len(edge.receiver.requests) == 4
        deliveries = {r.headers["x-releasebot-delivery"] for r in edge.receiver.requests}
        assert len(deliveries) == 1  # the receiver can tell it is the same request
        assert [r.status for r in deployer_rows(bot)] == ["sent"]
        [line] = [t for t in thread_lines(bot, slack, production) if "Webhook" in t]
        assert line.startswith(":gear: Webhook: promote sent.")


@pytest.mark.parametrize(
    ("answers", "receiver_secret", "status"),
    [([400], HOOK_SECRET, 400), ([], "a secret releasebot was not given", 401)],
)
async def test_a_webhook_refusing_the_request_is_shown_refused_and_not_retried(
    start: Start,
    slack: FakeSlackWebApi,
    edge: DeployEdge,
    clock: FrozenClock,
    answers: list[int],
    receiver_secret: str,
    status: int,
) -> None:
    edge.receiver.answers = list(answers)
    edge.receiver.secret = receiver_secret
    async with start() as bot:
        production = await promote_and_approve(bot, slack, "payments-batch")

        line = approval_line(release_message(bot, slack, production))
        assert ":warning: The pipeline refused the approval by <@U0RM2>" in line
        thread = "\n".join(thread_lines(bot, slack, production))
        assert "Could not promote through webhook" in thread and str(status) in thread
        assert "http://127.0.0.1:9320/..." in thread  # the URL's path is not shown
        assert_refused_once(bot, "webhook", "promote", str(status))
        await later(bot, clock, hours=1)
        assert len(edge.receiver.requests) == 1
        assert "release_approve" not in buttons(release_message(bot, slack, production))
