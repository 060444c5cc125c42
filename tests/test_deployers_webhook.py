"""WebhookDeployer against a fake receiver that checks signatures, and the deployer registry."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bot.domain.errors import DeliveryFailed
from bot.ports import Deployer, DeployRequest
from bot.settings import load_settings
from integrations.deployers.argocd import ArgoCDDeployer
from integrations.deployers.github_protection import GitHubProtectionRuleDeployer
from integrations.deployers.github_workflow import GitHubWorkflowDeployer
from integrations.deployers.gitlab_approval import GitLabApprovalDeployer, GitLabTriggerDeployer
from integrations.deployers.jenkins import JenkinsDeployer
from integrations.deployers.registry import build_deployers, close_all
from integrations.deployers.webhook import WebhookDeployer, sign
from integrations.http import RetryPolicy, make_client

SECRET = "whsec-payments-7c1e4f0d2b9a"
URL = "http://127.0.0.1:9320/deploy"
SHA = "f95f852bd8fca8fcc58a9a2d6c842781e32a215e"
NOW = 1_763_373_600.0


class Receiver:
    """Answers like a deploy hook that verifies `X-Releasebot-Signature` over the raw body."""

    def __init__(self, secret: str = SECRET) -> None:
        self.secret = secret
        self.requests: list[httpx.Request] = []
        self.answers: list[httpx.Response] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        expected = (
            "sha256=" + hmac.new(self.secret.encode(), request.content, hashlib.sha256).hexdigest()
        )
        if not hmac.compare_digest(expected, request.headers.get("x-releasebot-signature", "")):
            return httpx.Response(401, json={"error": "bad signature"})
        if self.answers:
            answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
            return httpx.Response(
                answer.status_code, headers=answer.headers, content=answer.content
            )
        return httpx.Response(202, json={"accepted": True})


class RecordingSleep:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def req(action: str = "promote", url: str = URL, **changes: Any) -> DeployRequest:
    values: dict[str, Any] = {
        "kind": "webhook",
        "action": action,
        "service": "payments-batch",
        "repo": "acme/payments-batch",
        "environment": "production",
        "sha": SHA,
        "request_id": "rq-hook-1",
        "version": "7.0.0",
        "reason": "nightly window — ünïcode ok",
        "actor": "Grace Hopper",
        "target": {"url": url, "secret_env": "PAYMENTS_DEPLOY_HOOK_SECRET"},
    }
    values.update(changes)
    return DeployRequest(**values)


@pytest.fixture
def receiver() -> Receiver:
    return Receiver()


@pytest.fixture
def sleep() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
async def hook(receiver: Receiver, sleep: RecordingSleep) -> AsyncIterator[WebhookDeployer]:
    deployer = WebhookDeployer(
        make_client("", transport=httpx.MockTransport(receiver.handler)),
        {"PAYMENTS_DEPLOY_HOOK_SECRET": SECRET},
        retry=RetryPolicy(sleep=sleep, clock=lambda: NOW),
    )
    yield deployer
    await deployer.aclose()


def test_the_deployer_satisfies_the_port(hook: WebhookDeployer) -> None:
    port: Deployer = hook
    assert port is hook


def test_the_signature_matches_githubs_test_vector_scheme() -> None:
    # Same construction as X-Hub-Signature-256 (docs.github.com test vector).
    assert sign("It's a Secret to Everybody", b"Hello, World!") == (
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    )


@pytest.mark.parametrize("action", ["approve", "reject", "promote", "rollback"])
async def test_a_signed_delivery_the_receiver_can_verify(
    receiver: Receiver, hook: WebhookDeployer, action: str
) -> None:
    result = await hook.execute(req(action))

    [call] = receiver.requests
    assert str(call.url) == URL
    assert call.headers["content-type"] == "application/json"
    assert call.headers["x-releasebot-delivery"] == "rq-hook-1"
    assert call.headers["x-releasebot-signature"] == sign(SECRET, call.content)
    assert json.loads(call.content) == {
        "action": action,
        "service": "payments-batch",
        "environment": "production",
        "sha": SHA,
        "version": "7.0.0",
        "request_id": "rq-hook-1",
        "reason": "nightly window — ünïcode ok",
        "actor": "Grace Hopper",
    }
    assert (
        result.detail
        == f"sent {action} of payments-batch in production to 127.0.0.1:9320 (HTTP 202)"
    )


async def test_a_missing_secret_names_the_variable(
    receiver: Receiver, sleep: RecordingSleep
) -> None:
    deployer = WebhookDeployer(
        make_client("", transport=httpx.MockTransport(receiver.handler)), lambda _name: None
    )

    with pytest.raises(DeliveryFailed) as caught:
        await deployer.execute(req())
    await deployer.aclose()

    assert caught.value.retryable is False
    assert "environment variable PAYMENTS_DEPLOY_HOOK_SECRET is not set" in caught.value.reason
    assert receiver.requests == []


async def test_a_5xx_is_retried_with_the_same_delivery_then_retryable(
    receiver: Receiver, hook: WebhookDeployer, sleep: RecordingSleep
) -> None:
    receiver.answers = [httpx.Response(503, text="busy")]

    with pytest.raises(DeliveryFailed) as caught:
        await hook.execute(req())

    assert caught.value.retryable is True
    assert caught.value.status == 503
    assert len(receiver.requests) == 3
    assert {r.headers["x-releasebot-delivery"] for r in receiver.requests} == {"rq-hook-1"}
    assert sleep.calls == [0.5, 1.0]


async def test_a_429_carries_retry_after(receiver: Receiver, hook: WebhookDeployer) -> None:
    receiver.answers = [httpx.Response(429, headers={"Retry-After": "30"}, text="slow down")]

    with pytest.raises(DeliveryFailed) as caught:
        await hook.execute(req())

    assert caught.value.retryable is True
    assert caught.value.retry_after == 30


async def test_a_4xx_is_not_retryable_and_hides_the_url_path(
    receiver: Receiver, hook: WebhookDeployer
) -> None:
    secret_path = "https://hooks.acme.test/services/T000/B000/XXXXXXXXXXXXXXXXXXXXXXXX"
    receiver.answers = [
        httpx.Response(400, json={"message": f"unknown service; secret was {SECRET}"})
    ]

    with pytest.raises(DeliveryFailed) as caught:
        await hook.execute(req(url=secret_path))

    assert caught.value.retryable is False
    assert caught.value.status == 400
    assert "unknown service" in caught.value.reason
    assert "hooks.acme.test" in caught.value.reason
    assert "XXXXXXXX" not in caught.value.reason
    assert SECRET not in str(caught.value)


async def test_a_receiver_with_another_secret_refuses(sleep: RecordingSleep) -> None:
    receiver = Receiver(secret="a-different-secret")
    deployer = WebhookDeployer(
        make_client("", transport=httpx.MockTransport(receiver.handler)),
        {"PAYMENTS_DEPLOY_HOOK_SECRET": SECRET},
        retry=RetryPolicy(sleep=sleep),
    )

    with pytest.raises(DeliveryFailed) as caught:
        await deployer.execute(req())
    await deployer.aclose()

    assert caught.value.retryable is False
    assert caught.value.status == 401


# --- registry ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


async def test_without_credentials_only_the_secretless_kinds_exist() -> None:
    deployers = build_deployers(load_settings({}), secret_lookup=lambda _name: None)

    assert sorted(deployers) == ["gitlab_trigger", "webhook"]
    assert isinstance(deployers["webhook"], WebhookDeployer)
    assert isinstance(deployers["gitlab_trigger"], GitLabTriggerDeployer)
    await close_all(deployers)


async def test_every_kind_with_every_credential(pem: str) -> None:
    settings = load_settings(
        {
            "GITHUB_APP_ID": "123456",
            "GITHUB_APP_PRIVATE_KEY": pem,
            "GITLAB_TOKEN": "glpat-Zq3xY8bW1kLmN0pQrStU",
            "ARGOCD_URL": "https://argocd.example",
            "ARGOCD_TOKEN": "argocd-token",
        }
    )

    deployers = build_deployers(
        settings,
        secret_lookup=lambda _name: None,
        jenkins_url="https://ci.acme.test/",
        jenkins_user="releasebot",
        jenkins_api_token="11a2b3c4d5e6f708192a3b4c5d6e7f8091",
    )

    assert {kind: type(d) for kind, d in deployers.items()} == {
        "github_protection_rule": GitHubProtectionRuleDeployer,
        "github_workflow": GitHubWorkflowDeployer,
        "gitlab_deployment_approval": GitLabApprovalDeployer,
        "gitlab_trigger": GitLabTriggerDeployer,
        "argocd": ArgoCDDeployer,
        "jenkins": JenkinsDeployer,
        "webhook": WebhookDeployer,
    }
    assert "argocd-token" not in repr(deployers)
    await close_all(deployers)


async def test_a_github_token_alone_gives_the_workflow_deployer_only() -> None:
    deployers = build_deployers(
        load_settings({"GITHUB_TOKEN": "ghp_x", "ARGOCD_URL": "https://argocd.example"}),
        secret_lookup=lambda _name: None,
    )

    assert "github_workflow" in deployers
    assert "github_protection_rule" not in deployers
    assert "argocd" not in deployers  # a URL without a token is not enough
    await close_all(deployers)


def test_half_configured_credentials_are_configuration_errors() -> None:
    with pytest.raises(ValueError, match="GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY"):
        build_deployers(load_settings({"GITHUB_APP_ID": "1"}), secret_lookup=lambda _n: None)
    with pytest.raises(ValueError, match="JENKINS_USER and JENKINS_API_TOKEN"):
        build_deployers(
            load_settings({}),
            secret_lookup=lambda _n: None,
            jenkins_url="https://ci.acme.test/",
            jenkins_user="releasebot",
        )


async def test_the_registry_wires_secrets_and_transport() -> None:
    receiver = Receiver()
    secrets = {"PAYMENTS_DEPLOY_HOOK_SECRET": SECRET}
    deployers = build_deployers(
        load_settings({}),
        secret_lookup=secrets.get,
        transport=httpx.MockTransport(receiver.handler),
    )

    result = await deployers["webhook"].execute(req())
    await close_all(deployers)

    assert "HTTP 202" in result.detail
    assert len(receiver.requests) == 1


async def test_close_all_closes_each_client_once_and_keeps_going() -> None:
    closed: list[str] = []

    class Closing:
        def __init__(self, name: str, fail: bool = False) -> None:
            self.name, self.fail = name, fail

        async def execute(self, request: DeployRequest) -> Any:
            raise NotImplementedError

        async def aclose(self) -> None:
            closed.append(self.name)
            if self.fail:
                raise RuntimeError(f"{self.name} failed to close")

    shared = Closing("shared")
    deployers: dict[str, Deployer] = {
        "a": shared,
        "b": shared,
        "c": Closing("broken", fail=True),
        "d": Closing("last"),
    }

    with pytest.raises(RuntimeError, match="broken failed to close"):
        await close_all(deployers)

    assert closed == ["shared", "broken", "last"]
