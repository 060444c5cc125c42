"""The self-approval ban reaches everyone who touched a change, through signed requests into
the real app: commit authors known only by e-mail, GitHub noreply addresses, pull request
mergers and approving reviewers, GitLab commit authors, generic-webhook commit logins and
e-mails and the deployer it names, and break-glass confirmers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlmodel import select

from bot.app import Overrides
from bot.store.tables import AuditEvent, Deployment
from integrations.sandbox.webapi import FakeSlackWebApi
from tests.conftest import Bot, BotFactory
from tests.fakes import FakeEdge, FakeGitHub, FrozenClock
from tests.helpers import GENERIC_SECRET, SHA_A, generic_body, signed_headers
from tests.slackflow import click, request_gate, submit_reason, the_gate, told

DOCKERFILE = [{"filename": "Dockerfile", "status": "modified", "additions": 1600, "deletions": 400}]


@pytest.fixture
def bot(gated_bot: Bot) -> Bot:
    return gated_bot


def audited(bot: Bot, action: str) -> str:
    """Every audit record of this action, as one string to search."""
    with bot.runtime.db.read() as session:
        events = session.exec(select(AuditEvent)).all()
    return " ".join(str(e.details) for e in events if e.action == action)


async def test_a_commit_author_known_only_by_email_cannot_approve(
    bot: Bot, slack: FakeSlackWebApi, github: FakeGitHub
) -> None:
    github.compare_files = DOCKERFILE
    github.commit_author = None  # GitHub linked no account to the commit
    github.commit_author_email = "Rita@ACME.example"  # Slack has rita@acme.example
    await request_gate(bot)
    gate = the_gate(bot)

    await click(bot, "U0RM1", "release_approve", gate.id or 0)
    assert "you authored 1 of the commits" in told(slack, "U0RM1")
    assert the_gate(bot).status == "pending"
    assert "you authored 1 of the commits" in audited(bot, "gate.decision_refused")

    await click(bot, "U0RM2", "release_approve", gate.id or 0)
    assert the_gate(bot).status == "approved"


async def test_a_github_noreply_address_is_its_login(
    bot: Bot, slack: FakeSlackWebApi, github: FakeGitHub
) -> None:
    github.compare_files = DOCKERFILE
    github.commit_author = None
    github.commit_author_email = "12345+Octo-Owner@users.noreply.github.com"
    await request_gate(bot)
    gate = the_gate(bot)

    await click(bot, "U0OWNER01", "release_approve", gate.id or 0)  # identities: octo-owner
    assert "you authored 1 of the commits" in told(slack, "U0OWNER01")
    assert the_gate(bot).status == "pending"


# --- GitLab and the generic webhook: a gate asked for over the gates API -------------------

API_TOKEN = "api-token-for-tests"
AUTH = {"authorization": f"Bearer {API_TOKEN}"}


def gitlab_commit(sha: str, request: httpx.Request) -> httpx.Response:
    """GitLab's single-commit API for ledger: names and e-mails, no logins; no merge
    request brought the commit in."""
    if request.url.path.endswith(("/diff", "/merge_requests")):
        return httpx.Response(200, json=[])
    return httpx.Response(
        200,
        json={
            "id": sha,
            "title": "Round ledger totals",
            "message": "Round ledger totals",
            "author_name": "Rita",
            "author_email": "RITA@acme.example",
            "committer_name": "Rita",
            "committer_email": "RITA@acme.example",
            "authored_date": "2026-11-16T09:00:00Z",
            "web_url": f"https://gitlab.example/acme/ledger/-/commit/{sha}",
        },
    )


@pytest.fixture
async def api_bot(
    bot_factory: BotFactory, clock: FrozenClock, edge: FakeEdge
) -> AsyncIterator[Bot]:
    """The app with the gates API, a GitLab token and a generic webhook secret."""

    def route(request: httpx.Request) -> httpx.Response:
        if request.url.host == "gitlab.com":
            return gitlab_commit(SHA_A, request)
        return edge._route(request)

    overrides = Overrides(
        clock=clock,
        start_scheduler=False,
        run_outbox_worker=False,
        process_before_response=True,
        http_transport=httpx.MockTransport(route),
        environ={},
    )
    env = {
        "RELEASEBOT_API_TOKEN": API_TOKEN,
        "GITLAB_TOKEN": "glpat-test",
        "RELEASEBOT_GENERIC_WEBHOOK_SECRET": GENERIC_SECRET,
    }
    async with bot_factory(env=env, overrides=overrides) as running:
        yield running


async def ask_gate(bot: Bot, service: str) -> int:
    body = {"service": service, "environment": "production", "version": "v2.3.0", "sha": SHA_A}
    answer = await bot.http.post("/api/v1/gates", json=body, headers=AUTH)
    assert answer.status_code == 201, answer.text
    await bot.send_outbox()
    gate_id: int = answer.json()["id"]
    return gate_id


async def test_a_gitlab_commit_author_known_by_email_cannot_approve(
    api_bot: Bot, slack: FakeSlackWebApi
) -> None:
    gate_id = await ask_gate(api_bot, "ledger")

    await click(api_bot, "U0RM1", "release_approve", gate_id)
    assert "you authored 1 of the commits and committed 1 of the commits" in told(slack, "U0RM1")
    assert the_gate(api_bot).status == "pending"


async def test_a_generic_webhook_commit_login_cannot_approve(
    api_bot: Bot, slack: FakeSlackWebApi
) -> None:
    commit = {
        "sha": SHA_A,
        "message": "Batch payouts in one transaction",
        "author": "Olga",
        "timestamp": "2026-11-16T15:04:05+01:00",
        "login": "Octo-Owner",  # U0OWNER01's GitHub login under identities
    }
    # a first run failed; the pipeline asks for the gate before it tries again
    raw = json.dumps(generic_body("failed", commits=[commit], actor="ci-bot")).encode()
    sent = await api_bot.post("/webhooks/generic", raw, signed_headers(raw, GENERIC_SECRET))
    assert sent.status_code < 300, sent.text
    await api_bot.send_outbox()
    gate_id = await ask_gate(api_bot, "payments-batch")

    await click(api_bot, "U0OWNER01", "release_approve", gate_id)
    assert "you authored 1 of the commits" in told(slack, "U0OWNER01")
    assert the_gate(api_bot).status == "pending"


async def test_a_commit_author_cannot_confirm_break_glass(
    bot: Bot, slack: FakeSlackWebApi, github: FakeGitHub
) -> None:
    github.compare_files = DOCKERFILE
    github.commit_author = "sam-sre"  # not under identities: known to Slack by e-mail only
    github.commit_author_email = "Sam@Acme.Example"
    await request_gate(bot)
    gate = the_gate(bot)
    await click(bot, "U0RM1", "release_break_glass", gate.id or 0)
    await submit_reason(bot, slack, "U0RM1", "payments are down for every customer")

    await click(bot, "U0SRE1", "release_break_glass_confirm", gate.id or 0)
    refusal = told(slack, "U0SRE1")
    assert "you authored 1 of the commits" in refusal
    assert "someone who did not touch this change must confirm break-glass" in refusal
    assert the_gate(bot).status == "pending"
    assert "you authored 1 of the commits" in audited(bot, "gate.break_glass_refused")

    await click(bot, "U0BOTH", "release_break_glass_confirm", gate.id or 0)
    assert the_gate(bot).status == "approved"


# --- pull requests: who merged them and who approved them in review ------------------------


async def test_the_merger_of_a_pull_request_cannot_approve(
    bot: Bot, slack: FakeSlackWebApi, github: FakeGitHub
) -> None:
    github.compare_files = DOCKERFILE
    github.commit_author = "dana-dev"  # nobody in Slack
    github.commit_author_email = "dana@contractor.example"
    github.pull(41, merged_by="Octo-Owner")  # U0OWNER01's GitHub login under identities
    await request_gate(bot)
    gate = the_gate(bot)
    asked = [r.url.path for r in github.calls("GET", "/pulls")]
    assert f"/repos/acme/checkout/commits/{SHA_A}/pulls" in asked
    assert "/repos/acme/checkout/pulls/41" in asked

    await click(bot, "U0OWNER01", "release_approve", gate.id or 0)
    assert "you merged this change" in told(slack, "U0OWNER01")
    assert the_gate(bot).status == "pending"
    assert "you merged this change" in audited(bot, "gate.decision_refused")

    await click(bot, "U0RM1", "release_approve", gate.id or 0)
    assert the_gate(bot).status == "approved"


async def test_an_approving_reviewer_cannot_approve(
    bot: Bot, slack: FakeSlackWebApi, github: FakeGitHub
) -> None:
    github.compare_files = DOCKERFILE
    github.commit_author = "dana-dev"
    github.commit_author_email = "dana@contractor.example"
    github.pull(41, merged_by="dana-dev", approved_by=("rick-review", "octo-owner"))
    await request_gate(bot)
    gate = the_gate(bot)
    assert github.calls("GET", "/repos/acme/checkout/pulls/41/reviews")

    await click(bot, "U0OWNER01", "release_approve", gate.id or 0)
    assert "you approved this change in review" in told(slack, "U0OWNER01")
    assert the_gate(bot).status == "pending"


async def test_a_reviewer_who_only_commented_may_approve(
    bot: Bot, slack: FakeSlackWebApi, github: FakeGitHub
) -> None:
    github.compare_files = DOCKERFILE
    github.commit_author = "dana-dev"
    github.commit_author_email = "dana@contractor.example"
    reviews = (("octo-owner", "COMMENTED"), ("octo-owner", "CHANGES_REQUESTED"))
    github.pull(41, merged_by="dana-dev", approved_by=("rick-review",), other_reviews=reviews)
    await request_gate(bot)
    gate = the_gate(bot)

    await click(bot, "U0OWNER01", "release_approve", gate.id or 0)
    assert the_gate(bot).status == "approved"
    assert "approved" in told(slack, "U0OWNER01")


# --- the generic webhook: commit e-mails and the deployer's login and e-mail ----------------


async def test_a_generic_webhook_commit_email_matching_a_slack_profile_cannot_approve(
    api_bot: Bot, slack: FakeSlackWebApi
) -> None:
    commit = {
        "sha": SHA_A,
        "message": "Batch payouts in one transaction",
        "author": "Ravi",
        "timestamp": "2026-11-16T15:04:05+01:00",
        "email": "RAVI@Acme.Example",  # U0RM2's Slack profile e-mail, another case
    }
    raw = json.dumps(generic_body("failed", commits=[commit], actor="ci-bot")).encode()
    sent = await api_bot.post("/webhooks/generic", raw, signed_headers(raw, GENERIC_SECRET))
    assert sent.status_code < 300, sent.text
    await api_bot.send_outbox()
    gate_id = await ask_gate(api_bot, "payments-batch")

    await click(api_bot, "U0RM2", "release_approve", gate_id)
    assert "you authored 1 of the commits" in told(slack, "U0RM2")
    assert the_gate(api_bot).status == "pending"

    await click(api_bot, "U0RM1", "release_approve", gate_id)
    assert the_gate(api_bot).status == "approved"


async def test_the_generic_webhook_deployer_is_known_by_login_and_email(
    api_bot: Bot, slack: FakeSlackWebApi
) -> None:
    commit = {
        "sha": SHA_A,
        "message": "Batch payouts in one transaction",
        "author": "Dana",
        "timestamp": "2026-11-16T15:04:05+01:00",
        "email": "dana@contractor.example",
    }
    body = generic_body(
        "failed",
        commits=[commit],
        actor="Rita (CI)",
        actor_login="octo-owner",  # U0OWNER01's GitHub login under identities
        actor_email="rita@ACME.example",  # U0RM1's Slack profile e-mail
    )
    raw = json.dumps(body).encode()
    sent = await api_bot.post("/webhooks/generic", raw, signed_headers(raw, GENERIC_SECRET))
    assert sent.status_code < 300, sent.text
    await api_bot.send_outbox()
    with api_bot.runtime.db.read() as session:
        first = session.exec(select(Deployment)).one()
    assert first.deployer == "Rita (CI)"  # shown as the CI names them
    assert first.deployer_ids == ["octo-owner", "rita@ACME.example"]
    # the run failed; the pipeline asks for the gate before it tries again
    gate_id = await ask_gate(api_bot, "payments-batch")

    await click(api_bot, "U0OWNER01", "release_approve", gate_id)
    assert "you started this deployment" in told(slack, "U0OWNER01")
    await click(api_bot, "U0RM1", "release_approve", gate_id)
    assert "you started this deployment" in told(slack, "U0RM1")
    assert the_gate(api_bot).status == "pending"

    await click(api_bot, "U0RM2", "release_approve", gate_id)
    assert the_gate(api_bot).status == "approved"


async def test_a_malformed_deployer_email_is_refused_and_changes_nothing(api_bot: Bot) -> None:
    raw = json.dumps(generic_body("failed", actor_email="not-an-address")).encode()
    sent = await api_bot.post("/webhooks/generic", raw, signed_headers(raw, GENERIC_SECRET))
    assert sent.status_code == 400, sent.text
    assert "actor_email" in sent.text
    with api_bot.runtime.db.read() as session:
        assert session.exec(select(Deployment)).all() == []
