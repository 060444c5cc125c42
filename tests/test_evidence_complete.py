"""One release followed from GitHub's signed protection rule to a verified rollback, and the
evidence pack checked field by field: the people, the diff, the risk, the rules in force,
every decision and refused click, the checks, the receipts the fakes handed back, what
happened after the rollback in another release, and the stretch of the chain."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlmodel import select

from bot.app import Overrides
from bot.config import Config
from bot.domain.audit import record_hash
from bot.domain.config_hash import config_sha256
from bot.scheduling import checks_tick
from bot.services.evidence import evidence_pack
from bot.store.tables import AuditEvent, Deployment
from integrations.sandbox.webapi import FakeSlackWebApi
from tests.conftest import Bot, BotFactory
from tests.fakes import FakeEdge, FakeGitHub, FrozenClock
from tests.helpers import SHA_A, SHA_B, deployment_status, encode, github_headers
from tests.slackflow import CHANNEL, click, gated_env, request_gate, the_gate

ROUTING_KEY = "pd-checkout-routing-key"
HEX64 = re.compile(r"[0-9a-f]{64}")
MEDIUM_RISK_FILES = [
    {"filename": "Dockerfile", "status": "modified", "additions": 1600, "deletions": 400}
]


@pytest.fixture
async def bot(
    bot_factory: BotFactory, clock: FrozenClock, edge: FakeEdge, app_private_key: str
) -> AsyncIterator[Bot]:
    """The gated app of tests/slackflow.py, with PagerDuty's routing key set."""
    overrides = Overrides(
        clock=clock,
        start_scheduler=False,
        run_outbox_worker=False,
        process_before_response=True,
        http_transport=edge.transport,
        environ={"PD_CHECKOUT_ROUTING_KEY": ROUTING_KEY},
    )
    async with bot_factory(env=gated_env(app_private_key), overrides=overrides) as running:
        yield running


async def deployed(bot: Bot, sha: str, deployment_id: int) -> None:
    body = encode(deployment_status("success", sha=sha, deployment_id=deployment_id))
    answer = await bot.post("/webhooks/github", body, github_headers("deployment_status", body))
    assert answer.status_code == 202, answer.text
    await bot.send_outbox()


async def checks_at(bot: Bot, clock: FrozenClock, *minutes: float) -> None:
    for step in minutes:
        clock.advance(minutes=step)
        await checks_tick(bot.runtime)
        await bot.send_outbox()


def deployment_of(bot: Bot, sha: str, attempt: int = 1) -> Deployment:
    with bot.runtime.db.read() as session:
        return session.exec(
            select(Deployment).where(Deployment.sha == sha).where(Deployment.attempt == attempt)
        ).one()


async def release_rolled_back_and_restored(
    bot: Bot, github: FakeGitHub, edge: FakeEdge, clock: FrozenClock
) -> int:
    """SHA_B runs verified; SHA_A passes its gate, deploys, fails verification, pages, is
    rolled back automatically to SHA_B, and SHA_B's redeploy verifies. SHA_A's release id."""
    await deployed(bot, SHA_B, 145988740)
    await checks_at(bot, clock, 0, 1, 4, 10)
    assert deployment_of(bot, SHA_B).state == "verified"

    clock.advance(hours=1)
    github.compare_files = MEDIUM_RISK_FILES
    github.pull(17, merged_by="merge-marta", approved_by=("review-rui",))
    await request_gate(bot)  # signed deployment_protection_rule for SHA_A
    gate_id = the_gate(bot).id or 0
    await click(bot, "U0OWNER01", "release_approve", gate_id)  # authored it: refused
    await click(bot, "U0RM1", "release_approve", gate_id)
    assert the_gate(bot).status == "approved"
    await deployed(bot, SHA_A, 145988746)
    await checks_at(bot, clock, 0)  # the first health check passes
    edge.health.queued = [500]
    await checks_at(bot, clock, 1)  # the second finds checkout down: page, roll back
    bad = deployment_of(bot, SHA_A)
    assert (bad.state, bad.rollback_to) == ("rolling_back", SHA_B)

    clock.advance(minutes=3)
    await deployed(bot, SHA_B, 145988750)  # the pipeline redeploys the good version
    await checks_at(bot, clock, 0, 1, 4, 10)
    assert deployment_of(bot, SHA_B, attempt=2).state == "verified"
    assert deployment_of(bot, SHA_A).state == "rolled_back"
    return bad.release_id


def pack_of(bot: Bot, config: Config, release_id: int, clock: FrozenClock) -> dict[str, Any]:
    with bot.runtime.db.read() as session:
        pack = evidence_pack(
            session, release_id=release_id, config=config, generated_at=clock.now()
        )
    assert json.loads(json.dumps(pack)) == pack
    return pack


def receipts_of(pack: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [r for entry in pack["receipts"] if entry["kind"] == kind for r in entry["receipts"]]


async def test_a_release_from_webhook_to_verified_rollback_has_a_complete_pack(
    bot: Bot,
    slack: FakeSlackWebApi,
    github: FakeGitHub,
    edge: FakeEdge,
    clock: FrozenClock,
    example_config: Config,
) -> None:
    release_id = await release_rolled_back_and_restored(bot, github, edge, clock)
    pack = pack_of(bot, example_config, release_id, clock)
    bad = deployment_of(bot, SHA_A)
    restored = deployment_of(bot, SHA_B, attempt=2)

    # Everyone on the change, with login, e-mail and mapped Slack user.
    people = {p["login"]: p for p in pack["people"]}
    owner = people["octo-owner"]
    assert owner["provider"] == "github"
    assert owner["emails"] == ["olga@acme.example"]
    assert owner["roles"] == {"author": 1, "committer": 1}
    assert owner["slack_users"] == [{"user_id": "U0OWNER01", "email": "olga@acme.example"}]
    assert people["merge-marta"]["roles"] == {"merger": 1}
    assert people["review-rui"]["roles"] == {"reviewer": 1}
    deployer = people["ci-bot"]
    assert deployer["roles"] == {"deployer": 1}
    assert deployer["slack_users"] == []

    # The diff range, and a hash over the stored file list an auditor recomputes.
    change = pack["change"]
    assert change["diff_range"]["head"] == SHA_A
    assert change["diff_range"]["base"] == change["base_sha"]
    assert change["diff"]["paths"] == ["Dockerfile"]
    assert change["diff_sha256_source"].startswith("the compare's file list")
    body = json.dumps(
        {k: change[k] for k in ("base_sha", "commits", "diff")} | {"sha": SHA_A},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    assert change["diff_sha256"] == hashlib.sha256(body.encode()).hexdigest()

    # Risk factors, and the gate rules in force with the config's hash at opening.
    [deployment] = pack["deployments"]
    assert deployment["id"] == bad.id and deployment["state"] == "rolled_back"
    assert {f["name"] for f in deployment["risk"]["factors"]} == {"size", "sensitive_paths"}
    [gate] = deployment["gates"]
    rules = gate["rules_in_force"]
    assert rules["requirement"]["rules"] == [{"approvers": ["S0RELMGRS"], "count": 1}]
    assert rules["config_sha256_at_open"] == config_sha256(example_config)
    assert rules["same_config"] is True
    assert rules["policy"]["require"] == [{"approvers": ["S0RELMGRS"], "count": 1}]
    assert rules["policy"]["forbid_self_approval"] is True
    assert rules["policy"]["by_risk"]["critical"]["blocked"] is True

    # Every decision and refused click, with Slack id, Slack e-mail and SCM identity.
    clicks = [a for a in pack["acts"] if a["action"].startswith("gate.")]
    refused = next(a for a in clicks if a["outcome"] == "refused")
    assert (refused["user_id"], refused["decision"]) == ("U0OWNER01", "approve")
    assert refused["slack_email"] == "olga@acme.example"
    assert refused["scm_identity"] == {"github": "octo-owner", "gitlab": "owner", "email": None}
    assert "you authored 1 of the commits" in refused["reason"]
    approved = next(a for a in clicks if a["action"] == "gate.approve_recorded")
    assert (approved["user_id"], approved["outcome"]) == ("U0RM1", "recorded")
    assert approved["slack_email"] == "rita@acme.example"
    assert approved["scm_identity"] is None
    assert (pack["freezes"], pack["break_glass"]) == ([], [])

    # Checks with their evidence: the health check that found checkout down.
    health = next(c for c in pack["verification"] if c["name"] == "health")
    failed = next(r for r in health["runs"] if r["status"] == "failed")
    assert failed["result"]["evidence"]["status_code"] == 500

    # Delivery receipts, as the fakes answered them.
    posted = receipts_of(pack, "slack.release_message")
    message = next(m for m in slack.messages(CHANNEL) if SHA_A[:7] in m["text"])
    assert {"platform": "slack", "method": "chat.postMessage", "channel": message["channel"],
            "ts": message["ts"], "thread_ts": None} in posted  # fmt: skip
    assert any(r["method"] == "chat.update" and r["ts"] == message["ts"] for r in posted)
    thread_ts = {m["ts"] for m in slack.thread(CHANNEL, message["ts"])[1:]}
    lines = receipts_of(pack, "slack.thread_reply")
    assert {r["ts"] for r in lines} == thread_ts and thread_ts
    calls = receipts_of(pack, "deployer.execute")
    callback = next(r for r in calls if r["action"] == "approve")
    assert callback["platform"] == "github_protection_rule"
    assert callback["detail"] == "approved the GitHub deployment protection rule for production"
    rollback = next(r for r in calls if r["action"] == "rollback")
    assert rollback["platform"] == "github_workflow" and "dispatched" in rollback["detail"]
    [trigger] = [e for e in edge.pagerduty.events if e["event_action"] == "trigger"]
    [page] = receipts_of(pack, "pager.alert")[:1]
    assert page == {
        "platform": "pagerduty",
        "action": "trigger",
        "dedup_key": trigger["dedup_key"],
        "answer": trigger["dedup_key"],
    }
    assert trigger["dedup_key"] == f"releasebot/checkout/production/{bad.id}"
    assert ROUTING_KEY not in json.dumps(pack)  # no secret in any receipt

    # What happened afterwards, across releases.
    [after] = pack["aftermath"]
    assert (after["deployment_id"], after["rolled_back"], after["rollback_to"]) == (
        bad.id,
        True,
        SHA_B,
    )
    [redeploy] = after["redeploys"]
    assert (redeploy["deployment_id"], redeploy["verified"]) == (restored.id, True)
    assert redeploy["release_id"] != release_id
    assert {c["status"] for c in redeploy["checks"]} == {"passed"}
    assert "deployment.created" in [r["action"] for r in redeploy["records"]]
    assert [e["action"] for e in after["incident"]] == ["incident.opened", "incident.resolved"]
    assert after["incident"][1]["details"]["restored_by"] == restored.id
    resolved = [r for r in receipts_of(pack, "pager.alert") if r["action"] == "resolve"]
    assert [r["dedup_key"] for r in resolved] == [trigger["dedup_key"]]

    # The stretch of the chain that covers it all, each end as stored.
    stretch = pack["audit"]["stretch"]
    covered = [r["seq"] for r in pack["audit"]["records"]] + [r["seq"] for r in pack["receipts"]]
    covered += [r["seq"] for r in redeploy["records"] + redeploy["receipts"]]
    assert (stretch["first_seq"], stretch["last_seq"]) == (min(covered), max(covered))
    assert stretch["records"] == stretch["last_seq"] - stretch["first_seq"] + 1
    with bot.runtime.db.read() as session:
        first = session.get(AuditEvent, stretch["first_seq"])
        last = session.get(AuditEvent, stretch["last_seq"])
    assert first is not None and last is not None
    assert (stretch["first_hash"], stretch["first_prev_hash"]) == (first.hash, first.prev_hash)
    assert stretch["last_hash"] == last.hash and HEX64.fullmatch(last.hash)
    for entry in pack["receipts"]:
        record = next(r for r in _stored(bot) if r.seq == entry["seq"])
        assert (
            record.hash
            == entry["hash"]
            == record_hash(
                prev_hash=record.prev_hash,
                seq=record.seq,
                at=record.at,
                actor=record.actor,
                action=record.action,
                subject=record.subject,
                details=json.loads(record.details),
            )
        )
    assert pack["audit"]["chain"]["verified"] is True


def _stored(bot: Bot) -> list[AuditEvent]:
    with bot.runtime.db.read() as session:
        return list(session.exec(select(AuditEvent).order_by(AuditEvent.seq)).all())  # type: ignore[arg-type]


HOSTILE = '<script>alert("pwned")</script> & <b>bold</b>'


async def test_the_printable_pack_shows_the_same_data_with_commit_text_escaped(
    bot: Bot,
    slack: FakeSlackWebApi,
    github: FakeGitHub,
    edge: FakeEdge,
    clock: FrozenClock,
    example_config: Config,
) -> None:
    github.commit_message = HOSTILE
    release_id = await release_rolled_back_and_restored(bot, github, edge, clock)
    pack = pack_of(bot, example_config, release_id, clock)
    bad = deployment_of(bot, SHA_A)

    page = await bot.http.get(f"/releases/{release_id}/evidence.html")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "<script>" not in html and "<b>bold</b>" not in html
    assert (
        "&lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in html
    )
    assert pack["change"]["diff_sha256"] in html
    assert pack["audit"]["stretch"]["last_hash"] in html
    assert "you authored 1 of the commits" in html and "rita@acme.example" in html
    message = next(m for m in slack.messages(CHANNEL) if SHA_A[:7] in m["text"])
    assert message["ts"] in html  # a receipt
    assert f"releasebot/checkout/production/{bad.id}" in html  # the page's dedup key

    by_deployment = await bot.http.get(f"/deployments/{bad.id}/evidence.html")
    assert by_deployment.status_code == 200 and f"Release {release_id}" in by_deployment.text
    detail = await bot.http.get(f"/deployments/{bad.id}")
    assert f'href="/deployments/{bad.id}/evidence.html"' in detail.text
    for missing in ("/releases/999/evidence.html", "/releases/x/evidence.html"):
        assert (await bot.http.get(missing)).status_code == 404


def test_a_deployer_receipt_names_the_run_it_started() -> None:
    from bot.ports import DeployResult
    from bot.receipts import run_id

    dispatched = (
        "dispatched deploy.yml on main to deploy checkout in production at f95f852 (run 98765)"
    )
    assert run_id(DeployResult(detail=dispatched)) == "98765"
    page = "https://github.com/acme/checkout/actions/runs/4242"
    assert run_id(DeployResult(detail="approved", url=page)) == "4242"
    pipeline = "https://gitlab.example/acme/checkout/-/pipelines/777"
    assert run_id(DeployResult(detail="triggered", url=pipeline)) == "777"
    assert run_id(DeployResult(detail="synced checkout-prod")) is None
