"""GitLab deployers (deployment approval, pipeline trigger) against a fake GitLab API."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import httpx
import pytest

from bot.domain.errors import DeliveryFailed
from bot.ports import Deployer, DeployRequest
from integrations.deployers.gitlab_approval import GitLabApprovalDeployer, GitLabTriggerDeployer
from integrations.http import RetryPolicy, make_client

API = "https://gitlab.example/api/v4"
NOW = 1_763_373_600.0
TOKEN = "glpat-Zq3xY8bW1kLmN0pQrStU"
TRIGGER_TOKEN = "glptt-0123456789abcdef0123456789abcdef01234567"
SHA = "f95f852bd8fca8fcc58a9a2d6c842781e32a215e"
REQUEST_ID = "rq-c9f0f895fb98ab91"
APPROVAL_PATH = "/api/v4/projects/acme%2Fledger/deployments/15/approval"
DEPLOYMENT_PATH = "/api/v4/projects/acme%2Fledger/deployments/15"
TRIGGER_PATH = "/api/v4/projects/acme%2Fledger/trigger/pipeline"

Route = Callable[[httpx.Request], httpx.Response]


class FakeGitLab:
    """Routes (method, raw path) to answers (a queue per route; the last one repeats)."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], list[Route]] = {}
        self.requests: list[httpx.Request] = []

    def on(self, method: str, path: str, *answers: Route | httpx.Response) -> None:
        self.routes[(method, path)] = [
            _replay(answer) if isinstance(answer, httpx.Response) else answer for answer in answers
        ]

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.raw_path.decode().split("?", 1)[0]
        queue = self.routes.get((request.method, path))
        if not queue:
            return httpx.Response(404, json={"message": "404 Project Not Found"})
        route = queue.pop(0) if len(queue) > 1 else queue[0]
        return route(request)


def _replay(response: httpx.Response) -> Route:
    """A route answering a fresh copy of `response` each time."""

    def route(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            response.status_code, headers=response.headers, content=response.content
        )

    return route


class RecordingSleep:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def req(kind: str, action: str, **changes: Any) -> DeployRequest:
    values: dict[str, Any] = {
        "kind": kind,
        "action": action,
        "service": "ledger",
        "repo": "acme/ledger",
        "environment": "production",
        "sha": SHA,
        "request_id": REQUEST_ID,
        "version": "2.4.1",
        "reason": "change window open",
        "actor": "Grace Hopper",
    }
    values.update(changes)
    return DeployRequest(**values)


def approval(action: str = "approve", **context: Any) -> DeployRequest:
    ctx: dict[str, Any] = {"gitlab_project": "acme/ledger", "gitlab_deployment_id": 15}
    ctx.update(context)
    return req("gitlab_deployment_approval", action, context=ctx)


def trigger(action: str = "promote", **target: Any) -> DeployRequest:
    tgt = {"project": "acme/ledger", "ref": "main", "token_env": "LEDGER_TRIGGER_TOKEN"}
    tgt.update(target)
    return req("gitlab_trigger", action, target=tgt)


def approval_answer(status: str, comment: str) -> httpx.Response:
    return httpx.Response(
        201,
        json={
            "user": {
                "id": 100,
                "username": "releasebot",
                "name": "Release Bot",
                "state": "active",
                "avatar_url": "https://www.gravatar.com/avatar/x?s=80&d=identicon",
                "web_url": "https://gitlab.example/releasebot",
            },
            "status": status,
            "created_at": "2025-11-17T10:00:00.000Z",
            "comment": comment,
        },
    )


def pipeline_answer(pipeline_id: int = 287) -> httpx.Response:
    return httpx.Response(
        201,
        json={
            "id": pipeline_id,
            "iid": 12,
            "project_id": 3,
            "sha": SHA,
            "ref": "main",
            "status": "created",
            "source": "trigger",
            "web_url": f"https://gitlab.example/acme/ledger/-/pipelines/{pipeline_id}",
        },
    )


@pytest.fixture
def fake() -> FakeGitLab:
    return FakeGitLab()


@pytest.fixture
def sleep() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
def retry(sleep: RecordingSleep) -> RetryPolicy:
    return RetryPolicy(sleep=sleep, clock=lambda: NOW)


def client(fake: FakeGitLab) -> httpx.AsyncClient:
    return make_client(
        API, headers={"Accept": "application/json"}, transport=httpx.MockTransport(fake.handler)
    )


@pytest.fixture
async def approver(fake: FakeGitLab, retry: RetryPolicy) -> AsyncIterator[GitLabApprovalDeployer]:
    deployer = GitLabApprovalDeployer(client(fake), TOKEN, retry=retry)
    yield deployer
    await deployer.aclose()


@pytest.fixture
async def triggerer(fake: FakeGitLab, retry: RetryPolicy) -> AsyncIterator[GitLabTriggerDeployer]:
    deployer = GitLabTriggerDeployer(
        client(fake), {"LEDGER_TRIGGER_TOKEN": TRIGGER_TOKEN}, retry=retry
    )
    yield deployer
    await deployer.aclose()


# --- approval ----------------------------------------------------------------------------------


def test_the_deployers_satisfy_the_port(
    approver: GitLabApprovalDeployer, triggerer: GitLabTriggerDeployer
) -> None:
    ports: list[Deployer] = [approver, triggerer]
    assert len(ports) == 2


async def test_approve_posts_the_approval(
    fake: FakeGitLab, approver: GitLabApprovalDeployer
) -> None:
    comment = "Approved in Slack by Grace Hopper: change window open"
    fake.on("POST", APPROVAL_PATH, approval_answer("approved", comment))

    # Only the approval: `run_job: false` leaves starting the job to people in GitLab.
    result = await approver.execute(replace(approval(), target={"run_job": False}))

    [call] = fake.requests
    assert call.headers["private-token"] == TOKEN
    assert "authorization" not in call.headers
    assert json.loads(call.content) == {"status": "approved", "comment": comment}
    assert result.detail == (
        "approved GitLab deployment 15 of acme/ledger: GitLab recorded it as approved by releasebot"
    )


async def test_reject_with_a_numeric_project_and_a_rule(
    fake: FakeGitLab, approver: GitLabApprovalDeployer
) -> None:
    path = "/api/v4/projects/3/deployments/15/approval"
    fake.on("POST", path, approval_answer("rejected", "x"))

    result = await approver.execute(
        approval("reject", gitlab_project=3, gitlab_deployment_id="15", gitlab_represented_as="QA")
    )

    body = json.loads(fake.requests[0].content)
    assert body == {
        "status": "rejected",
        "comment": "Rejected in Slack by Grace Hopper: change window open",
        "represented_as": "QA",
    }
    assert result.detail.startswith("rejected GitLab deployment 15")


async def test_not_waiting_is_done_when_gitlab_holds_our_decision(
    fake: FakeGitLab, approver: GitLabApprovalDeployer
) -> None:
    comment = "Approved in Slack by Grace Hopper: change window open"
    fake.on(
        "POST",
        APPROVAL_PATH,
        httpx.Response(400, json={"message": "This deployment is not waiting for approvals."}),
    )
    fake.on(
        "GET",
        DEPLOYMENT_PATH,
        httpx.Response(
            200,
            json={
                "id": 15,
                "iid": 7,
                "ref": "main",
                "sha": SHA,
                "status": "running",
                "pending_approval_count": 0,
                "approvals": [
                    {
                        "user": {"id": 100, "username": "releasebot"},
                        "status": "approved",
                        "created_at": "2025-11-17T09:59:58.000Z",
                        "comment": comment,
                    }
                ],
            },
        ),
    )

    result = await approver.execute(approval())

    assert "already recorded" in result.detail
    assert fake.requests[-1].headers["private-token"] == TOKEN


async def test_not_waiting_without_our_decision_is_a_refusal(
    fake: FakeGitLab, approver: GitLabApprovalDeployer
) -> None:
    fake.on(
        "POST",
        APPROVAL_PATH,
        httpx.Response(400, json={"message": "This deployment is not waiting for approvals."}),
    )
    fake.on(
        "GET",
        DEPLOYMENT_PATH,
        httpx.Response(200, json={"id": 15, "sha": SHA, "status": "canceled", "approvals": []}),
    )

    with pytest.raises(DeliveryFailed) as caught:
        await approver.execute(approval())

    assert caught.value.retryable is False
    assert caught.value.status == 400
    assert "This deployment is not waiting for approvals." in caught.value.reason


async def test_a_self_approval_ban_is_not_retryable(
    fake: FakeGitLab, approver: GitLabApprovalDeployer
) -> None:
    message = (
        "You cannot approve your own deployment. This configuration can be adjusted in the "
        "protected environment settings."
    )
    fake.on("POST", APPROVAL_PATH, httpx.Response(400, json={"message": message}))

    with pytest.raises(DeliveryFailed) as caught:
        await approver.execute(approval())

    assert caught.value.retryable is False
    assert "You cannot approve your own deployment" in caught.value.reason
    assert len(fake.requests) == 1


async def test_permission_errors_are_explained(
    fake: FakeGitLab, approver: GitLabApprovalDeployer
) -> None:
    fake.on(
        "POST",
        APPROVAL_PATH,
        httpx.Response(
            403,
            json={
                "message": "You don't have permission to approve this deployment. Contact the "
                "project or group owner for help."
            },
        ),
    )

    with pytest.raises(DeliveryFailed) as caught:
        await approver.execute(approval())

    assert caught.value.retryable is False
    assert "may not approve deployments" in caught.value.reason
    assert TOKEN not in caught.value.reason


async def test_a_429_carries_retry_after(
    fake: FakeGitLab, approver: GitLabApprovalDeployer
) -> None:
    fake.on(
        "POST",
        APPROVAL_PATH,
        httpx.Response(
            429,
            headers={"Retry-After": "60", "RateLimit-Remaining": "0"},
            text="Retry later",
        ),
    )

    with pytest.raises(DeliveryFailed) as caught:
        await approver.execute(approval())

    assert caught.value.retryable is True
    assert caught.value.retry_after == 60


async def test_a_500_is_retried_then_retryable(
    fake: FakeGitLab, approver: GitLabApprovalDeployer, sleep: RecordingSleep
) -> None:
    fake.on(
        "POST", APPROVAL_PATH, httpx.Response(500, json={"message": "500 Internal Server Error"})
    )

    with pytest.raises(DeliveryFailed) as caught:
        await approver.execute(approval())

    assert caught.value.retryable is True
    assert len(fake.requests) == 3
    assert sleep.calls == [0.5, 1.0]


async def test_a_reject_must_name_the_deployment(
    fake: FakeGitLab, approver: GitLabApprovalDeployer
) -> None:
    with pytest.raises(DeliveryFailed) as caught:
        await approver.execute(
            req("gitlab_deployment_approval", "reject", context={"gitlab_project": "acme/ledger"})
        )
    assert caught.value.retryable is False
    assert "gitlab_deployment_id" in caught.value.reason
    assert fake.requests == []


def blocked(deployment_id: int, sha: str = SHA, status: str = "blocked") -> dict[str, Any]:
    """One deployment as `GET /projects/:id/deployments` lists it."""
    return {
        "id": deployment_id,
        "iid": deployment_id - 10,
        "ref": "main",
        "sha": sha,
        "status": status,
        "environment": {"id": 9, "name": "production"},
        "deployable": {"id": 700 + deployment_id, "status": "manual"},
    }


@pytest.mark.parametrize("action", ["promote", "approve"])
async def test_promote_approves_the_deployment_of_that_commit_waiting_in_gitlab(
    fake: FakeGitLab, approver: GitLabApprovalDeployer, action: str
) -> None:
    listed = [blocked(31, sha="e" * 40), blocked(30), blocked(29)]
    fake.on("GET", "/api/v4/projects/acme%2Fledger/deployments", httpx.Response(200, json=listed))
    path = "/api/v4/projects/acme%2Fledger/deployments/30/approval"
    fake.on("POST", path, approval_answer("approved", "x"))

    result = await approver.execute(
        req(
            "gitlab_deployment_approval",
            action,
            target={"environment": "prod-eu", "run_job": False},
            context={},
        )
    )

    listing, decision = fake.requests
    assert dict(listing.url.params) == {
        "environment": "prod-eu",
        "status": "blocked",
        "order_by": "id",
        "sort": "desc",
        "per_page": "100",
    }
    assert listing.headers["private-token"] == TOKEN
    assert json.loads(decision.content) == {
        "status": "approved",
        "comment": "Approved in Slack by Grace Hopper: change window open",
    }
    assert result.detail.startswith("approved GitLab deployment 30 of acme/ledger")


async def test_promote_with_nothing_waiting_approves_nothing(
    fake: FakeGitLab, approver: GitLabApprovalDeployer
) -> None:
    listed = [blocked(31, sha="e" * 40)]
    fake.on("GET", "/api/v4/projects/acme%2Fledger/deployments", httpx.Response(200, json=listed))

    with pytest.raises(DeliveryFailed) as caught:
        await approver.execute(approval("promote", gitlab_deployment_id=None))

    assert caught.value.retryable is False
    assert caught.value.reason == (
        f"no GitLab deployment of {SHA[:7]} to production in acme/ledger waits for approval: "
        "run its pipeline up to the deploy job first"
    )
    assert [r.method for r in fake.requests] == ["GET"]


# --- trigger -----------------------------------------------------------------------------------


async def test_trigger_sends_token_ref_and_variables(
    fake: FakeGitLab, triggerer: GitLabTriggerDeployer
) -> None:
    fake.on("POST", TRIGGER_PATH, pipeline_answer())

    result = await triggerer.execute(trigger("rollback"))

    [call] = fake.requests
    assert "private-token" not in call.headers  # the trigger token is the only credential
    assert call.url.query == b""  # and it is not in the URL
    assert json.loads(call.content) == {
        "token": TRIGGER_TOKEN,
        "ref": "main",
        "variables": {
            "REQUEST_ID": REQUEST_ID,
            "SHA": SHA,
            "VERSION": "2.4.1",
            "ACTION": "rollback",
            "ENVIRONMENT": "production",
        },
    }
    assert result.url == "https://gitlab.example/acme/ledger/-/pipelines/287"
    assert result.detail.startswith("triggered pipeline 287 of acme/ledger on main to rollback")


async def test_trigger_reads_the_token_through_a_lookup(
    fake: FakeGitLab, retry: RetryPolicy
) -> None:
    fake.on("POST", TRIGGER_PATH, pipeline_answer())
    asked: list[str] = []

    def lookup(name: str) -> str | None:
        asked.append(name)
        return TRIGGER_TOKEN

    deployer = GitLabTriggerDeployer(client(fake), lookup, retry=retry)
    await deployer.execute(trigger())
    await deployer.aclose()

    assert asked == ["LEDGER_TRIGGER_TOKEN"]


async def test_a_missing_trigger_token_names_the_variable(
    fake: FakeGitLab, retry: RetryPolicy
) -> None:
    deployer = GitLabTriggerDeployer(client(fake), {"LEDGER_TRIGGER_TOKEN": ""}, retry=retry)

    with pytest.raises(DeliveryFailed) as caught:
        await deployer.execute(trigger())
    await deployer.aclose()

    assert caught.value.retryable is False
    assert "environment variable LEDGER_TRIGGER_TOKEN is not set" in caught.value.reason
    assert fake.requests == []


async def test_a_wrong_trigger_token_is_not_retryable_and_not_shown(
    fake: FakeGitLab, triggerer: GitLabTriggerDeployer
) -> None:
    fake.on(
        "POST",
        TRIGGER_PATH,
        httpx.Response(404, json={"message": f"404 Not Found (token {TRIGGER_TOKEN})"}),
    )

    with pytest.raises(DeliveryFailed) as caught:
        await triggerer.execute(trigger())

    assert caught.value.retryable is False
    assert TRIGGER_TOKEN not in str(caught.value)
    assert "LEDGER_TRIGGER_TOKEN" in caught.value.reason


async def test_a_bad_ref_quotes_gitlab(fake: FakeGitLab, triggerer: GitLabTriggerDeployer) -> None:
    fake.on(
        "POST",
        TRIGGER_PATH,
        httpx.Response(400, json={"message": {"base": ["Reference not found"]}}),
    )

    with pytest.raises(DeliveryFailed) as caught:
        await triggerer.execute(trigger(ref="nope"))

    assert caught.value.retryable is False
    assert "Reference not found" in caught.value.reason


async def test_a_trigger_is_sent_once_on_a_5xx(
    fake: FakeGitLab, triggerer: GitLabTriggerDeployer, sleep: RecordingSleep
) -> None:
    fake.on("POST", TRIGGER_PATH, httpx.Response(502, text="Bad Gateway"))

    with pytest.raises(DeliveryFailed) as caught:
        await triggerer.execute(trigger())

    assert caught.value.retryable is True
    assert len(fake.requests) == 1  # not idempotent: never re-sent in place
    assert sleep.calls == []


async def test_a_rate_limited_trigger_carries_retry_after(
    fake: FakeGitLab, triggerer: GitLabTriggerDeployer
) -> None:
    fake.on("POST", TRIGGER_PATH, httpx.Response(429, headers={"Retry-After": "5"}, text="slow"))

    with pytest.raises(DeliveryFailed) as caught:
        await triggerer.execute(trigger())

    assert caught.value.retryable is True
    assert caught.value.retry_after == 5


async def test_reject_triggers_nothing(fake: FakeGitLab, triggerer: GitLabTriggerDeployer) -> None:
    result = await triggerer.execute(trigger("reject"))

    assert "no pipeline" in result.detail
    assert fake.requests == []
