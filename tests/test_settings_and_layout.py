"""Settings come from an explicit environment; the packages are the ones in this checkout."""

from __future__ import annotations

import filecmp
from datetime import timedelta
from pathlib import Path

import yaml
from sqlmodel import select

import bot
import handlers
import integrations
from bot.scheduling import build_scheduler, register_jobs
from bot.services.housekeeping import drop_old_webhook_bodies
from bot.settings import load_settings
from bot.store.db import Database
from bot.store.tables import WebhookDelivery
from tests.conftest import Bot
from tests.fakes import FrozenClock
from tests.helpers import EXAMPLE_CONFIG, FIXTURES, REPO_ROOT, SHARED


def test_settings_read_the_contract_variables() -> None:
    settings = load_settings(
        {
            "RELEASEBOT_DATABASE_URL": "postgresql+psycopg://db/releasebot",
            "RELEASEBOT_CONFIG": "/etc/releasebot.yaml",
            "SLACK_BOT_TOKEN": "xoxb-1",
            "GITHUB_WEBHOOK_SECRET": "hush",
            "UNRELATED": "ignored",
        }
    )
    assert settings.database_url == "postgresql+psycopg://db/releasebot"
    assert settings.config_path == Path("/etc/releasebot.yaml")
    assert settings.slack_sandbox is False
    assert settings.max_body_bytes == 5 * 1024 * 1024


def test_defaults_match_the_contract() -> None:
    settings = load_settings({})
    assert settings.database_url == "sqlite:///./releasebot.db"
    assert settings.public_url == "http://localhost:8000"
    assert settings.slack_api_url == "https://slack.com/api/"
    assert settings.github_api_url == "https://api.github.com"
    assert settings.slack_sandbox is True


def test_secrets_never_show_in_the_settings_repr() -> None:
    settings = load_settings({"SLACK_BOT_TOKEN": "xoxb-very-secret", "GITHUB_WEBHOOK_SECRET": "s1"})
    assert "xoxb-very-secret" not in repr(settings)
    assert "s1'" not in repr(settings)


def test_packages_are_imported_from_this_checkout() -> None:
    for package in (bot, handlers, integrations):
        assert Path(package.__file__ or "").resolve().is_relative_to(REPO_ROOT)


def test_the_example_config_extends_the_specification_and_the_fixtures_match_it() -> None:
    """Our example is the specification's with the blocks added since: everything the
    specification's copy says, ours says the same (it may add keys and list entries)."""
    if not (SHARED / "examples").is_dir():
        return  # a checkout without the specification folder beside it has only our copies
    spec = yaml.safe_load((SHARED / "examples" / "releasebot.yaml").read_text())
    ours = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    assert_extends(spec, ours, "")
    for path in (SHARED / "fixtures").rglob("*"):
        if path.is_file():
            ours = FIXTURES / path.relative_to(SHARED / "fixtures")
            assert filecmp.cmp(path, ours, shallow=False), ours


def assert_extends(spec: object, ours: object, path: str) -> None:
    if isinstance(spec, dict):
        assert isinstance(ours, dict), path
        for key, value in spec.items():
            assert key in ours, f"{path}.{key} is missing from examples/releasebot.yaml"
            assert_extends(value, ours[key], f"{path}.{key}")
    elif isinstance(spec, list):
        assert isinstance(ours, list) and len(ours) >= len(spec), path
        for i, value in enumerate(spec):
            assert_extends(value, ours[i], f"{path}[{i}]")
    else:
        assert spec == ours, f"{path}: {ours!r} instead of {spec!r}"


async def test_jobs_are_registered_with_stable_ids(bot: Bot) -> None:
    scheduler = build_scheduler()
    register_jobs(scheduler, bot.runtime)
    scheduler.start(paused=True)  # job defaults apply once the scheduler has started
    jobs = {job.id: job for job in scheduler.get_jobs()}
    scheduler.shutdown(wait=False)
    assert sorted(jobs) == [
        "audit.checkpoint",
        "checks.tick",
        "dora.weekly_digest",
        "gates.sweep",
        "outbox.tick",
        "webhooks.retention",
    ]
    assert jobs["webhooks.retention"].trigger.interval == timedelta(hours=1)
    assert jobs["outbox.tick"].trigger.interval == timedelta(seconds=2)
    for job in jobs.values():
        assert job.coalesce is True
        assert job.max_instances == 1


def test_raw_webhook_bodies_are_dropped_after_the_retention(
    db: Database, clock: FrozenClock
) -> None:
    old, recent = clock.now() - timedelta(days=31), clock.now() - timedelta(days=29)

    def seed(session: object) -> None:
        for n, when in enumerate((old, recent)):
            session.add(  # type: ignore[attr-defined]
                WebhookDelivery(
                    provider="github",
                    delivery_id=f"d{n}",
                    event="ping",
                    received_at=when,
                    outcome="accepted",
                    body=b"{}",
                )
            )

    db.write(seed)
    dropped = db.write(
        lambda s: drop_old_webhook_bodies(s, now=clock.now(), retention=timedelta(days=30))
    )
    assert dropped == 1
    with db.read() as session:
        bodies = {d.delivery_id: d.body for d in session.exec(select(WebhookDelivery)).all()}
    assert bodies == {"d0": None, "d1": b"{}"}  # the delivery row stays, for de-duplication
