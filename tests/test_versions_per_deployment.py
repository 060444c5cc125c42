"""One sha, deployed twice under different refs, keeps each deployment's own version.

Staging deploys `f95f852` from `main`, production deploys the same sha from tag `v1.2.0`:
production's release message, `/release status` and `/release history` say v1.2.0, while
staging's still says main. Deployments stored before the version moved onto the deployment
take their release's version and ref when the database is upgraded.
"""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from bot import migrate
from bot.app import Overrides
from bot.config import parse_config
from bot.store.db import make_engine
from bot.store.tables import Deployment, ReleaseMessage
from integrations.sandbox.webapi import FakeSlackWebApi
from tests.conftest import Bot, BotFactory
from tests.fakes import FrozenClock
from tests.helpers import (
    SHA_A,
    encode,
    example_config_data,
    fixture,
    github_headers,
    rows,
)
from tests.test_migrations import schema_drift
from tests.test_slash_commands import Slash

CHANNEL = "#shop-deploys"


def shop_config_data() -> dict[str, Any]:
    """The example config with `shop`: staging and production, each a GitHub environment."""
    data = example_config_data()
    data["services"]["shop"] = {
        "repo": "github:acme/shop",
        "channel": CHANNEL,
        "environments": [
            {"name": "staging", "track": {"github_environment": "staging"}},
            {"name": "production", "track": {"github_environment": "production"}},
        ],
    }
    return data


@pytest.fixture
async def bot(bot_factory: BotFactory, clock: FrozenClock) -> AsyncIterator[Bot]:
    overrides = Overrides(
        clock=clock,
        start_scheduler=False,
        run_outbox_worker=False,
        process_before_response=True,  # a slash command is answered before the ack returns
        config=parse_config(shop_config_data()),
    )
    async with bot_factory(overrides=overrides) as running:
        yield running


def github_deployment(event: str, *, environment: str, ref: str, deployment_id: int) -> bytes:
    """A GitHub `deployment` or `deployment_status` (success) of SHA_A in acme/shop."""
    name = (
        "deployment__created.json" if event == "deployment" else "deployment_status__success.json"
    )
    body = copy.deepcopy(fixture("github", name))
    body["repository"]["full_name"] = "acme/shop"
    body["deployment"].update(id=deployment_id, sha=SHA_A, environment=environment, ref=ref)
    if event == "deployment_status":
        body["deployment_status"].update(state="success", environment=environment)
    return encode(body)


async def deploy(bot: Bot, *, environment: str, ref: str, deployment_id: int) -> None:
    """GitHub creates the deployment, then reports it succeeded: two signed deliveries."""
    for event in ("deployment", "deployment_status"):
        body = github_deployment(
            event, environment=environment, ref=ref, deployment_id=deployment_id
        )
        answer = await bot.post("/webhooks/github", body, github_headers(event, body))
        assert answer.status_code == 202 and answer.json()["status"] == "accepted", answer.text
    await bot.send_outbox()


def message_of(bot: Bot, slack: FakeSlackWebApi, environment: str) -> dict[str, Any]:
    [deployment] = [d for d in rows(bot, Deployment) if d.environment == environment]
    [where] = [m for m in rows(bot, ReleaseMessage) if m.deployment_id == deployment.id]
    [message] = [m for m in slack.messages(where.channel) if m["ts"] == where.ts]
    return message


def header_and_commit(message: dict[str, Any]) -> tuple[str, str]:
    header = next(b["text"]["text"] for b in message["blocks"] if b["type"] == "header")
    [fields] = [b["fields"] for b in message["blocks"] if b.get("fields")]
    commit = next(f["text"] for f in fields if f["text"].startswith("*Commit*"))
    return str(header), str(commit)


async def test_production_from_a_tag_shows_the_tag_though_staging_deployed_the_sha_from_main(
    bot: Bot, slack: FakeSlackWebApi, slack_server: tuple[FakeSlackWebApi, str], clock: FrozenClock
) -> None:
    await deploy(bot, environment="staging", ref="main", deployment_id=7001)
    clock.advance(hours=1)
    await deploy(bot, environment="production", ref="v1.2.0", deployment_id=7002)

    production, staging = message_of(bot, slack, "production"), message_of(bot, slack, "staging")
    assert header_and_commit(production) == (
        "shop → production · v1.2.0",
        "*Commit*\n`f95f852` on v1.2.0",
    )
    assert "v1.2.0" in production["text"] and "main" not in production["text"]
    assert header_and_commit(staging) == ("shop → staging · main", "*Commit*\n`f95f852` on main")

    slash = Slash(bot, slack, slack_server[1])
    status = block_text(await slash("U0RM1", "status shop"))
    assert "• `production` :large_green_circle: Deployed *v1.2.0* (`f95f852`) ·" in status
    assert "• `staging` :large_green_circle: Deployed *main* (`f95f852`) ·" in status
    history = block_text(await slash("U0RM1", "history shop production"))
    assert "*v1.2.0* (`f95f852`)" in history and "*main*" not in history


def block_text(reply: dict[str, Any]) -> str:
    """Every mrkdwn text of a slash command's answer, one per line."""
    return "\n".join(str(block["text"]["text"]) for block in reply["blocks"] if "text" in block)


async def test_a_later_report_fills_in_the_version_its_deployment_lacked(
    bot: Bot, slack: FakeSlackWebApi, clock: FrozenClock
) -> None:
    """GitHub's deployment_status may arrive without the tag its deployment named first."""
    await deploy(bot, environment="staging", ref="main", deployment_id=7001)
    clock.advance(hours=1)
    body = github_deployment(
        "deployment_status", environment="production", ref="v1.2.0", deployment_id=7002
    )
    data = json.loads(body)
    del data["deployment"]["ref"]
    body = encode(data)
    answer = await bot.post("/webhooks/github", body, github_headers("deployment_status", body))
    assert answer.json()["status"] == "accepted"
    await bot.send_outbox()
    assert header_and_commit(message_of(bot, slack, "production"))[0] == "shop → production · main"

    body = github_deployment(
        "deployment", environment="production", ref="v1.2.0", deployment_id=7002
    )
    answer = await bot.post("/webhooks/github", body, github_headers("deployment", body))
    await bot.send_outbox()
    assert header_and_commit(message_of(bot, slack, "production")) == (
        "shop → production · v1.2.0",
        "*Commit*\n`f95f852` on v1.2.0",
    )


# --- the migration -------------------------------------------------------------------------


@pytest.fixture
def empty_engine(database_url_factory: Callable[..., str]) -> AsyncIterator[Engine]:
    engine = make_engine(database_url_factory(migrated=False))
    yield engine
    engine.dispose()


def test_deployments_stored_before_take_their_releases_version_and_ref(
    empty_engine: Engine,
) -> None:
    migrate.upgrade(empty_engine, "0003")
    at = "2026-12-01T10:00:00.000000+00:00"
    with empty_engine.begin() as conn:
        for release_id, sha, version, ref in (
            (1, SHA_A, "v1.2.0", "main"),
            (2, "9e602444f49b8b69c3a9a51fa97a115f3d323508", None, None),
        ):
            conn.execute(
                sa.text(
                    "INSERT INTO release (id, service, sha, version, ref, created_at)"
                    " VALUES (:id, 'shop', :sha, :version, :ref, :at)"
                ),
                {"id": release_id, "sha": sha, "version": version, "ref": ref, "at": at},
            )
        for deployment_id, release_id, environment, sha in (
            (10, 1, "staging", SHA_A),
            (11, 1, "production", SHA_A),
            (12, 2, "production", "9e602444f49b8b69c3a9a51fa97a115f3d323508"),
        ):
            conn.execute(
                sa.text(
                    "INSERT INTO deployment (id, release_id, service, environment, sha, attempt,"
                    " state, row_version, source, ci_retries, created_at, updated_at)"
                    " VALUES (:id, :release_id, 'shop', :environment, :sha, 1, 'succeeded', 1,"
                    " 'github.deployment', 0, :at, :at)"
                ),
                {
                    "id": deployment_id,
                    "release_id": release_id,
                    "environment": environment,
                    "sha": sha,
                    "at": at,
                },
            )

    migrate.upgrade(empty_engine)

    with empty_engine.connect() as conn:
        found = conn.execute(sa.text("SELECT id, version, ref FROM deployment ORDER BY id")).all()
    assert [tuple(row) for row in found] == [
        (10, "v1.2.0", "main"),
        (11, "v1.2.0", "main"),
        (12, None, None),
    ]
    assert schema_drift(empty_engine) == []

    migrate.downgrade(empty_engine, "0003")
    columns = {c["name"] for c in sa.inspect(empty_engine).get_columns("deployment")}
    assert not {"version", "ref"} & columns
