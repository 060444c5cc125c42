"""`releasebot slack manifest`: Slack's documented manifest fields, and every scope the code needs.

The Web API methods are found by reading the source, not from a list kept by hand: every
attribute of a `client` that is an `AsyncWebClient` method (mapped to its Web API name through
slack_sdk's own `api_call("...")`), every method name given to `api_call(...)` or `_call(...)`,
and Bolt's `say(...)` (chat.postMessage).
"""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path
from typing import Any

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.blocks.commands import SUBCOMMANDS
from bot.cli import main
from bot.manifests import SLACK_EVENTS, SLACK_METHODS, slack_bot_scopes, slack_manifest
from tests.helpers import EXAMPLE_CONFIG, REPO_ROOT

URL = "https://bot.example.com"

# Slack's app manifest reference (docs.slack.dev/reference/app-manifest): the fields we use.
TOP_LEVEL = {"_metadata", "display_information", "features", "oauth_config", "settings"}
DOCUMENTED: dict[str, set[str]] = {
    "_metadata": {"major_version", "minor_version"},
    "display_information": {"name", "description", "background_color", "long_description"},
    "features": {"app_home", "bot_user", "shortcuts", "slash_commands", "unfurl_domains"},
    "features.app_home": {
        "home_tab_enabled",
        "messages_tab_enabled",
        "messages_tab_read_only_enabled",
    },
    "features.bot_user": {"display_name", "always_online"},
    "features.slash_commands[]": {"command", "description", "should_escape", "url", "usage_hint"},
    "oauth_config": {"scopes", "redirect_urls", "token_management_enabled"},
    "oauth_config.scopes": {"bot", "user"},
    "settings": {
        "allowed_ip_address_ranges",
        "event_subscriptions",
        "incoming_webhooks",
        "interactivity",
        "org_deploy_enabled",
        "socket_mode_enabled",
        "token_rotation_enabled",
        "function_runtime",
    },
    "settings.event_subscriptions": {
        "request_url",
        "bot_events",
        "user_events",
        "metadata_subscriptions",
    },
    "settings.interactivity": {"is_enabled", "request_url", "message_menu_options_url"},
}

SOURCE_DIRS = ("bot", "handlers", "integrations/slack")
CLIENT_ATTRIBUTE = re.compile(r"\b_?client\.([a-z]+(?:_[A-Za-z]+)+)\b")
NAMED_CALL = re.compile(r"\b(?:api_call|_call)\(\s*[\"']([a-z]+(?:\.[A-Za-z]+)+)[\"']")
BOLT_SAY = re.compile(r"\bawait say\(")
EVENT_LISTENER = re.compile(r"\.event\(\s*[\"']([a-z_.]+)[\"']")
SDK_METHOD = re.compile(r"api_call\(\s*[\"']([a-z]+(?:\.[A-Za-z]+)+)[\"']")


def _sources() -> list[Path]:
    return sorted(path for folder in SOURCE_DIRS for path in (REPO_ROOT / folder).rglob("*.py"))


def _web_api_name(attribute: str) -> str | None:
    """The Web API method an `AsyncWebClient` attribute calls, by slack_sdk's own source."""
    method = getattr(AsyncWebClient, attribute, None)
    if method is None or not callable(method):
        return None
    found = SDK_METHOD.search(inspect.getsource(method))
    return found.group(1) if found else None


def methods_the_code_calls() -> dict[str, set[str]]:
    """{Web API method: files calling it} over the bot's own code (the sandbox is Slack's fake)."""
    calls: dict[str, set[str]] = {}
    for path in _sources():
        text = path.read_text(encoding="utf-8")
        where = str(path.relative_to(REPO_ROOT))
        names = {_web_api_name(attr) for attr in CLIENT_ATTRIBUTE.findall(text)}
        names.update(NAMED_CALL.findall(text))
        if BOLT_SAY.search(text):
            names.add("chat.postMessage")
        for name in names - {None}:
            assert name is not None
            calls.setdefault(name, set()).add(where)
    return calls


def events_the_code_listens_to() -> set[str]:
    return {
        event
        for path in _sources()
        for event in EVENT_LISTENER.findall(path.read_text(encoding="utf-8"))
    }


def _check_keys(value: dict[str, Any], where: str) -> None:
    assert set(value) <= DOCUMENTED[where], f"{where}: {set(value) - DOCUMENTED[where]}"
    for key, child in value.items():
        inner = f"{where}.{key}"
        if isinstance(child, dict) and inner in DOCUMENTED:
            _check_keys(child, inner)
        elif isinstance(child, list) and f"{inner}[]" in DOCUMENTED:
            for item in child:
                _check_keys(item, f"{inner}[]")


@pytest.mark.parametrize("socket_mode", [False, True])
def test_the_manifest_uses_only_documented_fields(socket_mode: bool) -> None:
    manifest = slack_manifest(url=None if socket_mode else URL, socket_mode=socket_mode)
    assert set(manifest) <= TOP_LEVEL
    for key, value in manifest.items():
        _check_keys(value, key)
    assert manifest["display_information"]["name"]
    assert len(manifest["display_information"]["description"]) <= 140
    json.dumps(manifest)  # plain JSON throughout


def test_the_scan_finds_the_calls_it_should() -> None:
    calls = methods_the_code_calls()
    # Guards the scan itself: these are known call sites of each kind.
    assert "handlers/slack/home.py" in calls["views.publish"]  # client.views_publish(...)
    assert "integrations/slack/directory.py" in calls["usergroups.users.list"]  # _call("...")
    assert "handlers/slack/app.py" in calls["chat.postMessage"]  # Bolt's say(...)
    assert "integrations/slack/sender.py" in calls["chat.update"]


def test_every_web_api_method_the_code_calls_has_its_scopes_in_the_manifest() -> None:
    scopes = set(slack_manifest(url=URL)["oauth_config"]["scopes"]["bot"])
    table = {row.method: row for row in SLACK_METHODS}
    for method, files in methods_the_code_calls().items():
        assert method in table, f"{method} (called in {sorted(files)}) is not in SLACK_METHODS"
        assert set(table[method].scopes) <= scopes, method


def test_the_method_table_has_no_stale_rows() -> None:
    called = set(methods_the_code_calls())
    implicit = {"auth.test"}  # Bolt calls it itself
    assert {row.method for row in SLACK_METHODS} - implicit <= called


def test_the_manifest_subscribes_to_exactly_the_events_the_code_listens_to() -> None:
    manifest = slack_manifest(url=URL)
    listened = events_the_code_listens_to()
    assert listened == {"app_home_opened", "app_mention"}  # guards the scan
    assert set(manifest["settings"]["event_subscriptions"]["bot_events"]) == listened
    assert {row.event for row in SLACK_EVENTS} == listened
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert all(set(row.scopes) <= scopes for row in SLACK_EVENTS)


def test_no_scope_is_asked_for_without_a_reason() -> None:
    reasons = {scope for row in (*SLACK_METHODS, *SLACK_EVENTS) for scope in row.scopes}
    assert set(slack_bot_scopes()) == reasons | {"commands"}
    assert all(row.why for row in (*SLACK_METHODS, *SLACK_EVENTS))


def test_over_http_everything_goes_to_slack_events() -> None:
    manifest = slack_manifest(url=URL + "/", slash_command="/deploy")
    request_url = f"{URL}/slack/events"
    (command,) = manifest["features"]["slash_commands"]
    assert command["command"] == "/deploy"
    assert command["url"] == request_url
    assert manifest["settings"]["interactivity"] == {"is_enabled": True, "request_url": request_url}
    assert manifest["settings"]["event_subscriptions"]["request_url"] == request_url
    assert manifest["settings"]["socket_mode_enabled"] is False
    assert manifest["features"]["app_home"]["home_tab_enabled"] is True
    assert "commands" in manifest["oauth_config"]["scopes"]["bot"]


def test_socket_mode_drops_every_url_and_turns_socket_mode_on() -> None:
    manifest = slack_manifest(url=None, socket_mode=True)
    assert manifest["settings"]["socket_mode_enabled"] is True
    assert "http" not in json.dumps(manifest)
    assert manifest["settings"]["interactivity"] == {"is_enabled": True}
    assert "request_url" not in manifest["settings"]["event_subscriptions"]
    with pytest.raises(ValueError):
        slack_manifest(url=None)


def test_the_usage_hint_names_every_subcommand() -> None:
    (command,) = slack_manifest(url=URL)["features"]["slash_commands"]
    assert [word.strip() for word in command["usage_hint"].split("|")] == list(SUBCOMMANDS)


def test_the_command_prints_json_with_the_configs_slash_command(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = tmp_path / "releasebot.yaml"
    config.write_text(
        EXAMPLE_CONFIG.read_text().replace('slash_command: "/release"', 'slash_command: "/ship"')
    )
    assert main(["slack", "manifest", "--url", URL, "--config", str(config)]) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest == slack_manifest(url=URL, slash_command="/ship")


def test_the_command_in_socket_mode(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["slack", "manifest", "--socket-mode", "--config", str(EXAMPLE_CONFIG)]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out) == slack_manifest(url=None, socket_mode=True)


def test_without_a_config_the_command_is_release(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RELEASEBOT_CONFIG", raising=False)
    assert main(["slack", "manifest", "--url", URL]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["features"]["slash_commands"][0]["command"] == "/release"
    assert "no config" in out.err


def test_a_named_config_that_is_broken_fails(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = tmp_path / "nope.yaml"
    assert main(["slack", "manifest", "--url", URL, "--config", str(missing)]) == 1
    assert "file not found" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["slack", "manifest"],
        ["slack", "manifest", "--url", URL, "--socket-mode"],
    ],
)
def test_url_and_socket_mode_go_one_without_the_other(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*argv, "--config", str(EXAMPLE_CONFIG)]) == 2
    assert capsys.readouterr().out == ""


def test_a_url_must_be_a_url(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["slack", "manifest", "--url", "bot.example.com"])
    assert exited.value.code == 2
    assert "http(s) URL" in capsys.readouterr().err
