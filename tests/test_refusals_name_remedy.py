"""Every refusal names what would make it succeed: who may click (their user groups as Slack
mentions), the command to type, or when to try again.

Each row drives the real app the way people do (signed clicks, modal submissions and
`/release` commands, a GitHub protection rule opening the gate) and reads the private answer
Slack would show the person refused.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from sqlmodel import select

from bot.scheduling import gate_sweep
from bot.store.tables import AuditEvent, Deployment
from integrations.sandbox.webapi import FakeSlackWebApi
from tests.conftest import Bot
from tests.fakes import FakeGitHub, FrozenClock
from tests.helpers import SHA_A, SHA_B, deployment_status, encode, github_headers
from tests.slackflow import click, request_gate, submit_reason, the_gate, told
from tests.test_gate_escalation import deploy_staging, promote_through_staging
from tests.test_slash_commands import Slash, shown

MEDIUM = [{"filename": "Dockerfile", "status": "modified", "additions": 1600, "deletions": 400}]
IN_FREEZE = datetime(2026, 12, 24, 10, 0, tzinfo=UTC)
SHA_C = "c0ffee" + "1" * 34
RELMGRS = "<!subteam^S0RELMGRS>"
SRE = "<!subteam^S0SREGRPS>"


@dataclass
class World:
    """The running app and the fakes at its edge."""

    bot: Bot
    slack: FakeSlackWebApi
    github: FakeGitHub
    clock: FrozenClock
    slash: Slash

    @property
    def gate_id(self) -> int:
        return the_gate(self.bot).id or 0

    @property
    def deployment_id(self) -> int:
        return the_gate(self.bot).deployment_id

    async def answer(self, user: str, command: str) -> str:
        return shown(await self.slash(user, command))


Act = Callable[[World], Awaitable[str]]  # drives the app, returns what the person was told


async def not_an_approver(w: World) -> str:
    await click(w.bot, "U0STRANGER", "release_approve", w.gate_id)
    return told(w.slack, "U0STRANGER")


async def self_approval(w: World) -> str:
    w.github.commit_author = "octo-owner"  # U0OWNER01's GitHub login wrote the change
    await request_gate(w.bot, run=5151)
    await click(w.bot, "U0OWNER01", "release_approve", w.gate_id)
    return told(w.slack, "U0OWNER01")


async def already_decided(w: World) -> str:
    await click(w.bot, "U0RM1", "release_approve", w.gate_id)
    await click(w.bot, "U0RM2", "release_approve", w.gate_id)
    return told(w.slack, "U0RM2")


async def expired(w: World) -> str:
    w.clock.advance(hours=4, minutes=1)
    await gate_sweep(w.bot.runtime)
    await click(w.bot, "U0RM1", "release_approve", w.gate_id)
    return told(w.slack, "U0RM1")


async def frozen(w: World) -> str:
    w.clock.set(IN_FREEZE)
    await request_gate(w.bot, run=5252, sha="1234567890abcdef1234567890abcdef12345678")
    gate = max(the_gates(w.bot))
    await click(w.bot, "U0RM1", "release_approve", gate)
    return told(w.slack, "U0RM1")


async def locked(w: World) -> str:
    await w.answer("U0RM2", "lock checkout production -- database migration running")
    await click(w.bot, "U0RM1", "release_approve", w.gate_id)
    return told(w.slack, "U0RM1")


async def unknown_person(w: World) -> str:
    await click(w.bot, "U0NOBODY", "release_approve", w.gate_id)
    return told(w.slack, "U0NOBODY")


async def directory_down(w: World) -> str:
    w.slack.fail_next("usergroups.users.list", status=503, error="service_unavailable")
    await click(w.bot, "U0RM1", "release_approve", w.gate_id)
    return told(w.slack, "U0RM1")


async def ask_break_glass(w: World) -> None:
    await click(w.bot, "U0RM1", "release_break_glass", w.gate_id)
    await submit_reason(w.bot, w.slack, "U0RM1", "checkout is down for every customer")


async def break_glass_by_a_stranger(w: World) -> str:
    await ask_break_glass(w)
    await click(w.bot, "U0STRANGER", "release_break_glass_confirm", w.gate_id)
    return told(w.slack, "U0STRANGER")


async def break_glass_by_the_requester(w: World) -> str:
    await ask_break_glass(w)
    await click(w.bot, "U0RM1", "release_break_glass_confirm", w.gate_id)
    return told(w.slack, "U0RM1")


async def break_glass_not_asked(w: World) -> str:
    await click(w.bot, "U0SRE1", "release_break_glass_confirm", w.gate_id)
    return told(w.slack, "U0SRE1")


async def break_glass_short_reason(w: World) -> str:
    await click(w.bot, "U0RM1", "release_break_glass", w.gate_id)
    await submit_reason(w.bot, w.slack, "U0RM1", "urgent")
    return told(w.slack, "U0RM1")


async def promote_by_a_stranger(w: World) -> str:
    await click(w.bot, "U0STRANGER", "release_promote", w.deployment_id)
    return told(w.slack, "U0STRANGER")


async def rollback_by_a_stranger(w: World) -> str:
    await click(w.bot, "U0STRANGER", "release_rollback", w.deployment_id)
    await submit_reason(w.bot, w.slack, "U0STRANGER", "error rate doubled")
    return told(w.slack, "U0STRANGER")


async def unlock_what_is_not_locked(w: World) -> str:
    await click(w.bot, "U0RM1", "release_unlock", w.deployment_id)
    return told(w.slack, "U0RM1")


async def freeze_by_a_stranger(w: World) -> str:
    return await w.answer("U0STRANGER", "freeze production 2h maintenance")


async def freeze_an_unknown_environment(w: World) -> str:
    return await w.answer("U0RM1", "freeze prod 2h maintenance")


async def unfreeze_what_is_not_frozen(w: World) -> str:
    return await w.answer("U0RM1", "unfreeze production")


async def lock_by_a_stranger(w: World) -> str:
    return await w.answer("U0STRANGER", "lock checkout production -- db work")


async def lock_an_unknown_environment(w: World) -> str:
    return await w.answer("U0RM1", "lock checkout prod -- db work")


async def unlock_by_a_stranger(w: World) -> str:
    return await w.answer("U0STRANGER", "unlock checkout production")


async def deploy_production(w: World) -> None:
    """The gate is approved and GitHub runs the deployment to success."""
    await click(w.bot, "U0RM1", "release_approve", w.gate_id)
    for state in ("in_progress", "success"):
        body = encode(deployment_status(state, deployment_id=777, creator="ci-bot"))
        await w.bot.post("/webhooks/github", body, github_headers("deployment_status", body))
    await w.bot.send_outbox()


async def promote_what_is_not_verified(w: World) -> str:
    await deploy_staging(w.bot, SHA_B)
    with w.bot.runtime.db.read() as session:
        [staging] = session.exec(select(Deployment).where(Deployment.environment == "staging"))
    await click(w.bot, "U0RM1", "release_promote", staging.id or 0)
    return told(w.slack, "U0RM1")


async def promote_from_the_last_environment(w: World) -> str:
    await deploy_production(w)
    await click(w.bot, "U0RM1", "release_promote", w.deployment_id)
    return told(w.slack, "U0RM1")


async def rollback_what_is_not_deployed(w: World) -> str:
    await click(w.bot, "U0RM1", "release_rollback", w.deployment_id)
    await submit_reason(w.bot, w.slack, "U0RM1", "error rate doubled")
    return told(w.slack, "U0RM1")


async def rollback_with_nothing_before(w: World) -> str:
    await deploy_production(w)
    await click(w.bot, "U0RM1", "release_rollback", w.deployment_id)
    await submit_reason(w.bot, w.slack, "U0RM1", "error rate doubled")
    return told(w.slack, "U0RM1")


async def promote_into_the_first_environment(w: World) -> str:
    return await w.answer("U0RM1", "promote checkout latest to staging")


async def promote_with_nothing_deployed_before(w: World) -> str:
    return await w.answer("U0RM1", "promote checkout latest to production")


async def promote_a_version_never_deployed(w: World) -> str:
    await deploy_staging(w.bot, SHA_B)
    return await w.answer("U0RM1", "promote checkout v0.0.1 to production")


async def rollback_with_nothing_deployed(w: World) -> str:
    return await w.answer("U0RM1", "rollback checkout production -- error rate doubled")


async def rollback_to_a_version_that_never_ran(w: World) -> str:
    await deploy_production(w)
    return await w.answer("U0RM1", "rollback checkout production to v0.0.1 -- errors")


async def rollback_to_what_runs_now(w: World) -> str:
    await deploy_production(w)
    return await w.answer("U0RM1", f"rollback checkout production to {SHA_A[:8]} -- errors")


async def rerequest_a_waiting_gate(w: World) -> str:
    await click(w.bot, "U0RM1", "release_rerequest", w.gate_id)
    return told(w.slack, "U0RM1")


async def expire(w: World) -> None:
    w.clock.advance(hours=4, minutes=1)
    await gate_sweep(w.bot.runtime)
    await w.bot.send_outbox()


async def rerequest_a_protection_rule(w: World) -> str:
    await expire(w)
    await click(w.bot, "U0RM1", "release_rerequest", w.gate_id)
    return told(w.slack, "U0RM1")


async def rerequest_by_a_stranger(w: World) -> str:
    await expire(w)
    await click(w.bot, "U0STRANGER", "release_rerequest", w.gate_id)
    return told(w.slack, "U0STRANGER")


async def rerequest_after_a_newer_release(w: World) -> str:
    """SHA_B is promoted from staging to production, its gate expires, then SHA_C goes
    there: SHA_B's gate is not asked for again over it."""
    await promote_through_staging(w.bot, w.clock, SHA_B)
    expired = max(the_gates(w.bot))
    w.clock.advance(hours=4, minutes=1)
    await gate_sweep(w.bot.runtime)
    await promote_through_staging(w.bot, w.clock, SHA_C)
    await click(w.bot, "U0RM1", "release_rerequest", expired)
    return told(w.slack, "U0RM1")


def the_gates(bot: Bot) -> list[int]:
    from bot.store.tables import Gate

    with bot.runtime.db.read() as session:
        return [g.id or 0 for g in session.exec(select(Gate)).all()]


CASES: list[tuple[str, Act, str, str]] = [
    # (case, what the person does, why it is refused, what would make it succeed)
    (
        "not an approver",
        not_an_approver,
        "you are not in S0RELMGRS",
        f"ask someone from {RELMGRS} to decide it",
    ),
    (
        "self-approval",
        self_approval,
        "you authored 1 of the commits",
        f"needs someone from {RELMGRS} who did not write the change",
    ),
    (
        "already decided",
        already_decided,
        "this gate was already approved",
        "nothing is left to decide: it goes ahead",
    ),
    (
        "expired gate",
        expired,
        "this gate already expired",
        "ask for a new approval (Re-request on the release message)",
    ),
    (
        "frozen environment",
        frozen,
        "production is frozen: Year-end change freeze",
        "use break-glass, or wait until the freeze ends at 2027-01-03 23:00 UTC",
    ),
    (
        "locked environment",
        locked,
        "production of checkout is locked by U0RM2: database migration running",
        "unlocks it (`/release unlock checkout production`)",
    ),
    (
        "unknown user",
        unknown_person,
        "could not confirm who you are (users.info: user_not_found)",
        "Someone from this workspace listed as an approver can decide it",
    ),
    (
        "Slack's directory down",
        directory_down,
        "Slack's directory did not answer",
        "try again in a minute",
    ),
    (
        "break-glass confirmed by a stranger",
        break_glass_by_a_stranger,
        "only S0RELMGRS or S0SREGRPS can confirm break-glass",
        f"ask someone from {RELMGRS} or {SRE} to confirm it",
    ),
    (
        "break-glass confirmed by the person who asked",
        break_glass_by_the_requester,
        "break-glass needs a second person",
        f"ask someone from {RELMGRS} or {SRE} to confirm it",
    ),
    (
        "break-glass confirmed before anyone asked",
        break_glass_not_asked,
        "nobody has asked for break-glass on this gate",
        "ask for it first: Break glass on the release message, with a reason",
    ),
    (
        "break-glass with a short reason",
        break_glass_short_reason,
        "break-glass needs a reason of at least 10 characters",
        "ask again with a longer reason",
    ),
    (
        "promote by someone who may not",
        promote_by_a_stranger,
        "only S0RELMGRS, S0SREGRPS, U0OWNER01 may promote checkout",
        f"ask someone from {RELMGRS}, {SRE} or <@U0OWNER01> to do it",
    ),
    (
        "roll back by someone who may not",
        rollback_by_a_stranger,
        "only S0ONCALL1, S0RELMGRS, S0SREGRPS, U0OWNER01 may rollback checkout",
        f"ask someone from <!subteam^S0ONCALL1>, {RELMGRS}, {SRE} or <@U0OWNER01> to do it",
    ),
    (
        "unlock what is not locked",
        unlock_what_is_not_locked,
        "production of checkout is not locked",
        "nothing to unlock",
    ),
    (
        "freeze by someone who may not",
        freeze_by_a_stranger,
        "only release managers (S0RELMGRS) may freeze deploys",
        f"ask someone from {RELMGRS} to do it",
    ),
    (
        "freeze of an unknown environment",
        freeze_an_unknown_environment,
        "No service has an environment `prod`",
        "Try `/release freeze production 2h maintenance`",
    ),
    (
        "unfreeze what is not frozen",
        unfreeze_what_is_not_frozen,
        "production is not frozen",
        "nothing to lift: deploys go ahead there",
    ),
    (
        "lock by someone who may not",
        lock_by_a_stranger,
        "only release managers and the owners of checkout",
        f"ask someone from {RELMGRS} or <@U0OWNER01> to lock it",
    ),
    (
        "lock of an unknown environment",
        lock_an_unknown_environment,
        "Checkout has no environment `prod` (it has staging, production)",
        "Try `/release lock checkout production -- db work`",
    ),
    (
        "unlock by someone who may not",
        unlock_by_a_stranger,
        "only release managers and the owners of checkout",
        f"ask someone from {RELMGRS} or <@U0OWNER01> to unlock it",
    ),
    (
        "promote what is not verified yet",
        promote_what_is_not_verified,
        "only a deployed release can be promoted; this one is verifying",
        "promote it once its checks in staging pass, or promote the newest deployed release: "
        "`/release promote checkout latest to production`",
    ),
    (
        "promote from the last environment",
        promote_from_the_last_environment,
        "checkout has no environment after production to promote to",
        "production ends checkout's path (staging → production): add an environment after it",
    ),
    (
        "roll back what is not deployed",
        rollback_what_is_not_deployed,
        "only a deployed release can be rolled back; this one is awaiting approval",
        "roll back what runs in production: `/release rollback checkout production -- reason`",
    ),
    (
        "roll back with nothing before it",
        rollback_with_nothing_before,
        "no earlier version of checkout was deployed to production",
        "nothing else ever ran there: deploy a fix through the pipeline",
    ),
    (
        "promote into the first environment",
        promote_into_the_first_environment,
        "no environment of checkout promotes to staging",
        "promote to `production`: `/release promote checkout latest to production`",
    ),
    (
        "promote with nothing deployed before",
        promote_with_nothing_deployed_before,
        "nothing of checkout is deployed in staging to promote",
        "deploy a release to staging first; `/release status checkout` shows what runs where",
    ),
    (
        "promote a version never deployed",
        promote_a_version_never_deployed,
        "checkout v0.0.1 was never deployed to staging",
        f"versions there: `{SHA_B[:7]}`; `/release promote checkout {SHA_B[:7]} to production`",
    ),
    (
        "roll back with nothing deployed",
        rollback_with_nothing_deployed,
        "nothing of checkout is deployed in production to roll back",
        "deploy a release to production first",
    ),
    (
        "roll back to a version that never ran",
        rollback_to_a_version_that_never_ran,
        "checkout v0.0.1 never ran in production",
        "no other version of checkout ran in production",
    ),
    (
        "roll back to what runs now",
        rollback_to_what_runs_now,
        "is what production runs now",
        "nothing else ran there: there is nothing to roll back to",
    ),
    (
        "re-request a gate still waiting",
        rerequest_a_waiting_gate,
        "only an expired gate can be re-requested; this one is pending",
        "it is still waiting: decide it on the release message (Approve or Reject)",
    ),
    (
        "re-request a gate GitHub was told about",
        rerequest_a_protection_rule,
        "GitHub was told the deployment was rejected when this gate expired",
        "re-run its deployment job to open a new gate",
    ),
    (
        "re-request by someone who may not",
        rerequest_by_a_stranger,
        "only S0RELMGRS, S0SREGRPS, U0OWNER01 may re-request checkout",
        f"ask someone from {RELMGRS}, {SRE} or <@U0OWNER01> to do it",
    ),
    (
        "re-request after a newer release",
        rerequest_after_a_newer_release,
        f"superseded by {SHA_C[:7]}",
        f"act on {SHA_C[:7]}'s release message; to send {SHA_B[:7]} to production anyway, "
        f"`/release promote checkout {SHA_B[:7]} to production`",
    ),
]


# Answered without changing or attempting anything: nothing to audit. The grammar of
# `/release` answers a name no service has before any use case runs; a promotion or rollback
# the deployment's state refuses, or a lookup that finds nothing, leaves no trace either.
NOT_AUDITED = frozenset(
    {
        "promote what is not verified yet",
        "promote from the last environment",
        "roll back what is not deployed",
        "roll back with nothing before it",
        "promote into the first environment",
        "promote with nothing deployed before",
        "promote a version never deployed",
        "roll back with nothing deployed",
        "roll back to a version that never ran",
        "roll back to what runs now",
        "unlock what is not locked",
        "unfreeze what is not frozen",
        "freeze of an unknown environment",
        "lock of an unknown environment",
    }
)


@pytest.fixture
def world(
    gated_bot: Bot,
    slack: FakeSlackWebApi,
    github: FakeGitHub,
    clock: FrozenClock,
    slack_server: tuple[FakeSlackWebApi, str],
) -> World:
    return World(gated_bot, slack, github, clock, Slash(gated_bot, slack, slack_server[1]))


@pytest.mark.parametrize(("case", "act", "reason", "remedy"), CASES, ids=[c[0] for c in CASES])
async def test_a_refusal_says_why_and_what_would_make_it_succeed(
    world: World, case: str, act: Act, reason: str, remedy: str
) -> None:
    world.github.commit_author = "someone-else"
    world.github.compare_files = MEDIUM
    await request_gate(world.bot)
    before = refusals_audited(world.bot)

    answer = await act(world)

    assert reason in answer, f"{case}: {answer}"
    assert remedy in answer, f"{case}: {answer}"
    assert answer.index(reason) < answer.index(remedy)  # why first, then what to do
    audited = refusals_audited(world.bot)[len(before) :]
    if case not in NOT_AUDITED:
        assert any(remedy in json.loads(e.details).get("reason", "") for e in audited), case


def refusals_audited(bot: Bot) -> list[AuditEvent]:
    with bot.runtime.db.read() as session:
        events = session.exec(select(AuditEvent).order_by(AuditEvent.seq)).all()
    return [e for e in events if "refused" in e.action]


async def test_the_remedy_is_a_mention_slack_renders_not_an_id(world: World) -> None:
    """The people a remedy names are Slack mentions (`<!subteam^ID>`), which Slack shows as
    the group's handle; the reason keeps the ids the audit trail has always recorded."""
    world.github.compare_files = MEDIUM
    await request_gate(world.bot)
    await click(world.bot, "U0STRANGER", "release_approve", world.gate_id)
    answer = told(world.slack, "U0STRANGER")
    assert answer.count(RELMGRS) == 1
    with world.bot.runtime.db.read() as session:
        [deployment] = session.exec(select(Deployment)).all()
    assert deployment.state == "awaiting_approval"  # refused: nothing changed


def test_a_refused_command_keeps_only_the_mentions_of_its_remedy() -> None:
    """A slash command's refusal is escaped like every reply, except the user and user-group
    mentions the remedy names: `<!channel>` and links stay inert."""
    from bot.blocks.commands import operation_reply
    from bot.services.gates import Outcome

    message = "locked by U0RM2: <!channel> <http://evil.example|x> & co; ask <!subteam^S0RELMGRS>"
    text, said = operation_reply(Outcome("refused", message), service="checkout", user_id="U1")
    assert said is None
    assert text == (
        ":no_entry_sign: locked by U0RM2: &lt;!channel&gt; &lt;http://evil.example|x&gt; "
        "&amp; co; ask <!subteam^S0RELMGRS>"
    )
