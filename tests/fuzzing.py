"""Hostile requests for every inbound edge, as hypothesis strategies, signed correctly.

Each strategy draws a whole request (`Inbound`: path, body, headers) for one edge: a real
payload of the provider pointed at a configured service and then mutated (a value swapped for
hostile text, a huge number, a deep or wide structure, a wrong type), or a raw body that is
no payload at all; headers are drawn too (event names, delivery ids, content types). Bodies
are signed after they are drawn, so they get past the signature and reach the parsers.

Used by tests/test_fuzz_inbound.py (bounded, in the suite) and bench/fuzz_inbound.py (long).
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from hypothesis import strategies as st

from tests.helpers import (
    ARGOCD_SECRET,
    GENERIC_SECRET,
    GITLAB_TOKEN,
    JENKINS_SECRET,
    SHA_A,
    SLACK_SIGNING_SECRET,
    argocd_body,
    deployment_status,
    fixture_files,
    generic_body,
    github_signature,
    gitlab_job,
    jenkins_build,
    releasebot_signature,
)

API_TOKEN = "api-token-for-fuzzing"
FUZZ_ENV = {
    "GITLAB_WEBHOOK_TOKEN": GITLAB_TOKEN,
    "ARGOCD_WEBHOOK_SECRET": ARGOCD_SECRET,
    "JENKINS_WEBHOOK_SECRET": JENKINS_SECRET,
    "RELEASEBOT_GENERIC_WEBHOOK_SECRET": GENERIC_SECRET,
    "RELEASEBOT_API_TOKEN": API_TOKEN,
}
FORM = "application/x-www-form-urlencoded"
USERS = ["U0RM1", "U0RM2", "U0OWNER01", "U0SRE1", "U0BOTH", "U0STRANGER"]
SERVICES = ["checkout", "payments-batch", "storefront", "ledger", "payments"]
ENVIRONMENTS = ["production", "staging", "prod", "all"]


@dataclass(frozen=True)
class Inbound:
    """One request to send: where, what, with which headers (already signed)."""

    path: str
    body: bytes
    headers: dict[str, str]

    def __repr__(self) -> str:  # hypothesis prints the failing example
        return f"Inbound({self.path!r}, {self.body[:300]!r}, {self.headers!r})"


# --- values ------------------------------------------------------------------------------------

HOSTILE_TEXT = st.sampled_from(
    [
        "",
        " ",
        "\ud800",
        "a\udfffb",
        "\x00",
        "nul\x00inside",
        "<script>alert(1)</script>",
        "*bold* <!channel> <@U0RM1> &amp;",
        "x" * 5000,
        "é" * 300,
        "\U0001f680" * 100,
        "../../etc/passwd",
        "${jndi:ldap://x}",
        "'; DROP TABLE deployment; --",
        "9" * 5000,
        "-1",
        "1e309",
        SHA_A,
        SHA_A[:7],
        "v1.2.3",
        "2026-11-17T09:58:00Z",
        "9999-99-99T99:99:99Z",
    ]
)
TEXT = st.one_of(HOSTILE_TEXT, st.text(max_size=40), st.text(min_size=190, max_size=260))
NUMBER = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 2**31, 2**63, 10**400]),
    st.floats(allow_nan=True, allow_infinity=True),
)
SCALAR = st.one_of(TEXT, NUMBER, st.booleans(), st.none())
SHAPED = st.recursive(
    SCALAR,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(TEXT, children, max_size=4)
    ),
    max_leaves=12,
)


def nested(depth: int) -> Any:
    value: Any = 1
    for n in range(depth):
        value = [value] if n % 2 else {"k": value}
    return value


VALUE = st.one_of(
    SCALAR,
    SHAPED,
    st.sampled_from([60, 63, 64, 65, 200]).map(nested),
    st.just(list(range(2000))),
)


# --- mutating real payloads --------------------------------------------------------------------


def _paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Where a value may be swapped: the real payload's own fields (not what a mutation put
    in, so nesting never compounds past what a strategy chose)."""
    found: list[tuple[Any, ...]] = [prefix] if prefix else []
    if len(prefix) >= 8:
        return found
    if isinstance(data, dict):
        for key, value in data.items():
            found.extend(_paths(value, (*prefix, key)))
    elif isinstance(data, list):
        for index, value in enumerate(data[:5]):
            found.extend(_paths(value, (*prefix, index)))
    return found


def _set(data: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    parent = data
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = value
    return data


@st.composite
def mutated(draw: st.DrawFn, bases: list[Callable[[], Any]]) -> Any:
    """A real payload with a few of its values (or keys' values) replaced."""
    data = copy.deepcopy(draw(st.sampled_from(bases))())
    for _ in range(draw(st.integers(min_value=0, max_value=4))):
        paths = _paths(data)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        value = draw(VALUE) if draw(st.booleans()) else draw(SCALAR)
        data = _set(data, path, copy.deepcopy(value))  # strategies may share one object
    return data


def dumps(data: Any) -> bytes:
    """JSON as a hostile sender writes it: lone surrogates and NULs as \\u escapes."""
    return json.dumps(data, allow_nan=True).encode("utf-8")


RAW = st.one_of(
    st.binary(max_size=200),
    st.sampled_from(
        [
            b"",
            b"null",
            b"[]",
            b'"text"',
            b"{",
            b'{"a": "\\ud800"}',
            b'{"a": "\\u0000"}',
            b"[" * 70 + b"]" * 70,
            b"[" * 50_000,
            b'{"a":' * 3000,
            b"\xff\xfe{}",
            b"\xef\xbb\xbf{}",
            b"1" * 5000,
            b'{"n": ' + b"9" * 5000 + b"}",
            b'"' + b'\\"' * 3000,
        ]
    ),
)


@st.composite
def body(draw: st.DrawFn, bases: list[Callable[[], Any]]) -> bytes:
    if draw(st.integers(min_value=0, max_value=5)) == 0:
        return draw(RAW)
    return dumps(draw(mutated(bases)))


HEADER_TEXT = st.one_of(
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30),
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=12),
    st.sampled_from(["a" * 201, "b" * 200, "x" * 4000, "\t", " spaced "]),
)
CONTENT_TYPE = st.one_of(
    st.just("application/json"),
    st.sampled_from(
        ["application/json; charset=utf-8", "text/plain", "", FORM, "application/vnd+json"]
    ),
)


def _maybe(draw: st.DrawFn, usual: str, other: st.SearchStrategy[str] = HEADER_TEXT) -> str:
    return usual if draw(st.integers(min_value=0, max_value=3)) else draw(other)


# --- the webhook routes --------------------------------------------------------------------------


def _fixtures(provider: str) -> list[Callable[[], Any]]:
    """Each published payload of `provider`, read afresh for every draw."""

    def reader(path: Path) -> Callable[[], Any]:
        return lambda: json.loads(path.read_text())

    return [reader(path) for path in fixture_files(provider)]


GITHUB_BASES = [lambda: deployment_status("success"), *_fixtures("github")]
GITHUB_EVENTS = [
    "deployment_status",
    "deployment",
    "deployment_protection_rule",
    "deployment_review",
    "workflow_run",
    "ping",
    "push",
]


@st.composite
def github(draw: st.DrawFn) -> Inbound:
    raw = draw(body(GITHUB_BASES))
    content_type = draw(CONTENT_TYPE)
    if content_type == FORM:
        raw = urlencode({"payload": raw.decode("utf-8", "replace")}).encode()
    headers = {
        "content-type": content_type,
        "x-github-event": _maybe(draw, draw(st.sampled_from(GITHUB_EVENTS))),
        "x-github-delivery": _maybe(draw, f"gh-{draw(st.uuids())}"),
        "x-hub-signature-256": github_signature(raw),
    }
    return Inbound("/webhooks/github", raw, headers)


@st.composite
def gitlab(draw: st.DrawFn) -> Inbound:
    raw = draw(body([lambda: gitlab_job("success"), *_fixtures("gitlab")]))
    event = draw(st.sampled_from(["Job Hook", "Pipeline Hook", "Deployment Hook", "Push Hook"]))
    headers = {
        "content-type": draw(CONTENT_TYPE),
        "x-gitlab-token": GITLAB_TOKEN,
        "x-gitlab-event": _maybe(draw, event),
        "idempotency-key": _maybe(draw, f"gl-{draw(st.uuids())}"),
    }
    return Inbound("/webhooks/gitlab", raw, headers)


@st.composite
def argocd(draw: st.DrawFn) -> Inbound:
    events = ["sync-succeeded", "sync-running", "sync-failed", "health-degraded", "deployed"]
    event = draw(st.sampled_from(events))
    raw = draw(body([lambda: argocd_body(event), *_fixtures("argocd")]))
    headers = {"content-type": draw(CONTENT_TYPE), "x-releasebot-token": ARGOCD_SECRET}
    if draw(st.booleans()):
        headers["x-releasebot-delivery"] = draw(HEADER_TEXT)
    return Inbound("/webhooks/argocd", raw, headers)


def _signed(path: str, raw: bytes, secret: str, draw: st.DrawFn) -> Inbound:
    headers = {
        "content-type": draw(CONTENT_TYPE),
        "x-releasebot-signature": releasebot_signature(raw, secret),
    }
    if draw(st.booleans()):
        headers["x-releasebot-delivery"] = draw(HEADER_TEXT)
    return Inbound(path, raw, headers)


@st.composite
def jenkins(draw: st.DrawFn) -> Inbound:
    bases = [
        lambda: jenkins_build("COMPLETED", "SUCCESS"),
        lambda: jenkins_build("STARTED"),
        *_fixtures("jenkins"),
    ]
    return _signed("/webhooks/jenkins", draw(body(bases)), JENKINS_SECRET, draw)


@st.composite
def generic(draw: st.DrawFn) -> Inbound:
    bases = [generic_body, lambda: generic_body("started"), lambda: generic_body("failed")]
    return _signed("/webhooks/generic", draw(body(bases)), GENERIC_SECRET, draw)


FLUX_REVISIONS = {
    "Kustomization": ("kustomize.toolkit.fluxcd.io/revision", f"main@sha1:{SHA_A}"),
    "HelmRelease": ("helm.toolkit.fluxcd.io/revision", "2.3.0"),
    "OCIRepository": ("source.toolkit.fluxcd.io/revision", "latest@sha256:" + "ab" * 32),
}


def flux_event(kind: str, reason: str, severity: str = "info", **metadata: str) -> dict[str, Any]:
    """A Flux notification-controller event about payments-batch in production, as a
    `generic-hmac` Provider posts it."""
    key, revision = FLUX_REVISIONS[kind]
    return {
        "involvedObject": {"kind": kind, "name": "payments-batch", "namespace": "production"},
        "severity": severity,
        "reason": reason,
        "message": f"{reason} for payments-batch",
        "timestamp": "2026-12-06T10:00:00Z",
        "reportingController": "kustomize-controller",
        "metadata": {key: revision, **metadata},
    }


@st.composite
def flux(draw: st.DrawFn) -> Inbound:
    bases = [
        lambda: flux_event("Kustomization", "ReconciliationSucceeded"),
        lambda: flux_event("Kustomization", "Progressing"),
        lambda: flux_event("HelmRelease", "UpgradeSucceeded", version="v2.3.0"),
        lambda: flux_event("HelmRelease", "RollbackSucceeded", "error"),
        lambda: flux_event("OCIRepository", "ReconciliationSucceeded", service="checkout"),
    ]
    raw = draw(body(bases))
    headers = {
        "content-type": draw(CONTENT_TYPE),
        "x-signature": github_signature(raw, GENERIC_SECRET),  # Flux signs as GitHub does
    }
    return Inbound("/webhooks/flux", raw, headers)


@st.composite
def gates_api(draw: st.DrawFn) -> Inbound:
    ask = {"service": "payments-batch", "environment": "production", "version": "v2.3.0"}
    bases = [lambda: dict(ask), lambda: {**ask, "sha": SHA_A, "url": "https://ci/run/1"}]
    headers = {"content-type": draw(CONTENT_TYPE), "authorization": f"Bearer {API_TOKEN}"}
    return Inbound("/api/v1/gates", draw(body(bases)), headers)


# --- Slack ---------------------------------------------------------------------------------------


def _slack(raw: bytes, content_type: str, draw: st.DrawFn) -> Inbound:
    """Signed as Slack signs (over the raw bytes, which need not be UTF-8)."""
    timestamp = str(int(time.time()))
    digest = hmac.new(
        SLACK_SIGNING_SECRET.encode(), b"v0:" + timestamp.encode() + b":" + raw, hashlib.sha256
    ).hexdigest()
    headers = {
        "x-slack-request-timestamp": timestamp,
        "x-slack-signature": f"v0={digest}",
        "content-type": content_type,
    }
    if draw(st.integers(min_value=0, max_value=9)) == 7:  # hypothesis favours 0
        headers["x-slack-request-timestamp"] = draw(
            st.sampled_from(["abc", "", "9" * 40, "-1", "1e9", " 1"])
        )
    return Inbound("/slack/events", raw, headers)


WORD = st.one_of(
    st.sampled_from([*SERVICES, *ENVIRONMENTS, "latest", "to", "--", "v1.4.0", SHA_A[:7]]),
    st.sampled_from(["99999999999d", "1h", "0s", "30d", "31d", "-5m", "9" * 30, "1" * 5000]),
    st.from_regex(r"[0-9]{1,25}(ms|s|m|h|d)?", fullmatch=True),
    TEXT,
)
SUBCOMMAND = st.sampled_from(
    [
        "help",
        "status",
        "history",
        "pending",
        "promote",
        "rollback",
        "freeze",
        "unfreeze",
        "lock",
        "unlock",
        "metrics",
        "frezee",
        "",
    ]
)


@st.composite
def command(draw: st.DrawFn) -> Inbound:
    words = [draw(SUBCOMMAND), *draw(st.lists(WORD, max_size=5))]
    text = " ".join(words)
    form = {
        "team_id": "T0SANDBOX",
        "channel_id": _maybe(draw, "#checkout-deploys"),
        "user_id": draw(st.one_of(st.sampled_from(USERS), TEXT)),
        "command": "/release",
        "text": text,
        "trigger_id": "trigger-fuzz",
    }
    raw = urlencode({k: v.encode("utf-8", "surrogatepass") for k, v in form.items()}).encode()
    return _slack(raw, FORM, draw)


ACTIONS = [
    "release_approve",
    "release_reject",
    "release_promote",
    "release_rollback",
    "release_unlock",
    "release_break_glass",
    "release_break_glass_confirm",
    "release_rerequest",
    "release_flag",
    "release_flag_reject",
    "release_flag_rerequest",
    "release_kill_switch",
    "release_list_page",
    "release_unknown",
]
ACTION_VALUE = st.one_of(
    st.integers(min_value=-5, max_value=5).map(str),
    st.sampled_from(["1", "2", str(2**31), str(2**63), "9" * 30, "9" * 5000, "", "x"]),
    st.fixed_dictionaries(
        {"t": st.one_of(st.sampled_from(["status", "pending", "history checkout"]), TEXT)},
        optional={"o": st.one_of(NUMBER, TEXT)},
    ).map(json.dumps),
    st.just("[" * 1500 + "]" * 1500),
    TEXT,
)


def _interaction(payload: dict[str, Any], draw: st.DrawFn) -> Inbound:
    if draw(st.integers(min_value=0, max_value=4)) == 0:
        payload = draw(mutated([lambda: payload]))
    raw = urlencode({"payload": dumps(payload).decode("utf-8")}).encode()
    return _slack(raw, FORM, draw)


@st.composite
def click(draw: st.DrawFn) -> Inbound:
    payload = {
        "type": "block_actions",
        "team": {"id": "T0SANDBOX"},
        "user": {"id": draw(st.one_of(st.sampled_from(USERS), TEXT))},
        "api_app_id": "A0RELBOT",
        "trigger_id": "trigger-fuzz",
        "channel": {"id": "#checkout-deploys"},
        "container": {"type": "message", "channel_id": "#checkout-deploys"},
        "actions": [
            {
                "type": "button",
                "action_id": draw(st.sampled_from(ACTIONS)),
                "block_id": "b",
                "value": draw(ACTION_VALUE),
                "action_ts": "1.0",
            }
        ],
    }
    return _interaction(payload, draw)


MODALS = [
    "release_reject_modal",
    "release_rollback_modal",
    "release_break_glass_modal",
    "release_flag_reject_modal",
    "x",
]


@st.composite
def submission(draw: st.DrawFn) -> Inbound:
    metadata = draw(
        st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    "gate_id": st.one_of(NUMBER, TEXT),
                    "deployment_id": st.one_of(NUMBER, TEXT),
                    "channel": TEXT,
                },
            ).map(json.dumps),
            TEXT,
            st.just("[" * 1500 + "]" * 1500),
        )
    )
    payload = {
        "type": "view_submission",
        "team": {"id": "T0SANDBOX"},
        "user": {"id": draw(st.one_of(st.sampled_from(USERS), TEXT))},
        "view": {
            "id": "V1",
            "type": "modal",
            "callback_id": draw(st.sampled_from(MODALS)),
            "private_metadata": metadata,
            "state": {
                "values": {
                    "reason": {"reason_input": {"type": "plain_text_input", "value": draw(TEXT)}}
                }
            },
        },
    }
    return _interaction(payload, draw)


@st.composite
def slack_event(draw: st.DrawFn) -> Inbound:
    payload = draw(
        mutated(
            [
                lambda: {
                    "type": "event_callback",
                    "event_id": "Ev0FUZZ",
                    "event": {"type": "app_mention", "text": "hi", "ts": "1.0", "channel": "C1"},
                },
                lambda: {"type": "url_verification", "challenge": "abc"},
                lambda: {"type": "event_callback", "event": {"type": "app_home_opened"}},
            ]
        )
    )
    raw = dumps(payload) if draw(st.integers(min_value=0, max_value=5)) else draw(RAW)
    return _slack(raw, draw(CONTENT_TYPE), draw)


EDGES: dict[str, st.SearchStrategy[Inbound]] = {
    "github": github(),
    "gitlab": gitlab(),
    "argocd": argocd(),
    "jenkins": jenkins(),
    "generic": generic(),
    "flux": flux(),
    "gates": gates_api(),
    "slack-command": command(),
    "slack-click": click(),
    "slack-submission": submission(),
    "slack-event": slack_event(),
}
