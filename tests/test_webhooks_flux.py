"""POST /webhooks/flux: Flux's generic-hmac events, read as Flux's controllers send them."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from typing import Any

import pytest

from bot.store.tables import Deployment
from integrations.flux import payloads
from integrations.payloads import PayloadError
from tests.conftest import BotFactory
from tests.helpers import GENERIC_SECRET, SHA_A, rows

KUSTOMIZATION: dict[str, Any] = {
    "involvedObject": {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "name": "payments-batch",
        "namespace": "production",
    },
    "severity": "info",
    "reason": "ReconciliationSucceeded",
    "message": "Reconciliation finished in 1.2s, next run in 10m0s",
    "timestamp": "2026-12-06T10:00:00Z",
    "reportingController": "kustomize-controller",
    "metadata": {"kustomize.toolkit.fluxcd.io/revision": f"main@sha1:{SHA_A}"},
}


def event(**changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(KUSTOMIZATION)
    for key, value in changes.items():
        body[key] = value
    return body


def test_a_kustomization_names_a_commit_and_its_branch() -> None:
    found, note = payloads.parse(event())
    assert note is None and found is not None
    assert (found.sha, found.ref, found.version, found.status) == (SHA_A, "main", None, "succeeded")
    assert (found.target.service, found.target.environment) == ("payments-batch", "production")
    assert found.actor == "kustomize-controller" and found.occurred_at is not None

    old_style, _ = payloads.parse(event(metadata={"revision": f"main/{SHA_A}"}))
    assert old_style is not None and (old_style.sha, old_style.ref) == (SHA_A, "main")


@pytest.mark.parametrize(
    ("revision", "key", "version"),
    [
        ("1.4.2", "v:1.4.2", "1.4.2"),
        ("latest@sha256:" + "ab" * 32, ("v:sha256:" + "ab" * 32)[:64], "sha256:" + "ab" * 32),
    ],
)
def test_a_chart_version_or_an_artifact_digest_is_a_version_without_a_commit(
    revision: str, key: str, version: str
) -> None:
    found, _ = payloads.parse(event(metadata={"helm.toolkit.fluxcd.io/revision": revision}))
    assert found is not None and (found.sha, found.version, found.ref) == (key, version, None)


def test_the_alert_metadata_names_the_service_environment_and_version() -> None:
    metadata = {
        "kustomize.toolkit.fluxcd.io/revision": f"main@sha1:{SHA_A}",
        "service": "payments",
        "environment": "prod-eu",
        "version": "v2.0.0",
    }
    found, _ = payloads.parse(event(metadata=metadata))
    assert found is not None
    assert (found.target.service, found.target.environment) == ("payments", "prod-eu")
    assert (found.sha, found.version) == (SHA_A, "v2.0.0")


@pytest.mark.parametrize(
    ("severity", "reason", "status"),
    [
        ("error", "UpgradeFailed", "failed"),
        ("error", "HealthCheckFailed", "failed"),
        ("info", "RollbackSucceeded", "failed"),
        ("info", "UpgradeSucceeded", "succeeded"),
        ("info", "InstallSucceeded", "succeeded"),
        ("info", "Progressing", "in_progress"),
    ],
)
def test_severity_and_reason_give_the_state(severity: str, reason: str, status: str) -> None:
    found, _ = payloads.parse(event(severity=severity, reason=reason))
    assert found is not None and found.status == status


def test_other_events_and_events_without_a_revision_change_nothing() -> None:
    assert payloads.parse(event(reason="ArtifactUpToDate")) == (
        None,
        "Flux event ArtifactUpToDate is no deploy",
    )
    found, note = payloads.parse(event(metadata={}))
    assert found is None and note is not None and "carries no revision" in note


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ([], "body must be a JSON object"),
        (event(involvedObject=None), "involvedObject must be a JSON object"),
        (event(involvedObject={"kind": "HelmRelease", "name": "x"}), "involvedObject.namespace"),
        (event(severity=3), "severity must be a string"),
        (event(metadata=["x"]), "metadata must be a JSON object"),
        (event(timestamp="yesterday"), "timestamp must be an RFC 3339 time"),
    ],
)
def test_a_body_that_is_not_a_flux_event_is_refused_naming_the_field(body: Any, error: str) -> None:
    with pytest.raises(PayloadError) as raised:
        payloads.parse(body)
    assert str(raised.value).startswith(error)


def signature(body: bytes, secret: str = GENERIC_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def test_the_route_checks_flux_signature_and_refuses_what_is_not_flux(
    bot_factory: BotFactory,
) -> None:
    env = {"RELEASEBOT_GENERIC_WEBHOOK_SECRET": GENERIC_SECRET}
    async with bot_factory(env=env) as bot:
        body = json.dumps(event()).encode()
        headers = {"content-type": "application/json", "x-signature": signature(body)}
        answers = [
            await bot.post("/webhooks/flux", body, {"content-type": "application/json"}),
            await bot.post(
                "/webhooks/flux", body, {**headers, "x-signature": signature(body, "x")}
            ),
            await bot.post("/webhooks/flux", b"[]", {**headers, "x-signature": signature(b"[]")}),
        ]
        assert [a.status_code for a in answers] == [401, 401, 400]
        assert answers[0].json()["error"] == "missing X-Signature header"
        assert rows(bot, Deployment) == []

        accepted = await bot.post("/webhooks/flux", body, headers)
        assert accepted.status_code == 202 and accepted.json()["status"] == "accepted"
        [deployment] = rows(bot, Deployment)
        assert (deployment.service, deployment.sha, deployment.ref) == (
            "payments-batch",
            SHA_A,
            "main",
        )

    async with bot_factory(env={"RELEASEBOT_GENERIC_WEBHOOK_SECRET": None}) as unset:
        refused = await unset.post("/webhooks/flux", body, headers)
        assert refused.status_code == 401


async def test_an_event_of_an_object_nothing_tracks_is_ignored(bot_factory: BotFactory) -> None:
    async with bot_factory(env={"RELEASEBOT_GENERIC_WEBHOOK_SECRET": GENERIC_SECRET}) as bot:
        unknown = {**KUSTOMIZATION["involvedObject"], "name": "podinfo"}
        for body_data in (event(involvedObject=unknown), event(reason="ArtifactUpToDate")):
            body = json.dumps(body_data).encode()
            headers = {"content-type": "application/json", "x-signature": signature(body)}
            answer = await bot.post("/webhooks/flux", body, headers)
            assert answer.status_code == 202 and answer.json()["status"] == "ignored", answer.text
        assert rows(bot, Deployment) == []
