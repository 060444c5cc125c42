"""The GitLab approval deployer runs the approved deployment's manual job, once.

Against a fake GitLab API answering as GitLab does: the deployment with
`pending_approval_count` and its `deployable`, `POST .../jobs/:id/play` answering 200 with the
job, `400 Unplayable Job` for a job already started, and answers lost on the way back.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import httpx
import pytest

from bot.domain.errors import DeliveryFailed
from bot.ports import DeployResult
from bot.receipts import run_id
from integrations.deployers.gitlab_approval import GitLabApprovalDeployer
from tests.test_deployers_gitlab import (
    APPROVAL_PATH,
    DEPLOYMENT_PATH,
    TOKEN,
    FakeGitLab,
    approval,
    approval_answer,
    approver,
    blocked,
    fake,
    req,
    retry,
    sleep,
)

__all__ = ["approver", "fake", "retry", "sleep"]  # the fixtures, shared

JOB = 715
JOB_PATH = f"/api/v4/projects/acme%2Fledger/jobs/{JOB}"
PLAY_PATH = f"{JOB_PATH}/play"
JOB_URL = f"https://gitlab.example/acme/ledger/-/jobs/{JOB}"
COMMENT = "Approved in Slack by Grace Hopper: change window open"
NOT_WAITING = httpx.Response(400, json={"message": "This deployment is not waiting for approvals."})


def job(status: str) -> dict[str, Any]:
    return {"id": JOB, "name": "deploy", "status": status, "stage": "deploy", "web_url": JOB_URL}


def deployment(job_status: str = "manual", *, pending: int = 0, **extra: Any) -> dict[str, Any]:
    """Deployment 15 as `GET /projects/:id/deployments/:id` returns it on GitLab Premium."""
    return {
        **blocked(15),
        "deployable": job(job_status),
        "pending_approval_count": pending,
        "approvals": [],
        **extra,
    }


def ok(body: Any, status: int = 200) -> httpx.Response:
    return httpx.Response(status, json=body)


def lost(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("the answer was lost", request=request)


def sent(fake: FakeGitLab, method: str, path: str) -> list[httpx.Request]:
    return [r for r in fake.requests if r.method == method and r.url.raw_path.decode() == path]


async def test_an_approval_that_unblocks_plays_the_manual_job_once(
    fake: FakeGitLab, approver: GitLabApprovalDeployer
) -> None:
    fake.on("POST", APPROVAL_PATH, approval_answer("approved", COMMENT))
    fake.on("GET", DEPLOYMENT_PATH, ok(deployment()))
    fake.on("POST", PLAY_PATH, ok(job("pending")))

    result = await approver.execute(approval())

    assert [(r.method, r.url.raw_path.decode()) for r in fake.requests] == [
        ("POST", APPROVAL_PATH),
        ("GET", DEPLOYMENT_PATH),
        ("POST", PLAY_PATH),
    ]
    assert all(r.headers["private-token"] for r in fake.requests)
    assert result.detail == (
        "approved GitLab deployment 15 of acme/ledger: GitLab recorded it as approved by "
        "releasebot; ran job 715 (deploy): GitLab has it pending"
    )
    assert result.url == JOB_URL
    assert run_id(result) == str(JOB)


async def test_promote_plays_the_job_of_the_deployment_it_approved(
    fake: FakeGitLab, approver: GitLabApprovalDeployer
) -> None:
    fake.on("GET", "/api/v4/projects/acme%2Fledger/deployments", ok([blocked(15)]))
    fake.on("POST", APPROVAL_PATH, approval_answer("approved", COMMENT))
    fake.on("GET", DEPLOYMENT_PATH, ok(deployment(status="blocked")))
    fake.on("POST", PLAY_PATH, ok(job("pending")))

    result = await approver.execute(req("gitlab_deployment_approval", "promote"))

    assert len(sent(fake, "POST", PLAY_PATH)) == 1
    assert result.url == JOB_URL and "ran job 715" in result.detail


@pytest.mark.parametrize(
    ("pending", "said"), [(1, "GitLab waits for 1 more approval"), (2, "2 more approvals")]
)
async def test_approvals_still_missing_play_nothing_and_say_how_many(
    fake: FakeGitLab, approver: GitLabApprovalDeployer, pending: int, said: str
) -> None:
    fake.on("POST", APPROVAL_PATH, approval_answer("approved", COMMENT))
    fake.on("GET", DEPLOYMENT_PATH, ok(deployment(pending=pending)))

    result = await approver.execute(approval())

    assert sent(fake, "POST", PLAY_PATH) == []
    assert said in result.detail
    assert result.detail.endswith("so job 715 (deploy) was not run")
    assert result.url is None


async def test_without_a_count_a_blocked_deployment_still_waits(
    fake: FakeGitLab, approver: GitLabApprovalDeployer
) -> None:
    waiting = deployment()
    del waiting["pending_approval_count"]
    fake.on("POST", APPROVAL_PATH, approval_answer("approved", COMMENT))
    fake.on("GET", DEPLOYMENT_PATH, ok(waiting))

    result = await approver.execute(approval())

    assert sent(fake, "POST", PLAY_PATH) == []
    assert "GitLab still waits for approvals" in result.detail


async def test_only_an_approve_with_run_job_plays_the_job(
    fake: FakeGitLab, approver: GitLabApprovalDeployer
) -> None:
    fake.on("POST", APPROVAL_PATH, approval_answer("approved", COMMENT))
    fake.on("GET", DEPLOYMENT_PATH, ok(deployment()))
    fake.on("POST", PLAY_PATH, ok(job("pending")))

    only_approved = await approver.execute(replace(approval(), target={"run_job": False}))
    await approver.execute(approval("reject"))

    assert [r.method for r in fake.requests] == ["POST", "POST"]  # the two decisions alone
    assert only_approved.url is None and "job" not in only_approved.detail

    played = await approver.execute(replace(approval(), target={"run_job": True}))

    assert len(sent(fake, "POST", PLAY_PATH)) == 1
    assert played.url == JOB_URL


@pytest.mark.parametrize("status", ["pending", "running", "success"])
async def test_a_job_already_started_is_done_and_not_played(
    fake: FakeGitLab, approver: GitLabApprovalDeployer, status: str
) -> None:
    fake.on("POST", APPROVAL_PATH, approval_answer("approved", COMMENT))
    fake.on("GET", DEPLOYMENT_PATH, ok(deployment(status)))

    result = await approver.execute(approval())

    assert sent(fake, "POST", PLAY_PATH) == []
    assert f"job 715 (deploy) was already {status} in GitLab, so it was not run again" in (
        result.detail
    )
    assert run_id(result) == str(JOB)


@pytest.mark.parametrize("status", ["failed", "canceled"])
async def test_a_failed_or_canceled_job_is_a_clear_refusal_not_a_replay(
    fake: FakeGitLab, approver: GitLabApprovalDeployer, status: str
) -> None:
    fake.on("POST", APPROVAL_PATH, approval_answer("approved", COMMENT))
    fake.on("GET", DEPLOYMENT_PATH, ok(deployment(status)))

    with pytest.raises(DeliveryFailed) as caught:
        await approver.execute(approval())

    assert caught.value.retryable is False
    assert caught.value.reason == (
        "GitLab recorded the approval of deployment 15, but its job did not run: "
        f"GitLab job 715 (deploy) is {status} ({JOB_URL}): releasebot does not run it again; "
        "retry it in GitLab if the deployment should go ahead"
    )
    assert sent(fake, "POST", PLAY_PATH) == []


async def test_a_lost_play_answer_is_checked_and_the_job_not_played_again(
    fake: FakeGitLab, approver: GitLabApprovalDeployer
) -> None:
    fake.on("POST", APPROVAL_PATH, approval_answer("approved", COMMENT))
    fake.on("GET", DEPLOYMENT_PATH, ok(deployment()))
    fake.on("POST", PLAY_PATH, lost)
    fake.on("GET", JOB_PATH, ok(job("running")))

    result = await approver.execute(approval())

    assert len(sent(fake, "POST", PLAY_PATH)) == 1  # sent once, never retried in place
    assert "job 715 (deploy) was already running in GitLab" in result.detail
    assert result.url == JOB_URL


async def test_a_retry_after_a_lost_answer_finds_the_job_started_and_plays_nothing(
    fake: FakeGitLab, approver: GitLabApprovalDeployer
) -> None:
    """GitLab played the job but its answer, and the check after it, were lost: the outbox
    sends the whole request again, which finds the decision recorded and the job started."""
    fake.on("POST", APPROVAL_PATH, approval_answer("approved", COMMENT), NOT_WAITING)
    ours = {"user": {"username": "releasebot"}, "status": "approved", "comment": COMMENT}
    fake.on(
        "GET",
        DEPLOYMENT_PATH,
        ok(deployment()),
        ok(deployment("pending", approvals=[ours])),
    )
    fake.on("POST", PLAY_PATH, lost)
    fake.on("GET", JOB_PATH, lost)

    with pytest.raises(DeliveryFailed) as caught:
        await approver.execute(approval())
    assert caught.value.retryable is True
    assert "GitLab recorded the approval of deployment 15" in caught.value.reason
    assert len(sent(fake, "GET", JOB_PATH)) == 1  # one look, no in-place retries

    again = await approver.execute(approval())

    assert len(sent(fake, "POST", PLAY_PATH)) == 1
    assert "already recorded this decision" in again.detail
    assert "job 715 (deploy) was already pending in GitLab, so it was not run again" in (
        again.detail
    )
    assert run_id(again) == str(JOB)


async def test_an_unplayable_answer_for_a_job_that_started_is_done(
    fake: FakeGitLab, approver: GitLabApprovalDeployer
) -> None:
    fake.on("POST", APPROVAL_PATH, approval_answer("approved", COMMENT))
    fake.on("GET", DEPLOYMENT_PATH, ok(deployment()))
    fake.on("POST", PLAY_PATH, ok({"message": "400 Bad request - Unplayable Job"}, 400))
    fake.on("GET", JOB_PATH, ok(job("running")))

    result = await approver.execute(approval())

    assert "job 715 (deploy) was already running in GitLab" in result.detail


async def test_a_token_that_may_not_deploy_is_told_what_it_needs(
    fake: FakeGitLab, approver: GitLabApprovalDeployer
) -> None:
    fake.on("POST", APPROVAL_PATH, approval_answer("approved", COMMENT))
    fake.on("GET", DEPLOYMENT_PATH, ok(deployment()))
    fake.on("POST", PLAY_PATH, ok({"message": "403 Forbidden"}, 403))
    fake.on("GET", JOB_PATH, ok(job("manual")))

    with pytest.raises(DeliveryFailed) as caught:
        await approver.execute(approval())

    assert caught.value.retryable is False and caught.value.status == 403
    assert "403 Forbidden" in caught.value.reason
    assert "Developer role or more and deploy access to the protected environment" in (
        caught.value.reason
    )
    assert TOKEN not in caught.value.reason


def test_a_receipt_names_a_gitlab_job_by_its_page() -> None:
    assert run_id(DeployResult(detail="ran job", url=JOB_URL)) == str(JOB)
    assert run_id(DeployResult(detail="x", url="https://gitlab.example/g/sub/p/-/jobs/42")) == "42"
