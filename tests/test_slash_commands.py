"""`/release`: the pure parser, then every subcommand as Slack sends it, signed, through Bolt.

Answers come back through the command's `response_url`, which points at the fake Slack's
`/response/<token>` route; announcements land in the channels of the fake Slack.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlmodel import select

from bot.config import Config
from bot.scheduling import checks_tick
from bot.store.tables import AuditEvent, Deployment, EnvironmentLock, FreezeWindow, Gate, Release
from handlers.slack.command_parser import (
    FreezeCommand,
    Help,
    History,
    Metrics,
    Pending,
    Promote,
    Rollback,
    Status,
    Unfreeze,
    Usage,
    parse,
)
from integrations.sandbox.webapi import FakeSlackWebApi
from tests.conftest import Bot
from tests.fakes import FakeGitHub, FrozenClock
from tests.helpers import (
    SHA_A,
    SHA_B,
    deployment_status,
    encode,
    fixture,
    github_headers,
    slack_headers,
)
from tests.slackflow import CHANNEL, buttons, click, request_gate, the_gate, told

MEDIUM = [{"filename": "Dockerfile", "status": "modified", "additions": 1600, "deletions": 400}]


# --- the parser ------------------------------------------------------------------------------


def test_empty_input_and_help(example_config: Config) -> None:
    assert parse("", config=example_config) == Help()
    assert parse("   ", config=example_config) == Help()
    assert parse("help", config=example_config) == Help()
    assert parse("help freeze", config=example_config) == Help("freeze")


def test_every_subcommand_parses(example_config: Config) -> None:
    c = example_config
    assert parse("status", config=c) == Status()
    assert parse("status checkout", config=c) == Status("checkout")
    assert parse("history checkout", config=c) == History("checkout")
    assert parse("history checkout production", config=c) == History("checkout", "production")
    assert parse("history checkout production 20", config=c) == History(
        "checkout", "production", 20
    )
    assert parse("history checkout 5", config=c) == History("checkout", None, 5)
    assert parse("history checkout 500", config=c) == History("checkout", None, 50)
    assert parse("pending", config=c) == Pending()
    assert parse("promote checkout latest to production", config=c) == Promote(
        "checkout", "latest", "production"
    )
    assert parse("PROMOTE checkout v1.4.0 to production", config=c) == Promote(
        "checkout", "v1.4.0", "production"
    )
    assert parse("promote checkout f95f852 production", config=c) == Promote(
        "checkout", "f95f852", "production"
    )
    assert parse("rollback checkout production", config=c) == Rollback("checkout", "production")
    assert parse(
        "rollback checkout production to v1.3.0 -- error rate doubled", config=c
    ) == Rollback("checkout", "production", "v1.3.0", "error rate doubled")
    assert parse("rollback checkout production — latency", config=c) == Rollback(
        "checkout", "production", None, "latency"
    )
    assert parse(
        "freeze production 2h incident &amp; outage &lt;4711&gt;", config=c
    ) == FreezeCommand("production", timedelta(hours=2), "incident & outage <4711>")
    assert parse("freeze ALL 1h30m  board   meeting", config=c) == FreezeCommand(
        "all", timedelta(hours=1, minutes=30), "board   meeting"
    )
    assert parse("unfreeze production", config=c) == Unfreeze("production")
    assert parse("unfreeze all", config=c) == Unfreeze("all")
    assert parse("metrics", config=c) == Metrics()
    assert parse("metrics 90", config=c) == Metrics(None, 90)
    assert parse("metrics checkout 7", config=c) == Metrics("checkout", 7)


@pytest.mark.parametrize(
    ("text", "suggestion", "corrected"),
    [
        ("rolback checkout production", "rollback", "rollback checkout production"),
        ("stauts", "status", "status"),
        ("histroy checkout", "history", "history checkout"),
        ("unfreez all", "unfreeze", "unfreeze all"),
        ("status chekout", "checkout", "status checkout"),
        ("history checkout prodution 5", "production", "history checkout production 5"),
        (
            "promote checkout latest to prodution",
            "production",
            "promote checkout latest to production",
        ),
        ("rollback ledgr production", "ledger", "rollback ledger production"),
        ("freeze prodution 2h why", "production", "freeze production 2h why"),
        ("metrics storefrnt", "storefront", "metrics storefront"),
        ("freeze prod 2h why", "production", "freeze production 2h why"),
        ("history pay", "payments-batch", "history payments-batch"),
    ],
)
def test_typos_suggest_the_closest_valid_word(
    example_config: Config, text: str, suggestion: str, corrected: str
) -> None:
    answer = parse(text, config=example_config)
    assert isinstance(answer, Usage), answer
    assert answer.suggestion == suggestion
    assert answer.corrected == corrected


@pytest.mark.parametrize(
    ("text", "subcommand", "problem"),
    [
        ("pending now", "pending", "takes no arguments"),
        ("promote checkout", "promote", "what to promote where"),
        ("rollback checkout", "rollback", "which service and environment"),
        ("history", "history", "which service"),
        ("history checkout production many", "history", "not a number"),
        ("freeze production 2h", "freeze", "how long, and why"),
        ("freeze production soon why", "freeze", "not a duration"),
        ("freeze production 40d why", "freeze", "at most 30d"),
        ("unfreeze", "unfreeze", "which environment"),
        ("metrics checkout 0", "metrics", "between 1 and 365"),
        ("history checkout staging 0", "history", "at least 1"),
        ("rollback checkout staging to", "rollback", "which service"),
    ],
)
def test_invalid_input_names_the_problem(
    example_config: Config, text: str, subcommand: str, problem: str
) -> None:
    answer = parse(text, config=example_config)
    assert isinstance(answer, Usage), answer
    assert answer.subcommand == subcommand
    assert problem in answer.problem


def test_odd_digits_are_words_not_numbers(example_config: Config) -> None:
    answer = parse("history checkout production ²", config=example_config)
    assert isinstance(answer, Usage) and "not a number" in answer.problem


def test_without_a_config_names_are_not_checked() -> None:
    assert parse("status anything") == Status("anything")
    assert parse("promote a b to c") == Promote("a", "b", "c")
    unknown = parse("xyzzy")
    assert isinstance(unknown, Usage) and unknown.suggestion is None


@given(st.text(max_size=200))
def test_the_parser_never_raises(text: str) -> None:
    assert isinstance(
        parse(text),
        Help
        | Status
        | History
        | Pending
        | Promote
        | Rollback
        | FreezeCommand
        | Unfreeze
        | Metrics
        | Usage,
    )


# --- through Slack ---------------------------------------------------------------------------


class Slash:
    """Types `/release ...` as a user, signed as Slack signs it; returns what came back."""

    def __init__(self, bot: Bot, slack: FakeSlackWebApi, base_url: str) -> None:
        self.bot, self.slack, self.base_url = bot, slack, base_url

    async def __call__(self, user: str, text: str, *, channel: str = CHANNEL) -> dict[str, Any]:
        token = uuid.uuid4().hex
        form = {
            "token": "verification-token",
            "team_id": "T0SANDBOX",
            "team_domain": "sandbox",
            "channel_id": channel,
            "channel_name": channel.lstrip("#"),
            "user_id": user,
            "user_name": user.lower(),
            "command": "/release",
            "text": text,
            "api_app_id": "A0RELBOT",
            "is_enterprise_install": "false",
            "response_url": f"{self.base_url}/response/{token}",
            "trigger_id": f"trigger-{token}",
        }
        body = urlencode(form).encode()
        answer = await self.bot.post(
            "/slack/events",
            body,
            slack_headers(body, content_type="application/x-www-form-urlencoded"),
        )
        assert answer.status_code == 200, answer.text
        assert not answer.content  # acked with nothing; the answer goes to the response_url
        await self.bot.send_outbox()
        [reply] = self.slack.responses(token)
        assert reply["response_type"] == "ephemeral"
        assert_within_block_kit(reply)
        return reply

    async def page(self, user: str, reply: dict[str, Any]) -> dict[str, Any]:
        """Click the "Next page" button of an answer, as Slack sends it."""
        [value] = [
            e["value"]
            for b in reply["blocks"]
            if b["type"] == "actions"
            for e in b["elements"]
            if e["action_id"] == "release_list_page"
        ]
        token = uuid.uuid4().hex
        payload = {
            "type": "block_actions",
            "team": {"id": "T0SANDBOX"},
            "user": {"id": user},
            "api_app_id": "A0RELBOT",
            "trigger_id": f"trigger-{token}",
            "response_url": f"{self.base_url}/response/{token}",
            "container": {"type": "message", "is_ephemeral": True, "channel_id": CHANNEL},
            "channel": {"id": CHANNEL},
            "actions": [
                {
                    "type": "button",
                    "action_id": "release_list_page",
                    "block_id": "page",
                    "value": value,
                    "action_ts": str(time.time()),
                }
            ],
        }
        body = urlencode({"payload": json.dumps(payload)}).encode()
        answer = await self.bot.post(
            "/slack/events",
            body,
            slack_headers(body, content_type="application/x-www-form-urlencoded"),
        )
        assert answer.status_code == 200, answer.text
        [page] = self.slack.responses(token)
        assert page["replace_original"] is True
        assert_within_block_kit(page)
        return page


def assert_within_block_kit(message: dict[str, Any]) -> None:
    blocks = message.get("blocks") or []
    assert len(blocks) <= 50
    for block in blocks:
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= 3000
        if block["type"] == "actions":
            assert len(block["elements"]) <= 25
            assert all(len(e.get("value", "")) <= 2000 for e in block["elements"])


def shown(reply: dict[str, Any]) -> str:
    """Everything a person reads in an answer: its text and its blocks' texts."""
    parts = [reply.get("text") or ""]
    for block in reply.get("blocks") or []:
        if block["type"] == "section":
            parts.append(block["text"]["text"])
        elif block["type"] == "context":
            parts.extend(e["text"] for e in block["elements"])
    return "\n".join(parts)


def page_values(reply: dict[str, Any]) -> list[str]:
    return [
        e["value"]
        for b in reply.get("blocks") or []
        if b["type"] == "actions"
        for e in b["elements"]
        if e["action_id"] == "release_list_page"
    ]


@pytest.fixture
def bot(gated_bot: Bot) -> Bot:
    return gated_bot


@pytest.fixture
def slash(bot: Bot, slack: FakeSlackWebApi, slack_server: tuple[FakeSlackWebApi, str]) -> Slash:
    return Slash(bot, slack, slack_server[1])


async def deploy(bot: Bot, state: str, **kw: Any) -> None:
    body = encode(deployment_status(state, **kw))
    answer = await bot.post("/webhooks/github", body, github_headers("deployment_status", body))
    assert answer.status_code == 202
    await bot.send_outbox()


async def deploy_staging(bot: Bot, sha: str) -> None:
    run = fixture("github", "workflow_run__completed-success.json")
    run["repository"]["full_name"] = "acme/checkout"
    run["workflow_run"].update(path=".github/workflows/deploy-staging.yml", head_sha=sha)
    body = encode(run)
    answer = await bot.post("/webhooks/github", body, github_headers("workflow_run", body))
    assert answer.json()["status"] == "accepted"
    await bot.send_outbox()


def deployments(bot: Bot) -> list[Deployment]:
    with bot.runtime.db.read() as session:
        return list(session.exec(select(Deployment).order_by(Deployment.id)).all())


def audit_actions(bot: Bot) -> list[str]:
    with bot.runtime.db.read() as session:
        return [e.action for e in session.exec(select(AuditEvent)).all()]


def audit_of(bot: Bot, action: str) -> list[dict[str, Any]]:
    with bot.runtime.db.read() as session:
        found = session.exec(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)
        ).all()
        return [{"actor": e.actor, **json.loads(e.details)} for e in found]


def dispatches(github: FakeGitHub) -> list[dict[str, Any]]:
    return [json.loads(r.content) for r in github.calls("POST", "/dispatches")]


def channel_texts(slack: FakeSlackWebApi, channel: str = CHANNEL) -> list[str]:
    return [m["text"] for m in slack.messages(channel)]


async def test_help_and_unknown_input_answer_with_usage(
    slash: Slash, slack: FakeSlackWebApi
) -> None:
    answer = shown(await slash("U0STRANGER", ""))
    for usage in (
        "/release status [service]",
        "/release history <service> [env] [n]",
        "/release pending",
        "/release promote <service> <version|latest> to <env>",
        "/release rollback <service> <env> [to <version>]",
        "/release freeze <env|all> <duration> <reason...>",
        "/release unfreeze <env|all>",
        "/release metrics [service] [days]",
    ):
        assert usage in answer, usage

    typo = shown(await slash("U0STRANGER", "rolback checkout production"))
    assert "I don't know the command `rolback`" in typo
    assert "Did you mean `rollback`?" in typo
    assert "`/release rollback checkout production`" in typo
    assert "Usage: `/release rollback <service> <env> [to <version>] [-- reason...]`" in typo

    wrong_env = shown(await slash("U0STRANGER", "history checkout prodution"))
    assert "Did you mean `production`?" in wrong_env
    assert "Usage: `/release history <service> [env] [n]`" in wrong_env

    assert slack.channels() == []  # nothing is announced for any of it


async def test_status_shows_what_runs_where(
    slash: Slash, bot: Bot, clock: FrozenClock, github: FakeGitHub
) -> None:
    await deploy(bot, "success", sha=SHA_A, deployment_id=1)
    clock.advance(hours=1)
    github.compare_files = MEDIUM
    await request_gate(bot, sha=SHA_B, run=4343)

    everything = shown(await slash("U0STRANGER", "status"))
    for service in ("*checkout*", "*ledger*", "*storefront*", "*payments-batch*"):
        assert service in everything
    assert "`staging` nothing deployed yet" in everything
    production = next(line for line in everything.splitlines() if "`production`" in line)
    assert "Awaiting approval" in production
    assert SHA_B[:7] in production and "running " in production
    assert production.index(SHA_B[:7]) < production.index("running") < production.index(SHA_A[:7])

    one = shown(await slash("U0STRANGER", "status checkout"))
    assert "*ledger*" not in one and SHA_B[:7] in one


def seed_history(bot: Bot, count: int, *, service: str = "checkout") -> None:
    """`count` production deployments of `service`, one a minute, oldest first."""
    start = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)

    def write(session: Any) -> None:
        for i in range(count):
            at = start + timedelta(minutes=i)
            release = Release(
                service=service, sha=f"{i + 1:040x}", version=f"v1.{i}", created_at=at
            )
            session.add(release)
            session.flush()
            session.add(
                Deployment(
                    release_id=release.id,
                    service=service,
                    environment="production",
                    sha=release.sha,
                    state="verified" if i % 7 else "failed",
                    source="seed",
                    deployer="ci-bot",
                    created_at=at,
                    updated_at=at,
                    deployed_at=at,
                )
            )

    bot.runtime.db.write(write)


def seed_open_gates(bot: Bot, count: int) -> None:
    """`count` checkout deployments waiting at production's gate (written directly: through
    webhooks a newer release would supersede the older gates)."""
    now = datetime(2026, 11, 17, 9, 0, tzinfo=UTC)
    requirement = {
        "mode": "quorum",
        "rules": [{"approvers": ["S0RELMGRS"], "count": 1}],
        "risk_level": "medium",
    }

    def write(session: Any) -> None:
        for i in range(count):
            release = Release(service="checkout", sha=f"{i + 1:040x}", created_at=now)
            session.add(release)
            session.flush()
            deployment = Deployment(
                release_id=release.id,
                service="checkout",
                environment="production",
                sha=release.sha,
                state="awaiting_approval",
                source="seed",
                risk={"level": "medium", "score": 40},
                created_at=now,
                updated_at=now,
            )
            session.add(deployment)
            session.flush()
            session.add(
                Gate(
                    deployment_id=deployment.id,
                    sha=release.sha,
                    status="pending",
                    requirement=requirement,
                    created_at=now,
                    progress="0 of 1 approvals: waiting for 1 from S0RELMGRS",
                )
            )

    bot.runtime.db.write(write)


async def test_history_pages_when_long(slash: Slash, bot: Bot) -> None:
    seed_history(bot, 25)
    first = await slash("U0STRANGER", "history checkout production 10")
    text = shown(first)
    assert "*v1.24*" in text and "*v1.15*" in text and "*v1.14*" not in text
    assert "deployments 1-10, newest first" in text
    assert text.index("v1.24") < text.index("v1.15")

    second = await slash.page("U0STRANGER", first)
    text = shown(second)
    assert "*v1.14*" in text and "*v1.5*" in text and "*v1.24*" not in text
    assert "deployments 11-20" in text

    third = await slash.page("U0STRANGER", second)
    text = shown(third)
    assert "deployments 21-25" in text and "*v1.0*" in text
    assert page_values(third) == []  # the end

    # The largest page stays inside Block Kit's limits too (checked by `slash`).
    seed_history(bot, 80, service="ledger")
    big = await slash("U0STRANGER", "history ledger 100")
    assert shown(big).count("\n• ") == 50
    assert page_values(big)


async def test_pending_lists_open_gates_with_buttons_for_approvers(
    slash: Slash, bot: Bot, slack: FakeSlackWebApi, github: FakeGitHub
) -> None:
    github.commit_author = "someone-else"
    github.compare_files = MEDIUM
    assert "Nothing is waiting" in shown(await slash("U0RM1", "pending"))
    await request_gate(bot)
    gate = the_gate(bot)

    answer = await slash("U0RM1", "pending")
    assert "*checkout* → *production*" in shown(answer)
    assert "0 of 1 approvals" in shown(answer)
    assert buttons(answer) == ["release_approve", "release_reject"]
    approve = next(e for b in answer["blocks"] if b["type"] == "actions" for e in b["elements"])
    assert approve["value"] == str(gate.id)

    stranger = await slash("U0STRANGER", "pending")
    assert "*checkout* → *production*" in shown(stranger)
    assert buttons(stranger) == []  # can read it, cannot decide it

    await click(bot, "U0RM1", approve["action_id"], int(approve["value"]))
    assert the_gate(bot).status == "approved"
    assert "Nothing is waiting" in shown(await slash("U0RM1", "pending"))


async def test_pending_pages_when_long(slash: Slash, bot: Bot) -> None:
    seed_open_gates(bot, 23)
    first = await slash("U0RM1", "pending")
    assert "*Pending approvals* (23)" in shown(first)
    assert "1-10 of 23" in shown(first)
    assert len(buttons(first)) == 2 * 10 + 1  # Approve and Reject per gate, then Next page
    second = await slash.page("U0RM1", first)
    assert "11-20 of 23" in shown(second)
    third = await slash.page("U0RM1", second)
    assert "21-23 of 23" in shown(third) and page_values(third) == []


async def test_freeze_holds_promotion_and_refuses_approvals_and_promote_by_command_meets_the_gate(
    slash: Slash, bot: Bot, slack: FakeSlackWebApi, github: FakeGitHub, clock: FrozenClock
) -> None:
    github.commit_author = "someone-else"
    github.compare_files = MEDIUM

    refused = shown(await slash("U0STRANGER", "freeze production 2h incident 4711"))
    assert "only release managers (S0RELMGRS) may freeze" in refused
    frozen = shown(await slash("U0RM1", "freeze production 2h incident 4711"))
    assert "production is frozen until 2026-11-17T12:00" in frozen and "incident 4711" in frozen
    with bot.runtime.db.read() as session:
        [window] = session.exec(select(FreezeWindow)).all()
    assert (window.environment, window.created_by, window.reason) == (
        "production",
        "U0RM1",
        "incident 4711",
    )
    assert window.ends_at == clock.now() + timedelta(hours=2)
    [started] = audit_of(bot, "freeze.started")
    assert started["actor"] == "U0RM1" and started["reason"] == "incident 4711"
    assert [r["actor"] for r in audit_of(bot, "freeze.refused")] == ["U0STRANGER"]
    for channel in ("#checkout-deploys", "#ledger-deploys", "#storefront-deploys", "#deploys"):
        [announced] = channel_texts(slack, channel)
        assert "<@U0RM1> froze deploys to *production*" in announced
        assert "incident 4711" in announced

    # staging verifies; automatic promotion into production is held by the freeze
    await deploy_staging(bot, SHA_A)
    await checks_tick(bot.runtime)
    clock.advance(seconds=30)
    await checks_tick(bot.runtime)
    await bot.send_outbox()
    [staging] = deployments(bot)
    assert staging.state == "verified"
    staging_message = next(m for m in slack.messages(CHANNEL) if "staging" in m["text"])
    note = slack.thread(CHANNEL, staging_message["ts"])[-1]["text"]
    assert "Not promoted to production automatically" in note and "incident 4711" in note

    # promote by command: the stranger is refused as on the button, the release manager
    # starts the same promotion the button would, and it waits at production's gate
    assert "may promote checkout" in shown(
        await slash("U0STRANGER", "promote checkout latest to production")
    )
    promoted = shown(await slash("U0RM1", "promote checkout latest to production"))
    assert f"promoting {SHA_A[:7]} to production" in promoted
    staging, production = deployments(bot)
    assert (production.environment, production.state) == ("production", "awaiting_approval")
    gate = the_gate(bot)
    assert gate.status == "pending" and gate.deployment_id == production.id
    assert any(
        f"<@U0RM1> *checkout*: promoting {SHA_A[:7]} to production" in t
        for t in channel_texts(slack)
    )
    await click(bot, "U0RM1", "release_promote", staging.id or 0)  # the button: same path
    assert "already awaiting approval in production" in told(slack, "U0RM1")
    assert "release.promoted" in audit_actions(bot)

    # the release message of the promoted deployment shows the freeze
    message = next(
        m
        for m in slack.messages(CHANNEL)
        if "production" in m["text"] and "release_approve" in buttons(m)
    )
    assert "Change freeze:* incident 4711" in json.dumps(message["blocks"])

    # the gate refuses approvals while frozen
    await click(bot, "U0RM2", "release_approve", gate.id or 0)
    assert "production is frozen: incident 4711; use break-glass" in told(slack, "U0RM2")
    assert the_gate(bot).status == "pending"

    # lifting: release managers only, audited, announced; then the approval goes through
    assert "only release managers" in shown(await slash("U0STRANGER", "unfreeze production"))
    lifted = shown(await slash("U0RM1", "unfreeze production"))
    assert "lifted 1 freeze on production" in lifted
    with bot.runtime.db.read() as session:
        window = session.exec(select(FreezeWindow)).one()
    assert (window.lifted_at, window.lifted_by) == (clock.now(), "U0RM1")
    assert [r["actor"] for r in audit_of(bot, "freeze.lifted")] == ["U0RM1"]
    assert any("<@U0RM1> lifted 1 freeze on production" in t for t in channel_texts(slack))
    assert "is not frozen" in shown(await slash("U0RM1", "unfreeze production"))

    await click(bot, "U0RM2", "release_approve", gate.id or 0)
    assert the_gate(bot).status == "approved"
    [dispatch] = dispatches(github)
    assert dispatch["inputs"]["sha"] == SHA_A and dispatch["inputs"]["action"] == "promote"


async def test_promote_by_version_or_sha_and_what_cannot_be_promoted(
    slash: Slash, bot: Bot, github: FakeGitHub
) -> None:
    github.commit_author = "someone-else"
    github.compare_files = MEDIUM
    assert "nothing of checkout is deployed in staging" in shown(
        await slash("U0RM1", "promote checkout latest to production")
    )
    assert "no environment of checkout promotes to staging" in shown(
        await slash("U0RM1", "promote checkout latest to staging")
    )
    await deploy_staging(bot, SHA_A)  # verifying: not yet promotable
    assert "checkout 0000000 was never deployed to staging" in shown(
        await slash("U0RM1", "promote checkout 0000000 to production")
    )
    assert "only a deployed release can be promoted; this one is verifying" in shown(
        await slash("U0RM1", f"promote checkout {SHA_A[:7]} to production")
    )
    assert [d.environment for d in deployments(bot)] == ["staging"]


async def test_rollback_by_command_goes_the_buttons_way(
    slash: Slash, bot: Bot, slack: FakeSlackWebApi, github: FakeGitHub, clock: FrozenClock
) -> None:
    await deploy(bot, "success", sha=SHA_A, deployment_id=1)
    clock.advance(hours=1)
    await deploy(bot, "success", sha=SHA_B, deployment_id=2)

    refused = shown(await slash("U0STRANGER", "rollback checkout production -- it broke"))
    assert "may rollback checkout" in refused
    assert deployments(bot)[-1].state == "verifying"
    [refusal] = audit_of(bot, "release.action_refused")
    assert refusal["actor"] == "U0STRANGER" and refusal["action"] == "rollback"

    # on-call may roll back, as on the button
    answer = shown(await slash("U0SRE1", "rollback checkout production -- error rate doubled"))
    assert f"rolling production back to {SHA_A[:7]}" in answer
    bad = deployments(bot)[-1]
    assert (bad.sha, bad.state, bad.rollback_to) == (SHA_B, "rolling_back", SHA_A)
    [dispatch] = dispatches(github)
    assert dispatch["inputs"]["action"] == "rollback" and dispatch["inputs"]["sha"] == SHA_A
    with bot.runtime.db.read() as session:
        lock = session.get(EnvironmentLock, ("checkout", "production"))
    assert lock is not None and "error rate doubled" in lock.reason
    assert any(
        f"<@U0SRE1> *checkout*: rolling production back to {SHA_A[:7]} (error rate doubled)" in t
        for t in channel_texts(slack)
    )


async def test_rollback_to_a_named_version_with_the_default_reason(
    slash: Slash, bot: Bot, github: FakeGitHub, clock: FrozenClock
) -> None:
    sha_c = "1234567890abcdef1234567890abcdef12345678"
    for number, sha in enumerate((SHA_A, SHA_B, sha_c), start=1):
        await deploy(bot, "success", sha=sha, deployment_id=number)
        clock.advance(hours=1)
    assert "is what production runs now" in shown(
        await slash("U0RM1", f"rollback checkout production to {sha_c[:8]}")
    )
    assert "never ran in production" in shown(
        await slash("U0RM1", "rollback checkout production to deadbeef")
    )
    answer = shown(await slash("U0RM1", f"rollback checkout production to {SHA_A[:7]}"))
    assert f"rolling production back to {SHA_A[:7]}" in answer  # not to SHA_B, the last good
    current = deployments(bot)[-1]
    assert (current.sha, current.rollback_to) == (sha_c, SHA_A)
    [requested] = audit_of(bot, "release.rollback_requested")
    assert requested["reason"] == "rolled back with /release by U0RM1"


async def test_freeze_all_is_escaped_when_announced_and_unfreeze_all_lifts_it(
    slash: Slash, bot: Bot, slack: FakeSlackWebApi
) -> None:
    # Slack escapes what people type: the parser undoes it, the announcement redoes it
    await slash("U0BOTH", "freeze all 30m &lt;!channel&gt; &amp; friends")
    [announced] = channel_texts(slack, "#ledger-deploys")
    assert "&lt;!channel&gt; &amp; friends" in announced and "<!channel>" not in announced
    status = shown(await slash("U0STRANGER", "status ledger"))
    assert ":snowflake: frozen: &lt;!channel&gt; &amp; friends" in status

    partial = shown(await slash("U0RM1", "unfreeze production"))
    assert "still frozen by the freeze on all environments" in partial
    assert "lifted 1 freeze on every environment" in shown(await slash("U0RM1", "unfreeze all"))
    assert ":snowflake:" not in shown(await slash("U0STRANGER", "status ledger"))


async def test_a_config_freeze_cannot_be_lifted_from_slack(
    slash: Slash, clock: FrozenClock
) -> None:
    clock.set(datetime(2026, 12, 24, 10, 0, tzinfo=UTC))  # inside the year-end freeze
    answer = shown(await slash("U0RM1", "unfreeze production"))
    assert "no freeze from Slack is in force on production" in answer
    assert "by releasebot.yaml (Year-end change freeze)" in answer


async def test_metrics(slash: Slash, bot: Bot, clock: FrozenClock) -> None:
    await deploy(bot, "success", sha=SHA_A, deployment_id=1)
    clock.advance(hours=1)
    one = await slash("U0STRANGER", "metrics checkout 7")
    assert "DORA metrics for checkout, last 7 days" in shown(one)
    assert "checkout: 1 production deployments" in shown(one)
    every = shown(await slash("U0STRANGER", "metrics"))
    assert "last 30 days" in every
    for service in ("overall", "checkout", "ledger", "storefront", "payments-batch"):
        assert service in every
