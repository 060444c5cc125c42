"""`/release lock` and `/release unlock`, signed through the real app: a locked environment
refuses promotion (typed, clicked and automatic) and gate approvals, naming the reason and
who locked it; the lock shows on the release message, App Home and the dashboard; a
rollback's lock is the same one, lifted the same way."""

from __future__ import annotations

import json

from bot.config import Config
from bot.scheduling import checks_tick
from bot.store.tables import EnvironmentLock
from handlers.slack.command_parser import Lock, Unlock, Usage, parse
from integrations.sandbox.webapi import FakeSlackWebApi
from tests.conftest import Bot
from tests.fakes import FakeGitHub, FrozenClock
from tests.slackflow import CHANNEL, buttons, click, request_gate, the_gate, told
from tests.test_app_home import open_home
from tests.test_slash_commands import (
    MEDIUM,
    SHA_A,
    SHA_B,
    Slash,
    audit_of,
    bot,
    channel_texts,
    deploy,
    deploy_staging,
    deployments,
    dispatches,
    shown,
    slash,
)

__all__ = ["bot", "slash"]  # the fixtures, shared with the slash command tests

SHA_C = "1234567890abcdef1234567890abcdef12345678"
REASON = "database migration running"


def test_lock_and_unlock_parse(example_config: Config) -> None:
    c = example_config
    assert parse(f"lock checkout production -- {REASON}", config=c) == Lock(
        "checkout", "production", REASON
    )
    assert parse("lock checkout — incident 4711", config=c) == Lock(
        "checkout", None, "incident 4711"
    )
    assert parse("unlock checkout production", config=c) == Unlock("checkout", "production")
    assert parse("unlock checkout", config=c) == Unlock("checkout", None)
    for text, problem in (
        ("lock checkout production", "needs a reason"),
        ("lock -- why", "which service"),
        ("unlock checkout production -- why", "takes no reason"),
        ("lock checkout prodution -- why", "no environment `prodution`"),
    ):
        answer = parse(text, config=c)
        assert isinstance(answer, Usage) and problem in answer.problem, (text, answer)
    typo = parse("lock chekout -- why", config=c)
    assert isinstance(typo, Usage) and typo.corrected == "lock checkout -- why"


def release_message(slack: FakeSlackWebApi, sha: str, environment: str) -> str:
    found = [
        m
        for m in slack.messages(CHANNEL)
        if sha[:7] in json.dumps(m["blocks"]) and environment in m["text"]
    ]
    return json.dumps(found[-1]["blocks"])


async def test_a_lock_refuses_promotion_and_approval_until_unlocked(
    slash: Slash, bot: Bot, slack: FakeSlackWebApi, github: FakeGitHub, clock: FrozenClock
) -> None:
    github.commit_author = "someone-else"
    github.compare_files = MEDIUM
    await request_gate(bot)  # a production deployment waits at its gate
    gate = the_gate(bot)

    # only release managers and the service's owners may lock; a refusal is audited
    refused = shown(await slash("U0STRANGER", f"lock checkout production -- {REASON}"))
    assert "only release managers and the owners of checkout" in refused
    [refusal] = audit_of(bot, "environment.lock_refused")
    assert (refusal["actor"], refusal["action"]) == ("U0STRANGER", "lock")
    with bot.runtime.db.read() as session:
        assert session.get(EnvironmentLock, ("checkout", "production")) is None

    locked = shown(await slash("U0RM1", f"lock checkout production -- {REASON}"))
    assert "checkout production locked" in locked and REASON in locked
    assert any(
        "<@U0RM1> locked *checkout* production" in t and REASON in t for t in channel_texts(slack)
    )
    [placed] = audit_of(bot, "environment.locked")
    assert (placed["actor"], placed["reason"], placed["holds"]) == ("U0RM1", REASON, "all")

    # the waiting release's message shows the lock, its reason and who placed it
    message = release_message(slack, gate_sha(bot), "production")
    assert "production is locked* by <@U0RM1>" in message and REASON in message

    # approving is refused, naming the reason and the locker; the gate stays pending
    await click(bot, "U0RM2", "release_approve", gate.id or 0)
    assert f"production of checkout is locked by U0RM1: {REASON}" in told(slack, "U0RM2")
    assert the_gate(bot).status == "pending"
    assert [r["decision"] for r in audit_of(bot, "gate.decision_refused")] == ["approve"]

    # staging verifies: automatic promotion into production does not start
    await deploy_staging(bot, SHA_C)
    await checks_tick(bot.runtime)
    clock.advance(seconds=30)
    await checks_tick(bot.runtime)
    await bot.send_outbox()
    staging = next(d for d in deployments(bot) if d.environment == "staging")
    assert staging.state == "verified"
    note = slack.thread(
        CHANNEL, next(m for m in slack.messages(CHANNEL) if "staging" in m["text"])["ts"]
    )[-1]["text"]
    assert "Not promoted to production automatically" in note and REASON in note
    assert not [d for d in deployments(bot) if d.sha == SHA_C and d.environment == "production"]

    # promotion by command and by button is refused the same way
    typed = shown(await slash("U0RM1", "promote checkout latest to production"))
    assert f"production of checkout is locked by U0RM1: {REASON}" in typed
    await click(bot, "U0RM2", "release_promote", staging.id or 0)
    assert f"locked by U0RM1: {REASON}" in told(slack, "U0RM2")
    assert not [d for d in deployments(bot) if d.sha == SHA_C and d.environment == "production"]

    # App Home and the dashboard show the lock
    home = json.dumps(await open_home(bot, slack, "U0RM1"))
    assert "Locked environments* (1)" in home and REASON in home
    page = (await bot.http.get("/")).text
    assert "Locked</strong>: locked by U0RM1: " + REASON in page

    # unlocking: the stranger is refused (audited), the release manager lifts it
    assert "only release managers" in shown(await slash("U0STRANGER", "unlock checkout production"))
    assert [r["action"] for r in audit_of(bot, "environment.lock_refused")] == ["lock", "unlock"]
    unlocked = shown(await slash("U0RM1", "unlock checkout production"))
    assert "checkout production unlocked" in unlocked
    assert "is not locked" in shown(await slash("U0RM1", "unlock checkout production"))
    assert [r["actor"] for r in audit_of(bot, "environment.unlocked")] == ["U0RM1"]
    assert REASON not in release_message(slack, gate_sha(bot), "production")

    # now the approval and the promotion go through
    await click(bot, "U0RM2", "release_approve", gate.id or 0)
    assert the_gate(bot).status == "approved"
    promoted = shown(await slash("U0RM1", f"promote checkout {SHA_C[:7]} to production"))
    assert f"promoting {SHA_C[:7]} to production" in promoted
    assert [d for d in deployments(bot) if d.sha == SHA_C and d.environment == "production"]


def gate_sha(bot: Bot) -> str:
    gate = the_gate(bot)
    return next(d.sha for d in deployments(bot) if d.id == gate.deployment_id)


async def test_unlock_lifts_a_rollbacks_lock_and_lock_without_env_locks_all(
    slash: Slash, bot: Bot, slack: FakeSlackWebApi, github: FakeGitHub, clock: FrozenClock
) -> None:
    await deploy(bot, "success", sha=SHA_A, deployment_id=1)
    clock.advance(hours=1)
    await deploy(bot, "success", sha=SHA_B, deployment_id=2)
    shown(await slash("U0RM1", "rollback checkout production -- error rate doubled"))
    assert dispatches(github)
    with bot.runtime.db.read() as session:
        lock = session.get(EnvironmentLock, ("checkout", "production"))
        assert lock is not None and lock.holds == "automatic"
    home = json.dumps(await open_home(bot, slack, "U0RM1"))
    assert "automatic promotion stopped" in home and "error rate doubled" in home

    # the owner of the service may unlock; without an env, every locked environment
    unlocked = shown(await slash("U0OWNER01", "unlock checkout"))
    assert "checkout production unlocked" in unlocked
    with bot.runtime.db.read() as session:
        assert session.get(EnvironmentLock, ("checkout", "production")) is None
    assert [r["actor"] for r in audit_of(bot, "environment.unlocked")] == ["U0OWNER01"]
    assert "no environment of checkout is locked" in shown(await slash("U0RM1", "unlock checkout"))

    # lock without an environment: every environment of the service
    locked = shown(await slash("U0RM1", "lock checkout -- incident 4711"))
    assert "checkout staging, production locked" in locked
    with bot.runtime.db.read() as session:
        held = {
            env: session.get(EnvironmentLock, ("checkout", env))
            for env in ("staging", "production")
        }
    assert all(lock is not None and lock.holds == "all" for lock in held.values())
    # the Unlock button on the release message lifts the lock of its environment only
    message = next(m for m in slack.messages(CHANNEL) if SHA_B[:7] in m["text"])
    assert "release_unlock" in buttons(message)
    await click(bot, "U0RM2", "release_unlock", deployments(bot)[-1].id or 0)
    with bot.runtime.db.read() as session:
        assert session.get(EnvironmentLock, ("checkout", "production")) is None
        assert session.get(EnvironmentLock, ("checkout", "staging")) is not None


async def test_help_lists_lock_and_unlock(slash: Slash) -> None:
    answer = shown(await slash("U0STRANGER", "help"))
    assert "/release lock <service> [env] -- <reason...>" in answer
    assert "/release unlock <service> [env]" in answer


async def test_a_reason_someone_typed_is_shown_as_text_in_a_refused_click(
    slash: Slash, bot: Bot, slack: FakeSlackWebApi, github: FakeGitHub
) -> None:
    github.commit_author = "someone-else"
    github.compare_files = MEDIUM
    await request_gate(bot)
    gate = the_gate(bot)
    hostile = "<!channel> see <https://evil.example|the runbook> until 18:00 UTC"
    await slash("U0RM1", f"lock checkout production -- {hostile}")

    await click(bot, "U0RM2", "release_approve", gate.id or 0)
    answer = told(slack, "U0RM2")
    # the reason is quoted inert: no @channel, no disguised link, no mention made of "UTC"
    assert "&lt;!channel&gt;" in answer and "<!channel>" not in answer
    assert "&lt;https://evil.example|the runbook&gt;" in answer
    assert "<@UTC>" not in answer and "18:00 UTC" in answer
    assert the_gate(bot).status == "pending"
