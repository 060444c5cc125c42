"""GitHub deployers (protection-rule decisions, workflow_dispatch) against a fake GitHub API."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bot.domain.errors import DeliveryFailed
from bot.ports import Deployer, DeployRequest
from integrations.deployers.github_protection import GitHubProtectionRuleDeployer
from integrations.deployers.github_workflow import GitHubWorkflowDeployer
from integrations.github.client import GITHUB_HEADERS, GitHubAppAuth
from integrations.http import RetryPolicy, make_client

API = "https://api.github.com"
NOW = 1_763_373_600.0  # 2025-11-17T10:00:00Z
TOKEN = "ghp_16C7e42F292c6912E7710c838347Ae178B4a"
INSTALLATION_TOKEN = "ghs_16C7e42F292c6912E7710c838347Ae178B4a"
SHA = "f95f852bd8fca8fcc58a9a2d6c842781e32a215e"
REQUEST_ID = "rq-8f14e45fceea167a"
CALLBACK = f"{API}/repos/acme/checkout/actions/runs/1234567890/deployment_protection_rule"
CALLBACK_PATH = "/repos/acme/checkout/actions/runs/1234567890/deployment_protection_rule"
DISPATCH_PATH = "/repos/acme/checkout/actions/workflows/deploy-production.yml/dispatches"
RUNS_PATH = "/repos/acme/checkout/actions/workflows/deploy-production.yml/runs"
TOKEN_PATH = "/app/installations/42/access_tokens"

NOT_FOUND = {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}

Route = Callable[[httpx.Request], httpx.Response]


class FakeGitHub:
    """Routes (method, path) to answers (a queue per route; the last one repeats)."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], list[Route]] = {}
        self.requests: list[httpx.Request] = []

    def on(self, method: str, path: str, *answers: Route | httpx.Response) -> None:
        self.routes[(method, path)] = [
            _replay(answer) if isinstance(answer, httpx.Response) else answer for answer in answers
        ]

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        queue = self.routes.get((request.method, request.url.path))
        if not queue:
            return httpx.Response(404, json=NOT_FOUND)
        route = queue.pop(0) if len(queue) > 1 else queue[0]
        return route(request)

    def calls(self, method: str, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method and r.url.path == path]


def _replay(response: httpx.Response) -> Route:
    """A route answering a fresh copy of `response` each time."""

    def route(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            response.status_code, headers=response.headers, content=response.content
        )

    return route


def timeout(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("timed out", request=request)


class RecordingSleep:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def request_for(kind: str, action: str, **changes: Any) -> DeployRequest:
    values: dict[str, Any] = {
        "kind": kind,
        "action": action,
        "service": "checkout",
        "repo": "acme/checkout",
        "environment": "production",
        "sha": SHA,
        "request_id": REQUEST_ID,
        "version": "v1.5.0",
        "reason": "canary is green",
        "actor": "Ada Lovelace",
    }
    values.update(changes)
    return DeployRequest(**values)


def decision(action: str = "approve", **context: Any) -> DeployRequest:
    ctx = {"callback_url": CALLBACK, "environment_name": "production", "installation_id": 42}
    ctx.update(context)
    return request_for("github_protection_rule", action, context=ctx)


def dispatch(action: str = "promote", **target: Any) -> DeployRequest:
    tgt: dict[str, Any] = {
        "workflow": "deploy-production.yml",
        "ref": "main",
        "inputs": {"environment": "production"},
    }
    tgt.update(target)
    return request_for("github_workflow", action, target=tgt)


def body_of(request: httpx.Request) -> Any:
    return json.loads(request.content)


def run(run_id: int, title: str) -> dict[str, Any]:
    return {
        "id": run_id,
        "name": "Deploy production",
        "display_title": title,
        "event": "workflow_dispatch",
        "status": "queued",
        "conclusion": None,
        "run_number": 57,
        "html_url": f"https://github.com/acme/checkout/actions/runs/{run_id}",
    }


def runs_answer(*runs: dict[str, Any]) -> httpx.Response:
    return httpx.Response(200, json={"total_count": len(runs), "workflow_runs": list(runs)})


@pytest.fixture
def fake() -> FakeGitHub:
    return FakeGitHub()


@pytest.fixture
def sleep() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
def retry(sleep: RecordingSleep) -> RetryPolicy:
    return RetryPolicy(sleep=sleep, clock=lambda: NOW)


@pytest.fixture(scope="module")
def pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


@pytest.fixture
def app(pem: str, retry: RetryPolicy, fake: FakeGitHub) -> GitHubAppAuth:
    fake.on(
        "POST",
        TOKEN_PATH,
        httpx.Response(
            201,
            json={
                "token": INSTALLATION_TOKEN,
                "expires_at": "2025-11-17T11:00:00Z",
                "permissions": {"deployments": "write", "actions": "write"},
                "repository_selection": "selected",
            },
        ),
    )
    return GitHubAppAuth("123456", pem, now=lambda: NOW, retry=retry)


def client(fake: FakeGitHub, base: str = API) -> httpx.AsyncClient:
    return make_client(
        base, headers=dict(GITHUB_HEADERS), transport=httpx.MockTransport(fake.handler)
    )


@pytest.fixture
async def protection(
    fake: FakeGitHub, app: GitHubAppAuth, retry: RetryPolicy
) -> AsyncIterator[GitHubProtectionRuleDeployer]:
    deployer = GitHubProtectionRuleDeployer(client(fake), app, retry=retry)
    yield deployer
    await deployer.aclose()


@pytest.fixture
async def workflow(
    fake: FakeGitHub, retry: RetryPolicy, sleep: RecordingSleep
) -> AsyncIterator[GitHubWorkflowDeployer]:
    deployer = GitHubWorkflowDeployer(client(fake), TOKEN, retry=retry, sleep=sleep)
    yield deployer
    await deployer.aclose()


# --- protection rule -------------------------------------------------------------------------


def test_the_deployers_satisfy_the_port(
    protection: GitHubProtectionRuleDeployer, workflow: GitHubWorkflowDeployer
) -> None:
    ports: list[Deployer] = [protection, workflow]
    assert len(ports) == 2


async def test_approve_posts_the_decision_with_an_installation_token(
    fake: FakeGitHub, protection: GitHubProtectionRuleDeployer
) -> None:
    fake.on("POST", CALLBACK_PATH, httpx.Response(204))

    result = await protection.execute(decision("approve"))

    [token_call] = fake.calls("POST", TOKEN_PATH)
    assert token_call.headers["authorization"].startswith("Bearer ey")  # the App's JWT
    [call] = fake.calls("POST", CALLBACK_PATH)
    assert str(call.url) == CALLBACK
    assert call.headers["authorization"] == f"Bearer {INSTALLATION_TOKEN}"
    assert call.headers["x-github-api-version"] == "2022-11-28"
    assert call.headers["accept"] == "application/vnd.github+json"
    assert body_of(call) == {
        "environment_name": "production",
        "state": "approved",
        "comment": "Approved in Slack by Ada Lovelace: canary is green",
    }
    assert result.detail == "approved the GitHub deployment protection rule for production"
    assert result.url == "https://github.com/acme/checkout/actions/runs/1234567890"


async def test_reject_posts_rejected(
    fake: FakeGitHub, protection: GitHubProtectionRuleDeployer
) -> None:
    fake.on("POST", CALLBACK_PATH, httpx.Response(204))

    await protection.execute(decision("reject", environment_name="prod-eu"))

    [call] = fake.calls("POST", CALLBACK_PATH)
    assert body_of(call) == {
        "environment_name": "prod-eu",
        "state": "rejected",
        "comment": "Rejected in Slack by Ada Lovelace: canary is green",
    }


@pytest.mark.parametrize(
    "callback",
    [
        "https://evil.example/repos/acme/checkout/actions/runs/1/deployment_protection_rule",
        "http://api.github.com/repos/acme/checkout/actions/runs/1/deployment_protection_rule",
        "https://api.github.com:8443/repos/acme/checkout/actions/runs/1/deployment_protection_rule",
        "https://api.github.com@evil.example/repos/a/b/actions/runs/1/deployment_protection_rule",
        "https://api.github.com/repos/acme/checkout/issues/1",
        "https://api.github.com/repos/acme/checkout/actions/runs/1/../../../../user/keys",
        "/repos/acme/checkout/actions/runs/1/deployment_protection_rule",
        "not a url",
    ],
)
async def test_a_callback_off_the_api_is_refused_before_any_request(
    fake: FakeGitHub, protection: GitHubProtectionRuleDeployer, callback: str
) -> None:
    with pytest.raises(DeliveryFailed) as caught:
        await protection.execute(decision(callback_url=callback))

    assert caught.value.retryable is False
    assert "refusing to send a GitHub token" in caught.value.reason
    assert fake.requests == []  # not even the installation token was fetched


async def test_a_ghes_callback_under_the_api_prefix_is_accepted(
    fake: FakeGitHub, app: GitHubAppAuth, retry: RetryPolicy
) -> None:
    base = "https://ghe.acme.test/api/v3"
    fake.on("POST", f"/api/v3{TOKEN_PATH}", fake.routes[("POST", TOKEN_PATH)][0])
    fake.on("POST", f"/api/v3{CALLBACK_PATH}", httpx.Response(204))
    deployer = GitHubProtectionRuleDeployer(client(fake, base), app, retry=retry)

    result = await deployer.execute(decision(callback_url=f"{base}{CALLBACK_PATH}"))
    await deployer.aclose()

    assert [r.url.path for r in fake.requests] == [
        f"/api/v3{TOKEN_PATH}",
        f"/api/v3{CALLBACK_PATH}",
    ]
    assert result.url == "https://ghe.acme.test/acme/checkout/actions/runs/1234567890"


async def test_an_already_decided_422_counts_as_done(
    fake: FakeGitHub, protection: GitHubProtectionRuleDeployer
) -> None:
    fake.on(
        "POST",
        CALLBACK_PATH,
        httpx.Response(
            422, json={"message": "This deployment protection rule was already approved."}
        ),
    )

    result = await protection.execute(decision())

    assert "already recorded" in result.detail


async def test_any_other_422_is_not_retryable_and_quotes_github(
    fake: FakeGitHub, protection: GitHubProtectionRuleDeployer
) -> None:
    fake.on(
        "POST",
        CALLBACK_PATH,
        httpx.Response(
            422,
            json={
                "message": "Validation Failed",
                "errors": [{"resource": "Environment", "code": "invalid"}],
                "documentation_url": "https://docs.github.com/rest",
            },
        ),
    )

    with pytest.raises(DeliveryFailed) as caught:
        await protection.execute(decision())

    assert caught.value.retryable is False
    assert caught.value.status == 422
    assert "Validation Failed" in caught.value.reason
    assert INSTALLATION_TOKEN not in caught.value.reason


async def test_a_revoked_installation_token_is_replaced_once(
    fake: FakeGitHub, protection: GitHubProtectionRuleDeployer
) -> None:
    fake.on(
        "POST",
        CALLBACK_PATH,
        httpx.Response(401, json={"message": "Bad credentials"}),
        httpx.Response(204),
    )

    await protection.execute(decision())

    assert len(fake.calls("POST", TOKEN_PATH)) == 2
    assert len(fake.calls("POST", CALLBACK_PATH)) == 2


async def test_a_rate_limit_goes_back_with_retry_after(
    fake: FakeGitHub, protection: GitHubProtectionRuleDeployer
) -> None:
    fake.on(
        "POST",
        CALLBACK_PATH,
        httpx.Response(
            403,
            headers={"retry-after": "120"},
            json={"message": "You have exceeded a secondary rate limit."},
        ),
    )

    with pytest.raises(DeliveryFailed) as caught:
        await protection.execute(decision())

    assert caught.value.retryable is True
    assert caught.value.retry_after == 120


async def test_5xx_is_retried_then_retryable(
    fake: FakeGitHub, protection: GitHubProtectionRuleDeployer, sleep: RecordingSleep
) -> None:
    fake.on("POST", CALLBACK_PATH, httpx.Response(502, text="<html>Bad Gateway</html>"))

    with pytest.raises(DeliveryFailed) as caught:
        await protection.execute(decision())

    assert caught.value.retryable is True
    assert caught.value.status == 502
    assert len(fake.calls("POST", CALLBACK_PATH)) == 3
    assert sleep.calls == [0.5, 1.0]  # recorded, never slept


async def test_an_echoed_token_is_blanked(
    fake: FakeGitHub, protection: GitHubProtectionRuleDeployer
) -> None:
    fake.on(
        "POST",
        CALLBACK_PATH,
        httpx.Response(404, json={"message": f"no rule for token {INSTALLATION_TOKEN}"}),
    )

    with pytest.raises(DeliveryFailed) as caught:
        await protection.execute(decision())

    assert caught.value.retryable is False
    assert INSTALLATION_TOKEN not in str(caught.value)
    assert "***" in caught.value.reason


async def test_only_approve_and_reject_are_decisions(
    fake: FakeGitHub, protection: GitHubProtectionRuleDeployer
) -> None:
    with pytest.raises(DeliveryFailed) as caught:
        await protection.execute(decision("promote"))
    assert caught.value.retryable is False
    assert fake.requests == []

    with pytest.raises(DeliveryFailed) as missing:
        await protection.execute(
            request_for("github_protection_rule", "approve", context={"installation_id": 42})
        )
    assert "callback_url" in missing.value.reason


# --- workflow_dispatch -------------------------------------------------------------------------


async def test_dispatch_sends_the_documented_body(
    fake: FakeGitHub, workflow: GitHubWorkflowDeployer
) -> None:
    fake.on("POST", DISPATCH_PATH, httpx.Response(204))

    result = await workflow.execute(dispatch("promote"))

    [call] = fake.requests
    assert call.url.path == DISPATCH_PATH
    assert call.headers["authorization"] == f"Bearer {TOKEN}"
    assert call.headers["x-github-api-version"] == "2022-11-28"
    assert body_of(call) == {
        "ref": "main",
        "inputs": {
            "environment": "production",
            "request_id": REQUEST_ID,
            "sha": SHA,
            "version": "v1.5.0",
            "action": "promote",
        },
        "return_run_details": True,
    }
    assert result.detail.startswith("dispatched deploy-production.yml on main to promote")
    assert result.url is None


async def test_run_details_give_the_run_page(
    fake: FakeGitHub, workflow: GitHubWorkflowDeployer
) -> None:
    fake.on(
        "POST",
        DISPATCH_PATH,
        httpx.Response(
            200,
            json={
                "workflow_run_id": 22222,
                "run_url": f"{API}/repos/acme/checkout/actions/runs/22222",
                "html_url": "https://github.com/acme/checkout/actions/runs/22222",
            },
        ),
    )

    result = await workflow.execute(dispatch("rollback", inputs={}))

    assert result.url == "https://github.com/acme/checkout/actions/runs/22222"
    assert "run 22222" in result.detail
    assert body_of(fake.requests[0])["inputs"]["action"] == "rollback"
    assert body_of(fake.requests[0])["inputs"]["environment"] == "production"


async def test_without_run_details_the_key_is_left_out(
    fake: FakeGitHub, retry: RetryPolicy
) -> None:
    fake.on("POST", DISPATCH_PATH, httpx.Response(204))
    deployer = GitHubWorkflowDeployer(client(fake), TOKEN, retry=retry, return_run_details=False)

    await deployer.execute(dispatch(version=None))
    await deployer.aclose()

    body = body_of(fake.requests[0])
    assert "return_run_details" not in body


async def test_more_than_ten_inputs_are_refused_naming_the_limit(
    fake: FakeGitHub, workflow: GitHubWorkflowDeployer
) -> None:
    extra = {f"input_{i}": str(i) for i in range(6)}  # 6 + our 5 = 11

    with pytest.raises(DeliveryFailed) as caught:
        await workflow.execute(dispatch(inputs=extra))

    assert caught.value.retryable is False
    assert "at most 10" in caught.value.reason
    assert "11" in caught.value.reason
    assert fake.requests == []

    fake.on("POST", DISPATCH_PATH, httpx.Response(204))
    await workflow.execute(dispatch(inputs=dict(list(extra.items())[:5])))  # exactly 10
    assert len(body_of(fake.requests[0])["inputs"]) == 10


async def test_a_timeout_then_the_run_is_found_dispatches_once(
    fake: FakeGitHub, workflow: GitHubWorkflowDeployer, sleep: RecordingSleep
) -> None:
    fake.on("POST", DISPATCH_PATH, timeout, httpx.Response(204))
    fake.on(
        "GET",
        RUNS_PATH,
        runs_answer(run(9001, "Deploy f95f852 (rq-other)"), run(9002, f"Deploy ({REQUEST_ID})")),
    )

    result = await workflow.execute(dispatch())

    assert len(fake.calls("POST", DISPATCH_PATH)) == 1
    [lookup] = fake.calls("GET", RUNS_PATH)
    assert lookup.url.params["event"] == "workflow_dispatch"
    assert lookup.url.params["per_page"] == "30"
    assert lookup.headers["authorization"] == f"Bearer {TOKEN}"
    assert result.url == "https://github.com/acme/checkout/actions/runs/9002"
    assert "not dispatched again" in result.detail
    assert sleep.calls == [3.0]  # waited for GitHub to list the run (recorded, not slept)


async def test_a_timeout_then_no_run_dispatches_exactly_once_more(
    fake: FakeGitHub, workflow: GitHubWorkflowDeployer
) -> None:
    fake.on("POST", DISPATCH_PATH, timeout, httpx.Response(204))
    fake.on("GET", RUNS_PATH, runs_answer(run(9001, "Deploy f95f852 (rq-other)")))

    result = await workflow.execute(dispatch())

    assert len(fake.calls("POST", DISPATCH_PATH)) == 2
    assert len(fake.calls("GET", RUNS_PATH)) == 1
    assert result.detail.startswith("dispatched")


async def test_a_5xx_is_treated_like_a_timeout(
    fake: FakeGitHub, workflow: GitHubWorkflowDeployer
) -> None:
    fake.on("POST", DISPATCH_PATH, httpx.Response(502, text="Bad Gateway"))
    run_by_name = run(9003, "Deploy production")
    run_by_name["name"] = f"Deploy {REQUEST_ID}"
    fake.on("GET", RUNS_PATH, runs_answer(run_by_name))

    result = await workflow.execute(dispatch())

    assert len(fake.calls("POST", DISPATCH_PATH)) == 1  # never re-sent blindly
    assert result.url == "https://github.com/acme/checkout/actions/runs/9003"


async def test_a_second_lost_answer_is_retryable_and_the_retry_looks_first(
    fake: FakeGitHub, workflow: GitHubWorkflowDeployer
) -> None:
    fake.on("POST", DISPATCH_PATH, timeout)
    fake.on("GET", RUNS_PATH, runs_answer())

    with pytest.raises(DeliveryFailed) as caught:
        await workflow.execute(dispatch())

    assert caught.value.retryable is True
    assert len(fake.calls("POST", DISPATCH_PATH)) == 2

    # The outbox retries later; by then GitHub lists the run the second dispatch started.
    fake.on("GET", RUNS_PATH, runs_answer(run(9004, f"Deploy ({REQUEST_ID})")))
    result = await workflow.execute(dispatch())

    assert len(fake.calls("POST", DISPATCH_PATH)) == 2  # no third dispatch
    assert result.url == "https://github.com/acme/checkout/actions/runs/9004"


async def test_a_failed_lookup_does_not_dispatch_blind(
    fake: FakeGitHub, workflow: GitHubWorkflowDeployer
) -> None:
    fake.on("POST", DISPATCH_PATH, timeout)
    fake.on("GET", RUNS_PATH, httpx.Response(503, text="unavailable"))

    with pytest.raises(DeliveryFailed) as caught:
        await workflow.execute(dispatch())

    assert caught.value.retryable is True
    assert "may have started a run" in caught.value.reason
    assert len(fake.calls("POST", DISPATCH_PATH)) == 1


async def test_a_422_is_not_retryable_and_not_looked_up(
    fake: FakeGitHub, workflow: GitHubWorkflowDeployer
) -> None:
    fake.on(
        "POST",
        DISPATCH_PATH,
        httpx.Response(
            422,
            json={
                "message": 'Unexpected inputs provided: ["colour"]',
                "documentation_url": "https://docs.github.com/rest/actions/workflows",
            },
        ),
    )

    with pytest.raises(DeliveryFailed) as caught:
        await workflow.execute(dispatch(inputs={"colour": "blue"}))

    assert caught.value.retryable is False
    assert "Unexpected inputs provided" in caught.value.reason
    assert "check ref 'main'" in caught.value.reason
    assert fake.calls("GET", RUNS_PATH) == []
    assert TOKEN not in caught.value.reason


async def test_a_429_goes_back_with_retry_after_and_no_lookup(
    fake: FakeGitHub, workflow: GitHubWorkflowDeployer
) -> None:
    fake.on(
        "POST",
        DISPATCH_PATH,
        httpx.Response(
            429,
            headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) + 600)},
            json={"message": "API rate limit exceeded"},
        ),
    )

    with pytest.raises(DeliveryFailed) as caught:
        await workflow.execute(dispatch())

    assert caught.value.retryable is True
    assert caught.value.retry_after == 600
    assert len(fake.calls("POST", DISPATCH_PATH)) == 1
    assert fake.calls("GET", RUNS_PATH) == []


async def test_a_404_names_the_workflow(fake: FakeGitHub, workflow: GitHubWorkflowDeployer) -> None:
    with pytest.raises(DeliveryFailed) as caught:
        await workflow.execute(dispatch())

    assert caught.value.retryable is False
    assert "workflow deploy-production.yml not found" in caught.value.reason


async def test_reject_dispatches_nothing(
    fake: FakeGitHub, workflow: GitHubWorkflowDeployer
) -> None:
    result = await workflow.execute(dispatch("reject"))

    assert "no workflow was dispatched" in result.detail
    assert fake.requests == []


async def test_an_app_dispatches_with_its_installation_token(
    fake: FakeGitHub, app: GitHubAppAuth, retry: RetryPolicy
) -> None:
    fake.on("GET", "/repos/acme/checkout/installation", httpx.Response(200, json={"id": 42}))
    fake.on("POST", DISPATCH_PATH, httpx.Response(204))
    deployer = GitHubWorkflowDeployer(client(fake), app, retry=retry)

    await deployer.execute(dispatch("approve"))
    await deployer.aclose()

    assert [r.url.path for r in fake.requests] == [
        "/repos/acme/checkout/installation",
        TOKEN_PATH,
        DISPATCH_PATH,
    ]
    assert fake.requests[-1].headers["authorization"] == f"Bearer {INSTALLATION_TOKEN}"
    assert body_of(fake.requests[-1])["inputs"]["action"] == "approve"
