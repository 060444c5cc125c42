"""`releasebot doctor`: check what the bot needs and print each problem with its fix.

    releasebot doctor [--config PATH] [--json]

Checks the Slack bot token and its scopes, the bot's membership of every configured channel
(joining public ones when it holds `channels:join`), the configured user groups, the
secrets each provider and deploy target of the config needs, the code hosts' APIs and the
database. Exit 0 when all is well, 1 on any problem. `--json` prints the findings as a list
of `{check, ok, problem, fix, note}` for scripts. No secret's value is ever printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from collections.abc import Mapping

import httpx
from pydantic import ValidationError

from bot import migrate
from bot.cli.common import EXIT_FAIL, EXIT_OK, say, settings_for
from bot.config import load_config
from bot.domain.errors import ConfigError
from bot.domain.findings import Finding, as_json, failed, problems, render_text
from bot.settings import Settings
from bot.store.db import Database, make_engine
from bot.usecases.doctor import Patient, diagnose
from bot.usecases.doctor_slack import SlackWebApi
from integrations.errors import CredentialsError
from integrations.github.client import GitHubClient, github_client_from_settings
from integrations.gitlab.client import GitLabClient, gitlab_client_from_settings
from integrations.http import RetryPolicy
from integrations.slack.sender import make_web_client

SLACK_TIMEOUT_SECONDS = 10


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    doctor = commands.add_parser(
        "doctor",
        help="check the Slack token, scopes, channels and user groups, the secrets, the code "
        "hosts' APIs and the database; print each problem with its fix",
    )
    doctor.add_argument("--config", help="config file (default: $RELEASEBOT_CONFIG)")
    doctor.add_argument(
        "--json",
        action="store_true",
        help="print the findings as JSON: a list of {check, ok, problem, fix, note}",
    )
    doctor.set_defaults(func=cmd_doctor)


def cmd_doctor(args: argparse.Namespace) -> int:
    try:
        settings = settings_for(args)
    except ValidationError as exc:
        findings = [_settings_problem(exc)]
    else:
        findings = asyncio.run(examine(settings, environ=os.environ))
    if args.json:
        say(json.dumps(as_json(findings), indent=2))
    else:
        say(render_text(findings))
    return EXIT_FAIL if problems(findings) else EXIT_OK


async def examine(
    settings: Settings,
    *,
    environ: Mapping[str, str],
    transport: httpx.AsyncBaseTransport | None = None,
) -> list[Finding]:
    """Every check for these settings, with clients built here and closed afterwards.

    `transport` carries the code hosts' HTTP calls (tests pass a fake); Slack is reached
    at `RELEASEBOT_SLACK_API_URL`.
    """
    try:
        config = load_config(settings.config_path)
    except ConfigError as exc:
        return [
            failed(
                "config",
                f"{settings.config_path}: invalid configuration: {'; '.join(exc.problems)}",
                "correct each problem at its YAML path (`releasebot config check` lists them)",
            )
        ]
    found: list[Finding] = []
    apis = _apis(settings, transport, found)
    db, db_error = _database(settings)
    try:
        patient = Patient(
            settings=settings,
            config=config,
            environ=environ,
            slack=_slack(settings),
            apis=apis,
            db=db,
            db_error=db_error,
            migrations_head=migrate.head(),
        )
        return [*await diagnose(patient), *found]
    finally:
        for client in apis.values():
            await client.aclose()
        if db is not None:
            db.dispose()


def _slack(settings: Settings) -> SlackWebApi | None:
    if settings.slack_bot_token is None:
        return None
    return make_web_client(
        settings.slack_bot_token.get_secret_value(),
        settings.slack_api_url,
        timeout=SLACK_TIMEOUT_SECONDS,
    )


def _apis(
    settings: Settings, transport: httpx.AsyncBaseTransport | None, found: list[Finding]
) -> dict[str, GitHubClient | GitLabClient]:
    """The code hosts' clients whose credentials are set; unusable credentials are findings."""
    retry = RetryPolicy(attempts=1)
    apis: dict[str, GitHubClient | GitLabClient] = {}
    try:
        github = github_client_from_settings(settings, transport=transport, retry=retry)
    except CredentialsError as exc:
        found.append(failed("api github", str(exc), "correct the GitHub App credentials"))
    else:
        if github is not None:
            apis["github"] = github
    gitlab = gitlab_client_from_settings(settings, transport=transport, retry=retry)
    if gitlab is not None:
        apis["gitlab"] = gitlab
    return apis


def _database(settings: Settings) -> tuple[Database | None, str | None]:
    try:
        return Database(make_engine(settings.database_url)), None
    except Exception as exc:  # a URL or driver it cannot use; the URL may hold a password
        return None, type(exc).__name__


def _settings_problem(exc: ValidationError) -> Finding:
    """The environment variables that do not validate, by name and rule (never their values)."""
    where = "; ".join(
        f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in exc.errors()
    )
    return failed(
        "settings",
        f"the environment does not validate: {where}",
        "correct these variables (see README's list of settings)",
    )
