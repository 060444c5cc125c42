"""Who merged and who approved the GitLab merge requests of a release may not approve it.

Through the real app: GitLab's Deployment Hook in with `X-Gitlab-Token`, signed Slack clicks,
and a fake GitLab API at the network edge answering the compare, merge request and approval
calls as GitLab documents them (`merge_user`/`merged_by`, `approved_by: [{user: {...}}]`,
errors as `{"message": ...}`). The client's own tests at the end talk to the fake directly.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from sqlmodel import select

from bot.app import Overrides
from bot.config.loading import parse_config
from bot.ports import Commit, Comparison
from bot.store.tables import AuditEvent
from integrations.gitlab.client import GitLabClient
from integrations.gitlab.merge_requests import with_changes
from integrations.http import RetryPolicy, make_client
from integrations.sandbox.webapi import FakeSlackWebApi
from tests.conftest import Bot, BotFactory
from tests.fakes import FakeEdge, FrozenClock
from tests.helpers import GITLAB_TOKEN, SHA_A, SHA_B, example_config_data
from tests.slackflow import click, told
from tests.test_gitlab_gates import (
    API_TOKEN,
    FakeGitLab,
    deployment_hook,
    gates,
    gitlab_sends,
)

API = "https://gitlab.com/api/v4"
PROJECT = "/api/v4/projects/acme%2Fledger"
UNKNOWN = "the people behind this change are unknown"


async def _no_sleep(seconds: float) -> None:
    return None


class GitLabWithMergeRequests(FakeGitLab):
    """The gate tests' GitLab, plus the merge requests of the commits and their approvals.

    `merge_request(...)` adds one; `lookup_status` makes both calls fail as GitLab does."""

    def __init__(self) -> None:
        super().__init__()
        self.merge_requests: dict[int, dict[str, Any]] = {}
        self.approved_by: dict[int, list[str]] = {}
        self.lookup_status = 200

    def merge_request(
        self,
        iid: int,
        *,
        state: str = "merged",
        merge_user: str | None = None,
        merged_by: str | None = None,
        approved_by: tuple[str, ...] = (),
    ) -> None:
        def user(name: str | None) -> dict[str, Any] | None:
            return {"id": 500 + iid, "username": name, "name": name} if name else None

        self.merge_requests[iid] = {
            "id": 9000 + iid,
            "iid": iid,
            "project_id": 30,
            "state": state,
            "title": "Post ledger entries in batches",
            "author": {"id": 7, "username": "dana.dev", "name": "Dana"},
            "merge_user": user(merge_user),
            "merged_by": user(merged_by),
            "web_url": f"https://gitlab.com/acme/ledger/-/merge_requests/{iid}",
        }
        self.approved_by[iid] = list(approved_by)

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = unquote(request.url.path)
        if not path.endswith(("/merge_requests", "/approvals")):
            return super().handle(request)
        self.requests.append(request)
        if request.headers.get("private-token") != API_TOKEN:
            return httpx.Response(401, json={"message": "401 Unauthorized"})
        if self.lookup_status != 200:
            message = "403 Forbidden" if self.lookup_status == 403 else "Service Unavailable"
            return httpx.Response(self.lookup_status, json={"message": message})
        if path.endswith("/merge_requests"):
            return httpx.Response(200, json=list(self.merge_requests.values()))
        iid = int(path.split("/")[-2])
        approvals = {
            "id": 9000 + iid,
            "iid": iid,
            "approved": bool(self.approved_by[iid]),
            "approved_by": [
                {"user": {"id": 600 + i, "username": name, "name": name}}
                for i, name in enumerate(self.approved_by[iid])
            ],
        }
        return httpx.Response(200, json=approvals)


def config() -> Any:
    """ledger's production gate is GitLab's, one approval from S0RELMGRS; U0OWNER01 is
    `owner` on GitLab (the example's identities) and U0RM2 `ravi.gl`."""
    data = example_config_data()
    data["identities"]["U0RM2"] = {"gitlab": "ravi.gl"}
    data["services"]["ledger"]["environments"] = [
        {"name": "staging", "track": {"gitlab_environment": "staging"}},
        {
            "name": "production",
            "track": {"gitlab_environment": "production"},
            "gate": {"approvals": 1, "approvers": ["S0RELMGRS"]},
            "deploy": {"gitlab_deployment_approval": {}},
        },
    ]
    return parse_config(data)


@pytest.fixture
def gitlab() -> GitLabWithMergeRequests:
    return GitLabWithMergeRequests()


@pytest.fixture
async def bot(
    bot_factory: BotFactory, clock: FrozenClock, gitlab: GitLabWithMergeRequests
) -> AsyncIterator[Bot]:
    """The app with a GitLab token; its compare client retries 5xx without waiting."""
    edge = FakeEdge()

    def route(request: httpx.Request) -> httpx.Response:
        if request.url.host == "gitlab.com":
            return gitlab.handle(request)
        return edge.transport.handle_request(request)

    transport = httpx.MockTransport(route)
    scm = GitLabClient(
        make_client(API, transport=transport),
        token=API_TOKEN,
        retry=RetryPolicy(sleep=_no_sleep),
    )
    overrides = Overrides(
        clock=clock,
        start_scheduler=False,
        run_outbox_worker=False,
        process_before_response=True,
        http_transport=transport,
        scm_clients={"gitlab": scm},
        lookups={"gitlab": scm},  # the Deployment Hook's full sha, through the same client
        environ={},
        config=config(),
    )
    env = {"GITLAB_WEBHOOK_TOKEN": GITLAB_TOKEN, "GITLAB_TOKEN": API_TOKEN}
    async with bot_factory(env=env, overrides=overrides) as running:
        yield running
    await scm.aclose()


async def open_gate(bot: Bot, gitlab: GitLabWithMergeRequests) -> int:
    """GitLab holds ledger's production deployment of SHA_A for approval; its gate opens."""
    gitlab.hold(15)
    await gitlab_sends(bot, "Deployment Hook", deployment_hook("blocked"))
    [gate] = gates(bot)
    assert gate.status == "pending"
    return gate.id or 0


def audited(bot: Bot, action: str) -> list[dict[str, Any]]:
    with bot.runtime.db.read() as session:
        events = session.exec(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)
        ).all()
    return [json.loads(e.details) for e in events]


# --- mergers and approvers are barred ---------------------------------------------------------


async def test_the_merger_and_the_approver_of_a_merge_request_cannot_approve_its_release(
    bot: Bot, slack: FakeSlackWebApi, gitlab: GitLabWithMergeRequests
) -> None:
    gitlab.merge_request(7, merge_user="Owner", approved_by=("ravi.gl",))  # U0OWNER01, U0RM2
    gate_id = await open_gate(bot, gitlab)
    asked = [unquote(r.url.path) for r in gitlab.requests]
    assert f"/api/v4/projects/acme/ledger/repository/commits/{SHA_A}/merge_requests" in asked
    assert "/api/v4/projects/acme/ledger/merge_requests/7/approvals" in asked

    await click(bot, "U0OWNER01", "release_approve", gate_id)
    assert "you merged this change" in told(slack, "U0OWNER01")
    await click(bot, "U0RM2", "release_approve", gate_id)
    assert "you approved this change in review" in told(slack, "U0RM2")
    assert gates(bot)[0].status == "pending"
    assert gitlab.approvals() == []  # nothing reached GitLab's deployment approval

    await click(bot, "U0RM1", "release_approve", gate_id)  # touched nothing
    assert gates(bot)[0].status == "approved"
    [(path, body)] = gitlab.approvals()
    assert path == "/api/v4/projects/30/deployments/15/approval" and body["status"] == "approved"


async def test_an_older_gitlab_names_the_merger_in_merged_by(
    bot: Bot, slack: FakeSlackWebApi, gitlab: GitLabWithMergeRequests
) -> None:
    gitlab.merge_request(7, merged_by="owner")  # before GitLab 14.7: no merge_user
    gate_id = await open_gate(bot, gitlab)

    await click(bot, "U0OWNER01", "release_approve", gate_id)
    assert "you merged this change" in told(slack, "U0OWNER01")
    assert gates(bot)[0].status == "pending"


async def test_an_open_merge_request_has_no_merger_but_its_approvers_are_barred(
    bot: Bot, slack: FakeSlackWebApi, gitlab: GitLabWithMergeRequests
) -> None:
    # merge when the pipeline succeeds, set by owner: not merged yet
    gitlab.merge_request(8, state="opened", merge_user="owner", approved_by=("Ravi.GL",))
    gate_id = await open_gate(bot, gitlab)

    await click(bot, "U0RM2", "release_approve", gate_id)
    assert "you approved this change in review" in told(slack, "U0RM2")
    await click(bot, "U0OWNER01", "release_approve", gate_id)
    assert gates(bot)[0].status == "approved"


# --- GitLab will not say: the people are unknown ----------------------------------------------


@pytest.mark.parametrize(
    ("status", "said"),
    [(403, "the token may not read this project; it needs read_api"), (503, "503")],
)
async def test_when_gitlab_does_not_list_the_merge_requests_nobody_may_approve(
    bot: Bot, slack: FakeSlackWebApi, gitlab: GitLabWithMergeRequests, status: int, said: str
) -> None:
    gitlab.merge_request(7, merge_user="owner")
    gitlab.lookup_status = status
    gate_id = await open_gate(bot, gitlab)

    await click(bot, "U0RM1", "release_approve", gate_id)
    refusal = told(slack, "U0RM1")
    assert f"{UNKNOWN}: GitLab did not list the merge requests of the commits" in refusal
    assert said in refusal
    assert gates(bot)[0].status == "pending"
    assert gitlab.approvals() == []
    [refused] = audited(bot, "gate.decision_refused")
    assert "GitLab did not list the merge requests" in refused["reason"]


# --- the client on its own --------------------------------------------------------------------


def commit(sha: str) -> Commit:
    return Commit(sha=sha, message="Change", author="Dana", authored_at=None)


@pytest.fixture
def lookups(gitlab: GitLabWithMergeRequests) -> Callable[..., Any]:
    async def run(*shas: str) -> Comparison:
        client = GitLabClient(
            make_client(API, transport=httpx.MockTransport(gitlab.handle)),
            token=API_TOKEN,
            retry=RetryPolicy(attempts=1, sleep=_no_sleep),
        )
        found = Comparison(
            commits=tuple(commit(sha) for sha in shas), files=(), total_commits=2, truncated=False
        )
        try:
            return await with_changes(client._get_with, "acme%2Fledger", found)
        finally:
            await client.aclose()

    return run


async def test_each_merge_request_is_read_once_whatever_the_number_of_its_commits(
    gitlab: GitLabWithMergeRequests, lookups: Callable[..., Any]
) -> None:
    gitlab.merge_request(7, merge_user="owner", merged_by="someone-else", approved_by=("a", "b"))
    gitlab.merge_request(3, state="closed", approved_by=("c",))

    found = await lookups(SHA_A, SHA_B)

    assert [(c.number, c.merged_by, c.approved_by) for c in found.changes] == [
        (3, None, ("c",)),  # closed without merging: nobody merged it
        (7, "owner", ("a", "b")),  # merge_user wins over the deprecated merged_by
    ]
    assert found.changes[1].url == "https://gitlab.com/acme/ledger/-/merge_requests/7"
    assert found.people_unknown is None
    listed = [r for r in gitlab.requests if r.url.path.endswith("/merge_requests")]
    assert len(listed) == 2 and all(r.url.params["per_page"] == "100" for r in listed)
    approvals = [unquote(r.url.path) for r in gitlab.requests if r.url.path.endswith("/approvals")]
    assert sorted(approvals) == [
        "/api/v4/projects/acme/ledger/merge_requests/3/approvals",
        "/api/v4/projects/acme/ledger/merge_requests/7/approvals",
    ]


async def test_a_merge_request_gitlab_names_without_its_iid_makes_the_people_unknown(
    gitlab: GitLabWithMergeRequests, lookups: Callable[..., Any]
) -> None:
    gitlab.merge_request(7, merge_user="owner")
    del gitlab.merge_requests[7]["iid"]

    found = await lookups(SHA_A)

    assert found.changes == ()
    assert found.people_unknown is not None
    assert "GitLab did not list the merge requests of the commits" in found.people_unknown
    assert "a merge request has no iid" in found.people_unknown
    assert API_TOKEN not in found.people_unknown
