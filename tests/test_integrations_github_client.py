"""GitHubClient and GitHubAppAuth against a MockTransport that answers like GitHub's REST API."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from bot.domain.errors import DeliveryFailed
from bot.ports import Commit, FileChange, ScmClient
from bot.settings import load_settings
from integrations.github.client import (
    API_VERSION,
    GitHubAppAuth,
    GitHubClient,
    github_client_from_settings,
)
from integrations.http import RetryPolicy, make_client

API = "https://api.github.com"
TOKEN = "ghp_16C7e42F292c6912E7710c838347Ae178B4a"
NOW = 1_763_373_600.0  # 2025-11-17T10:00:00Z
BASE = "6dcb09b5b57875f334f61aebed695e2e4193db5e"
HEAD = "762941318ee16e59dabbacb1b4049eec22f0d303"
SHAS = [
    "1b9d0e2f3c4a5b6c7d8e9f00112233445566aa01",
    "2c8e1f3a4b5c6d7e8f9011223344556677889902",
    HEAD,
]


# --- GitHub-shaped bodies (after docs.github.com/rest/commits/commits) -------------------------


def user(login: str, ident: int) -> dict[str, Any]:
    return {
        "login": login,
        "id": ident,
        "node_id": f"MDQ6VXNlcj{ident}",
        "avatar_url": f"https://avatars.githubusercontent.com/u/{ident}?v=4",
        "html_url": f"https://github.com/{login}",
        "type": "User",
        "site_admin": False,
    }


def gh_commit(
    sha: str,
    message: str,
    *,
    name: str,
    login: str | None,
    date: str,
    committer_login: str | None = "web-flow",
    repo: str = "acme/ledger",
) -> dict[str, Any]:
    return {
        "url": f"{API}/repos/{repo}/commits/{sha}",
        "sha": sha,
        "node_id": "C_kwDOAAABc9oAKDE",
        "html_url": f"https://github.com/{repo}/commit/{sha}",
        "comments_url": f"{API}/repos/{repo}/commits/{sha}/comments",
        "commit": {
            "url": f"{API}/repos/{repo}/git/commits/{sha}",
            "author": {"name": name, "email": f"{name.split()[0].lower()}@acme.test", "date": date},
            "committer": {"name": "GitHub", "email": "noreply@github.com", "date": date},
            "message": message,
            "tree": {"url": f"{API}/repos/{repo}/tree/{sha}", "sha": sha},
            "comment_count": 0,
            "verification": {"verified": False, "reason": "unsigned", "signature": None},
        },
        "author": user(login, 583231) if login else None,
        "committer": user(committer_login, 19864447) if committer_login else None,
        "parents": [{"url": f"{API}/repos/{repo}/commits/{BASE}", "sha": BASE}],
    }


def gh_file(
    filename: str,
    additions: int,
    deletions: int,
    status: str = "modified",
    previous_filename: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "sha": "bbcd538c8e72b8c175046e27cc8f907076331401",
        "filename": filename,
        "status": status,
        "additions": additions,
        "deletions": deletions,
        "changes": additions + deletions,
        "blob_url": f"https://github.com/acme/ledger/blob/{HEAD}/{filename}",
        "raw_url": f"https://github.com/acme/ledger/raw/{HEAD}/{filename}",
        "contents_url": f"{API}/repos/acme/ledger/contents/{filename}?ref={HEAD}",
        "patch": "@@ -132,7 +132,7 @@ module Test @@ -1000,7 +1000,7 @@ module Test",
    }
    if previous_filename is not None:
        body["previous_filename"] = previous_filename
    return body


THREE_COMMITS = [
    gh_commit(
        SHAS[0],
        "Add ledger export\n\nExports the ledger as CSV.\n\nCo-authored-by: Bo <bo@acme.test>",
        name="Ada Lovelace",
        login="ada",
        date="2025-11-16T09:00:00Z",
    ),
    gh_commit(
        SHAS[1],
        "Fix rounding in totals",
        name="Grace Hopper",
        login=None,  # an email GitHub cannot match to an account
        date="2025-11-16T12:30:00+01:00",
        committer_login=None,
    ),
    gh_commit(
        SHAS[2],
        "Merge pull request #42 from acme/export\n\nLedger export",
        name="Ada Lovelace",
        login="ada",
        date="2025-11-17T08:15:00Z",
    ),
]

FILES = [
    gh_file("ledger/export.py", 120, 0, "added"),
    gh_file("ledger/totals.py", 3, 2),
    gh_file("ledger/old_report.py", 0, 45, "removed"),
    gh_file("docs/export.md", 10, 1, "renamed", previous_filename="docs/csv.md"),
]


def compare_body(
    commits: list[dict[str, Any]], files: list[dict[str, Any]], total_commits: int | None = None
) -> dict[str, Any]:
    total = len(commits) if total_commits is None else total_commits
    return {
        "url": f"{API}/repos/acme/ledger/compare/{BASE}...{HEAD}",
        "html_url": f"https://github.com/acme/ledger/compare/{BASE}...{HEAD}",
        "permalink_url": f"https://github.com/acme/ledger/compare/acme:{BASE[:7]}...acme:{HEAD[:7]}",
        "diff_url": f"https://github.com/acme/ledger/compare/{BASE}...{HEAD}.diff",
        "patch_url": f"https://github.com/acme/ledger/compare/{BASE}...{HEAD}.patch",
        "base_commit": gh_commit(
            BASE, "Release 1.4", name="Ada Lovelace", login="ada", date="2025-11-10T10:00:00Z"
        ),
        "merge_base_commit": gh_commit(
            BASE, "Release 1.4", name="Ada Lovelace", login="ada", date="2025-11-10T10:00:00Z"
        ),
        "status": "ahead",
        "ahead_by": total,
        "behind_by": 0,
        "total_commits": total,
        "commits": commits,
        "files": files,
    }


def single_commit_body(files: list[dict[str, Any]]) -> dict[str, Any]:
    body = gh_commit(
        HEAD,
        "Initial import of the ledger",
        name="Ada Lovelace",
        login="ada",
        date="2025-11-17T08:15:00Z",
    )
    body["stats"] = {
        "additions": sum(f["additions"] for f in files),
        "deletions": sum(f["deletions"] for f in files),
        "total": sum(f["changes"] for f in files),
    }
    body["files"] = files
    return body


NOT_FOUND = {
    "message": "Not Found",
    "documentation_url": "https://docs.github.com/rest/commits/commits#compare-two-commits",
    "status": "404",
}


# --- a fake GitHub -----------------------------------------------------------------------------

Route = Callable[[httpx.Request], httpx.Response]


class FakeGitHub:
    """Routes (method, path) to canned answers and records every request.

    The pull requests of a commit (`/commits/{sha}/pulls`, asked after every compare) are
    answered as GitHub does for a commit no pull request brought in (`[]`) unless routed,
    and recorded apart in `pull_lookups`, so `requests` shows the compare calls."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Route] = {}
        self.requests: list[httpx.Request] = []
        self.pull_lookups: list[httpx.Request] = []

    def on(self, method: str, path: str, route: Route | dict[str, Any], status: int = 200) -> None:
        if isinstance(route, dict):
            body = route
            self.routes[(method, path.lower())] = lambda _: httpx.Response(status, json=body)
        else:
            self.routes[(method, path.lower())] = route

    def handler(self, request: httpx.Request) -> httpx.Response:
        # GitHub matches owner and repository names case-insensitively.
        route = self.routes.get((request.method, request.url.path.lower()))
        if route is None and request.url.path.endswith("/pulls"):
            self.pull_lookups.append(request)
            return httpx.Response(200, json=[])
        self.requests.append(request)
        if route is None:
            return httpx.Response(404, json=NOT_FOUND)
        return route(request)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handler)

    def calls(self, method: str, path: str) -> list[httpx.Request]:
        return [
            r for r in self.requests if r.method == method and r.url.path.lower() == path.lower()
        ]


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.t = now

    def __call__(self) -> float:
        return self.t


class RecordingSleep:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def fake() -> FakeGitHub:
    return FakeGitHub()


@pytest.fixture
def sleep() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def retry(sleep: RecordingSleep, clock: Clock) -> RetryPolicy:
    return RetryPolicy(sleep=sleep, clock=clock)


@pytest.fixture
async def gh(fake: FakeGitHub, retry: RetryPolicy) -> AsyncIterator[GitHubClient]:
    client = GitHubClient(make_client(API, transport=fake.transport()), token=TOKEN, retry=retry)
    yield client
    await client.aclose()


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def pem(rsa_key: rsa.RSAPrivateKey) -> str:
    return rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


def compare_path(base: str = BASE, head: str = HEAD) -> str:
    return f"/repos/acme/ledger/compare/{base}...{head}"


# --- compare -----------------------------------------------------------------------------------


def test_the_client_satisfies_the_port(gh: GitHubClient) -> None:
    port: ScmClient = gh
    assert port is gh


async def test_compare_sends_the_documented_request(fake: FakeGitHub, gh: GitHubClient) -> None:
    fake.on("GET", compare_path(), compare_body(THREE_COMMITS, FILES))

    await gh.compare(repo="acme/ledger", base=BASE, head=HEAD)

    [request] = fake.requests
    assert request.method == "GET"
    assert str(request.url) == f"{API}{compare_path()}"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["accept"] == "application/vnd.github+json"
    assert request.headers["x-github-api-version"] == API_VERSION == "2022-11-28"
    assert request.headers["user-agent"] == "releasebot"


async def test_compare_parses_commits_and_files(fake: FakeGitHub, gh: GitHubClient) -> None:
    fake.on("GET", compare_path(), compare_body(THREE_COMMITS, FILES))

    comparison = await gh.compare(repo="acme/ledger", base=BASE, head=HEAD)

    assert [c.sha for c in comparison.commits] == SHAS  # chronological, as GitHub lists them
    first, second, third = comparison.commits
    assert first == Commit(
        sha=SHAS[0],
        message=THREE_COMMITS[0]["commit"]["message"],
        author="Ada Lovelace",
        author_login="ada",
        committer_login="web-flow",
        author_email="ada@acme.test",
        committer_email="noreply@github.com",
        authored_at=datetime(2025, 11, 16, 9, 0, tzinfo=UTC),
        url=f"https://github.com/acme/ledger/commit/{SHAS[0]}",
    )
    assert first.message.startswith("Add ledger export\n\nExports the ledger as CSV.\n")
    assert first.message.endswith("Co-authored-by: Bo <bo@acme.test>")
    assert second.author == "Grace Hopper"
    assert second.author_login is None
    assert second.committer_login is None
    assert second.authored_at == datetime(2025, 11, 16, 11, 30, tzinfo=UTC)
    assert second.authored_at is not None and second.authored_at.tzinfo is not None
    assert third.message == "Merge pull request #42 from acme/export\n\nLedger export"

    assert comparison.files == (
        FileChange("ledger/export.py", 120, 0, "added"),
        FileChange("ledger/totals.py", 3, 2, "modified"),
        FileChange("ledger/old_report.py", 0, 45, "removed"),
        FileChange("docs/export.md", 10, 1, "renamed", previous_path="docs/csv.md"),
    )
    assert (comparison.additions, comparison.deletions) == (133, 48)
    assert comparison.total_commits == 3
    assert comparison.truncated is False
    assert comparison.url == f"https://github.com/acme/ledger/compare/{BASE}...{HEAD}"


async def test_250_listed_commits_of_more_is_truncated(fake: FakeGitHub, gh: GitHubClient) -> None:
    commits = [
        gh_commit(
            f"{i:040x}",
            f"Change {i}",
            name="Ada Lovelace",
            login="ada",
            date="2025-11-16T09:00:00Z",
        )
        for i in range(250)
    ]
    fake.on("GET", compare_path(), compare_body(commits, FILES, total_commits=412))

    comparison = await gh.compare(repo="acme/ledger", base=BASE, head=HEAD)

    assert len(comparison.commits) == 250
    assert comparison.total_commits == 412
    assert comparison.truncated is True


async def test_300_files_is_treated_as_truncated(fake: FakeGitHub, gh: GitHubClient) -> None:
    files = [gh_file(f"src/module_{i}.py", 1, 1) for i in range(300)]
    fake.on("GET", compare_path(), compare_body(THREE_COMMITS, files))

    comparison = await gh.compare(repo="acme/ledger", base=BASE, head=HEAD)

    assert len(comparison.files) == 300
    assert comparison.total_commits == 3
    assert comparison.truncated is True

    fake.on("GET", compare_path(), compare_body(THREE_COMMITS, files[:299]))
    assert (await gh.compare(repo="acme/ledger", base=BASE, head=HEAD)).truncated is False


async def test_branch_names_with_slashes_go_into_the_path(
    fake: FakeGitHub, gh: GitHubClient
) -> None:
    fake.on("GET", compare_path("v1.4.0", "release/1.5"), compare_body(THREE_COMMITS, FILES))

    comparison = await gh.compare(repo="acme/ledger", base="v1.4.0", head="release/1.5")

    assert len(comparison.commits) == 3


async def test_without_a_base_the_head_commit_is_the_comparison(
    fake: FakeGitHub, gh: GitHubClient
) -> None:
    files = [gh_file("README.md", 12, 0, "added"), gh_file("ledger/__init__.py", 1, 0, "added")]
    fake.on("GET", f"/repos/acme/ledger/commits/{HEAD}", single_commit_body(files))

    comparison = await gh.compare(repo="acme/ledger", base=None, head=HEAD)

    [request] = fake.requests
    assert request.url.path == f"/repos/acme/ledger/commits/{HEAD}"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    [commit] = comparison.commits
    assert commit.sha == HEAD
    assert commit.message == "Initial import of the ledger"
    assert commit.author_login == "ada"
    assert comparison.files == (
        FileChange("README.md", 12, 0, "added"),
        FileChange("ledger/__init__.py", 1, 0, "added"),
    )
    assert comparison.total_commits == 1
    assert comparison.truncated is False
    assert comparison.url == f"https://github.com/acme/ledger/commit/{HEAD}"


async def test_a_big_single_commit_follows_the_file_pages(
    fake: FakeGitHub, gh: GitHubClient
) -> None:
    page_1 = [gh_file(f"a/{i}.py", 1, 0, "added") for i in range(300)]
    page_2 = [gh_file(f"b/{i}.py", 2, 0, "added") for i in range(20)]

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("page") == "2":
            return httpx.Response(200, json=single_commit_body(page_2))
        # GitHub links the next page through /repositories/{id}; same API root.
        link = (
            f'<{API}/repos/acme/ledger/commits/{HEAD}?page=2>; rel="next", '
            f'<{API}/repos/acme/ledger/commits/{HEAD}?page=2>; rel="last"'
        )
        return httpx.Response(200, json=single_commit_body(page_1), headers={"link": link})

    fake.on("GET", f"/repos/acme/ledger/commits/{HEAD}", answer)

    comparison = await gh.compare(repo="acme/ledger", base=None, head=HEAD)

    assert len(fake.requests) == 2
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in fake.requests)
    assert len(comparison.files) == 320
    assert comparison.additions == 340
    assert comparison.truncated is False


async def test_a_next_page_on_another_host_is_not_followed(
    fake: FakeGitHub, gh: GitHubClient
) -> None:
    link = '<https://evil.example/steal?page=2>; rel="next"'
    fake.on(
        "GET",
        f"/repos/acme/ledger/commits/{HEAD}",
        lambda _: httpx.Response(
            200, json=single_commit_body([gh_file("a.py", 1, 0)]), headers={"link": link}
        ),
    )

    comparison = await gh.compare(repo="acme/ledger", base=None, head=HEAD)

    assert len(fake.requests) == 1
    assert comparison.truncated is True


async def test_404_is_not_retryable_and_says_why(
    fake: FakeGitHub, gh: GitHubClient, sleep: RecordingSleep
) -> None:
    with pytest.raises(DeliveryFailed) as caught:
        await gh.compare(repo="acme/ledger", base=BASE, head=HEAD)

    failure = caught.value
    assert failure.retryable is False
    assert failure.status == 404
    assert failure.reason.startswith(f"GET {compare_path()}: 404 Not Found")
    assert "repository or commit not found, or the token cannot read it" in failure.reason
    assert TOKEN not in failure.reason
    assert len(fake.requests) == 1
    assert sleep.calls == []


async def test_bad_credentials_never_show_the_token(fake: FakeGitHub, gh: GitHubClient) -> None:
    fake.on(
        "GET",
        compare_path(),
        {
            "message": f"Bad credentials {TOKEN}",
            "documentation_url": "https://docs.github.com/rest",
        },
        status=401,
    )

    with pytest.raises(DeliveryFailed) as caught:
        await gh.compare(repo="acme/ledger", base=BASE, head=HEAD)

    assert caught.value.retryable is False
    assert TOKEN not in caught.value.reason
    assert "GITHUB_TOKEN" in caught.value.reason


async def test_429_with_retry_after_goes_back_to_the_outbox(
    fake: FakeGitHub, gh: GitHubClient, sleep: RecordingSleep
) -> None:
    fake.on(
        "GET",
        compare_path(),
        lambda _: httpx.Response(
            429,
            headers={"retry-after": "120"},
            json={"message": "You have exceeded a secondary rate limit."},
        ),
    )

    with pytest.raises(DeliveryFailed) as caught:
        await gh.compare(repo="acme/ledger", base=BASE, head=HEAD)

    assert caught.value.retryable is True
    assert caught.value.retry_after == 120
    assert caught.value.status == 429
    assert sleep.calls == []
    assert len(fake.requests) == 1


async def test_403_primary_limit_uses_the_reset_time(
    fake: FakeGitHub, gh: GitHubClient, clock: Clock
) -> None:
    clock.t = NOW + 100
    fake.on(
        "GET",
        compare_path(),
        lambda _: httpx.Response(
            403,
            headers={
                "x-ratelimit-limit": "5000",
                "x-ratelimit-remaining": "0",
                "x-ratelimit-used": "5000",
                "x-ratelimit-reset": str(int(NOW) + 1000),
                "x-ratelimit-resource": "core",
            },
            json={
                "message": "API rate limit exceeded for installation ID 42.",
                "documentation_url": "https://docs.github.com/rest/overview/rate-limits",
            },
        ),
    )

    with pytest.raises(DeliveryFailed) as caught:
        await gh.compare(repo="acme/ledger", base=BASE, head=HEAD)

    assert caught.value.retryable is True
    assert caught.value.retry_after == 900
    assert caught.value.status == 403


async def test_502_then_200_succeeds_without_sleeping(
    fake: FakeGitHub, gh: GitHubClient, sleep: RecordingSleep
) -> None:
    answers = iter(
        [
            httpx.Response(502, text="<html>Bad Gateway</html>"),
            httpx.Response(502, text="<html>Bad Gateway</html>"),
            httpx.Response(200, json=compare_body(THREE_COMMITS, FILES)),
        ]
    )
    fake.on("GET", compare_path(), lambda _: next(answers))

    comparison = await gh.compare(repo="acme/ledger", base=BASE, head=HEAD)

    assert len(comparison.commits) == 3
    assert len(fake.requests) == 3
    assert len(sleep.calls) == 2
    assert sleep.calls[0] < sleep.calls[1]


async def test_a_malformed_repository_name_is_refused_before_any_request(
    fake: FakeGitHub, gh: GitHubClient
) -> None:
    for repo in ("acme", "acme/ledger/extra", "../etc", "acme/.."):
        with pytest.raises(DeliveryFailed) as caught:
            await gh.compare(repo=repo, base=BASE, head=HEAD)
        assert caught.value.retryable is False
    assert fake.requests == []


# --- GitHub Enterprise Server and settings -------------------------------------------------------


async def test_ghe_base_url_with_a_path_prefix(fake: FakeGitHub) -> None:
    settings = load_settings(
        {"GITHUB_TOKEN": TOKEN, "GITHUB_API_URL": "https://ghe.example/api/v3"}
    )
    fake.on("GET", f"/api/v3{compare_path()}", compare_body(THREE_COMMITS, FILES))
    gh = github_client_from_settings(settings, transport=fake.transport())
    assert gh is not None

    comparison = await gh.compare(repo="acme/ledger", base=BASE, head=HEAD)
    await gh.aclose()

    [request] = fake.requests
    assert str(request.url) == f"https://ghe.example/api/v3{compare_path()}"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["x-github-api-version"] == "2022-11-28"
    assert len(comparison.commits) == 3


def test_settings_without_credentials_give_no_client() -> None:
    assert github_client_from_settings(load_settings({})) is None


def test_half_an_app_is_a_configuration_error(pem: str) -> None:
    with pytest.raises(ValueError, match="GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY"):
        github_client_from_settings(load_settings({"GITHUB_APP_ID": "12345"}))
    with pytest.raises(ValueError, match="GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY"):
        github_client_from_settings(load_settings({"GITHUB_APP_PRIVATE_KEY": pem}))


def test_a_bad_private_key_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValueError) as caught:
        GitHubAppAuth("12345", "-----BEGIN RSA PRIVATE KEY-----\nnot-a-key\n-----END RSA...")
    assert "not-a-key" not in str(caught.value)

    ec_pem = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    with pytest.raises(ValueError, match="RSA"):
        GitHubAppAuth("12345", ec_pem)


# --- GitHub App ----------------------------------------------------------------------------------


def token_answer(clock: Clock, counter: list[int]) -> Route:
    def answer(request: httpx.Request) -> httpx.Response:
        counter.append(1)
        expires = datetime.fromtimestamp(clock.t + 3600, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return httpx.Response(
            201,
            json={
                "token": f"ghs_installation{len(counter)}",
                "expires_at": expires,
                "permissions": {"contents": "read", "metadata": "read"},
                "repository_selection": "selected",
            },
        )

    return answer


INSTALLATION = {
    "id": 42,
    "account": user("acme", 9919),
    "repository_selection": "selected",
    "access_tokens_url": f"{API}/app/installations/42/access_tokens",
    "repositories_url": f"{API}/installation/repositories",
    "html_url": "https://github.com/organizations/acme/settings/installations/42",
    "app_id": 12345,
    "target_id": 9919,
    "target_type": "Organization",
    "permissions": {"contents": "read", "metadata": "read"},
    "events": ["deployment", "deployment_status"],
    "created_at": "2025-01-01T00:00:00Z",
    "updated_at": "2025-01-01T00:00:00Z",
    "single_file_name": None,
    "app_slug": "releasebot",
}


def test_the_jwt_is_rs256_and_verifies_with_the_public_key(
    pem: str, rsa_key: rsa.RSAPrivateKey, clock: Clock
) -> None:
    app = GitHubAppAuth("12345", pem, now=clock)

    token = app.jwt()

    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    claims = jwt.decode(
        token,
        rsa_key.public_key(),
        algorithms=["RS256"],
        issuer="12345",
        options={"verify_exp": False, "verify_iat": False},
    )
    assert claims == {"iss": "12345", "iat": int(NOW) - 60, "exp": int(NOW) + 540}
    assert claims["exp"] - claims["iat"] <= 600  # GitHub refuses JWTs living over 10 minutes


def test_a_key_with_escaped_newlines_is_accepted(pem: str, rsa_key: rsa.RSAPrivateKey) -> None:
    app = GitHubAppAuth(12345, pem.replace("\n", "\\n"))

    claims = jwt.decode(app.jwt(), rsa_key.public_key(), algorithms=["RS256"], issuer="12345")

    assert claims["iss"] == "12345"


async def test_installation_tokens_are_cached_until_shortly_before_expiry(
    pem: str, rsa_key: rsa.RSAPrivateKey, fake: FakeGitHub, clock: Clock, retry: RetryPolicy
) -> None:
    issued: list[int] = []
    fake.on("POST", "/app/installations/42/access_tokens", token_answer(clock, issued))
    app = GitHubAppAuth("12345", pem, now=clock, retry=retry)
    async with make_client(API, transport=fake.transport()) as client:
        first = await app.installation_token(client, 42)
        clock.t = NOW + 3600 - 301  # 5 min + 1 s before expiry: still good
        second = await app.installation_token(client, 42)
        clock.t = NOW + 3600 - 299  # inside the 5-minute margin: refresh
        third = await app.installation_token(client, 42)

    assert first == second == "ghs_installation1"
    assert third == "ghs_installation2"
    assert len(issued) == 2
    request = fake.calls("POST", "/app/installations/42/access_tokens")[0]
    assert request.headers["accept"] == "application/vnd.github+json"
    assert request.headers["x-github-api-version"] == "2022-11-28"
    scheme, _, app_jwt = request.headers["authorization"].partition(" ")
    assert scheme == "Bearer"
    claims = jwt.decode(
        app_jwt,
        rsa_key.public_key(),
        algorithms=["RS256"],
        issuer="12345",
        options={"verify_exp": False, "verify_iat": False},
    )
    assert claims["iat"] == int(NOW) - 60


async def test_compare_as_an_app(
    pem: str, fake: FakeGitHub, clock: Clock, retry: RetryPolicy
) -> None:
    issued: list[int] = []
    fake.on("GET", "/repos/acme/ledger/installation", INSTALLATION)
    fake.on("POST", "/app/installations/42/access_tokens", token_answer(clock, issued))
    fake.on("GET", compare_path(), compare_body(THREE_COMMITS, FILES))
    app = GitHubAppAuth("12345", pem, now=clock, retry=retry)
    gh = GitHubClient(make_client(API, transport=fake.transport()), app=app, retry=retry)

    await gh.compare(repo="acme/ledger", base=BASE, head=HEAD)
    await gh.compare(repo="Acme/Ledger", base=BASE, head=HEAD)
    await gh.aclose()

    assert len(fake.calls("GET", "/repos/acme/ledger/installation")) == 1  # cached
    assert len(issued) == 1
    lookup = fake.calls("GET", "/repos/acme/ledger/installation")[0]
    assert lookup.headers["authorization"].startswith("Bearer ey")  # the JWT
    compares = [r for r in fake.requests if "/compare/" in r.url.path]
    assert [r.headers["authorization"] for r in compares] == ["Bearer ghs_installation1"] * 2


async def test_a_revoked_installation_token_is_replaced_once(
    pem: str, fake: FakeGitHub, clock: Clock, retry: RetryPolicy
) -> None:
    issued: list[int] = []
    fake.on("POST", "/app/installations/42/access_tokens", token_answer(clock, issued))

    def compare(request: httpx.Request) -> httpx.Response:
        if request.headers["authorization"] == "Bearer ghs_installation1":
            return httpx.Response(401, json={"message": "Bad credentials"})
        return httpx.Response(200, json=compare_body(THREE_COMMITS, FILES))

    fake.on("GET", compare_path(), compare)
    app = GitHubAppAuth("12345", pem, now=clock, retry=retry)
    gh = GitHubClient(
        make_client(API, transport=fake.transport()), app=app, installation_id=42, retry=retry
    )

    comparison = await gh.compare(repo="acme/ledger", base=BASE, head=HEAD)
    await gh.aclose()

    assert len(comparison.commits) == 3
    assert len(issued) == 2
    assert fake.calls("GET", "/repos/acme/ledger/installation") == []


async def test_an_app_not_installed_on_the_repository(
    pem: str, fake: FakeGitHub, clock: Clock, retry: RetryPolicy
) -> None:
    app = GitHubAppAuth("12345", pem, now=clock, retry=retry)
    gh = GitHubClient(make_client(API, transport=fake.transport()), app=app, retry=retry)

    with pytest.raises(DeliveryFailed) as caught:
        await gh.compare(repo="acme/ledger", base=BASE, head=HEAD)
    await gh.aclose()

    assert caught.value.retryable is False
    assert "not installed on acme/ledger" in caught.value.reason
    assert "Bearer" not in caught.value.reason


async def test_settings_with_app_credentials_build_an_app_client(
    pem: str, rsa_key: rsa.RSAPrivateKey, fake: FakeGitHub
) -> None:
    settings = load_settings(
        {"GITHUB_APP_ID": "12345", "GITHUB_APP_PRIVATE_KEY": pem, "GITHUB_TOKEN": TOKEN}
    )
    issued: list[int] = []
    fake.on("GET", "/repos/acme/ledger/installation", INSTALLATION)
    fake.on("POST", "/app/installations/42/access_tokens", token_answer(Clock(), issued))
    fake.on("GET", compare_path(), compare_body(THREE_COMMITS, FILES))
    gh = github_client_from_settings(settings, transport=fake.transport())
    assert gh is not None

    await gh.compare(repo="acme/ledger", base=BASE, head=HEAD)
    await gh.aclose()

    lookup = fake.calls("GET", "/repos/acme/ledger/installation")[0]
    app_jwt = lookup.headers["authorization"].removeprefix("Bearer ")
    assert jwt.decode(app_jwt, rsa_key.public_key(), algorithms=["RS256"])["iss"] == "12345"
    assert (
        fake.calls("GET", compare_path())[0].headers["authorization"] == "Bearer ghs_installation1"
    )
    assert TOKEN not in json.dumps([dict(r.headers) for r in fake.requests])
