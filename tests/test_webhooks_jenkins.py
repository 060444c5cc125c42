"""POST /webhooks/jenkins through the real app: signature or bearer token, phases, dedup."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.app import Overrides
from bot.config import Config, parse_config
from bot.store.tables import Deployment, OutboxMessage, WebhookDelivery
from integrations.jenkins import payloads
from integrations.payloads import PayloadError
from integrations.sandbox.webapi import FakeSlackWebApi
from tests.conftest import Bot, BotFactory
from tests.fakes import FrozenClock
from tests.helpers import (
    JENKINS_SECRET,
    SHA_A,
    encode,
    example_config_data,
    fixture,
    fixture_files,
    jenkins_build,
    rows,
    signed_headers,
)

# What each published payload means; a new fixture file needs an entry here.
EXPECTED: dict[str, dict[str, Any]] = {
    "notification__completed-success-wiki-example": {
        "job": "asgard",
        "status": "succeeded",
        "sha": "c6d86dc654b12425e706bcf951adfe5a8627a517",
        "ref": "origin/master",
        "url": "http://localhost:8080/job/asgard/18/",
        "external_id": "build:asgard#18",
    },
    # the plugin's help example has no scm block: no commit, nothing to track by sha
    "notification__started-plugin-help-example": {"error": "build.scm.commit is required"},
}


def jenkins_config() -> Config:
    """The example config, with payments-batch production also deployed by a Jenkins job."""
    data = example_config_data()
    [production] = data["services"]["payments-batch"]["environments"]
    production["track"]["jenkins_job"] = "payments-deploy"
    return parse_config(data)


@pytest.mark.parametrize("path", fixture_files("jenkins"), ids=lambda p: p.stem)
def test_every_published_jenkins_payload_parses(path: Path) -> None:
    expected = EXPECTED[path.stem]
    if "error" in expected:
        with pytest.raises(PayloadError) as raised:
            payloads.parse(fixture("jenkins", path.name))
        assert str(raised.value) == expected["error"]
        return
    parsed = payloads.parse(fixture("jenkins", path.name))
    event = parsed.event
    assert event is not None, parsed.note
    assert (event.target.provider, event.target.job, event.status, event.sha) == (
        "jenkins",
        expected["job"],
        expected["status"],
        expected["sha"],
    )
    assert (event.ref, event.url, event.external_id) == (
        expected["ref"],
        expected["url"],
        expected["external_id"],
    )
    assert parsed.delivery.startswith("jenkins-")


def test_the_fixture_table_covers_every_file() -> None:
    assert {p.stem for p in fixture_files("jenkins")} == set(EXPECTED)


@pytest.mark.parametrize(
    ("phase", "result", "status"),
    [
        ("QUEUED", None, "pending"),
        ("STARTED", None, "in_progress"),
        ("COMPLETED", "SUCCESS", "succeeded"),
        ("FINALIZED", "SUCCESS", "succeeded"),
        ("COMPLETED", "FAILURE", "failed"),
        ("COMPLETED", "ABORTED", "failed"),
        ("FINALIZED", "UNSTABLE", "failed"),
        ("COMPLETED", "NOT_BUILT", None),
        ("NONE", None, None),
    ],
)
def test_phases_and_results_map_to_states(phase: str, result: str | None, status: str) -> None:
    parsed = payloads.parse(jenkins_build(phase, result))
    assert (parsed.event.status if parsed.event else None) == status


def test_the_environment_and_version_come_from_the_build_parameters() -> None:
    build = jenkins_build("STARTED", environment=None)
    build["build"]["parameters"] = {"DEPLOY_ENV": "staging", "VERSION": "v9"}
    event = payloads.parse(build).event
    assert event is not None
    assert (event.target.environment, event.version) == ("staging", "v9")


def test_each_phase_of_a_build_is_its_own_delivery() -> None:
    ids = {
        payloads.parse(jenkins_build(phase, result)).delivery
        for phase, result in [("STARTED", None), ("COMPLETED", "SUCCESS"), ("FINALIZED", "SUCCESS")]
    }
    assert len(ids) == 3
    assert payloads.parse(jenkins_build("STARTED", number=43)).delivery not in ids


@settings(max_examples=200, deadline=None)
@given(
    body=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(
                st.sampled_from(
                    ["name", "build", "number", "phase", "status", "scm", "parameters"]
                ),
                inner,
                max_size=4,
            )
        ),
        max_leaves=12,
    )
)
def test_any_json_either_parses_or_is_a_payload_error(body: Any) -> None:
    try:
        payloads.parse(body)
    except PayloadError:
        pass


# --- through the app ----------------------------------------------------------------------


@pytest.fixture
async def jenkins_bot(bot_factory: BotFactory, clock: FrozenClock) -> AsyncIterator[Bot]:
    overrides = Overrides(
        config=jenkins_config(), clock=clock, start_scheduler=False, run_outbox_worker=False
    )
    async with bot_factory(
        env={"JENKINS_WEBHOOK_SECRET": JENKINS_SECRET}, overrides=overrides
    ) as running:
        yield running


async def post(bot: Bot, body: dict[str, Any], **kwargs: Any) -> Any:
    raw = encode(body)
    return await bot.post("/webhooks/jenkins", raw, signed_headers(raw, JENKINS_SECRET, **kwargs))


async def test_a_build_posts_one_message_then_edits_it(
    jenkins_bot: Bot, slack: FakeSlackWebApi
) -> None:
    answer = await post(jenkins_bot, jenkins_build("STARTED"))
    assert answer.status_code == 202 and answer.json()["status"] == "accepted"
    await jenkins_bot.send_outbox()
    [message] = slack.messages("#deploys")
    assert "Deploying" in message["text"]

    answer = await post(jenkins_bot, jenkins_build("COMPLETED", "SUCCESS"))
    assert answer.json()["status"] == "accepted"
    finalized = await post(jenkins_bot, jenkins_build("FINALIZED", "SUCCESS"))
    assert finalized.json()["status"] == "ignored"  # COMPLETED already said it
    await jenkins_bot.send_outbox()

    [message] = slack.messages("#deploys")
    assert message["edited"] is True and "Deployed" in message["text"]
    [deployment] = rows(jenkins_bot, Deployment)
    assert (deployment.service, deployment.environment, deployment.state) == (
        "payments-batch",
        "production",
        "succeeded",
    )
    assert deployment.sha == SHA_A
    assert deployment.ci_url == "https://jenkins.example/job/payments-deploy/42/"


async def test_a_bearer_token_works_for_senders_that_cannot_sign(jenkins_bot: Bot) -> None:
    body = encode(jenkins_build("COMPLETED", "FAILURE"))
    headers = {"content-type": "application/json", "authorization": f"Bearer {JENKINS_SECRET}"}
    answer = await jenkins_bot.post("/webhooks/jenkins", body, headers)
    assert answer.status_code == 202 and answer.json()["status"] == "accepted"
    [deployment] = rows(jenkins_bot, Deployment)
    assert deployment.state == "failed"


async def test_the_same_phase_twice_is_a_duplicate(jenkins_bot: Bot) -> None:
    first = await post(jenkins_bot, jenkins_build("STARTED"))
    again = await post(jenkins_bot, jenkins_build("STARTED"))
    assert again.json() == {"status": "duplicate", "delivery": first.json()["delivery"]}
    named = await post(jenkins_bot, jenkins_build("STARTED"), delivery="jenkins-run-1")
    assert named.json()["delivery"] == "jenkins-run-1"


async def test_a_job_no_service_tracks_is_ignored(jenkins_bot: Bot) -> None:
    answer = await post(jenkins_bot, jenkins_build("STARTED", job="nightly-tests"))
    assert answer.json()["status"] == "ignored"
    assert rows(jenkins_bot, Deployment) == []


# --- refused requests change nothing -------------------------------------------------------


async def assert_nothing_changed(bot: Bot, slack: FakeSlackWebApi) -> None:
    await bot.send_outbox()
    assert rows(bot, WebhookDelivery) == []
    assert rows(bot, Deployment) == []
    assert rows(bot, OutboxMessage) == []
    assert slack.calls == []


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ({"x-releasebot-signature": "sha256=" + "0" * 64}, "invalid X-Releasebot-Signature"),
        ({"authorization": "Bearer not-the-secret"}, "invalid Authorization"),
        ({"authorization": f"Basic {JENKINS_SECRET}"}, "invalid Authorization"),
        ({}, "missing X-Releasebot-Signature header"),
        # a signature is judged alone: a right token does not rescue a wrong signature
        (
            {"x-releasebot-signature": "sha256=00", "authorization": f"Bearer {JENKINS_SECRET}"},
            "invalid X-Releasebot-Signature",
        ),
    ],
)
async def test_a_wrong_or_missing_credential_is_refused(
    jenkins_bot: Bot, slack: FakeSlackWebApi, headers: dict[str, str], error: str
) -> None:
    body = encode(jenkins_build("COMPLETED", "SUCCESS"))
    answer = await jenkins_bot.post(
        "/webhooks/jenkins", body, {"content-type": "application/json", **headers}
    )
    assert answer.status_code == 401
    assert answer.json()["error"].startswith(error)
    await assert_nothing_changed(jenkins_bot, slack)


@pytest.mark.parametrize("auth", ["signature", "bearer"])
async def test_without_a_configured_secret_everything_is_refused(
    bot: Bot, slack: FakeSlackWebApi, auth: str
) -> None:
    body = encode(jenkins_build("COMPLETED", "SUCCESS"))
    headers = signed_headers(body, JENKINS_SECRET)
    if auth == "bearer":
        del headers["x-releasebot-signature"]
        headers["authorization"] = f"Bearer {JENKINS_SECRET}"
    answer = await bot.post("/webhooks/jenkins", body, headers)
    assert answer.status_code == 401
    assert "not configured" in answer.json()["error"]
    await assert_nothing_changed(bot, slack)


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda b: b["build"]["scm"].pop("commit"), "build.scm.commit is required"),
        (lambda b: b["build"]["scm"].update(commit="c6d86dc"), "build.scm.commit must be a full"),
        (lambda b: b.pop("name"), "name is required"),
        (lambda b: b["build"].pop("phase"), "build.phase is required"),
        (lambda b: b["build"].pop("status"), "build.status is required"),
        (lambda b: b["build"].update(status="WEIRD"), "build.status has an unknown value"),
    ],
)
async def test_a_missing_or_wrong_field_is_a_400_naming_it(
    jenkins_bot: Bot, slack: FakeSlackWebApi, change: Any, error: str
) -> None:
    body = jenkins_build("COMPLETED", "SUCCESS")
    change(body)
    answer = await post(jenkins_bot, body)
    assert answer.status_code == 400
    assert answer.json()["error"].startswith(error)
    await assert_nothing_changed(jenkins_bot, slack)


async def test_malformed_json_is_a_400(jenkins_bot: Bot, slack: FakeSlackWebApi) -> None:
    body = b'{"name": "payments-deploy", "build": '
    answer = await jenkins_bot.post("/webhooks/jenkins", body, signed_headers(body, JENKINS_SECRET))
    assert answer.status_code == 400
    assert "malformed JSON" in answer.json()["error"]
    await assert_nothing_changed(jenkins_bot, slack)


async def test_an_oversized_body_is_a_413(
    bot_factory: BotFactory, slack: FakeSlackWebApi, clock: FrozenClock
) -> None:
    overrides = Overrides(
        config=jenkins_config(), clock=clock, start_scheduler=False, run_outbox_worker=False
    )
    env = {"JENKINS_WEBHOOK_SECRET": JENKINS_SECRET, "RELEASEBOT_MAX_BODY_BYTES": "512"}
    async with bot_factory(env=env, overrides=overrides) as bot:
        body = encode(jenkins_build("COMPLETED", "SUCCESS"))
        assert len(body) > 512
        answer = await bot.post("/webhooks/jenkins", body, signed_headers(body, JENKINS_SECRET))
        assert answer.status_code == 413
        await assert_nothing_changed(bot, slack)


async def test_a_wrong_content_type_is_a_415(jenkins_bot: Bot, slack: FakeSlackWebApi) -> None:
    body = encode(jenkins_build("COMPLETED", "SUCCESS"))
    headers = signed_headers(body, JENKINS_SECRET)
    headers["content-type"] = "application/xml"
    answer = await jenkins_bot.post("/webhooks/jenkins", body, headers)
    assert answer.status_code == 415
    await assert_nothing_changed(jenkins_bot, slack)
