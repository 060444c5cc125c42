"""ArgoCDDeployer against a fake Argo CD API server (grpc-gateway style errors)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from bot.domain.errors import DeliveryFailed
from bot.ports import Deployer, DeployRequest
from integrations.deployers.argocd import ArgoCDDeployer
from integrations.http import RetryPolicy, make_client

ARGO = "https://argocd.example"
TOKEN = "eyJhbGciOiJIUzI1NiJ9.argocd-account-token.c2lnbmF0dXJl"
NOW = 1_763_373_600.0
OLD = "9e602444f49b8b69c3a9a51fa97a115f3d323508"
MID = "53e3dbd1c4f0a2f0d9a4c2b1e0f9a8b7c6d5e4f3"
NEW = "f95f852bd8fca8fcc58a9a2d6c842781e32a215e"
APP_PATH = "/api/v1/applications/storefront-prod"


class FakeArgo:
    """Answers like the Argo CD API server; records requests."""

    def __init__(self) -> None:
        self.answers: dict[tuple[str, str], list[httpx.Response]] = {}
        self.requests: list[httpx.Request] = []

    def on(self, method: str, path: str, *answers: httpx.Response) -> None:
        self.answers[(method, path)] = list(answers)

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return grpc_error(401, 16, "invalid session: token signature is invalid")
        queue = self.answers.get((request.method, request.url.path))
        if not queue:
            return grpc_error(
                403, 7, "permission denied: applications, get, default/x, sub: releasebot"
            )
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)


def grpc_error(status: int, code: int, message: str) -> httpx.Response:
    return httpx.Response(status, json={"error": message, "code": code, "message": message})


def application(history: list[dict[str, Any]], *, automated: bool = False) -> dict[str, Any]:
    sync_policy: dict[str, Any] = (
        {"automated": {"prune": True, "selfHeal": True}} if automated else {}
    )
    return {
        "metadata": {"name": "storefront-prod", "namespace": "argocd"},
        "spec": {
            "project": "default",
            "source": {"repoURL": "https://github.com/acme/storefront", "path": "deploy"},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": "shop"},
            "syncPolicy": sync_policy,
        },
        "status": {
            "sync": {"status": "Synced", "revision": history[-1]["revision"] if history else ""},
            "health": {"status": "Healthy"},
            "history": history,
        },
    }


def entry(ident: int, revision: str) -> dict[str, Any]:
    return {
        "id": ident,
        "revision": revision,
        "deployedAt": f"2025-11-1{ident}T10:00:00Z",
        "deployStartedAt": f"2025-11-1{ident}T09:59:50Z",
        "source": {"repoURL": "https://github.com/acme/storefront", "path": "deploy"},
    }


HISTORY = [entry(1, OLD), entry(2, MID), entry(3, OLD), entry(4, NEW)]


def req(action: str, sha: str = NEW, **changes: Any) -> DeployRequest:
    values: dict[str, Any] = {
        "kind": "argocd",
        "action": action,
        "service": "storefront",
        "repo": "acme/storefront",
        "environment": "production",
        "sha": sha,
        "request_id": "rq-argo-1",
        "target": {"app": "storefront-prod"},
    }
    values.update(changes)
    return DeployRequest(**values)


class RecordingSleep:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def fake() -> FakeArgo:
    return FakeArgo()


@pytest.fixture
def sleep() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
async def argo(fake: FakeArgo, sleep: RecordingSleep) -> AsyncIterator[ArgoCDDeployer]:
    client = make_client(ARGO, transport=httpx.MockTransport(fake.handler))
    deployer = ArgoCDDeployer(client, TOKEN, retry=RetryPolicy(sleep=sleep, clock=lambda: NOW))
    yield deployer
    await deployer.aclose()


def test_the_deployer_satisfies_the_port(argo: ArgoCDDeployer) -> None:
    port: Deployer = argo
    assert port is argo


@pytest.mark.parametrize("action", ["promote", "approve"])
async def test_promote_syncs_to_the_revision(
    fake: FakeArgo, argo: ArgoCDDeployer, action: str
) -> None:
    fake.on("POST", f"{APP_PATH}/sync", httpx.Response(200, json=application(HISTORY)))

    result = await argo.execute(req(action))

    [call] = fake.requests
    assert call.headers["authorization"] == f"Bearer {TOKEN}"
    assert json.loads(call.content) == {"revision": NEW, "prune": False}
    assert result.detail == "Argo CD is syncing storefront-prod to f95f852"
    assert result.url == "https://argocd.example/applications/storefront-prod"


async def test_rollback_picks_the_newest_history_entry_of_the_revision(
    fake: FakeArgo, argo: ArgoCDDeployer
) -> None:
    fake.on("GET", APP_PATH, httpx.Response(200, json=application(HISTORY)))
    fake.on("POST", f"{APP_PATH}/rollback", httpx.Response(200, json=application(HISTORY)))

    result = await argo.execute(req("rollback", OLD))

    get, post = fake.requests
    assert (get.method, get.url.path) == ("GET", APP_PATH)
    assert json.loads(post.content) == {"id": 3}  # OLD was deployed as 1 and again as 3
    assert "history id 3" in result.detail


async def test_rollback_accepts_an_abbreviated_sha_and_multi_source_history(
    fake: FakeArgo, argo: ArgoCDDeployer
) -> None:
    history = [
        {"id": 10, "revisions": [OLD, "v1.2.0"], "deployedAt": "2025-11-10T10:00:00Z"},
        {"id": 11, "revisions": [NEW, "v1.3.0"], "deployedAt": "2025-11-11T10:00:00Z"},
    ]
    fake.on("GET", APP_PATH, httpx.Response(200, json=application([*history, entry(12, NEW)])))
    fake.on("POST", f"{APP_PATH}/rollback", httpx.Response(200, json={}))

    await argo.execute(req("rollback", OLD[:7]))

    assert json.loads(fake.requests[-1].content) == {"id": 10}


async def test_a_revision_not_in_the_history_is_refused(
    fake: FakeArgo, argo: ArgoCDDeployer
) -> None:
    fake.on("GET", APP_PATH, httpx.Response(200, json=application(HISTORY)))
    unknown = "0000000000000000000000000000000000000abc"

    with pytest.raises(DeliveryFailed) as caught:
        await argo.execute(req("rollback", unknown))

    assert caught.value.retryable is False
    assert f"revision {unknown} is not in the application's history" in caught.value.reason
    assert len(fake.requests) == 1  # no rollback was attempted


async def test_auto_sync_refuses_a_rollback_with_advice(
    fake: FakeArgo, argo: ArgoCDDeployer
) -> None:
    fake.on("GET", APP_PATH, httpx.Response(200, json=application(HISTORY, automated=True)))
    fake.on(
        "POST",
        f"{APP_PATH}/rollback",
        grpc_error(400, 9, "rollback cannot be initiated when auto-sync is enabled"),
    )

    with pytest.raises(DeliveryFailed) as caught:
        await argo.execute(req("rollback", MID))

    assert caught.value.retryable is False
    assert caught.value.status == 400
    assert "rollback cannot be initiated when auto-sync is enabled" in caught.value.reason
    assert "disable auto-sync on storefront-prod to roll back from releasebot" in (
        caught.value.reason
    )


async def test_another_operation_in_progress_is_retryable_after_30_seconds(
    fake: FakeArgo, argo: ArgoCDDeployer
) -> None:
    fake.on(
        "POST", f"{APP_PATH}/sync", grpc_error(400, 9, "another operation is already in progress")
    )

    with pytest.raises(DeliveryFailed) as caught:
        await argo.execute(req("promote"))

    assert caught.value.retryable is True
    assert caught.value.retry_after == 30
    assert len(fake.requests) == 1


async def test_an_unknown_app_or_no_permission_is_not_retryable(
    fake: FakeArgo, argo: ArgoCDDeployer
) -> None:
    with pytest.raises(DeliveryFailed) as caught:
        await argo.execute(req("promote", target={"app": "nope"}))

    assert caught.value.retryable is False
    assert caught.value.status == 403
    assert "permission denied" in caught.value.reason
    assert "the token may not act on nope" in caught.value.reason


async def test_a_bad_token_is_explained_and_never_shown(
    fake: FakeArgo, sleep: RecordingSleep
) -> None:
    client = make_client(ARGO, transport=httpx.MockTransport(fake.handler))
    wrong = "eyJhbGciOiJIUzI1NiJ9.wrong.c2ln"
    deployer = ArgoCDDeployer(client, wrong, retry=RetryPolicy(sleep=sleep, clock=lambda: NOW))

    with pytest.raises(DeliveryFailed) as caught:
        await deployer.execute(req("promote"))
    await deployer.aclose()

    assert caught.value.retryable is False
    assert "check ARGOCD_TOKEN" in caught.value.reason
    assert wrong not in str(caught.value)


async def test_5xx_is_retried_then_retryable(
    fake: FakeArgo, argo: ArgoCDDeployer, sleep: RecordingSleep
) -> None:
    fake.on(
        "POST",
        f"{APP_PATH}/sync",
        httpx.Response(503, text="upstream connect error"),
        httpx.Response(503, text="upstream connect error"),
        httpx.Response(200, json=application(HISTORY)),
    )

    result = await argo.execute(req("promote"))

    assert result.detail.startswith("Argo CD is syncing")
    assert sleep.calls == [0.5, 1.0]

    fake.on("POST", f"{APP_PATH}/sync", grpc_error(503, 14, "connection refused"))
    with pytest.raises(DeliveryFailed) as caught:
        await argo.execute(req("promote"))
    assert caught.value.retryable is True


async def test_a_429_carries_retry_after(fake: FakeArgo, argo: ArgoCDDeployer) -> None:
    fake.on(
        "POST",
        f"{APP_PATH}/sync",
        httpx.Response(429, headers={"Retry-After": "45"}, text="Too Many Requests"),
    )

    with pytest.raises(DeliveryFailed) as caught:
        await argo.execute(req("promote"))

    assert caught.value.retryable is True
    assert caught.value.retry_after == 45


async def test_reject_asks_nothing_of_argo(fake: FakeArgo, argo: ArgoCDDeployer) -> None:
    result = await argo.execute(req("reject"))

    assert "not asked to sync" in result.detail
    assert fake.requests == []
