"""GitLab deployments waiting for approval, decided in Slack or in GitLab, through the real app.

GitLab's webhooks come in with `X-Gitlab-Token`, Slack clicks are signed as Slack signs them,
and a fake GitLab API at the network edge answers the deployments and approval calls as
GitLab does (paths, `PRIVATE-TOKEN`, 201 `{user,status,created_at,comment}`, errors as
`{"message": ...}`).
"""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from sqlmodel import col, select

from bot.app import Overrides
from bot.config import Config
from bot.config.loading import parse_config
from bot.scheduling import gate_sweep
from bot.store.tables import Deployment, Gate
from integrations.sandbox.webapi import FakeSlackWebApi
from tests.conftest import Bot, BotFactory
from tests.fakes import FakeEdge, FrozenClock
from tests.helpers import (
    GITLAB_TOKEN,
    SHA_A,
    encode,
    example_config_data,
    fixture,
    gitlab_headers,
    gitlab_job,
    rows,
)
from tests.slackflow import buttons, click, submit_reason, told
from tests.test_app_home import open_home
from tests.test_slash_commands import Slash, shown

API_TOKEN = "glpat-approver-token-for-tests"
CHANNEL = "#ledger-deploys"
PROJECT_ID = 31537070  # the Job Hook fixture's project
HOOK_PROJECT_ID = 30  # the Deployment Hook fixture's project


class FakeGitLab:
    """GitLab's REST API for one project (by id or path): deployments, their approvals, and
    their jobs (played as GitLab plays them: a `manual` job is enqueued, a started one is
    refused as unplayable, a finished one would be retried, which releasebot must never ask)."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.deployments: dict[int, dict[str, Any]] = {}
        self.jobs: dict[int, dict[str, Any]] = {}
        self.refusal: tuple[int, str] | None = None  # what POST .../approval answers instead
        self.play_refusal: tuple[int, str] | None = None  # what POST .../play answers instead
        self.outage_at_play = 0  # the next play is carried out, then this many answers are lost
        self._lost = 0

    def hold(
        self,
        deployment_id: int,
        *,
        environment: str = "production",
        sha: str = SHA_A,
        approvals: int = 1,
    ) -> None:
        """A deployment GitLab blocks until `approvals` more are given; its job waits in
        `manual` (and stays there once approved, as with approval rules)."""
        job_id = 3580121210 + deployment_id
        job = {
            "id": job_id,
            "status": "manual",
            "name": "deploy",
            "web_url": f"https://gitlab.com/acme/ledger/-/jobs/{job_id}",
        }
        self.jobs[job_id] = job
        self.deployments[deployment_id] = {
            "id": deployment_id,
            "iid": deployment_id - 10,
            "ref": "main",
            "sha": sha,
            "status": "blocked",
            "created_at": "2026-11-16T10:00:00.000Z",
            "environment": {"id": 4, "name": environment},
            "deployable": job,
            "user": {"username": "jsmithy2"},
            "approvals": [],
            "pending_approval_count": approvals,
        }

    def plays(self) -> list[str]:
        """The path of every job play sent."""
        return [unquote(r.url.path) for r in self.calls("POST", "/play")]

    def calls(self, method: str, suffix: str) -> list[httpx.Request]:
        return [
            r for r in self.requests if r.method == method and unquote(r.url.path).endswith(suffix)
        ]

    def approvals(self) -> list[tuple[str, dict[str, Any]]]:
        """(the approval path, its body) of every approval sent, as GitLab received them."""
        return [
            (unquote(r.url.path), json.loads(r.content))
            for r in self.requests
            if r.method == "POST" and r.url.path.endswith("/approval")
        ]

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self._answer(request)
        if request.url.path.endswith("/play") and self.outage_at_play:
            self._lost, self.outage_at_play = self.outage_at_play, 0
        if self._lost > 0:
            self._lost -= 1
            raise httpx.ReadTimeout("the answer was lost", request=request)
        return answer

    def _answer(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("private-token") != API_TOKEN:
            return httpx.Response(401, json={"message": "401 Unauthorized"})
        parts = request.url.raw_path.decode().split("?", 1)[0].split("/")
        # /api/v4/projects/<id or path>/<rest...>
        if parts[1:4] != ["api", "v4", "projects"] or unquote(parts[4]) not in (
            str(PROJECT_ID),
            str(HOOK_PROJECT_ID),
            "acme/ledger",
        ):
            return httpx.Response(404, json={"message": "404 Project Not Found"})
        rest = parts[5:]
        if rest == ["deployments"] and request.method == "GET":
            return self._list(request.url.params)
        if len(rest) == 2 and rest[0] == "deployments" and request.method == "GET":
            found = self.deployments.get(int(rest[1]))
            if found is None:
                return httpx.Response(404, json={"message": "404 Not found"})
            return httpx.Response(200, json=found)
        if len(rest) == 3 and rest[2] == "approval" and request.method == "POST":
            return self._approve(int(rest[1]), json.loads(request.content))
        if rest[:2] == ["repository", "commits"]:
            return self._commit(rest)
        if rest[:1] == ["jobs"] and int(rest[1]) in self.jobs:
            job = self.jobs[int(rest[1])]
            if rest[2:] == ["play"] and request.method == "POST":
                return self._play(job)
            if len(rest) == 2 and request.method == "GET":
                return httpx.Response(200, json=job)
        return httpx.Response(404, json={"message": "404 Not Found"})

    def _play(self, job: dict[str, Any]) -> httpx.Response:
        if self.play_refusal is not None:
            status, message = self.play_refusal
            return httpx.Response(status, json={"message": message})
        if job["status"] == "manual":
            job["status"] = "pending"
            return httpx.Response(200, json=job)
        if job["status"] in ("success", "failed", "canceled"):
            job["status"] = "retried"  # GitLab would run it again: a second deploy
            return httpx.Response(200, json=job)
        return httpx.Response(400, json={"message": "400 Bad request - Unplayable Job"})

    def _list(self, params: httpx.QueryParams) -> httpx.Response:
        found = [
            d
            for d in self.deployments.values()
            if d["environment"]["name"] == params.get("environment", d["environment"]["name"])
            and d["status"] == params.get("status", d["status"])
        ]
        found.sort(key=lambda d: d["id"], reverse=params.get("sort") == "desc")
        return httpx.Response(200, json=found)

    def _approve(self, deployment_id: int, body: dict[str, Any]) -> httpx.Response:
        deployment = self.deployments.get(deployment_id)
        if deployment is None:
            return httpx.Response(404, json={"message": "404 Not found"})
        if self.refusal is not None:
            status, message = self.refusal
            return httpx.Response(status, json={"message": message})
        if deployment["status"] != "blocked" or deployment["pending_approval_count"] <= 0:
            return httpx.Response(
                400, json={"message": "This deployment is not waiting for approvals."}
            )
        if body["status"] == "approved":
            deployment["pending_approval_count"] -= 1
        approval = {
            "user": {"id": 77, "username": "releasebot-approver", "name": "Release Bot"},
            "status": body["status"],
            "created_at": "2026-11-16T10:05:00.000Z",
            "comment": body.get("comment"),
        }
        deployment["approvals"].append(approval)
        return httpx.Response(201, json=approval)

    def _commit(self, rest: list[str]) -> httpx.Response:
        if rest[-1] in ("diff", "merge_requests"):  # no merge request brought the commit in
            return httpx.Response(200, json=[])
        return httpx.Response(
            200,
            json={
                "id": rest[2],
                "message": "Post ledger entries in batches",
                "author_name": "Dev One",
                "author_email": "dev.one@acme.example",
                "created_at": "2026-11-16T09:00:00Z",
                "web_url": f"https://gitlab.com/acme/ledger/-/commit/{rest[2]}",
            },
        )


def ledger_config(*, deploy: dict[str, Any] | None = None) -> Config:
    """ledger goes staging -> production; production's gate is GitLab's (one release
    manager approves) unless `deploy` says otherwise."""
    data = example_config_data()
    data["services"]["ledger"]["environments"] = [
        {"name": "staging", "track": {"gitlab_environment": "staging"}},
        {
            "name": "production",
            "track": {"gitlab_environment": "production"},
            "gate": {"approvals": 1, "approvers": ["S0RELMGRS"]},
            "deploy": deploy or {"gitlab_deployment_approval": {}},
        },
    ]
    return parse_config(data)


@pytest.fixture
def gitlab() -> FakeGitLab:
    return FakeGitLab()


@pytest.fixture
def make_bot(bot_factory: BotFactory, clock: FrozenClock, gitlab: FakeGitLab) -> Callable[..., Any]:
    edge = FakeEdge()

    def route(request: httpx.Request) -> httpx.Response:
        if request.url.host == "gitlab.com":
            return gitlab.handle(request)
        return edge.transport.handle_request(request)

    def make(**config: Any) -> Any:
        overrides = Overrides(
            clock=clock,
            start_scheduler=False,
            run_outbox_worker=False,
            process_before_response=True,
            http_transport=httpx.MockTransport(route),
            environ={"LEDGER_TRIGGER_TOKEN": "glptt-trigger"},
            config=ledger_config(**config),
        )
        env = {"GITLAB_WEBHOOK_TOKEN": GITLAB_TOKEN, "GITLAB_TOKEN": API_TOKEN}
        return bot_factory(env=env, overrides=overrides)

    return make


@pytest.fixture
async def bot(make_bot: Callable[..., Any]) -> AsyncIterator[Bot]:
    async with make_bot() as running:
        yield running


def deployment_hook(status: str, deployment_id: int = 15, sha: str = SHA_A) -> dict[str, Any]:
    """The published Deployment Hook, for ledger's production at `sha`."""
    body = copy.deepcopy(fixture("gitlab", "deployment_hook__docs-success.json"))
    body["project"]["path_with_namespace"] = "acme/ledger"
    body.update(
        status=status, deployment_id=deployment_id, environment="production", short_sha=sha[:8]
    )
    return body


async def gitlab_sends(bot: Bot, event: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = await bot.post("/webhooks/gitlab", encode(body), gitlab_headers(event))
    assert answer.status_code == 202, answer.text
    await bot.send_outbox()
    result: dict[str, Any] = answer.json()
    return result


def gates(bot: Bot) -> list[Gate]:
    with bot.runtime.db.read() as session:
        return list(session.exec(select(Gate).order_by(col(Gate.id))).all())


def production(bot: Bot) -> Deployment:
    [found] = [d for d in rows(bot, Deployment) if d.environment == "production"]
    return found


def approval_section(slack: FakeSlackWebApi) -> str:
    message = slack.messages(CHANNEL)[-1]
    [text] = [
        b["text"]["text"]
        for b in message["blocks"]
        if b["type"] == "section" and b.get("text", {}).get("text", "").startswith("*Approval*")
    ]
    return str(text)


def thread(slack: FakeSlackWebApi) -> str:
    message = slack.messages(CHANNEL)[-1]
    return json.dumps(slack.thread(CHANNEL, message["ts"]))


# --- a deployment waiting for approval opens a gate ------------------------------------------


async def test_a_blocked_deployment_hook_opens_a_gate_that_slack_approves_in_gitlab(
    bot: Bot, slack: FakeSlackWebApi, gitlab: FakeGitLab
) -> None:
    gitlab.hold(15)
    answer = await gitlab_sends(bot, "Deployment Hook", deployment_hook("blocked"))
    assert answer["status"] == "accepted"

    [gate] = gates(bot)
    assert gate.status == "pending"
    assert gate.decide_via == "gitlab_deployment_approval"
    assert gate.context["gitlab_project"] == str(HOOK_PROJECT_ID)
    assert gate.context["gitlab_deployment_id"] == "15"
    assert (production(bot).sha, production(bot).state) == (SHA_A, "awaiting_approval")
    [message] = slack.messages(CHANNEL)
    assert "release_approve" in buttons(message)

    # GitLab sending the same wait again (a job hook, a retry) opens no second gate.
    await gitlab_sends(bot, "Deployment Hook", deployment_hook("blocked"))
    assert len(gates(bot)) == 1

    await click(bot, "U0RM1", "release_approve", gate.id or 0)
    [(path, body)] = gitlab.approvals()
    assert path == f"/api/v4/projects/{HOOK_PROJECT_ID}/deployments/15/approval"
    assert body["status"] == "approved"
    assert body["comment"].startswith("Approved in Slack by")
    [gate] = gates(bot)
    assert (gate.status, gate.decided_by) == ("approved", "U0RM1")
    assert "GitLab recorded it as approved by releasebot-approver" in thread(slack)
    assert ":white_check_mark:" in approval_section(slack)

    # The job then runs: its deployment moves on, and the gate stays decided in Slack.
    gitlab.deployments[15]["status"] = "running"
    await gitlab_sends(bot, "Deployment Hook", deployment_hook("running"))
    assert production(bot).state == "in_progress"
    gitlab.deployments[15]["status"] = "success"
    await gitlab_sends(bot, "Deployment Hook", deployment_hook("success"))
    assert production(bot).state == "succeeded"
    [gate] = gates(bot)
    assert (gate.status, gate.decided_by) == ("approved", "U0RM1")
    assert len(gitlab.approvals()) == 1


async def test_a_manual_job_opens_its_blocked_deployments_gate_and_a_reject_carries_the_reason(
    bot: Bot, slack: FakeSlackWebApi, gitlab: FakeGitLab
) -> None:
    gitlab.hold(40, sha="e" * 40)  # another commit waiting in production
    gitlab.hold(41)
    gitlab.hold(42, environment="staging")
    answer = await gitlab_sends(bot, "Job Hook", gitlab_job("manual"))
    assert answer["detail"] == "the deployment waiting for approval is being looked up"

    [listing] = gitlab.calls("GET", f"/projects/{PROJECT_ID}/deployments")
    assert dict(listing.url.params) == {
        "environment": "production",
        "status": "blocked",
        "order_by": "id",
        "sort": "desc",
        "per_page": "100",
    }
    assert listing.headers["private-token"] == API_TOKEN
    [gate] = gates(bot)
    assert gate.context["gitlab_project"] == str(PROJECT_ID)
    assert gate.context["gitlab_deployment_id"] == "41"
    assert production(bot).state == "awaiting_approval"

    await click(bot, "U0RM1", "release_reject", gate.id or 0)
    await submit_reason(bot, slack, "U0RM1", "the ledger migration is not reviewed")
    [(path, body)] = gitlab.approvals()
    assert path == f"/api/v4/projects/{PROJECT_ID}/deployments/41/approval"
    assert body["status"] == "rejected"
    assert body["comment"].endswith(": the ledger migration is not reviewed")
    [gate] = gates(bot)
    assert gate.status == "rejected"
    assert production(bot).state == "rejected"
    assert "GitLab recorded it as rejected by releasebot-approver" in thread(slack)


async def test_a_manual_job_nothing_blocks_is_a_job_not_run_yet(
    bot: Bot, gitlab: FakeGitLab
) -> None:
    await gitlab_sends(bot, "Job Hook", gitlab_job("manual"))
    assert gitlab.calls("GET", f"/projects/{PROJECT_ID}/deployments")
    assert gates(bot) == []
    assert production(bot).state == "pending"


async def test_only_an_environment_whose_gate_is_gitlabs_opens_one(
    make_bot: Callable[..., Any], gitlab: FakeGitLab
) -> None:
    trigger = {"gitlab_trigger": {"project": "acme/ledger", "ref": "main", "token_env": "T"}}
    gitlab.hold(15)
    async with make_bot(deploy=trigger) as bot:
        answer = await gitlab_sends(bot, "Job Hook", gitlab_job("manual"))
        assert answer["status"] == "accepted"
        assert gitlab.calls("GET", "/deployments") == []  # nothing to look up
        await gitlab_sends(bot, "Deployment Hook", deployment_hook("blocked"))
        assert gates(bot) == []
        assert production(bot).state == "pending"
    assert gitlab.approvals() == []


# --- GitLab refuses ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "message", "explained"),
    [
        (403, "403 Forbidden", "may not approve deployments of this environment"),
        (400, "You cannot approve your own deployment.", "GitLab refused the decision"),
    ],
)
async def test_an_approval_gitlab_refuses_is_shown_as_refused(
    bot: Bot,
    slack: FakeSlackWebApi,
    gitlab: FakeGitLab,
    status: int,
    message: str,
    explained: str,
) -> None:
    gitlab.hold(15)
    gitlab.refusal = (status, message)
    await gitlab_sends(bot, "Deployment Hook", deployment_hook("blocked"))
    await click(bot, "U0RM1", "release_approve", gates(bot)[0].id or 0)

    assert len(gitlab.approvals()) == 1  # refused for good: not retried
    approval = approval_section(slack)
    assert approval.startswith(
        "*Approval*\n:warning: The pipeline refused the approval by <@U0RM1>"
    )
    assert str(status) in approval and message in approval and explained in approval
    assert ":white_check_mark:" not in approval
    assert "Could not approve through gitlab deployment approval" in thread(slack)
    assert gates(bot)[0].context["pipeline_refused"]


# --- decided in GitLab -----------------------------------------------------------------------


async def test_a_deployment_approved_and_run_in_gitlab_closes_the_gate_and_moves_on(
    bot: Bot, slack: FakeSlackWebApi, gitlab: FakeGitLab
) -> None:
    gitlab.hold(15)
    await gitlab_sends(bot, "Deployment Hook", deployment_hook("blocked"))
    assert gates(bot)[0].status == "pending"

    gitlab.deployments[15]["status"] = "running"
    await gitlab_sends(bot, "Deployment Hook", deployment_hook("running"))
    [gate] = gates(bot)
    assert (gate.status, gate.decided_by) == ("approved", "gitlab")
    assert gate.reason == "superseded by the pipeline: it reported the deployment in progress"
    assert production(bot).state == "in_progress"

    gitlab.deployments[15]["status"] = "success"
    await gitlab_sends(bot, "Deployment Hook", deployment_hook("success"))
    assert production(bot).state == "succeeded"
    assert gitlab.approvals() == []  # GitLab decided; nothing is sent back

    [message] = slack.messages(CHANNEL)
    assert "release_approve" not in buttons(message)
    assert "superseded by the pipeline" in json.dumps(message["blocks"])
    home = await open_home(bot, slack, "U0RM1")
    assert "release_approve" not in json.dumps(home)


@pytest.mark.parametrize("status", ["canceled", "failed"])
async def test_a_deployment_rejected_or_canceled_in_gitlab_ends_the_gate_as_rejected(
    bot: Bot, slack: FakeSlackWebApi, gitlab: FakeGitLab, status: str
) -> None:
    gitlab.hold(15)
    await gitlab_sends(bot, "Deployment Hook", deployment_hook("blocked"))
    gitlab.deployments[15]["status"] = status
    await gitlab_sends(bot, "Deployment Hook", deployment_hook(status))
    [gate] = gates(bot)
    assert (gate.status, gate.decided_by) == ("rejected", "gitlab")
    assert gate.reason == "superseded by the pipeline: it reported the deployment failed"
    assert production(bot).state == "rejected"
    assert gitlab.approvals() == []
    assert "release_approve" not in buttons(slack.messages(CHANNEL)[0])


# --- promotion -----------------------------------------------------------------------------


async def deployed_to_staging(bot: Bot) -> Deployment:
    await gitlab_sends(bot, "Job Hook", gitlab_job("success", environment="staging"))
    [staging] = rows(bot, Deployment)
    assert (staging.environment, staging.state) == ("staging", "succeeded")
    return staging


async def test_promote_from_a_click_approves_the_waiting_gitlab_deployment_of_that_commit(
    bot: Bot, slack: FakeSlackWebApi, gitlab: FakeGitLab
) -> None:
    staging = await deployed_to_staging(bot)
    gitlab.hold(52)
    await click(bot, "U0RM1", "release_promote", staging.id or 0)
    promoted = production(bot)
    assert (promoted.sha, promoted.state) == (SHA_A, "awaiting_approval")
    [gate] = gates(bot)
    assert (gate.decide_via, gate.context["on_approve"]) == (
        "gitlab_deployment_approval",
        "promote",
    )
    assert gitlab.approvals() == []  # nothing goes to GitLab before the gate is passed

    await click(bot, "U0RM2", "release_approve", gate.id or 0)
    [listing] = gitlab.calls("GET", "/projects/acme/ledger/deployments")
    assert listing.url.params["environment"] == "production"
    [(path, body)] = gitlab.approvals()
    assert path == "/api/v4/projects/acme/ledger/deployments/52/approval"
    assert body["status"] == "approved" and body["comment"].startswith("Approved in Slack by")
    assert "GitLab recorded it as approved" in thread(slack)

    # GitLab then runs that deployment: its hooks move the promoted deployment on.
    gitlab.deployments[52]["status"] = "running"
    await gitlab_sends(bot, "Deployment Hook", deployment_hook("running", deployment_id=52))
    assert production(bot).id == promoted.id
    assert production(bot).state == "in_progress"


async def test_promote_by_command_with_nothing_waiting_in_gitlab_is_shown_as_refused(
    bot: Bot,
    slack: FakeSlackWebApi,
    gitlab: FakeGitLab,
    slack_server: tuple[FakeSlackWebApi, str],
) -> None:
    await deployed_to_staging(bot)
    slash = Slash(bot, slack, slack_server[1])
    reply = shown(await slash("U0RM1", "promote ledger latest to production", channel=CHANNEL))
    assert f"promoting {SHA_A[:7]} to production" in reply
    [gate] = gates(bot)

    await click(bot, "U0RM2", "release_approve", gate.id or 0)
    assert gitlab.approvals() == []
    approval = approval_section(slack)
    assert approval.startswith(
        "*Approval*\n:warning: The pipeline refused the approval by <@U0RM2>"
    )
    assert "no GitLab deployment of" in approval and "waits for approval" in approval


async def promoted_gate(bot: Bot, gitlab: FakeGitLab, *, waiting: bool) -> Gate:
    """ledger's staging release promoted to production, whose gate waits; GitLab
    holds that commit's production deployment (52) when `waiting`, and another commit's (53)."""
    staging = await deployed_to_staging(bot)
    if waiting:
        gitlab.hold(52)
    gitlab.hold(53, sha="e" * 40)
    await click(bot, "U0RM1", "release_promote", staging.id or 0)
    [gate] = gates(bot)
    assert (gate.decide_via, gate.context["on_approve"]) == (
        "gitlab_deployment_approval",
        "promote",
    )
    return gate


async def test_rejecting_a_promotion_gate_rejects_gitlabs_waiting_deployment_of_that_commit(
    bot: Bot, slack: FakeSlackWebApi, gitlab: FakeGitLab
) -> None:
    gate = await promoted_gate(bot, gitlab, waiting=True)

    await click(bot, "U0RM2", "release_reject", gate.id or 0)
    await submit_reason(bot, slack, "U0RM2", "the ledger migration is not reviewed")

    [(path, body)] = gitlab.approvals()
    assert path == "/api/v4/projects/acme/ledger/deployments/52/approval"  # not 53's
    assert body["status"] == "rejected"
    assert body["comment"] == "Rejected in Slack by U0RM2: the ledger migration is not reviewed"
    assert gitlab.deployments[53]["approvals"] == []
    [gate] = gates(bot)
    assert (gate.status, gate.decided_by) == ("rejected", "U0RM2")
    assert "pipeline_refused" not in gate.context
    assert production(bot).state == "rejected"
    assert "GitLab recorded it as rejected by releasebot-approver" in thread(slack)
    assert ":no_entry: Rejected by <@U0RM2>" in approval_section(slack)


async def test_rejecting_a_promotion_gate_with_nothing_waiting_in_gitlab_sends_nothing(
    bot: Bot, slack: FakeSlackWebApi, gitlab: FakeGitLab
) -> None:
    gate = await promoted_gate(bot, gitlab, waiting=False)

    await click(bot, "U0RM2", "release_reject", gate.id or 0)
    await submit_reason(bot, slack, "U0RM2", "not this week")

    assert gitlab.calls("GET", "/projects/acme/ledger/deployments")  # it looked
    assert gitlab.approvals() == []  # and sent nothing: 53 is another commit
    said = thread(slack)
    assert "nothing was waiting in GitLab" in said
    assert "reject sent" not in said
    [gate] = gates(bot)
    assert gate.status == "rejected" and "pipeline_refused" not in gate.context
    assert ":no_entry: Rejected by <@U0RM2>" in approval_section(slack)


async def expire(bot: Bot, clock: FrozenClock, gate: Gate) -> None:
    assert gate.expires_at is not None
    clock.advance(seconds=(gate.expires_at - gate.created_at).total_seconds() + 1)
    await gate_sweep(bot.runtime)
    await bot.send_outbox()


async def test_an_expired_promotion_gate_rejects_gitlabs_waiting_deployment_and_says_so(
    bot: Bot, slack: FakeSlackWebApi, gitlab: FakeGitLab, clock: FrozenClock
) -> None:
    gate = await promoted_gate(bot, gitlab, waiting=True)

    await expire(bot, clock, gate)

    [(path, body)] = gitlab.approvals()
    assert path == "/api/v4/projects/acme/ledger/deployments/52/approval"
    assert body["status"] == "rejected"
    assert body["comment"].endswith(": nobody decided in time")
    assert gates(bot)[0].status == "expired"
    said = thread(slack)
    assert "reject sent. rejected GitLab deployment 52 of acme/ledger" in said
    assert "GitLab recorded it as rejected" in said

    await click(bot, "U0RM1", "release_rerequest", gate.id or 0)
    answer = told(slack, "U0RM1")
    assert "GitLab was told to reject the deployment of this commit waiting" in answer
    assert "run the deployment job again in GitLab and promote again" in answer


async def test_an_expired_promotion_gate_with_nothing_waiting_in_gitlab_says_nothing_was_sent(
    bot: Bot, slack: FakeSlackWebApi, gitlab: FakeGitLab, clock: FrozenClock
) -> None:
    gate = await promoted_gate(bot, gitlab, waiting=False)

    await expire(bot, clock, gate)

    assert gitlab.approvals() == []
    assert gates(bot)[0].status == "expired"
    said = thread(slack)
    assert (
        f"nothing was waiting in GitLab: no deployment of {SHA_A[:7]} to production in "
        "acme/ledger waits for approval, so no rejection was sent"
    ) in said
    assert "reject sent" not in said
    assert "GitLab was told the deployment was rejected" not in said
