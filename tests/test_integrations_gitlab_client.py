"""GitLabClient against a MockTransport that answers like GitLab's REST API (v4)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from bot.domain.errors import DeliveryFailed
from bot.ports import FileChange, ScmClient
from bot.settings import load_settings
from integrations.gitlab.client import (
    GitLabClient,
    GitLabDeployment,
    count_diff_lines,
    gitlab_client_from_settings,
    project_path,
)
from integrations.http import RetryPolicy, make_client

API = "https://gitlab.com/api/v4"
TOKEN = "glpat-Zx9YqW3eRt5uIo7pAs1D"
NOW = 1_763_373_600.0
BASE = "ae1d9fb46aa2b07ee9836d49862ec4e2c46fbbba"
HEAD = "12d65c8dd2b2676fa3ac47d955accc085a37a9c1"
MIDDLE = "6104942438c14ec7bd21c6cd5bd995272b3faff6"
PROJECT = "/api/v4/projects/acme%2Fledger"


# --- GitLab-shaped bodies (after docs.gitlab.com/api/repositories and /api/deployments) ---------


def gl_commit(sha: str, title: str, message: str, *, name: str, when: str) -> dict[str, Any]:
    return {
        "id": sha,
        "short_id": sha[:11],
        "created_at": when,
        "parent_ids": [BASE],
        "title": title,
        "message": message,
        "author_name": name,
        "author_email": f"{name.split()[0].lower()}@acme.test",
        "authored_date": when,
        "committer_name": name,
        "committer_email": f"{name.split()[0].lower()}@acme.test",
        "committed_date": when,
        "trailers": {},
        "extended_trailers": {},
        "web_url": f"https://gitlab.com/acme/ledger/-/commit/{sha}",
    }


def gl_diff(
    diff: str,
    new_path: str,
    old_path: str | None = None,
    *,
    new_file: bool = False,
    deleted_file: bool = False,
    renamed_file: bool = False,
    too_large: bool = False,
    collapsed: bool = False,
) -> dict[str, Any]:
    return {
        "diff": diff,
        "collapsed": collapsed,
        "too_large": too_large,
        "new_path": new_path,
        "old_path": old_path or new_path,
        "a_mode": "0" if new_file else "100644",
        "b_mode": "0" if deleted_file else "100644",
        "new_file": new_file,
        "renamed_file": renamed_file,
        "deleted_file": deleted_file,
        "generated_file": False,
    }


COMMITS = [
    gl_commit(
        MIDDLE,
        "Sanitize for network graph",
        "Sanitize for network graph\n\nEscapes labels before rendering.\n",
        name="Randx Zaporozhets",
        when="2025-11-16T09:06:12+03:00",
    ),
    gl_commit(
        HEAD,
        "JS fix",
        "JS fix\n",
        name="Example User",
        when="2025-11-17T10:27:00+02:00",
    ),
]

DIFFS = [
    gl_diff(
        "@@ -71,6 +71,8 @@\n sudo -u git -H bundle exec rake migrate_keys RAILS_ENV=production\n"
        "-sudo -u git -H bundle exec rake migrate_inline_notes RAILS_ENV=production\n"
        "+sudo -u git -H bundle exec rake migrate_notes RAILS_ENV=production\n"
        "+sudo -u git -H bundle exec rake gitlab:check RAILS_ENV=production\n"
        "+\n"
        " \n",
        "doc/update/5.4-to-6.0.md",
    ),
    gl_diff("@@ -0,0 +1,3 @@\n+def export():\n+    pass\n+\n", "ledger/export.py", new_file=True),
    gl_diff(
        "@@ -1,2 +0,0 @@\n-legacy = True\n-print(legacy)\n", "ledger/legacy.py", deleted_file=True
    ),
    gl_diff("", "docs/export.md", "docs/csv.md", renamed_file=True),
]


def compare_body(
    commits: list[dict[str, Any]], diffs: list[dict[str, Any]], *, timeout: bool = False
) -> dict[str, Any]:
    return {
        "commit": commits[-1] if commits else None,
        "commits": commits,
        "diffs": diffs,
        "compare_timeout": timeout,
        "compare_same_ref": False,
        "web_url": f"https://gitlab.com/acme/ledger/-/compare/{BASE}...{HEAD}",
    }


DEPLOYMENT = {
    "id": 15,
    "iid": 2,
    "ref": "main",
    "sha": "279484c09fbe69ededfced8c1bb6e6d24616b468",
    "created_at": "2025-11-17T09:50:00.444Z",
    "updated_at": "2025-11-17T09:51:01.123Z",
    "status": "success",
    "user": {
        "name": "Administrator",
        "username": "root",
        "id": 1,
        "state": "active",
        "avatar_url": "https://www.gravatar.com/avatar/e64c7d89f26bd1972efa854d13d7dd61?s=80",
        "web_url": "https://gitlab.example/root",
    },
    "environment": {
        "id": 9,
        "name": "production",
        "external_url": "https://ledger.acme.test",
        "tier": "production",
        "state": "available",
    },
    "deployable": {
        "id": 796,
        "status": "success",
        "stage": "deploy",
        "name": "deploy-production",
        "ref": "main",
        "tag": False,
        "coverage": None,
        "created_at": "2025-11-17T09:49:00.000Z",
        "started_at": "2025-11-17T09:49:10.000Z",
        "finished_at": "2025-11-17T09:50:00.000Z",
        "duration": 50.0,
        "user": {"id": 1, "username": "root"},
        "commit": gl_commit(
            "279484c09fbe69ededfced8c1bb6e6d24616b468",
            "Add new file",
            "Add new file\n",
            name="Administrator",
            when="2025-11-17T09:40:00+00:00",
        ),
        "pipeline": {"id": 120, "sha": "279484c09fbe69ededfced8c1bb6e6d24616b468", "ref": "main"},
        "web_url": "https://gitlab.example/acme/ledger/-/jobs/796",
    },
    "approvals": [],
    "pending_approval_count": 0,
}

NOT_FOUND = {"message": "404 Project Not Found"}


# --- a fake GitLab ------------------------------------------------------------------------------

Route = Callable[[httpx.Request], httpx.Response]


class FakeGitLab:
    """Routes by method and *raw* (still percent-encoded) path; records every request.

    The merge requests of a commit (`/repository/commits/:sha/merge_requests`, asked after
    every compare) are answered as GitLab does for a commit no merge request brought in
    (`[]`) unless routed, and recorded apart in `merge_request_lookups`, so `requests` shows
    the compare calls."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Route] = {}
        self.requests: list[httpx.Request] = []
        self.merge_request_lookups: list[httpx.Request] = []

    def on(self, method: str, raw_path: str, route: Route | dict[str, Any] | list[Any]) -> None:
        if isinstance(route, dict | list):
            body = route
            self.routes[(method, raw_path)] = lambda _: httpx.Response(200, json=body)
        else:
            self.routes[(method, raw_path)] = route

    def handler(self, request: httpx.Request) -> httpx.Response:
        raw_path = request.url.raw_path.decode().split("?", 1)[0]
        route = self.routes.get((request.method, raw_path))
        if route is None and raw_path.endswith("/merge_requests"):
            self.merge_request_lookups.append(request)
            return httpx.Response(200, json=[])
        self.requests.append(request)
        if route is None:
            return httpx.Response(404, json=NOT_FOUND)
        return route(request)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handler)


class RecordingSleep:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def fake() -> FakeGitLab:
    return FakeGitLab()


@pytest.fixture
def sleep() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
async def gl(fake: FakeGitLab, sleep: RecordingSleep) -> AsyncIterator[GitLabClient]:
    client = GitLabClient(
        make_client(API, transport=fake.transport()),
        token=TOKEN,
        retry=RetryPolicy(sleep=sleep, clock=lambda: NOW),
    )
    yield client
    await client.aclose()


# --- counting lines ------------------------------------------------------------------------------


def test_count_diff_lines_in_a_unified_diff_with_headers() -> None:
    diff = (
        "--- a/db/schema.sql\n"
        "+++ b/db/schema.sql\n"
        "@@ -1,5 +1,5 @@\n"
        " CREATE TABLE ledger (\n"
        "--- the old comment starts with two dashes\n"
        "+-- the new comment, too\n"
        "   id bigint primary key,\n"
        "-  amount numeric\n"
        "+  amount numeric(12, 2),\n"
        "+  currency char(3)\n"
        " );\n"
        "\\ No newline at end of file\n"
    )

    assert count_diff_lines(diff) == (3, 2)


def test_count_diff_lines_without_headers_and_with_several_hunks() -> None:
    diff = "@@ -1,2 +1,2 @@\n-a\n+b\n c\n@@ -10,3 +10,4 @@\n x\n+y\n+++z\n-w\n"

    assert count_diff_lines(diff) == (3, 2)  # "+++z" inside a hunk is an added "++z"


@pytest.mark.parametrize(
    "diff", ["", "Binary files a/logo.png and b/logo.png differ\n", "--- a/x\n+++ b/x\n"]
)
def test_count_diff_lines_with_nothing_to_count(diff: str) -> None:
    assert count_diff_lines(diff) == (0, 0)


def test_project_path_encoding() -> None:
    assert project_path("acme/ledger") == "acme%2Fledger"
    assert project_path("acme/payments/ledger") == "acme%2Fpayments%2Fledger"
    assert project_path(278964) == "278964"
    assert project_path("278964") == "278964"
    for bad in ("", "acme/../ledger", "acme//ledger"):
        with pytest.raises(DeliveryFailed):
            project_path(bad)


# --- compare -------------------------------------------------------------------------------------


def test_the_client_satisfies_the_port(gl: GitLabClient) -> None:
    port: ScmClient = gl
    assert port is gl


async def test_compare_sends_the_documented_request(fake: FakeGitLab, gl: GitLabClient) -> None:
    fake.on("GET", f"{PROJECT}/repository/compare", compare_body(COMMITS, DIFFS))

    await gl.compare(repo="acme/ledger", base=BASE, head=HEAD)

    [request] = fake.requests
    assert request.method == "GET"
    assert request.url.raw_path.decode().split("?")[0] == f"{PROJECT}/repository/compare"
    assert dict(request.url.params) == {"from": BASE, "to": HEAD, "straight": "false"}
    assert request.headers["private-token"] == TOKEN
    assert "authorization" not in request.headers
    assert request.headers["user-agent"] == "releasebot"


async def test_compare_parses_commits_and_counts_lines(fake: FakeGitLab, gl: GitLabClient) -> None:
    fake.on("GET", f"{PROJECT}/repository/compare", compare_body(COMMITS, DIFFS))

    comparison = await gl.compare(repo="acme/ledger", base=BASE, head=HEAD)

    assert [c.sha for c in comparison.commits] == [MIDDLE, HEAD]  # oldest first
    first, last = comparison.commits
    assert first.message == "Sanitize for network graph\n\nEscapes labels before rendering.\n"
    assert first.author == "Randx Zaporozhets"
    assert first.author_login is None
    assert first.committer_login is None
    assert first.authored_at == datetime(2025, 11, 16, 6, 6, 12, tzinfo=UTC)
    assert first.authored_at is not None
    assert first.authored_at.utcoffset() == timedelta(hours=3)
    assert last.url == f"https://gitlab.com/acme/ledger/-/commit/{HEAD}"
    assert last.authored_at == datetime(2025, 11, 17, 10, 27, tzinfo=timezone(timedelta(hours=2)))

    assert comparison.files == (
        FileChange("doc/update/5.4-to-6.0.md", 3, 1, "modified"),
        FileChange("ledger/export.py", 3, 0, "added"),
        FileChange("ledger/legacy.py", 0, 2, "removed"),
        FileChange("docs/export.md", 0, 0, "renamed", previous_path="docs/csv.md"),
    )
    assert (comparison.additions, comparison.deletions) == (6, 3)
    assert comparison.total_commits == 2
    assert comparison.truncated is False
    assert comparison.url == f"https://gitlab.com/acme/ledger/-/compare/{BASE}...{HEAD}"


@pytest.mark.parametrize(
    ("diffs", "timeout"),
    [
        (DIFFS + [gl_diff("", "vendor/bundle.js", too_large=True)], False),
        (DIFFS + [gl_diff("", "db/seeds.sql", collapsed=True)], False),
        (DIFFS, True),
    ],
    ids=["too_large", "collapsed", "compare_timeout"],
)
async def test_diffs_gitlab_left_out_make_the_comparison_truncated(
    fake: FakeGitLab, gl: GitLabClient, diffs: list[dict[str, Any]], timeout: bool
) -> None:
    fake.on("GET", f"{PROJECT}/repository/compare", compare_body(COMMITS, diffs, timeout=timeout))

    comparison = await gl.compare(repo="acme/ledger", base=BASE, head=HEAD)

    assert comparison.truncated is True


async def test_subgroups_and_numeric_ids(fake: FakeGitLab, gl: GitLabClient) -> None:
    fake.on(
        "GET",
        "/api/v4/projects/acme%2Fpayments%2Fledger/repository/compare",
        compare_body(COMMITS, DIFFS),
    )
    fake.on("GET", "/api/v4/projects/278964/repository/compare", compare_body(COMMITS, DIFFS))

    await gl.compare(repo="acme/payments/ledger", base=BASE, head=HEAD)
    await gl.compare(repo="278964", base=BASE, head=HEAD)

    assert all(r.url.path.endswith("/repository/compare") for r in fake.requests)
    assert len(fake.requests) == 2


async def test_without_a_base_the_head_commit_and_its_diff(
    fake: FakeGitLab, gl: GitLabClient
) -> None:
    commit = gl_commit(
        HEAD,
        "Initial import",
        "Initial import\n\nThe ledger.\n",
        name="Ada Lovelace",
        when="2025-11-17T08:15:00Z",
    )
    commit["stats"] = {"additions": 4, "deletions": 0, "total": 4}
    commit["status"] = None
    commit["project_id"] = 278964
    pages = {
        "1": [gl_diff("@@ -0,0 +1,3 @@\n+a\n+b\n+c\n", "README.md", new_file=True)],
        "2": [gl_diff("@@ -0,0 +1 @@\n+x\n", "ledger/__init__.py", new_file=True)],
    }

    def diff_page(request: httpx.Request) -> httpx.Response:
        page = request.url.params["page"]
        assert request.url.params["per_page"] == "100"
        headers = {"x-page": page, "x-per-page": "100", "x-next-page": "2" if page == "1" else ""}
        return httpx.Response(200, json=pages[page], headers=headers)

    fake.on("GET", f"{PROJECT}/repository/commits/{HEAD}", commit)
    fake.on("GET", f"{PROJECT}/repository/commits/{HEAD}/diff", diff_page)

    comparison = await gl.compare(repo="acme/ledger", base=None, head=HEAD)

    assert [r.url.params.get("page") for r in fake.requests] == [None, "1", "2"]
    assert all(r.headers["private-token"] == TOKEN for r in fake.requests)
    [only] = comparison.commits
    assert only.sha == HEAD
    assert only.message == "Initial import\n\nThe ledger.\n"
    assert only.authored_at == datetime(2025, 11, 17, 8, 15, tzinfo=UTC)
    assert comparison.files == (
        FileChange("README.md", 3, 0, "added"),
        FileChange("ledger/__init__.py", 1, 0, "added"),
    )
    assert comparison.total_commits == 1
    assert comparison.truncated is False
    assert comparison.url == f"https://gitlab.com/acme/ledger/-/commit/{HEAD}"


async def test_a_branch_name_as_head_is_encoded(fake: FakeGitLab, gl: GitLabClient) -> None:
    commit = gl_commit(HEAD, "x", "x", name="Ada Lovelace", when="2025-11-17T08:15:00Z")
    fake.on("GET", f"{PROJECT}/repository/commits/release%2F1.5", commit)
    fake.on("GET", f"{PROJECT}/repository/commits/release%2F1.5/diff", [])

    comparison = await gl.compare(repo="acme/ledger", base="", head="release/1.5")

    assert comparison.commits[0].sha == HEAD
    assert comparison.files == ()


# --- deployments ---------------------------------------------------------------------------------


async def test_deployment_lookup(fake: FakeGitLab, gl: GitLabClient) -> None:
    fake.on("GET", f"{PROJECT}/deployments/15", DEPLOYMENT)
    fake.on("GET", "/api/v4/projects/30/deployments/15", DEPLOYMENT)

    by_path = await gl.deployment("acme/ledger", 15)
    by_id = await gl.deployment(30, 15)

    assert (
        by_path
        == by_id
        == GitLabDeployment(
            id=15,
            iid=2,
            sha="279484c09fbe69ededfced8c1bb6e6d24616b468",
            ref="main",
            status="success",
            environment="production",
            user="root",
            deployable_url="https://gitlab.example/acme/ledger/-/jobs/796",
        )
    )
    assert [r.headers["private-token"] for r in fake.requests] == [TOKEN, TOKEN]


async def test_an_api_triggered_deployment_has_no_deployable(
    fake: FakeGitLab, gl: GitLabClient
) -> None:
    fake.on("GET", f"{PROJECT}/deployments/16", {**DEPLOYMENT, "id": 16, "deployable": None})

    deployment = await gl.deployment("acme/ledger", 16)

    assert deployment.deployable_url is None
    assert deployment.sha == DEPLOYMENT["sha"]


async def test_an_unknown_deployment_is_not_retryable(fake: FakeGitLab, gl: GitLabClient) -> None:
    fake.on(
        "GET",
        f"{PROJECT}/deployments/99",
        lambda _: httpx.Response(404, json={"message": "404 Not found"}),
    )

    with pytest.raises(DeliveryFailed) as caught:
        await gl.deployment("acme/ledger", 99)

    assert caught.value.retryable is False
    assert caught.value.status == 404
    assert "deployment or project not found" in caught.value.reason


# --- errors --------------------------------------------------------------------------------------


async def test_404_is_not_retryable_and_never_shows_the_token(
    fake: FakeGitLab, gl: GitLabClient, sleep: RecordingSleep
) -> None:
    with pytest.raises(DeliveryFailed) as caught:
        await gl.compare(repo="acme/ledger", base=BASE, head=HEAD)

    failure = caught.value
    assert failure.retryable is False
    assert failure.status == 404
    assert failure.reason.startswith(
        "GET /projects/acme%2Fledger/repository/compare: 404 404 Project Not Found"
    )
    assert "project or commit not found, or the token cannot read it" in failure.reason
    assert BASE not in failure.reason  # the query string stays out of reasons
    assert TOKEN not in failure.reason
    assert sleep.calls == []


async def test_401_names_the_setting_not_the_token(fake: FakeGitLab, gl: GitLabClient) -> None:
    fake.on(
        "GET",
        f"{PROJECT}/repository/compare",
        lambda _: httpx.Response(401, json={"message": "401 Unauthorized"}),
    )

    with pytest.raises(DeliveryFailed) as caught:
        await gl.compare(repo="acme/ledger", base=BASE, head=HEAD)

    assert caught.value.retryable is False
    assert "GITLAB_TOKEN" in caught.value.reason
    assert TOKEN not in caught.value.reason


async def test_429_with_retry_after_goes_back_to_the_outbox(
    fake: FakeGitLab, gl: GitLabClient, sleep: RecordingSleep
) -> None:
    fake.on(
        "GET",
        f"{PROJECT}/repository/compare",
        lambda _: httpx.Response(
            429,
            headers={
                "Retry-After": "120",
                "RateLimit-Limit": "2000",
                "RateLimit-Observed": "2001",
                "RateLimit-Remaining": "0",
                "RateLimit-Reset": str(int(NOW) + 120),
                "RateLimit-Name": "throttle_authenticated_api",
            },
            text="Retry later\n",
        ),
    )

    with pytest.raises(DeliveryFailed) as caught:
        await gl.compare(repo="acme/ledger", base=BASE, head=HEAD)

    assert caught.value.retryable is True
    assert caught.value.retry_after == 120
    assert caught.value.status == 429
    assert sleep.calls == []


async def test_5xx_then_success(fake: FakeGitLab, gl: GitLabClient, sleep: RecordingSleep) -> None:
    answers = iter(
        [
            httpx.Response(500, json={"message": "500 Internal Server Error"}),
            httpx.Response(200, json=compare_body(COMMITS, DIFFS)),
        ]
    )
    fake.on("GET", f"{PROJECT}/repository/compare", lambda _: next(answers))

    comparison = await gl.compare(repo="acme/ledger", base=BASE, head=HEAD)

    assert len(comparison.commits) == 2
    assert sleep.calls == [0.5]


# --- settings ------------------------------------------------------------------------------------


def test_settings_without_a_token_give_no_client() -> None:
    assert gitlab_client_from_settings(load_settings({})) is None


async def test_a_self_managed_instance(fake: FakeGitLab) -> None:
    settings = load_settings(
        {"GITLAB_TOKEN": TOKEN, "GITLAB_API_URL": "https://git.acme.test/gitlab/api/v4"}
    )
    fake.on(
        "GET",
        "/gitlab/api/v4/projects/acme%2Fledger/deployments/15",
        DEPLOYMENT,
    )
    gl = gitlab_client_from_settings(settings, transport=fake.transport())
    assert gl is not None

    deployment = await gl.deployment("acme/ledger", 15)
    await gl.aclose()

    [request] = fake.requests
    assert (
        str(request.url)
        == "https://git.acme.test/gitlab/api/v4/projects/acme%2Fledger/deployments/15"
    )
    assert request.headers["private-token"] == TOKEN
    assert deployment.id == 15
