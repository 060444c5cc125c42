"""`releasebot doctor`: every check's good and bad case against fakes at the network edge.

Slack is a small fake Web API on loopback (reached by slack_sdk's real client) that knows a
token, the scopes it was granted (sent in `x-oauth-scopes`), channels and user groups;
GitHub and GitLab are httpx MockTransports; the database is a real one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bot.app import Overrides
from bot.cli import main
from bot.cli.doctor import examine
from bot.config import parse_config
from bot.domain.findings import Finding
from bot.manifests import slack_bot_scopes
from bot.settings import load_settings
from bot.store.db import Database, make_engine
from bot.usecases.doctor import database_findings, secret_findings
from tests.conftest import BotFactory
from tests.fakes import FrozenClock
from tests.servers import serve_in_thread

TOKEN = "xoxb-doctor-0123456789-SECRETPART"
SIGNING_SECRET = "signing-secret-NEVER-PRINTED"
WEBHOOK_SECRET = "webhook-secret-NEVER-PRINTED"
GITHUB_TOKEN = "ghp_NEVERPRINTED0123456789"
GITLAB_TOKEN = "glpat-NEVERPRINTED"
SECRETS = (TOKEN, SIGNING_SECRET, WEBHOOK_SECRET, GITHUB_TOKEN, GITLAB_TOKEN, "SECRETPART")

CONFIG: dict[str, Any] = {
    "slack": {"default_channel": "#deploys", "release_managers": ["S0RELMGRS"]},
    "services": {
        "checkout": {
            "repo": "github:acme/checkout",
            "channel": "#checkout-deploys",
            "environments": [
                {
                    "name": "production",
                    "track": {"github_environment": "production"},
                    "gate": {"approvals": 1, "approvers": ["S0RELMGRS"]},
                }
            ],
        }
    },
}


# ---- a fake Slack workspace ------------------------------------------------------------------


@dataclass
class Workspace:
    """What the fake Slack knows, and every call it was asked (method, params)."""

    scopes: list[str] = field(default_factory=slack_bot_scopes)
    member_of: dict[str, str] = field(
        default_factory=lambda: {"C0DEPLOYS": "deploys", "C0CHECKOUT": "checkout-deploys"}
    )
    public: dict[str, str] = field(
        default_factory=lambda: {
            "C0DEPLOYS": "deploys",
            "C0CHECKOUT": "checkout-deploys",
            "C0LEDGER": "ledger-deploys",
        }
    )
    private: dict[str, str] = field(default_factory=lambda: {"G0SECRET": "secret-deploys"})
    groups: dict[str, list[str]] = field(default_factory=lambda: {"S0RELMGRS": ["U1", "U2"]})
    calls: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    hold_auth: threading.Event | None = None  # auth.test waits until this is set

    def called(self, method: str) -> list[dict[str, str]]:
        return [params for name, params in self.calls if name == method]


class FakeSlack:
    def __init__(self) -> None:
        self.workspace = Workspace()

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/api/{method}", self._endpoint, methods=["GET", "POST"])])

    async def _endpoint(self, request: Request) -> JSONResponse:
        ws = self.workspace
        method = request.path_params["method"]
        params = {k: str(v) for k, v in request.query_params.items()}
        if request.method == "POST":
            params.update(parse_qsl((await request.body()).decode()))
        ws.calls.append((method, params))
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return JSONResponse({"ok": False, "error": "invalid_auth"})
        headers = {"x-oauth-scopes": ",".join(ws.scopes)}
        body = await self._answer(ws, method, params)
        return JSONResponse(body, headers=headers)

    async def _answer(self, ws: Workspace, method: str, params: dict[str, str]) -> dict[str, Any]:
        if method == "auth.test":
            if ws.hold_auth is not None:  # answered once the test lets it go
                await asyncio.to_thread(ws.hold_auth.wait, 10)
            return {"ok": True, "user": "releasebot", "team": "Acme", "user_id": "U0BOT"}
        needs = {
            "users.conversations": "channels:read",
            "conversations.list": "channels:read",
            "conversations.join": "channels:join",
            "usergroups.users.list": "usergroups:read",
        }
        if method in needs and needs[method] not in ws.scopes:
            return {"ok": False, "error": "missing_scope", "needed": needs[method]}
        if method == "users.conversations":
            listed = dict(ws.member_of)
            if "private_channel" not in params.get("types", ""):
                listed = {k: v for k, v in listed.items() if k not in ws.private}
            return _page(listed)
        if method == "conversations.list":
            return _page(ws.public)
        if method == "conversations.join":
            channel = params.get("channel", "")
            if channel in ws.private:
                return {"ok": False, "error": "method_not_supported_for_channel_type"}
            if channel not in ws.public:
                return {"ok": False, "error": "channel_not_found"}
            ws.member_of[channel] = ws.public[channel]
            return {"ok": True, "channel": {"id": channel}}
        if method == "usergroups.users.list":
            group = ws.groups.get(params.get("usergroup", ""))
            if group is None:
                return {"ok": False, "error": "no_such_subteam"}
            return {"ok": True, "users": group}
        return {"ok": False, "error": "unknown_method"}


def _page(channels: dict[str, str]) -> dict[str, Any]:
    return {
        "ok": True,
        "channels": [{"id": cid, "name": name} for cid, name in channels.items()],
        "response_metadata": {"next_cursor": ""},
    }


@pytest.fixture(scope="module")
def fake_slack_server() -> Iterator[tuple[FakeSlack, str]]:
    fake = FakeSlack()
    with serve_in_thread(fake.app()) as url:
        yield fake, url


@pytest.fixture
def fake_slack(fake_slack_server: tuple[FakeSlack, str]) -> Workspace:
    fake_slack_server[0].workspace = Workspace()
    return fake_slack_server[0].workspace


@pytest.fixture
def env(
    fake_slack_server: tuple[FakeSlack, str], database_url: str, tmp_path: Path
) -> dict[str, str]:
    """A setup where every check passes: config, secrets, Slack and a migrated database."""
    config = tmp_path / "releasebot.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    return {
        "RELEASEBOT_CONFIG": str(config),
        "RELEASEBOT_DATABASE_URL": database_url,
        "SLACK_BOT_TOKEN": TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "RELEASEBOT_SLACK_API_URL": f"{fake_slack_server[1]}/api/",
        "GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
    }


async def run(
    env: dict[str, str],
    *,
    config: dict[str, Any] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    tmp_path: Path | None = None,
    **changes: str | None,
) -> dict[str, Finding]:
    """The findings of `examine` for `env` with `changes` (None unsets), by check name."""
    merged = {**env, **{k: v for k, v in changes.items() if v is not None}}
    for key, value in changes.items():
        if value is None:
            merged.pop(key, None)
    if config is not None:
        assert tmp_path is not None
        path = tmp_path / "other.yaml"
        path.write_text(yaml.safe_dump(config))
        merged["RELEASEBOT_CONFIG"] = str(path)
    findings = await examine(load_settings(merged), environ=merged, transport=transport)
    return {finding.check: finding for finding in findings}


def problems_of(found: dict[str, Finding]) -> dict[str, Finding]:
    return {check: finding for check, finding in found.items() if not finding.ok}


# ---- all is well -------------------------------------------------------------------------------


async def test_a_healthy_setup_has_no_problem(env: dict[str, str], fake_slack: Workspace) -> None:
    found = await run(env)
    assert problems_of(found) == {}
    assert set(found) >= {
        "slack.signing_secret",
        "slack.token",
        "slack.scopes",
        "slack.channel #deploys",
        "slack.channel #checkout-deploys",
        "slack.usergroup S0RELMGRS",
        "env GITHUB_WEBHOOK_SECRET",
        "api github",
        "database",
    }
    assert found["slack.token"].note == "the bot @releasebot in Acme"
    assert fake_slack.called("conversations.join") == []


# ---- Slack: token and scopes -------------------------------------------------------------------


async def test_a_refused_token_is_one_problem_and_stops_the_slack_checks(
    env: dict[str, str], fake_slack: Workspace
) -> None:
    found = await run(env, SLACK_BOT_TOKEN="xoxb-revoked")
    token = found["slack.token"]
    assert not token.ok and "invalid_auth" in (token.problem or "")
    assert "SLACK_BOT_TOKEN" in (token.fix or "")
    assert [name for name, _ in fake_slack.calls] == ["auth.test"]
    assert not any(check.startswith("slack.channel") for check in found)


async def test_slack_not_answering_is_a_problem(env: dict[str, str]) -> None:
    found = await run(env, RELEASEBOT_SLACK_API_URL="http://127.0.0.1:9/api/")
    assert "did not answer" in (found["slack.token"].problem or "")


async def test_missing_scopes_are_named_with_the_fix(
    env: dict[str, str], fake_slack: Workspace
) -> None:
    fake_slack.scopes = [s for s in slack_bot_scopes() if s not in ("usergroups:read", "commands")]
    found = await run(env)
    scopes = found["slack.scopes"]
    assert not scopes.ok
    assert scopes.problem == "the bot token lacks commands, usergroups:read"
    assert "reinstall" in (scopes.fix or "")
    group = found["slack.usergroup S0RELMGRS"]
    assert not group.ok and "usergroups:read" in (group.fix or "")


def test_every_scope_the_manifest_asks_for_passes() -> None:
    from bot.usecases.doctor_slack import check_scopes

    assert check_scopes(frozenset(slack_bot_scopes())).ok
    assert check_scopes(None).ok  # Slack did not say: not a problem of the setup
    assert not check_scopes(frozenset({"chat:write"})).ok


# ---- Slack: channels ---------------------------------------------------------------------------


async def test_a_public_channel_the_bot_is_not_in_is_joined_with_channels_join(
    env: dict[str, str], fake_slack: Workspace
) -> None:
    del fake_slack.member_of["C0CHECKOUT"]
    found = await run(env)
    channel = found["slack.channel #checkout-deploys"]
    assert channel.ok and "joined" in (channel.note or "")
    assert fake_slack.called("conversations.join") == [{"channel": "C0CHECKOUT"}]


async def test_without_channels_join_it_says_how_to_invite_and_does_not_try(
    env: dict[str, str], fake_slack: Workspace
) -> None:
    del fake_slack.member_of["C0CHECKOUT"]
    fake_slack.scopes = [s for s in slack_bot_scopes() if s != "channels:join"]
    found = await run(env)
    channel = found["slack.channel #checkout-deploys"]
    assert not channel.ok
    assert "channels:join" in (channel.problem or "")
    assert "/invite @releasebot" in (channel.fix or "")
    assert fake_slack.called("conversations.join") == []


async def test_a_private_channel_needs_an_invitation(
    env: dict[str, str], fake_slack: Workspace, tmp_path: Path
) -> None:
    config = json.loads(json.dumps(CONFIG))
    config["services"]["checkout"]["channel"] = "G0SECRET"
    found = await run(env, config=config, tmp_path=tmp_path)
    channel = found["slack.channel G0SECRET"]
    assert not channel.ok and "private" in (channel.problem or "")
    assert "/invite @releasebot" in (channel.fix or "")


async def test_a_channel_nobody_can_find_names_the_yaml_path(
    env: dict[str, str], fake_slack: Workspace, tmp_path: Path
) -> None:
    config = json.loads(json.dumps(CONFIG))
    config["services"]["checkout"]["channel"] = "#checkuot-deploys"
    found = await run(env, config=config, tmp_path=tmp_path)
    channel = found["slack.channel #checkuot-deploys"]
    assert not channel.ok
    assert "services.checkout.channel" in (channel.fix or "")
    assert fake_slack.called("conversations.join") == []


async def test_a_private_channel_the_bot_is_in_counts(
    env: dict[str, str], fake_slack: Workspace, tmp_path: Path
) -> None:
    fake_slack.member_of["G0SECRET"] = "secret-deploys"
    config = json.loads(json.dumps(CONFIG))
    config["services"]["checkout"]["channel"] = "#secret-deploys"
    found = await run(env, config=config, tmp_path=tmp_path)
    assert found["slack.channel #secret-deploys"].ok


# ---- Slack: user groups ------------------------------------------------------------------------


async def test_an_unknown_or_empty_user_group_is_a_problem(
    env: dict[str, str], fake_slack: Workspace, tmp_path: Path
) -> None:
    fake_slack.groups["S0EMPTY"] = []
    config = json.loads(json.dumps(CONFIG))
    config["slack"]["oncall"] = ["S0EMPTY"]
    config["services"]["checkout"]["owners"] = ["S0GONE"]
    found = await run(env, config=config, tmp_path=tmp_path)
    assert found["slack.usergroup S0RELMGRS"].ok
    assert found["slack.usergroup S0RELMGRS"].note == "2 members"
    empty = found["slack.usergroup S0EMPTY"]
    assert not empty.ok and "no members" in (empty.problem or "")
    gone = found["slack.usergroup S0GONE"]
    assert not gone.ok and "services.checkout.owners" in (gone.fix or "")


# ---- Slack: the sandbox ------------------------------------------------------------------------


async def test_without_a_token_the_sandbox_is_used_and_slack_checks_do_not_apply(
    env: dict[str, str], fake_slack: Workspace
) -> None:
    found = await run(env, SLACK_BOT_TOKEN=None)
    slack = found["slack"]
    assert slack.ok
    assert "not applicable" in (slack.note or "") and "sandbox" in (slack.note or "")
    assert not any(check.startswith("slack.") for check in found)
    assert fake_slack.calls == []
    assert problems_of(found) == {}


async def test_an_app_token_without_a_bot_token_is_a_problem(env: dict[str, str]) -> None:
    found = await run(env, SLACK_BOT_TOKEN=None, SLACK_APP_TOKEN="xapp-1-SECRETPART")
    assert not found["slack.token"].ok
    assert "SLACK_BOT_TOKEN" in (found["slack.token"].fix or "")


async def test_a_missing_signing_secret_is_a_problem_except_in_socket_mode(
    env: dict[str, str], fake_slack: Workspace
) -> None:
    found = await run(env, SLACK_SIGNING_SECRET=None)
    assert not found["slack.signing_secret"].ok
    found = await run(env, SLACK_SIGNING_SECRET=None, SLACK_APP_TOKEN="xapp-1-SECRETPART")
    assert found["slack.signing_secret"].ok


# ---- secrets -----------------------------------------------------------------------------------


def test_each_variable_the_config_names_must_be_set() -> None:
    config = parse_config(
        {
            "slack": {"default_channel": "#deploys"},
            "services": {
                "batch": {
                    "repo": "github:acme/batch",
                    "oncall": {"pagerduty": {"routing_key_env": "PD_BATCH_KEY"}},
                    "environments": [
                        {
                            "name": "production",
                            "track": {"generic": True},
                            "deploy": {
                                "webhook": {
                                    "url": "https://deploy.example/hook",
                                    "secret_env": "BATCH_HOOK_SECRET",
                                }
                            },
                        }
                    ],
                }
            },
        }
    )
    settings = load_settings({"RELEASEBOT_GENERIC_WEBHOOK_SECRET": WEBHOOK_SECRET})
    found = {f.check: f for f in secret_findings(config, settings, {"PD_BATCH_KEY": "pd-x"})}
    assert found["env PD_BATCH_KEY"].ok
    assert found["env RELEASEBOT_GENERIC_WEBHOOK_SECRET"].ok
    hook = found["env BATCH_HOOK_SECRET"]
    assert not hook.ok
    assert "services.batch.environments[0].deploy.webhook.secret_env" in (hook.problem or "")
    assert "set BATCH_HOOK_SECRET" in (hook.fix or "")
    assert "env GITHUB_WEBHOOK_SECRET" not in found  # tracked by the generic webhook only


LD_KEY = "api-ld-NEVER-PRINTED"
DD_KEY = "dd-key-NEVER-PRINTED"


def _with_flags_and_markers(**flag: Any) -> dict[str, Any]:
    """CONFIG with a `release:` block of one flag (`flag`: its platform) and deploy markers
    on Grafana, Datadog and New Relic."""
    data = json.loads(json.dumps(CONFIG))
    checkout = data["services"]["checkout"]
    checkout["release"] = {
        "require": [{"approvers": ["S0RELMGRS"], "count": 1}],
        "flags": [{"key": "new-checkout-flow", **flag}],
    }
    checkout["markers"] = {
        "grafana": {"token_env": "GRAFANA_TOKEN"},
        "datadog": {"api_key_env": "DD_API_KEY"},
        "newrelic": {"api_key_env": "NEW_RELIC_API_KEY", "entity_guid": "MXxBUE18"},
    }
    return data


@pytest.mark.parametrize(
    ("flag", "variable", "path"),
    [
        (
            {"launchdarkly": {"project": "acme-web", "environment": "production"}},
            "LAUNCHDARKLY_API_KEY",
            "services.checkout.release.flags[0].launchdarkly.api_key_env",
        ),
        (
            {
                "unleash": {
                    "url": "https://unleash.acme.example",
                    "environment": "production",
                    "token_env": "UNLEASH_CHECKOUT_TOKEN",
                }
            },
            "UNLEASH_CHECKOUT_TOKEN",
            "services.checkout.release.flags[0].unleash.token_env",
        ),
        (
            {"webhook": {"url": "https://flags.acme.example/hook", "secret_env": "FLAG_HOOK"}},
            "FLAG_HOOK",
            "services.checkout.release.flags[0].webhook.secret_env",
        ),
    ],
)
def test_a_flag_platform_s_token_must_be_set(
    flag: dict[str, Any], variable: str, path: str
) -> None:
    config = parse_config(_with_flags_and_markers(**flag))
    settings = load_settings({"GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET})
    markers_set = {"GRAFANA_URL": "https://grafana.acme.example", "GRAFANA_TOKEN": "glsa-x"}
    markers_set |= {"DD_API_KEY": DD_KEY, "NEW_RELIC_API_KEY": "NRAK-x"}

    missing = secret_findings(config, settings, markers_set)
    problem = {f.check: f for f in missing}[f"env {variable}"]
    assert not problem.ok
    assert f"{variable} is not set" in (problem.problem or "")
    assert path in (problem.problem or "")
    assert f"set {variable}" in (problem.fix or "")
    assert [f.check for f in missing if not f.ok] == [f"env {variable}"]

    present = secret_findings(config, settings, {**markers_set, variable: LD_KEY})
    found = {f.check: f for f in present}
    assert found[f"env {variable}"].ok
    assert found[f"env {variable}"].note == f"set (for {path})"
    assert all(f.ok for f in present)
    shown = json.dumps([f.as_json() for f in missing + present])
    assert LD_KEY not in shown and DD_KEY not in shown


def test_each_dashboard_s_marker_credentials_must_be_set() -> None:
    flag = {"launchdarkly": {"project": "acme-web", "environment": "production"}}
    config = parse_config(_with_flags_and_markers(**flag))
    settings = load_settings({"GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET})
    environ = {"LAUNCHDARKLY_API_KEY": LD_KEY, "DD_API_KEY": DD_KEY, "GRAFANA_TOKEN": " "}

    found = {f.check: f for f in secret_findings(config, settings, environ)}

    assert found["env DD_API_KEY"].ok
    assert found["env DD_API_KEY"].note == "set (for services.checkout.markers.datadog.api_key_env)"
    for variable, path in (
        ("GRAFANA_URL", "services.checkout.markers.grafana.url_env"),
        ("GRAFANA_TOKEN", "services.checkout.markers.grafana.token_env"),
        ("NEW_RELIC_API_KEY", "services.checkout.markers.newrelic.api_key_env"),
    ):
        problem = found[f"env {variable}"]
        assert not problem.ok, variable
        assert f"{variable} is not set" in (problem.problem or "") and path in (
            problem.problem or ""
        )
    assert LD_KEY not in json.dumps([f.as_json() for f in found.values()])


def test_the_command_names_a_missing_flag_token_and_never_prints_it(
    env: dict[str, str],
    fake_slack: Workspace,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    data = _with_flags_and_markers(
        launchdarkly={"project": "acme-web", "environment": "production"}
    )
    del data["services"]["checkout"]["markers"]
    path = tmp_path / "flags.yaml"
    path.write_text(yaml.safe_dump(data))
    _set(monkeypatch, {**env, "RELEASEBOT_CONFIG": str(path)})
    monkeypatch.delenv("LAUNCHDARKLY_API_KEY", raising=False)

    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    [problem] = [line for line in out.splitlines() if line.startswith("PROBLEM")]
    assert "LAUNCHDARKLY_API_KEY is not set" in problem

    monkeypatch.setenv("LAUNCHDARKLY_API_KEY", LD_KEY)
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "PROBLEM" not in out
    assert (
        "ok       env LAUNCHDARKLY_API_KEY: set "
        "(for services.checkout.release.flags[0].launchdarkly.api_key_env)"
    ) in out.splitlines()
    assert LD_KEY not in out


async def test_a_missing_webhook_secret_and_half_a_github_app(env: dict[str, str]) -> None:
    found = await run(env, GITHUB_WEBHOOK_SECRET=None, GITHUB_APP_ID="12345")
    secret = found["env GITHUB_WEBHOOK_SECRET"]
    assert not secret.ok and "services.checkout.environments[0].track" in (secret.problem or "")
    assert not found["env GITHUB_APP_PRIVATE_KEY"].ok
    assert not found["api github"].ok


# ---- the code hosts' APIs ----------------------------------------------------------------------


def _code_hosts(status: int) -> httpx.MockTransport:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/rate_limit":
            assert request.headers["authorization"] == f"Bearer {GITHUB_TOKEN}"
            if status != 200:
                return httpx.Response(status, json={"message": "Bad credentials"})
            return httpx.Response(
                200, json={"resources": {"core": {"limit": 5000, "remaining": 4999}}}
            )
        if request.url.path == "/api/v4/version":
            assert request.headers["private-token"] == GITLAB_TOKEN
            if status != 200:
                return httpx.Response(status, json={"message": "401 Unauthorized"})
            return httpx.Response(200, json={"version": "17.5.0", "revision": "abc"})
        return httpx.Response(404)

    return httpx.MockTransport(answer)


GITLAB_SERVICE = {
    "repo": "gitlab:acme/ledger",
    "environments": [{"name": "production", "track": {"gitlab_environment": "production"}}],
}


async def test_the_code_hosts_answer(env: dict[str, str], tmp_path: Path) -> None:
    config = json.loads(json.dumps(CONFIG))
    config["services"]["ledger"] = GITLAB_SERVICE
    found = await run(
        env,
        config=config,
        tmp_path=tmp_path,
        transport=_code_hosts(200),
        GITHUB_TOKEN=GITHUB_TOKEN,
        GITLAB_TOKEN=GITLAB_TOKEN,
        GITLAB_WEBHOOK_TOKEN=WEBHOOK_SECRET,
    )
    assert found["api github"].ok and "4999 of 5000" in (found["api github"].note or "")
    assert found["api gitlab"].ok and "17.5.0" in (found["api gitlab"].note or "")
    assert problems_of(found) == {}


async def test_a_code_host_refusing_the_credentials_is_a_problem(
    env: dict[str, str], tmp_path: Path
) -> None:
    config = json.loads(json.dumps(CONFIG))
    config["services"]["ledger"] = GITLAB_SERVICE
    found = await run(
        env,
        config=config,
        tmp_path=tmp_path,
        transport=_code_hosts(401),
        GITHUB_TOKEN=GITHUB_TOKEN,
        GITLAB_TOKEN=GITLAB_TOKEN,
        GITLAB_WEBHOOK_TOKEN=WEBHOOK_SECRET,
    )
    github, gitlab = found["api github"], found["api gitlab"]
    assert (
        not github.ok and "401" in (github.problem or "") and "GITHUB_TOKEN" in (github.fix or "")
    )
    assert not gitlab.ok and "GITLAB_TOKEN" in (gitlab.problem or "")
    assert GITHUB_TOKEN not in repr(found) and GITLAB_TOKEN not in repr(found)


async def test_a_github_app_is_asked_with_its_jwt(env: dict[str, str]) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    asked: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        assert request.headers["authorization"].startswith("Bearer ey")
        return httpx.Response(200, json={"slug": "acme-releasebot"})

    found = await run(
        env,
        transport=httpx.MockTransport(answer),
        GITHUB_APP_ID="12345",
        GITHUB_APP_PRIVATE_KEY=pem,
    )
    assert asked == ["/app"]
    assert found["api github"].note == "answers to the GitHub App acme-releasebot"


# ---- the database ------------------------------------------------------------------------------


async def test_a_database_behind_its_migrations_is_a_problem(
    env: dict[str, str], database_url_factory: Any
) -> None:
    found = await run(env, RELEASEBOT_DATABASE_URL=database_url_factory(migrated=False))
    migrations = found["database.migrations"]
    assert not migrations.ok
    assert "releasebot db upgrade" in (migrations.fix or "")


async def test_a_database_that_does_not_answer_is_a_problem(tmp_path: Path) -> None:
    missing_dir = tmp_path / "no" / "such" / "dir" / "releasebot.db"
    db = Database(make_engine(f"sqlite:///{missing_dir}"))
    try:
        (finding,) = await database_findings(db, "head")
    finally:
        db.dispose()
    assert not finding.ok and "unreachable" in (finding.problem or "")
    assert "RELEASEBOT_DATABASE_URL" in (finding.fix or "")
    (unopened,) = await database_findings(None, "head", "ArgumentError")
    assert not unopened.ok and "ArgumentError" in (unopened.problem or "")


# ---- the command -------------------------------------------------------------------------------


def _set(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)


def test_the_command_exits_0_when_all_is_well(
    env: dict[str, str],
    fake_slack: Workspace,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _set(monkeypatch, env)
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "PROBLEM" not in out
    assert out.strip().endswith("checks passed")


def test_the_command_exits_1_and_prints_each_problem_with_its_fix(
    env: dict[str, str],
    fake_slack: Workspace,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _set(monkeypatch, env)
    monkeypatch.delenv("GITHUB_WEBHOOK_SECRET")
    fake_slack.groups.clear()
    assert main(["doctor", "--config", env["RELEASEBOT_CONFIG"]]) == 1
    out = capsys.readouterr().out
    lines = out.splitlines()
    problem_lines = [n for n, line in enumerate(lines) if line.startswith("PROBLEM")]
    assert len(problem_lines) == 2
    assert all(lines[n + 1].strip().startswith("fix: ") for n in problem_lines)
    assert lines[-1] == "2 problems in 9 checks"


def test_json_lists_every_finding_for_scripts(
    env: dict[str, str],
    fake_slack: Workspace,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _set(monkeypatch, env)
    monkeypatch.delenv("GITHUB_WEBHOOK_SECRET")
    assert main(["doctor", "--json"]) == 1
    findings = json.loads(capsys.readouterr().out)
    assert isinstance(findings, list) and findings
    for item in findings:
        assert set(item) == {"check", "ok", "problem", "fix", "note"}
        assert isinstance(item["check"], str) and isinstance(item["ok"], bool)
        if item["ok"]:
            assert item["problem"] is None and item["fix"] is None
        else:
            assert item["problem"] and item["fix"]
    failed = [item["check"] for item in findings if not item["ok"]]
    assert failed == ["env GITHUB_WEBHOOK_SECRET"]


def test_an_invalid_config_is_one_problem(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("slack: {}\nservices: {}\n")
    assert main(["doctor", "--json", "--config", str(broken)]) == 1
    (finding,) = json.loads(capsys.readouterr().out)
    assert finding["check"] == "config" and "slack.default_channel" in finding["problem"]


@pytest.mark.parametrize("as_json", [False, True])
def test_no_secret_is_ever_printed(
    as_json: bool,
    env: dict[str, str],
    fake_slack: Workspace,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _set(monkeypatch, env)
    monkeypatch.setenv("SLACK_APP_TOKEN", "xapp-1-SECRETPART")
    monkeypatch.setenv("GITHUB_TOKEN", GITHUB_TOKEN)  # asks GitHub for real: refused offline
    monkeypatch.setenv("GITHUB_API_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("GITLAB_TOKEN", GITLAB_TOKEN)
    fake_slack.scopes = ["chat:write"]  # many problems, each with its text
    main(["doctor", *(["--json"] if as_json else [])])
    out = capsys.readouterr()
    for secret in SECRETS:
        assert secret not in out.out and secret not in out.err


# ---- at start-up -------------------------------------------------------------------------------


async def test_start_up_logs_the_findings_without_delaying_healthz(
    bot_factory: BotFactory,
    env: dict[str, str],
    fake_slack: Workspace,
    clock: FrozenClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="releasebot")
    fake_slack.hold_auth = threading.Event()  # Slack is slow to answer auth.test
    overrides = Overrides(
        clock=clock, start_scheduler=False, run_outbox_worker=False, startup_checks=True
    )
    del fake_slack.member_of["C0CHECKOUT"]

    def logged() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.getMessage().startswith("check ")]

    database_checked = asyncio.Event()
    loop = asyncio.get_running_loop()

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("check database"):
                loop.call_soon_threadsafe(database_checked.set)

    watch = Watch()
    logging.getLogger().addHandler(watch)
    try:
        async with bot_factory(env=env, overrides=overrides) as bot:
            answer = await bot.http.get("/healthz")
            assert answer.status_code == 200
            assert logged() == []  # start-up did not wait for the checks
            fake_slack.hold_auth.set()
            await asyncio.wait_for(database_checked.wait(), timeout=10)
    finally:
        logging.getLogger().removeHandler(watch)
    lines = logged()
    assert "check slack.token: ok (the bot @releasebot in Acme)" in lines
    assert (
        "check slack.channel #checkout-deploys: ok (the bot was not a member and has joined it)"
        in lines
    )
    assert any(line.startswith("check database: ok") for line in lines)
    assert all(secret not in "\n".join(lines) for secret in SECRETS)


async def test_start_up_checks_stay_off_while_the_scheduler_is(
    bot_factory: BotFactory, env: dict[str, str], fake_slack: Workspace
) -> None:
    async with bot_factory(env=env) as bot:
        assert (await bot.http.get("/healthz")).status_code == 200
    assert fake_slack.calls == []
