"""A SIGKILL between storing a delivery and applying it loses nothing.

`releasebot serve --role web` (run as `RELEASEBOT_ROLE=web`) stores deliveries and applies
none: a signed generic delivery is answered 202 and is pending in the database. The process
is then killed with SIGKILL. A new `releasebot serve` (role all) on the same database applies
it: the deployment is recorded and its Slack message posted, once. Waits are on conditions
with deadlines, polling the real processes.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from bot.store.db import Database
from bot.store.tables import Deployment, WebhookDelivery
from tests.helpers import GENERIC_SECRET, encode, generic_body, signed_headers
from tests.test_shutdown_drain import (
    FakeSlack,
    Server,
    prepare_database,
    start_server,
    wait_for,
    wait_until_ready,
)

# Fixtures from the drain tests: a fake Slack on loopback, and the started processes.
from tests.test_shutdown_drain import fake_slack as fake_slack  # noqa: F401
from tests.test_shutdown_drain import servers as servers  # noqa: F401

WAIT_SECONDS = 60.0


def stored(db: Database) -> list[dict[str, Any]]:
    table = WebhookDelivery.__table__  # type: ignore[attr-defined]
    with db.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(table))]


def deployments(db: Database) -> list[dict[str, Any]]:
    table = Deployment.__table__  # type: ignore[attr-defined]
    with db.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(table))]


def serve(tmp_path: Path, db_path: Path, slack_url: str, **environ: str) -> Server:
    return start_server(
        tmp_path,
        db_path,
        SLACK_BOT_TOKEN="xoxb-kill-test",
        SLACK_SIGNING_SECRET="kill-test-signing-secret",
        RELEASEBOT_SLACK_API_URL=f"{slack_url}/api/",
        **environ,
    )


def test_a_delivery_answered_then_killed_before_it_is_applied_is_applied_after_restart(
    tmp_path: Path, fake_slack: tuple[FakeSlack, str], servers: list[Server]
) -> None:
    slack, slack_url = fake_slack
    slack.release.set()  # Slack answers at once here
    db_path = tmp_path / "kill.db"
    db = prepare_database(db_path, digests=0)

    web = serve(tmp_path, db_path, slack_url, RELEASEBOT_ROLE="web")
    servers.append(web)
    wait_until_ready(web)
    body = encode(generic_body("succeeded"))
    answer = httpx.post(
        f"{web.base_url}/webhooks/generic",
        content=body,
        headers=signed_headers(body, GENERIC_SECRET, delivery="kill-1"),
        timeout=WAIT_SECONDS,
    )
    assert answer.status_code == 202
    assert answer.json() == {"status": "accepted", "delivery": "kill-1"}
    [row] = stored(db)
    assert (row["outcome"], row["applied_at"]) == ("pending", None)
    assert deployments(db) == []

    web.process.send_signal(signal.SIGKILL)
    web.process.wait(timeout=WAIT_SECONDS)
    assert web.process.returncode == -signal.SIGKILL

    restarted = serve(tmp_path, db_path, slack_url)
    servers.append(restarted)
    wait_for(
        lambda: [r for r in stored(db) if r["outcome"] == "accepted"],
        timeout=WAIT_SECONDS,
        what="the stored delivery applied",
        server=restarted,
    )
    [deployment] = deployments(db)
    assert (deployment["service"], deployment["state"]) == ("payments-batch", "succeeded")
    slack.wait(lambda: len(slack.finished) >= 1, "release message")
    [row] = stored(db)
    assert row["attempts"] == 1 and row["deployment_id"] == deployment["id"]
    db.dispose()
