"""`releasebot github manifest`: GitHub's documented manifest fields, and a permission for every
REST endpoint the code calls.

The endpoints are found two ways: by running the GitHub client and deployers against a
recording fake (every request they send must match a row of GITHUB_ENDPOINTS whose
permission the manifest grants), and by reading their source (every URL path piece written
there must belong to a row), so a new call cannot slip past both.
"""

from __future__ import annotations

import ast
import html
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bot.cli import main
from bot.manifests import (
    GITHUB_ENDPOINTS,
    GITHUB_EVENTS,
    GitHubEndpoint,
    github_manifest,
    github_web_url,
)
from bot.ports import DeployRequest
from integrations.deployers.github_protection import GitHubProtectionRuleDeployer
from integrations.deployers.github_workflow import GitHubWorkflowDeployer
from integrations.github.client import GITHUB_HEADERS, GitHubAppAuth, GitHubClient
from integrations.github.payloads import HANDLED_EVENTS
from integrations.http import RetryPolicy, make_client
from tests.helpers import REPO_ROOT

URL = "https://bot.example.com"
API = "https://api.github.com"
SHA = "f95f852bd8fca8fcc58a9a2d6c842781e32a215e"
BASE_SHA = "6dcb09b5b57875f334f61aebed695e2e4193db5e"

# docs.github.com: "Registering a GitHub App from a manifest", GitHub App manifest parameters.
MANIFEST_PARAMETERS = {
    "name",
    "url",
    "hook_attributes",
    "redirect_url",
    "callback_urls",
    "setup_url",
    "description",
    "public",
    "default_events",
    "default_permissions",
    "request_oauth_on_install",
    "setup_on_update",
}
HOOK_ATTRIBUTES = {"url", "active"}
ACCESS = {"read": 1, "write": 2}

GITHUB_SOURCES = (
    "integrations/github/client.py",
    "integrations/github/pulls.py",
    "integrations/deployers/github_workflow.py",
    "integrations/deployers/github_protection.py",
)
NOT_ENDPOINTS = {"/api/v3"}  # GitHub Enterprise Server's API prefix, used to find its web pages
PATH_PIECE = re.compile(r"^/?[a-z0-9_]+(?:/[a-z0-9_]+)*/?$")


def _pattern(row: GitHubEndpoint) -> re.Pattern[str]:
    parts = re.split(r"(\{[a-z_]+\})", row.path)
    return re.compile(
        "^" + "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts) + "$"
    )


def endpoint_of(method: str, path: str) -> GitHubEndpoint | None:
    return next(
        (row for row in GITHUB_ENDPOINTS if row.method == method and _pattern(row).match(path)),
        None,
    )


def _private_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


class RecordingGitHub:
    """Answers every endpoint the code uses plausibly, and records what was asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.dispatches = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        method, path = request.method, request.url.path
        self.calls.append((method, path))
        if path.endswith("/access_tokens"):
            return httpx.Response(
                201, json={"token": "ghs_x", "expires_at": "2099-01-01T00:00:00Z"}
            )
        if path.endswith("/installation"):
            return httpx.Response(200, json={"id": 42})
        if path.endswith("/pulls"):  # the pull request that brought the commit in
            return httpx.Response(200, json=[{"number": 7, "merged_at": "2026-11-16T10:00:00Z"}])
        if path.endswith("/pulls/7"):
            return httpx.Response(200, json={"number": 7, "merged_by": {"login": "ada"}})
        if path.endswith("/pulls/7/reviews"):
            return httpx.Response(200, json=[{"state": "APPROVED", "user": {"login": "bo"}}])
        if "/compare/" in path or "/commits/" in path:
            commit = {"sha": SHA, "commit": {"message": "m", "author": {"name": "a"}}}
            return httpx.Response(
                200, json={**commit, "commits": [commit], "files": [], "total_commits": 1}
            )
        if path.endswith("/dispatches"):
            self.dispatches += 1
            if self.dispatches == 1:  # the first answer is lost: the deployer looks for the run
                raise httpx.ReadTimeout("timed out", request=request)
            return httpx.Response(204)
        if path.endswith("/runs"):
            return httpx.Response(200, json={"workflow_runs": []})
        if path.endswith("/deployment_protection_rule"):
            return httpx.Response(204)
        if path == "/rate_limit":
            return httpx.Response(200, json={"resources": {"core": {"limit": 5000}}})
        if path == "/app":
            return httpx.Response(200, json={"slug": "releasebot"})
        return httpx.Response(404, json={"message": "Not Found"})


def _request(kind: str, action: str, **extra: Any) -> DeployRequest:
    return DeployRequest(
        kind=kind,
        action=action,
        service="checkout",
        repo="acme/checkout",
        environment="production",
        sha=SHA,
        request_id="rq-1",
        version="v1.5.0",
        reason="green",
        actor="Ada",
        **extra,
    )


async def _no_sleep(_: float) -> None:
    return None


async def exercise_github(fake: RecordingGitHub) -> None:
    """Every GitHub call path: compare (with and without a base), as a token and as an App,
    a workflow dispatch whose answer is lost, and a protection-rule decision."""
    transport = httpx.MockTransport(fake)
    retry = RetryPolicy(attempts=1, sleep=_no_sleep)
    app = GitHubAppAuth("12345", _private_key(), retry=retry)

    def client() -> httpx.AsyncClient:
        return make_client(API, headers=dict(GITHUB_HEADERS), transport=transport)

    as_token = GitHubClient(client(), token="ghp_x", retry=retry)
    as_app = GitHubClient(client(), app=app, retry=retry)
    for scm in (as_token, as_app):
        await scm.compare(repo="acme/checkout", base=BASE_SHA, head=SHA)
        await scm.compare(repo="acme/checkout", base=None, head=SHA)
        await scm.check_access()  # releasebot doctor
        await scm.aclose()
    workflow = GitHubWorkflowDeployer(client(), app, retry=retry, sleep=_no_sleep)
    await workflow.execute(
        _request("github_workflow", "promote", target={"workflow": "deploy.yml", "ref": "main"})
    )
    await workflow.aclose()
    protection = GitHubProtectionRuleDeployer(client(), app, retry=retry)
    callback = f"{API}/repos/acme/checkout/actions/runs/99/deployment_protection_rule"
    await protection.execute(
        _request(
            "github_protection_rule",
            "approve",
            context={
                "callback_url": callback,
                "environment_name": "production",
                "installation_id": 42,
            },
        )
    )
    await protection.aclose()


def test_the_manifest_uses_only_documented_parameters() -> None:
    manifest = github_manifest(url=URL, redirect_url=f"{URL}/")
    assert set(manifest) <= MANIFEST_PARAMETERS
    assert set(manifest["hook_attributes"]) <= HOOK_ATTRIBUTES
    assert manifest["url"] == URL
    assert manifest["hook_attributes"] == {"url": f"{URL}/webhooks/github", "active": True}
    assert manifest["public"] is False
    assert manifest["redirect_url"] == f"{URL}/"
    assert "redirect_url" not in github_manifest(url=URL + "/")
    assert set(manifest["default_permissions"].values()) <= set(ACCESS)
    json.dumps(manifest)


def test_the_events_are_the_ones_the_webhook_route_handles() -> None:
    events = github_manifest(url=URL)["default_events"]
    assert set(events) == HANDLED_EVENTS - {"ping"}  # GitHub sends ping unasked
    permissions = github_manifest(url=URL)["default_permissions"]
    assert all(row.permission in permissions for row in GITHUB_EVENTS)


async def test_every_request_the_code_sends_has_its_permission() -> None:
    fake = RecordingGitHub()
    await exercise_github(fake)
    permissions = github_manifest(url=URL)["default_permissions"]
    used: set[GitHubEndpoint] = set()
    for method, path in fake.calls:
        row = endpoint_of(method, path)
        assert row is not None, f"{method} {path} is not in GITHUB_ENDPOINTS"
        used.add(row)
        if row.permission is not None:
            assert row.access is not None
            granted = permissions.get(row.permission)
            assert granted is not None, f"{method} {path} needs {row.permission}"
            assert ACCESS[granted] >= ACCESS[row.access], f"{method} {path}: {row.access}"
    assert used == set(GITHUB_ENDPOINTS), "a row of GITHUB_ENDPOINTS is never called"


def _path_pieces(path: Path) -> set[str]:
    """The literal URL path pieces of a module: plain strings and f-string parts like
    `/repos/`, `/compare/` or `/dispatches` (docstrings and prose have spaces: skipped)."""
    pieces: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.JoinedStr):
            values = [v.value for v in node.values if isinstance(v, ast.Constant)]
        elif isinstance(node, ast.Constant):
            values = [node.value]
        else:
            continue
        for value in values:
            if isinstance(value, str) and "/" in value and PATH_PIECE.match(value):
                pieces.add(value)
    return pieces


def test_every_path_written_in_the_github_code_belongs_to_an_endpoint() -> None:
    templates = [row.path for row in GITHUB_ENDPOINTS]
    found: set[str] = set()
    for name in GITHUB_SOURCES:
        found |= _path_pieces(REPO_ROOT / name)
    assert {"/repos/", "/dispatches", "/access_tokens"} <= found  # guards the scan
    for piece in found - NOT_ENDPOINTS:
        assert any(piece in template for template in templates), piece
    # The protection-rule callback path is checked by a regex: its tail must be a row too.
    assert any(t.endswith("/deployment_protection_rule") for t in templates)


def test_permissions_are_the_least_the_endpoints_and_events_need() -> None:
    permissions = github_manifest(url=URL)["default_permissions"]
    assert permissions == {
        "actions": "write",
        "contents": "read",
        "deployments": "write",
        "metadata": "read",
        "pull_requests": "read",
    }


def test_the_command_prints_the_manifest(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["github", "manifest", "--url", URL]) == 0
    assert json.loads(capsys.readouterr().out) == github_manifest(url=URL)


def test_the_html_page_posts_the_manifest_to_github(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GITHUB_API_URL", raising=False)
    assert main(["github", "manifest", "--url", URL, "--html", "--org", "acme"]) == 0
    page = capsys.readouterr().out
    assert 'action="https://github.com/organizations/acme/settings/apps/new"' in page
    assert 'method="post"' in page
    value = re.search(r'name="manifest" value="([^"]*)"', page)
    assert value is not None
    assert json.loads(html.unescape(value.group(1))) == github_manifest(url=URL)


def test_the_html_page_for_an_enterprise_server(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_API_URL", "https://ghe.acme.io/api/v3")
    assert main(["github", "manifest", "--url", URL, "--html"]) == 0
    assert 'action="https://ghe.acme.io/settings/apps/new"' in capsys.readouterr().out
    monkeypatch.setenv("GITHUB_API_URL", "https://proxy.acme.io/github")
    assert main(["github", "manifest", "--url", URL, "--html"]) == 2
    assert "GITHUB_API_URL" in capsys.readouterr().err


def test_web_urls() -> None:
    assert github_web_url("https://api.github.com/") == "https://github.com"
    assert github_web_url("https://ghe.acme.io/api/v3") == "https://ghe.acme.io"
    assert github_web_url("https://elsewhere.io") is None


def test_org_needs_html(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["github", "manifest", "--url", URL, "--org", "acme"]) == 2
    assert "--html" in capsys.readouterr().err
