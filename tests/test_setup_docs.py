"""The setup guides name only variables, routes, scopes and commands the code has."""

from __future__ import annotations

import re

import pytest

from bot.cli import build_parser
from bot.manifests import GITHUB_EVENTS, SLACK_EVENTS, SLACK_METHODS, github_permissions
from bot.settings import Settings
from handlers.routes import routes
from tests.helpers import REPO_ROOT

GUIDES = ("setup-slack.md", "setup-github.md", "setup-gitlab.md")
ENV_VAR = re.compile(r"`((?:SLACK|GITHUB|GITLAB|RELEASEBOT)_[A-Z0-9_]+)")
TABLES = {"SLACK_METHODS", "SLACK_EVENTS", "GITHUB_ENDPOINTS", "GITHUB_EVENTS"}  # bot/manifests.py
ROUTE = re.compile(r"(?<![\w.])(/(?:slack|webhooks|api|healthz|readyz|metrics)[\w/{}]*)")


def _text(name: str) -> str:
    return (REPO_ROOT / "docs" / name).read_text(encoding="utf-8")


def _aliases() -> set[str]:
    found: set[str] = set()
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        found.update(c for c in getattr(alias, "choices", ()) if isinstance(c, str))
    return found


@pytest.mark.parametrize("name", GUIDES)
def test_every_variable_named_is_a_setting(name: str) -> None:
    named = set(ENV_VAR.findall(_text(name))) - TABLES
    assert named, name
    assert named <= _aliases(), named - _aliases()


@pytest.mark.parametrize("name", GUIDES)
def test_every_bot_route_named_exists(name: str) -> None:
    paths = {getattr(route, "path", "") for route in routes()}
    text = re.sub(r"https?://\S+", "", _text(name))  # GitHub's and GitLab's own URLs
    named = ROUTE.findall(text)
    assert named, name
    for route in named:
        assert route.rstrip("/") in paths, route


def test_the_slack_guide_explains_every_scope_and_method() -> None:
    text = _text("setup-slack.md")
    for row in (*SLACK_METHODS, *SLACK_EVENTS):
        name = row.method if hasattr(row, "method") else row.event
        assert f"`{name}`" in text, name
        for scope in row.scopes:
            assert f"`{scope}`" in text, scope
    assert "`connections:write`" in text and "SLACK_APP_TOKEN" in text


def test_the_github_guide_explains_every_permission_and_event() -> None:
    text = _text("setup-github.md")
    for permission in github_permissions():
        # as GitHub's settings page names it: pull_requests is "Pull requests"
        assert f"| {permission.replace('_', ' ').capitalize()} |" in text, permission
    for row in GITHUB_EVENTS:
        assert f"`{row.event}`" in text, row.event


def test_the_commands_in_the_guides_parse() -> None:
    parser = build_parser()
    parser.parse_args(["slack", "manifest", "--url", "https://bot.example.com"])
    parser.parse_args(["slack", "manifest", "--socket-mode"])
    parser.parse_args(
        [
            "github",
            "manifest",
            "--url",
            "https://bot.example.com",
            "--redirect-url",
            "https://bot.example.com/",
            "--html",
            "--org",
            "acme",
        ]
    )
