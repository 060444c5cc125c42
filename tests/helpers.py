"""Signing and payload helpers: requests built the way GitHub and Slack build them."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import time
import uuid
from pathlib import Path
from typing import Any

from slack_sdk.signature import SignatureVerifier

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED = REPO_ROOT.parent / "shared"  # the specification folder, beside a checkout in CI
FIXTURES = REPO_ROOT / "tests" / "fixtures"  # copies of the published payloads (SOURCES.md)
EXAMPLE_CONFIG = REPO_ROOT / "examples" / "releasebot.yaml"

GITHUB_SECRET = "It's a Secret to Everybody"
SLACK_SIGNING_SECRET = "slack-signing-secret-for-tests"
SLACK_TOKEN = "xoxb-test-token"

SHA_A = "f95f852bd8fca8fcc58a9a2d6c842781e32a215e"
SHA_B = "9e602444f49b8b69c3a9a51fa97a115f3d323508"


def fixture(provider: str, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / provider / name).read_text())
    return data


def fixture_files(provider: str) -> list[Path]:
    return sorted((FIXTURES / provider).glob("*.json"))


def github_signature(body: bytes, secret: str = GITHUB_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def github_headers(
    event: str, body: bytes, *, delivery: str | None = None, secret: str = GITHUB_SECRET
) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "x-github-event": event,
        "x-github-delivery": delivery or str(uuid.uuid4()),
        "x-hub-signature-256": github_signature(body, secret),
        "user-agent": "GitHub-Hookshot/test",
    }


def deployment_status(
    state: str,
    *,
    repo: str = "acme/checkout",
    environment: str = "production",
    sha: str = SHA_A,
    deployment_id: int = 145988746,
    creator: str = "Codertocat",
) -> dict[str, Any]:
    """The published deployment_status fixture, pointed at a configured service."""
    body = copy.deepcopy(fixture("github", "deployment_status__success.json"))
    body["repository"]["full_name"] = repo
    body["deployment"].update(id=deployment_id, sha=sha, environment=environment)
    body["deployment"]["creator"]["login"] = creator
    body["deployment_status"].update(state=state, environment=environment)
    return body


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


def slack_headers(
    body: bytes,
    *,
    content_type: str,
    timestamp: int | None = None,
    secret: str = SLACK_SIGNING_SECRET,
) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(secret).generate_signature(timestamp=ts, body=body)
    return {
        "x-slack-request-timestamp": ts,
        "x-slack-signature": signature,
        "content-type": content_type,
    }
