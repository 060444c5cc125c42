"""JenkinsDeployer against a fake Jenkins: buildWithParameters, then the queue item."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from bot.domain.errors import DeliveryFailed
from bot.ports import Deployer, DeployRequest
from integrations.deployers.jenkins import JenkinsDeployer, job_path
from integrations.http import RetryPolicy, make_client

JENKINS = "https://ci.acme.test/jenkins/"
USER = "releasebot"
API_TOKEN = "11a2b3c4d5e6f708192a3b4c5d6e7f8091"
SHA = "f95f852bd8fca8fcc58a9a2d6c842781e32a215e"
NOW = 1_763_373_600.0
BUILD_PATH = "/jenkins/job/payments/job/deploy-prod/buildWithParameters"
QUEUE_URL = "https://ci.acme.test/jenkins/queue/item/4711/"
QUEUE_PATH = "/jenkins/queue/item/4711/api/json"
BUILD_URL = "https://ci.acme.test/jenkins/job/payments/job/deploy-prod/93/"


def waiting(why: str = "In the quiet period. Expires in 4.9 sec") -> dict[str, Any]:
    return {
        "_class": "hudson.model.Queue$WaitingItem",
        "blocked": False,
        "buildable": False,
        "id": 4711,
        "inQueueSince": 1763373600000,
        "params": f"\nREQUEST_ID=rq-jenkins-1\nSHA={SHA}",
        "stuck": False,
        "task": {"_class": "hudson.model.FreeStyleProject", "name": "deploy-prod"},
        "url": "queue/item/4711/",
        "why": why,
    }


def left(executable: dict[str, Any] | None, cancelled: bool = False) -> dict[str, Any]:
    return {
        "_class": "hudson.model.Queue$LeftItem",
        "blocked": False,
        "buildable": False,
        "id": 4711,
        "cancelled": cancelled,
        "executable": executable,
        "url": "queue/item/4711/",
        "why": None,
    }


STARTED = left({"_class": "hudson.model.FreeStyleBuild", "number": 93, "url": BUILD_URL})


class FakeJenkins:
    """Checks basic auth, answers a build request with 201 + Location, then the queue item."""

    def __init__(self, user: str = USER, token: str = API_TOKEN) -> None:
        self.auth = "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()
        self.build: list[httpx.Response] = [
            httpx.Response(201, headers={"Location": QUEUE_URL, "Content-Length": "0"})
        ]
        self.queue: list[httpx.Response] = [httpx.Response(200, json=STARTED)]
        self.requests: list[httpx.Request] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.headers.get("authorization") != self.auth:
            return httpx.Response(
                401,
                headers={"Content-Type": "text/html"},
                text="<html><body>Invalid password/token for user: releasebot</body></html>",
            )
        if request.method == "POST" and request.url.path == BUILD_PATH:
            return self._next(self.build)
        if request.method == "GET" and request.url.path == QUEUE_PATH:
            return self._next(self.queue)
        return httpx.Response(404, text="<html><body>Not Found</body></html>")

    @staticmethod
    def _next(answers: list[httpx.Response]) -> httpx.Response:
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)

    def polls(self) -> int:
        return sum(1 for r in self.requests if r.url.path == QUEUE_PATH)


class RecordingSleep:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def req(action: str = "promote", **target: Any) -> DeployRequest:
    tgt: dict[str, Any] = {"job": "payments/deploy-prod"}
    tgt.update(target)
    return DeployRequest(
        kind="jenkins",
        action=action,
        service="payments",
        repo="acme/payments",
        environment="production",
        sha=SHA,
        request_id="rq-jenkins-1",
        version="3.1.0",
        target=tgt,
    )


@pytest.fixture
def fake() -> FakeJenkins:
    return FakeJenkins()


@pytest.fixture
def sleep() -> RecordingSleep:
    return RecordingSleep()


def client(fake: FakeJenkins) -> httpx.AsyncClient:
    return make_client(JENKINS, transport=httpx.MockTransport(fake.handler))


@pytest.fixture
async def jenkins(fake: FakeJenkins, sleep: RecordingSleep) -> AsyncIterator[JenkinsDeployer]:
    deployer = JenkinsDeployer(
        client(fake),
        USER,
        API_TOKEN,
        sleep=sleep,
        poll_interval=2.0,
        max_polls=5,
        retry=RetryPolicy(sleep=sleep, clock=lambda: NOW),
    )
    yield deployer
    await deployer.aclose()


def test_the_deployer_satisfies_the_port(jenkins: JenkinsDeployer) -> None:
    port: Deployer = jenkins
    assert port is jenkins


def test_folders_become_nested_job_paths() -> None:
    assert job_path("deploy") == "/job/deploy"
    assert job_path("payments/deploy-prod") == "/job/payments/job/deploy-prod"
    assert job_path("/a/b c/") == "/job/a/job/b%20c"
    with pytest.raises(DeliveryFailed):
        job_path("a/../b")


async def test_build_with_parameters_then_the_queue_gives_the_build(
    fake: FakeJenkins, jenkins: JenkinsDeployer, sleep: RecordingSleep
) -> None:
    fake.queue = [
        httpx.Response(200, json=waiting()),
        httpx.Response(200, json=waiting("Waiting for next available executor")),
        httpx.Response(200, json=STARTED),
    ]

    result = await jenkins.execute(req("rollback", params={"REGION": "eu-west-1", "DRY": False}))

    build = fake.requests[0]
    assert build.method == "POST"
    assert build.url.path == BUILD_PATH
    assert dict(build.url.params) == {
        "REGION": "eu-west-1",
        "DRY": "false",
        "REQUEST_ID": "rq-jenkins-1",
        "SHA": SHA,
        "VERSION": "3.1.0",
        "ACTION": "rollback",
        "ENVIRONMENT": "production",
    }
    assert build.headers["authorization"] == fake.auth
    assert "jenkins-crumb" not in build.headers  # an API token needs no crumb
    assert fake.polls() == 3
    assert all(r.headers["authorization"] == fake.auth for r in fake.requests)
    assert sleep.calls == [2.0, 2.0]  # between polls; recorded, never slept
    assert result.url == BUILD_URL
    assert result.detail.startswith("Jenkins started build #93 of payments/deploy-prod")


async def test_a_cancelled_queue_item_is_not_retryable(
    fake: FakeJenkins, jenkins: JenkinsDeployer
) -> None:
    fake.queue = [httpx.Response(200, json=waiting()), httpx.Response(200, json=left(None, True))]

    with pytest.raises(DeliveryFailed) as caught:
        await jenkins.execute(req())

    assert caught.value.retryable is False
    assert "cancelled" in caught.value.reason
    assert API_TOKEN not in caught.value.reason


async def test_polling_that_runs_out_reports_queued(
    fake: FakeJenkins, jenkins: JenkinsDeployer, sleep: RecordingSleep
) -> None:
    fake.queue = [httpx.Response(200, json=waiting("Waiting for next available executor"))]

    result = await jenkins.execute(req())

    assert fake.polls() == 5
    assert sleep.calls == [2.0] * 4
    assert result.detail.startswith("queued")
    assert result.url == QUEUE_URL


async def test_an_expired_queue_item_still_reports_queued(
    fake: FakeJenkins, jenkins: JenkinsDeployer
) -> None:
    fake.queue = [httpx.Response(404, text="<html>Not Found</html>")]

    result = await jenkins.execute(req())

    assert result.detail.startswith("queued")
    assert result.url == QUEUE_URL
    assert sum(1 for r in fake.requests if r.method == "POST") == 1


async def test_a_queue_url_on_another_host_is_not_polled(
    fake: FakeJenkins, jenkins: JenkinsDeployer
) -> None:
    elsewhere = "https://evil.example/jenkins/queue/item/4711/"
    fake.build = [httpx.Response(201, headers={"Location": elsewhere})]

    result = await jenkins.execute(req())

    assert len(fake.requests) == 1  # the credentials went nowhere else
    assert result.detail.startswith("queued")
    assert result.url == elsewhere


async def test_a_target_may_name_its_own_credentials(sleep: RecordingSleep) -> None:
    fake = FakeJenkins(user="payments-bot", token="payments-token-0123456789")
    env = {
        "PAYMENTS_JENKINS_USER": "payments-bot",
        "PAYMENTS_JENKINS_TOKEN": "payments-token-0123456789",
    }
    deployer = JenkinsDeployer(client(fake), None, None, secrets=env, sleep=sleep)

    result = await deployer.execute(
        req(user_env="PAYMENTS_JENKINS_USER", token_env="PAYMENTS_JENKINS_TOKEN")
    )

    assert result.url == BUILD_URL
    with pytest.raises(DeliveryFailed) as missing:
        await deployer.execute(req(user_env="PAYMENTS_JENKINS_USER", token_env="UNSET_TOKEN"))
    assert "environment variable UNSET_TOKEN is not set" in missing.value.reason
    with pytest.raises(DeliveryFailed) as none:
        await deployer.execute(req())
    assert "no Jenkins credentials" in none.value.reason
    await deployer.aclose()


async def test_bad_credentials_are_explained_and_never_shown(sleep: RecordingSleep) -> None:
    fake = FakeJenkins()
    wrong = "00000000000000000000000000deadbeef"
    deployer = JenkinsDeployer(client(fake), USER, wrong, sleep=sleep)

    with pytest.raises(DeliveryFailed) as caught:
        await deployer.execute(req())
    await deployer.aclose()

    assert caught.value.retryable is False
    assert caught.value.status == 401
    assert "check JENKINS_USER and JENKINS_API_TOKEN" in caught.value.reason
    assert wrong not in str(caught.value)
    assert base64.b64encode(f"{USER}:{wrong}".encode()).decode() not in str(caught.value)


async def test_a_403_is_not_retryable(fake: FakeJenkins, jenkins: JenkinsDeployer) -> None:
    fake.build = [
        httpx.Response(
            403,
            text="<html><body>releasebot is missing the Job/Build permission</body></html>",
        )
    ]

    with pytest.raises(DeliveryFailed) as caught:
        await jenkins.execute(req())

    assert caught.value.retryable is False
    assert "Job/Build" in caught.value.reason


async def test_a_5xx_build_request_is_sent_once_and_retryable(
    fake: FakeJenkins, jenkins: JenkinsDeployer, sleep: RecordingSleep
) -> None:
    fake.build = [httpx.Response(503, text="<html>Jenkins is getting ready to work</html>")]

    with pytest.raises(DeliveryFailed) as caught:
        await jenkins.execute(req())

    assert caught.value.retryable is True
    assert len(fake.requests) == 1
    assert sleep.calls == []


async def test_a_429_carries_retry_after(fake: FakeJenkins, jenkins: JenkinsDeployer) -> None:
    fake.build = [httpx.Response(429, headers={"Retry-After": "90"}, text="slow down")]

    with pytest.raises(DeliveryFailed) as caught:
        await jenkins.execute(req())

    assert caught.value.retryable is True
    assert caught.value.retry_after == 90


async def test_reject_builds_nothing(fake: FakeJenkins, jenkins: JenkinsDeployer) -> None:
    result = await jenkins.execute(req("reject"))

    assert "no Jenkins build" in result.detail
    assert fake.requests == []
