"""`/release deploy <service> <ref> to <env>`, signed through the real app: the ref is
resolved on GitHub (a fake answering `commits/{ref}` and compare as GitHub does), the
deployment waits at the environment's gate with its risk and the commits since what runs
there, and an approval dispatches the deploy workflow on that ref. Unknown services,
environments and refs are answered with the choices there are; someone who may not promote
there is refused with a remedy; a freeze holds it at its gate like a promotion."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from bot.config import Config
from bot.domain.errors import DeliveryFailed
from bot.store.tables import Deployment, Gate
from handlers.slack.command_parser import Deploy, Usage, parse
from integrations.github.client import GitHubClient
from integrations.gitlab.client import GitLabClient
from integrations.http import RetryPolicy, make_client
from integrations.sandbox.webapi import FakeSlackWebApi
from tests.conftest import Bot
from tests.fake_deployers import DeployEdge
from tests.fakes import FakeGitHub, FrozenClock
from tests.helpers import SHA_A, SHA_B, rows
from tests.slackflow import CHANNEL, click, told
from tests.test_deployers_from_clicks import Start, edge, start
from tests.test_slash_commands import (
    MEDIUM,
    Slash,
    audit_of,
    bot,
    channel_texts,
    deploy,
    dispatches,
    shown,
    slash,
)

# The fixtures: the slash command tests' app, and the deployer tests' edge (GitHub, Jenkins
# and a deploy webhook's receiver) and app with every deployer configured.
__all__ = ["bot", "edge", "slash", "start"]

TAG = "v1.4.2"


def production(bot: Bot, sha: str) -> Deployment:
    [found] = [d for d in rows(bot, Deployment) if d.sha == sha and d.environment == "production"]
    return found


def gate_of(bot: Bot, deployment: Deployment) -> Gate:
    [gate] = [g for g in rows(bot, Gate) if g.deployment_id == deployment.id]
    return gate


def release_message(slack: FakeSlackWebApi, sha: str) -> dict[str, Any]:
    found = [
        m
        for m in slack.messages(CHANNEL)
        if sha[:7] in json.dumps(m["blocks"]) and "production" in m["text"]
    ]
    return found[-1]


async def running_a(bot: Bot, github: FakeGitHub) -> None:
    """Production runs SHA_A; GitHub knows the tag v1.4.2 at SHA_B, a medium-risk change
    by someone else (so the gate waits for a person)."""
    await deploy(bot, "success", sha=SHA_A, deployment_id=1)
    github.refs = {TAG: SHA_B, "main": SHA_B}
    github.commit_author = "someone-else"
    github.compare_files = MEDIUM


def test_deploy_parses_with_the_choices_when_a_name_is_wrong(example_config: Config) -> None:
    c = example_config
    assert parse(f"deploy checkout {TAG} to production", config=c) == Deploy(
        "checkout", TAG, "production"
    )
    assert parse("deploy checkout feature/fast-pay production", config=c) == Deploy(
        "checkout", "feature/fast-pay", "production"
    )
    service = parse(f"deploy chekout {TAG} to production", config=c)
    assert isinstance(service, Usage)
    assert "there are checkout, ledger, payments-batch, search, storefront" in service.problem
    assert service.corrected == f"deploy checkout {TAG} to production"
    env = parse(f"deploy checkout {TAG} to prod", config=c)
    assert isinstance(env, Usage) and "(it has staging, production)" in env.problem
    assert env.corrected == f"deploy checkout {TAG} to production"
    for text, problem in (
        ("deploy checkout to production", "say which service"),
        ("deploy checkout ../etc to production", "not a branch, tag or commit name"),
        ("deploy checkout -rf to production", "not a branch, tag or commit name"),
    ):
        answer = parse(text, config=c)
        assert isinstance(answer, Usage) and problem in answer.problem, (text, answer)


async def test_a_tag_deploys_through_the_gate_and_the_workflow_runs_on_it(
    slash: Slash, bot: Bot, slack: FakeSlackWebApi, github: FakeGitHub
) -> None:
    await running_a(bot, github)

    reply = shown(await slash("U0RM1", f"deploy checkout {TAG} to production"))
    assert f"deploying {TAG} ({SHA_B[:7]}) to production" in reply
    assert f"commits since master ({SHA_A[:7]}), which runs there now" in reply
    assert "waits at its gate" in reply
    assert any(
        f"<@U0RM1> *checkout*: deploying {TAG}" in t for t in channel_texts(slack)
    )  # announced in the service's channel

    # the ref was resolved on GitHub, and the commits compared against what runs there
    assert github.calls("GET", f"/repos/acme/checkout/commits/{TAG}")
    assert github.calls("GET", f"/repos/acme/checkout/compare/{SHA_A}...{SHA_B}")
    deployment = production(bot, SHA_B)
    assert (deployment.state, deployment.version, deployment.ref) == (
        "awaiting_approval",
        TAG,
        TAG,
    )
    [asked] = audit_of(bot, "release.deploy_requested")
    assert (asked["actor"], asked["ref"], asked["sha"], asked["running"]) == (
        "U0RM1",
        TAG,
        SHA_B,
        SHA_A,
    )

    # the release message: risk first, then the commits, and the gate's buttons
    message = release_message(slack, SHA_B)
    text = json.dumps(message["blocks"])
    assert "Risk" in text and "Speed up checkout" in text
    assert text.index("Risk") < text.index("Speed up checkout")
    assert "release_approve" in text
    assert dispatches(github) == []  # nothing runs before the gate passes

    # the person who asked may not approve their own deploy; another release manager does
    gate = gate_of(bot, deployment)
    await click(bot, "U0RM1", "release_approve", gate.id or 0)
    assert "you started this deployment" in told(slack, "U0RM1")
    assert gate_of(bot, deployment).status == "pending"
    await click(bot, "U0RM2", "release_approve", gate.id or 0)
    assert gate_of(bot, deployment).status == "approved"
    [dispatch] = dispatches(github)
    assert dispatch["ref"] == TAG
    assert dispatch["inputs"]["sha"] == SHA_B
    assert dispatch["inputs"]["action"] == "promote"
    assert dispatch["inputs"]["version"] == TAG
    assert dispatch["inputs"]["environment"] == "production"


async def test_a_sha_dispatches_on_the_configured_ref(
    slash: Slash, bot: Bot, github: FakeGitHub
) -> None:
    await running_a(bot, github)
    reply = shown(await slash("U0RM1", f"deploy checkout {SHA_B} to production"))
    assert f"deploying {SHA_B[:7]} to production" in reply
    deployment = production(bot, SHA_B)
    assert (deployment.version, deployment.ref) == (None, None)
    await click(bot, "U0RM2", "release_approve", gate_of(bot, deployment).id or 0)
    [dispatch] = dispatches(github)
    assert dispatch["ref"] == "main"  # GitHub dispatches on a branch or tag, not a sha
    assert dispatch["inputs"]["sha"] == SHA_B


async def test_unknown_names_and_refs_are_answered_with_the_choices(
    slash: Slash, bot: Bot, slack: FakeSlackWebApi, github: FakeGitHub
) -> None:
    await running_a(bot, github)

    service = shown(await slash("U0RM1", f"deploy chekout {TAG} to production"))
    assert "There is no service `chekout`" in service
    assert "checkout, ledger, payments-batch, search, storefront" in service
    assert f"`/release deploy checkout {TAG} to production`" in service

    env = shown(await slash("U0RM1", f"deploy checkout {TAG} to prodution"))
    assert "Checkout has no environment `prodution` (it has staging, production)" in env
    assert "Did you mean `production`?" in env

    ref = shown(await slash("U0RM1", "deploy checkout v9.9.9 to production"))
    assert "no branch, tag or commit named v9.9.9 in acme/checkout" in ref
    assert "`/release deploy checkout main to production`" in ref
    assert github.calls("GET", "/repos/acme/checkout/commits/v9.9.9")

    # staging has no deploy section: releasebot cannot start its pipeline
    staging = shown(await slash("U0RM1", f"deploy checkout {TAG} to staging"))
    assert "staging of checkout has no deploy section" in staging

    # what runs there already is not deployed again
    running = shown(await slash("U0RM1", f"deploy checkout {SHA_A} to production"))
    assert f"{SHA_A[:7]} is what production runs now" in running

    assert [d.sha for d in rows(bot, Deployment)] == [SHA_A]  # nothing started
    assert dispatches(github) == []
    assert not [t for t in channel_texts(slack) if "deploying" in t]


async def test_what_is_on_its_way_is_not_started_twice_and_an_old_one_may_come_back(
    slash: Slash, bot: Bot, github: FakeGitHub
) -> None:
    await running_a(bot, github)
    await slash("U0RM1", f"deploy checkout {TAG} to production")
    again = shown(await slash("U0OWNER01", "deploy checkout main to production"))
    assert f"main ({SHA_B[:7]}) is already awaiting approval in production" in again
    assert "`/release status checkout`" in again

    # SHA_B deploys after all; SHA_A, which ran there before, may be deployed again
    await deploy(bot, "success", sha=SHA_B, deployment_id=2)
    back = shown(await slash("U0RM1", f"deploy checkout {SHA_A} to production"))
    assert f"deploying {SHA_A[:7]} to production" in back
    assert f"commits since {TAG} ({SHA_B[:7]}), which runs there now" in back
    states = [(d.sha, d.state) for d in rows(bot, Deployment) if d.environment == "production"]
    assert states == [
        (SHA_A, "superseded"),
        (SHA_B, "verifying"),
        (SHA_A, "awaiting_approval"),
    ]


async def test_someone_who_may_not_promote_there_is_refused_with_a_remedy(
    slash: Slash, bot: Bot, github: FakeGitHub
) -> None:
    await running_a(bot, github)
    refused = shown(await slash("U0STRANGER", f"deploy checkout {TAG} to production"))
    # the people who may promote there: release managers, owners, the gate's approvers
    assert "only S0RELMGRS, S0SREGRPS, U0OWNER01 may deploy checkout to production" in refused
    assert (
        "ask someone from <!subteam^S0RELMGRS>, <!subteam^S0SREGRPS> or <@U0OWNER01> to do it"
        in refused
    )
    [audited] = audit_of(bot, "release.action_refused")
    assert (audited["actor"], audited["action"]) == ("U0STRANGER", "deploy")
    assert not github.calls("GET", f"/commits/{TAG}")  # not even looked up
    assert [d.sha for d in rows(bot, Deployment)] == [SHA_A]


async def test_a_frozen_environment_holds_it_at_its_gate_like_a_promotion(
    slash: Slash, bot: Bot, slack: FakeSlackWebApi, github: FakeGitHub, clock: FrozenClock
) -> None:
    await running_a(bot, github)
    clock.set(datetime(2026, 12, 28, 10, 0, tzinfo=UTC))  # inside the year-end freeze

    reply = shown(await slash("U0RM1", f"deploy checkout {TAG} to production"))
    assert f"deploying {TAG} ({SHA_B[:7]}) to production" in reply
    assert "held at its gate" in reply and "Year-end change freeze" in reply
    assert "approvals wait for the freeze to end" in reply

    deployment = production(bot, SHA_B)
    gate = gate_of(bot, deployment)
    await click(bot, "U0RM2", "release_approve", gate.id or 0)
    assert "frozen" in told(slack, "U0RM2")
    assert gate_of(bot, deployment).status == "pending"
    assert dispatches(github) == []


async def test_the_webhook_and_jenkins_deployers_are_given_the_ref(
    start: Start,
    slack: FakeSlackWebApi,
    slack_server: tuple[FakeSlackWebApi, str],
    edge: DeployEdge,
) -> None:
    edge.github.refs = {"v2.5.0": SHA_B, "main": SHA_A}
    async with start() as running:
        typed = Slash(running, slack, slack_server[1])

        hook = shown(await typed("U0RM1", "deploy payments-batch v2.5.0 to production"))
        assert f"deploying v2.5.0 ({SHA_B[:7]}) to production" in hook
        assert "nothing ran there before" in hook
        paid = [d for d in rows(running, Deployment) if d.service == "payments-batch"][-1]
        await click(running, "U0RM2", "release_approve", gate_of(running, paid).id or 0)
        [call] = edge.receiver.requests
        body = json.loads(call.content)
        assert (body["action"], body["sha"], body["version"], body["ref"]) == (
            "promote",
            SHA_B,
            "v2.5.0",
            "v2.5.0",
        )

        built = shown(await typed("U0RM1", "deploy billing main to production"))
        assert f"deploying main ({SHA_A[:7]}) to production" in built
        billing = [d for d in rows(running, Deployment) if d.service == "billing"][-1]
        assert (billing.version, billing.ref) == (None, "main")  # a branch names no version
        await click(running, "U0RM2", "release_approve", gate_of(running, billing).id or 0)
        [build] = edge.jenkins.build_requests()
        params = build.url.params
        assert (params["REF"], params["SHA"], params["ACTION"]) == ("main", SHA_A, "promote")


# --- the code hosts' answer, as each one gives it ----------------------------------------------


async def no_sleep(seconds: float) -> None:
    """Retries in place wait for nothing in a test."""


def answering(status: int, body: dict[str, Any], seen: list[str]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.raw_path.decode())
        return httpx.Response(status, json=body)

    return httpx.MockTransport(handle)


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (200, {"sha": SHA_B.upper(), "commit": {"message": "Speed up"}}, SHA_B),
        (422, {"message": "No commit found for SHA: nope"}, None),
        (404, {"message": "Not Found"}, None),
    ],
)
async def test_github_resolves_a_ref_to_its_commit(
    status: int, body: dict[str, Any], expected: str | None
) -> None:
    seen: list[str] = []
    client = make_client("https://api.github.com", transport=answering(status, body, seen))
    github = GitHubClient(client, token="t", retry=RetryPolicy(sleep=no_sleep))
    assert await github.resolve_ref(repo="acme/checkout", ref="release/1.4") == expected
    assert seen == ["/repos/acme/checkout/commits/release/1.4"]
    await github.aclose()


async def test_github_failing_to_answer_is_not_an_unknown_ref() -> None:
    seen: list[str] = []
    transport = answering(503, {"message": "Service Unavailable"}, seen)
    client = make_client("https://api.github.com", transport=transport)
    github = GitHubClient(client, token="t", retry=RetryPolicy(sleep=no_sleep))
    with pytest.raises(DeliveryFailed) as failed:
        await github.resolve_ref(repo="acme/checkout", ref="v1.4.2")
    assert failed.value.retryable
    await github.aclose()


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (200, {"id": SHA_B, "short_id": SHA_B[:8], "title": "Speed up"}, SHA_B),
        (404, {"message": "404 Commit Not Found"}, None),
    ],
)
async def test_gitlab_resolves_a_ref_to_its_commit(
    status: int, body: dict[str, Any], expected: str | None
) -> None:
    seen: list[str] = []
    transport = answering(status, body, seen)
    client = make_client("https://gitlab.example/api/v4", transport=transport)
    gitlab = GitLabClient(client, token="t", retry=RetryPolicy(sleep=no_sleep))
    assert await gitlab.resolve_ref(repo="acme/ledger", ref="release/1.4") == expected
    assert seen == ["/api/v4/projects/acme%2Fledger/repository/commits/release%2F1.4"]
    await gitlab.aclose()
