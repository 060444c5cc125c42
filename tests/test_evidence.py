"""The evidence pack of a release, built from a whole story driven through signed requests.

GitHub's protection rule opens a gate for checkout production on a medium-risk change, the
author's own approval is refused, a release manager approves, GitHub is told, and GitHub then
reports the deployment succeeded. The pack must let an auditor check all of it on its own.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from bot import cli
from bot.config import Config, parse_config
from bot.domain.audit import record_hash
from bot.scheduling import checks_tick
from bot.services.evidence import FORMAT, evidence_pack
from bot.store.tables import Deployment
from integrations.sandbox.webapi import FakeSlackWebApi
from tests.conftest import Bot
from tests.fakes import FakeGitHub, FrozenClock
from tests.helpers import (
    EXAMPLE_CONFIG,
    SHA_A,
    SHA_B,
    deployment_status,
    encode,
    example_config_data,
    github_headers,
)
from tests.slackflow import click, request_gate, submit_reason, the_gate

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
MEDIUM_RISK_FILES = [  # medium risk: one release manager must approve
    {"filename": "Dockerfile", "status": "modified", "additions": 1600, "deletions": 400}
]


# --- the running bot (fixtures of tests/slackflow.py) -----------------------------------------


@pytest.fixture
def bot(gated_bot: Bot) -> Bot:
    """The app with a GitHub App configured, talking to the fake GitHub."""
    return gated_bot


async def github_event(bot: Bot, event: str, payload: dict[str, Any]) -> None:
    body = encode(payload)
    answer = await bot.post("/webhooks/github", body, github_headers(event, body))
    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "accepted"
    await bot.send_outbox()


async def approved_and_deployed(bot: Bot, github: FakeGitHub) -> int:
    """The gate story of test_gates_flow, then GitHub reports the deploy; the release id."""
    github.compare_files = MEDIUM_RISK_FILES
    await request_gate(bot)
    gate = the_gate(bot)
    await click(bot, "U0OWNER01", "release_approve", gate.id or 0)  # authored the commit
    await click(bot, "U0RM1", "release_approve", gate.id or 0)
    assert the_gate(bot).status == "approved"
    assert [d["state"] for d in github.decisions()] == ["approved"]
    await github_event(bot, "deployment_status", deployment_status("success"))
    with bot.runtime.db.read() as session:
        [deployment] = session.exec(select(Deployment).where(Deployment.sha == SHA_A)).all()
    assert deployment.state == "verifying"  # production verifies every deploy
    return deployment.release_id


def pack_of(bot: Bot, config: Config, release_id: int, clock: FrozenClock) -> dict[str, Any]:
    with bot.runtime.db.read() as session:
        pack = evidence_pack(
            session, release_id=release_id, config=config, generated_at=clock.now()
        )
    assert json.loads(json.dumps(pack)) == pack  # plain JSON, nothing lost on the way
    return pack


def times(value: Any, key: str = "") -> Iterator[tuple[str, Any]]:
    """Every (key, value) of a time field in the pack, outside the hashed audit details."""
    if isinstance(value, dict):
        for name, item in value.items():
            if name in ("details", "spec"):  # audit details, and check config ("at" offsets)
                continue
            if name in ("at", "start", "end", "generated_at") or name.endswith("_at"):
                yield name, item
            else:
                yield from times(item, name)
    elif isinstance(value, list):
        for item in value:
            yield from times(item, key)


def recomputed_diff_hash(change: dict[str, Any]) -> str:
    """What an auditor would compute, written out here without the bot's helpers."""
    body = json.dumps(
        {
            "base_sha": change["base_sha"],
            "sha": SHA_A,
            "commits": change["commits"],
            "diff": change["diff"],
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


# --- the pack --------------------------------------------------------------------------------


async def test_the_pack_tells_the_whole_story(
    bot: Bot, github: FakeGitHub, clock: FrozenClock, example_config: Config
) -> None:
    release_id = await approved_and_deployed(bot, github)
    # Another release of the same service, whose records must stay out of this pack.
    await github_event(
        bot, "deployment_status", deployment_status("success", sha=SHA_B, deployment_id=145988747)
    )
    pack = pack_of(bot, example_config, release_id, clock)

    assert pack["format"] == FORMAT == "releasebot.evidence/1"
    assert pack["generated_at"] == "2026-11-17T10:00:00.000000Z"
    assert pack["release"] == {
        "id": release_id,
        "service": "checkout",
        "repo": "github:acme/checkout",
        "sha": SHA_A,
        "version": None,
        "ref": "main",
        "created_at": "2026-11-17T10:00:00.000000Z",
    }
    for name, value in times(pack):
        assert value is None or ISO_UTC.match(value), (name, value)

    # What changed, who wrote it, and a hash the auditor can recompute.
    change = pack["change"]
    assert change["commits"] == [
        {
            "sha": SHA_A,
            "message": "Speed up checkout",
            "author": "Olga Owner",
            "author_login": "octo-owner",
            "committer_login": "octo-owner",
            "authored_at": "2026-11-16T09:00:00.000000Z",
            "url": f"https://github.com/acme/checkout/commit/{SHA_A}",
        }
    ]
    assert change["authors"] == [
        {
            "login": "octo-owner",
            "names": ["Olga Owner"],
            "commits": 1,
            "authored": 1,
            "committed": 1,
            "slack_users": ["U0OWNER01"],
        }
    ]
    diff = change["diff"]
    assert (diff["additions"], diff["deletions"], diff["files"]) == (1600, 400, 1)
    assert (diff["truncated"], diff["paths"]) == (False, ["Dockerfile"])
    assert change["diff_sha256"] == recomputed_diff_hash(change)
    assert re.fullmatch(r"[0-9a-f]{64}", change["diff_sha256"])

    # The deployment, its risk and its gate with the approval.
    [deployment] = pack["deployments"]
    assert (deployment["environment"], deployment["attempt"]) == ("production", 1)
    # The second release deployed while this one was still being verified.
    assert deployment["state"] == "superseded"
    assert deployment["deployed_at"] == "2026-11-17T10:00:00.000000Z"
    assert deployment["deployer"] == "ci-bot"
    assert deployment["ci_url"] == "https://github.com/acme/checkout/actions/runs/4242"
    assert deployment["finished_at"] == "2026-11-17T10:00:00.000000Z"
    risk = deployment["risk"]
    assert risk["level"] == "medium"
    assert 30 <= risk["score"] < 60
    assert {f["name"] for f in risk["factors"]} == {"size", "sensitive_paths"}
    assert sum(f["points"] for f in risk["factors"]) == risk["score"]
    reasons = {f["name"]: f["reason"] for f in risk["factors"]}
    assert reasons["sensitive_paths"] == "Touches a sensitive path: Dockerfile"
    assert "2,000 lines" in reasons["size"]
    [gate] = deployment["gates"]
    assert gate["status"] == "approved"
    assert gate["decided_by"] == "U0RM1"
    assert gate["requirement"]["risk_level"] == "medium"
    assert gate["requirement"]["rules"] == [{"approvers": ["S0RELMGRS"], "count": 1}]
    assert gate["expires_at"] == "2026-11-17T14:00:00.000000Z"
    assert gate["break_glass"] is None
    assert gate["approvals"] == [
        {
            "user_id": "U0RM1",
            "decision": "approve",
            "reason": None,
            "at": "2026-11-17T10:00:00.000000Z",
            "identity": None,  # the example config maps no code-host login for U0RM1
        }
    ]
    assert pack["identities"] == {
        "U0OWNER01": {"github": "octo-owner", "gitlab": "owner", "email": None},
        "U0RM1": None,
    }
    assert (pack["freezes"], pack["break_glass"]) == ([], [])
    # Its checks were planned, then stopped when the newer release replaced it.
    runs = [run for check in pack["verification"] for run in check["runs"]]
    assert len(runs) == 6 and {run["status"] for run in runs} == {"cancelled"}

    # The audit records of this release only, each one's hash recomputing.
    records = pack["audit"]["records"]
    subjects = {f"deployment:{deployment['id']}", f"gate:{gate['id']}"}
    assert {r["subject"] for r in records} == subjects
    for record in records:
        assert record["hash"] == record_hash(
            prev_hash=record["prev_hash"],
            seq=record["seq"],
            at=record["at"],
            actor=record["actor"],
            action=record["action"],
            subject=record["subject"],
            details=record["details"],
        )
    assert [r["seq"] for r in records] == sorted(r["seq"] for r in records)
    for earlier, later in zip(records, records[1:], strict=False):
        if later["seq"] == earlier["seq"] + 1:
            assert later["prev_hash"] == earlier["hash"]
    [refused] = [r for r in records if r["action"] == "gate.decision_refused"]
    assert refused["actor"] == "U0OWNER01"
    assert refused["subject"] == f"gate:{gate['id']}"
    assert "you authored 1 of the commits" in refused["details"]["reason"]
    actions = [r["action"] for r in records]
    for expected in (
        "deployment.created",
        "gate.opened",
        "deployment.assessed",
        "gate.approve_recorded",
        "gate.approved",
        "deployer.called",
        "verification.planned",
        "verification.cancelled",
    ):
        assert expected in actions
    assert actions[-1] == "deployment.state_changed"
    assert records[-1]["details"]["to"] == "superseded"

    chain = pack["audit"]["chain"]
    assert chain["verified"] is True
    assert chain["first_break"] is None
    assert chain["head_seq"] > records[-1]["seq"]  # the other release wrote after this one
    assert chain["records_checked"] == chain["head_seq"]
    assert re.fullmatch(r"[0-9a-f]{64}", chain["head_hash"])


async def test_an_approver_with_an_identity_mapping_shows_it(
    bot: Bot, github: FakeGitHub, clock: FrozenClock
) -> None:
    release_id = await approved_and_deployed(bot, github)
    data = example_config_data()  # a copy: the example file itself stays as it is
    data["identities"]["U0RM1"] = {"github": "rita-rm", "email": "rita@acme.example"}
    pack = pack_of(bot, parse_config(data), release_id, clock)
    [approval] = pack["deployments"][0]["gates"][0]["approvals"]
    assert approval["identity"] == {
        "github": "rita-rm",
        "gitlab": None,
        "email": "rita@acme.example",
    }
    assert pack["identities"]["U0RM1"] == approval["identity"]


async def test_a_deploy_in_the_year_end_freeze_carries_the_freeze_and_its_break_glass(
    bot: Bot, slack: FakeSlackWebApi, github: FakeGitHub, clock: FrozenClock, example_config: Config
) -> None:
    clock.set(datetime(2026, 12, 24, 10, 0, tzinfo=UTC))
    github.compare_files = MEDIUM_RISK_FILES
    await request_gate(bot)
    gate_id = the_gate(bot).id or 0
    await click(bot, "U0RM2", "release_break_glass", gate_id)
    await submit_reason(bot, slack, "U0RM2", "Checkout is down for every customer; hotfix")
    clock.advance(minutes=5)
    await click(bot, "U0SRE1", "release_break_glass_confirm", gate_id)
    assert the_gate(bot).status == "approved"
    with bot.runtime.db.read() as session:
        [deployment] = session.exec(select(Deployment)).all()

    pack = pack_of(bot, example_config, deployment.release_id, clock)
    assert pack["freezes"] == [
        {
            "deployment_id": deployment.id,
            "environment": "production",
            "at": "2026-12-24T10:00:00.000000Z",
            "environments": ["production"],
            "reason": "Year-end change freeze",
            "start": "2026-12-22T23:00:00.000000Z",
            "end": "2027-01-03T23:00:00.000000Z",
        }
    ]
    [shown] = pack["deployments"]
    assert "freeze" in {f["name"] for f in shown["risk"]["factors"]}
    glass = {
        "requested_by": "U0RM2",
        "reason": "Checkout is down for every customer; hotfix",
        "requested_at": "2026-12-24T10:00:00.000000Z",
        "confirmed_by": "U0SRE1",
        "confirmed_at": "2026-12-24T10:05:00.000000Z",
        "valid_until": "2026-12-24T12:05:00.000000Z",
    }
    [gate] = shown["gates"]
    assert (gate["status"], gate["decided_by"], gate["break_glass"]) == (
        "approved",
        "U0SRE1",
        glass,
    )
    assert gate["approvals"] == []  # nobody approved: break-glass passed it
    assert pack["break_glass"] == [{"deployment_id": deployment.id, "gate_id": gate_id, **glass}]
    assert pack["identities"] == {"U0RM2": None, "U0SRE1": None}
    actions = [r["action"] for r in pack["audit"]["records"]]
    assert "gate.break_glass_requested" in actions
    assert "gate.break_glass_confirmed" in actions
    assert pack["audit"]["chain"]["verified"] is True


async def test_verification_results_are_in_the_pack(
    bot: Bot, github: FakeGitHub, clock: FrozenClock, example_config: Config
) -> None:
    release_id = await approved_and_deployed(bot, github)
    deployment_id = the_gate(bot).deployment_id

    # The deploy planned production's checks; the first health check runs at once.
    await checks_tick(bot.runtime)
    pack = pack_of(bot, example_config, release_id, clock)
    checks = {c["name"]: c for c in pack["verification"]}
    assert sorted(checks) == ["error-rate", "health"]
    assert {c["deployment_id"] for c in checks.values()} == {deployment_id}
    assert (checks["health"]["kind"], checks["error-rate"]["kind"]) == ("http", "prometheus")
    health_runs = checks["health"]["runs"]
    assert [r["due_at"] for r in health_runs] == [
        "2026-11-17T10:00:00.000000Z",
        "2026-11-17T10:01:00.000000Z",
        "2026-11-17T10:05:00.000000Z",
    ]
    first = health_runs[0]
    assert (first["status"], first["finished_at"]) == ("passed", "2026-11-17T10:00:00.000000Z")
    assert first["result"]["passed"] is True
    assert first["result"]["summary"].startswith("HTTP 200 in")
    assert first["result"]["evidence"]["status_code"] == 200
    assert [r["status"] for r in health_runs[1:]] == ["pending", "pending"]


async def test_a_tampered_record_shows_as_a_broken_chain(
    bot: Bot, github: FakeGitHub, clock: FrozenClock, example_config: Config
) -> None:
    release_id = await approved_and_deployed(bot, github)
    before = pack_of(bot, example_config, release_id, clock)
    [refused] = [r for r in before["audit"]["records"] if r["action"] == "gate.decision_refused"]

    def tamper(session: Session) -> None:  # rewrite history: the author's click "went through"
        session.execute(
            sa.text("UPDATE audit_event SET details = :details WHERE seq = :seq"),
            {"details": '{"decision":"approve","reason":"ok"}', "seq": refused["seq"]},
        )

    bot.runtime.db.write(tamper)
    after = pack_of(bot, example_config, release_id, clock)
    chain = after["audit"]["chain"]
    assert chain["verified"] is False
    assert chain["first_break"] == refused["seq"]
    assert chain["first_break_reason"] == "hash does not match the record's contents"
    [shown] = [r for r in after["audit"]["records"] if r["seq"] == refused["seq"]]
    assert shown["details"] == {"decision": "approve", "reason": "ok"}
    assert shown["hash"] != record_hash(
        prev_hash=shown["prev_hash"],
        seq=shown["seq"],
        at=shown["at"],
        actor=shown["actor"],
        action=shown["action"],
        subject=shown["subject"],
        details=shown["details"],
    )


def test_an_unknown_release_is_a_lookup_error(db: Any, example_config: Config) -> None:
    with db.read() as session, pytest.raises(LookupError, match="release 7 not found"):
        evidence_pack(session, release_id=7, config=example_config, generated_at=datetime.now(UTC))


# --- the command line ------------------------------------------------------------------------


async def test_the_cli_prints_the_pack_as_json(
    bot: Bot,
    github: FakeGitHub,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    release_id = await approved_and_deployed(bot, github)
    monkeypatch.setenv("RELEASEBOT_DATABASE_URL", database_url)
    monkeypatch.setenv("RELEASEBOT_CONFIG", str(EXAMPLE_CONFIG))
    capsys.readouterr()

    assert cli.main(["audit", "evidence", str(release_id)]) == 0
    out = capsys.readouterr().out
    pack = json.loads(out)
    assert out.startswith("{\n  ")  # indented
    assert pack["format"] == "releasebot.evidence/1"
    assert pack["release"]["repo"] == "github:acme/checkout"
    assert pack["deployments"][0]["gates"][0]["approvals"][0]["user_id"] == "U0RM1"
    assert pack["audit"]["chain"]["verified"] is True

    monkeypatch.setenv("RELEASEBOT_CONFIG", "/nonexistent/releasebot.yaml")
    assert cli.main(["audit", "evidence", str(release_id), "--config", str(EXAMPLE_CONFIG)]) == 0
    assert json.loads(capsys.readouterr().out)["release"]["id"] == release_id

    assert cli.main(["audit", "evidence", "999", "--config", str(EXAMPLE_CONFIG)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip() == "release 999 not found"
