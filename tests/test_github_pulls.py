"""The pull requests behind a comparison, as GitHubClient.compare looks them up: one lookup
per commit, each pull request read once, reviews followed page by page, and every failure
said in `people_unknown` instead of being lost."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from bot.ports import ChangeRequest
from integrations.github.client import GitHubClient
from integrations.http import RetryPolicy, make_client

API = "https://api.github.com"
REPO = "/repos/acme/ledger"
BASE = "6dcb09b5b57875f334f61aebed695e2e4193db5e"
SHAS = ["1" * 40, "2" * 40, "3" * 40]

Answer = Callable[[httpx.Request], httpx.Response]


def commit(sha: str) -> dict[str, Any]:
    return {"sha": sha, "commit": {"message": "m", "author": {"name": "Ada"}}}


def pull(number: int, *, merged: bool = True) -> dict[str, Any]:
    return {
        "number": number,
        "html_url": f"https://github.com/acme/ledger/pull/{number}",
        "merged_at": "2026-11-16T10:00:00Z" if merged else None,
    }


def review(login: str, state: str) -> dict[str, Any]:
    return {"user": {"login": login}, "state": state}


class GitHub:
    """Answers from a table of paths; records every path asked."""

    def __init__(self) -> None:
        self.answers: dict[str, Answer] = {
            f"{REPO}/compare/{BASE}...{SHAS[-1]}": lambda _: httpx.Response(
                200, json={"commits": [commit(s) for s in SHAS], "files": [], "total_commits": 3}
            )
        }
        self.asked: list[str] = []

    def on(self, path: str, body: Any, status: int = 200, **headers: str) -> None:
        self.answers[path] = lambda _: httpx.Response(status, json=body, headers=headers)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.asked.append(str(request.url.copy_with(query=None)).removeprefix(API))
        answer = self.answers.get(request.url.path)
        if answer is None:
            return httpx.Response(404, json={"message": "Not Found"})
        return answer(request)


async def _no_sleep(_: float) -> None:
    return None


@pytest.fixture
def github() -> GitHub:
    fake = GitHub()
    for sha in SHAS:
        fake.on(f"{REPO}/commits/{sha}/pulls", [])
    return fake


@pytest.fixture
async def client(github: GitHub) -> AsyncIterator[GitHubClient]:
    retry = RetryPolicy(attempts=1, sleep=_no_sleep)
    http = make_client(API, transport=httpx.MockTransport(github))
    scm = GitHubClient(http, token="ghp_x", retry=retry)
    yield scm
    await scm.aclose()


async def test_each_pull_request_is_read_once_with_its_merger_and_approvers(
    github: GitHub, client: GitHubClient
) -> None:
    github.on(f"{REPO}/commits/{SHAS[0]}/pulls", [pull(7)])
    github.on(f"{REPO}/commits/{SHAS[1]}/pulls", [pull(7)])  # two commits of one pull request
    github.on(f"{REPO}/commits/{SHAS[2]}/pulls", [pull(9, merged=False)])
    github.on(f"{REPO}/pulls/7", {**pull(7), "merged_by": {"login": "grace"}})
    github.on(
        f"{REPO}/pulls/7/reviews",
        [review("bo", "APPROVED"), review("cy", "COMMENTED"), review("bo", "APPROVED")],
    )
    github.on(f"{REPO}/pulls/9/reviews", [review("di", "CHANGES_REQUESTED")])

    comparison = await client.compare(repo="acme/ledger", base=BASE, head=SHAS[-1])

    assert comparison.people_unknown is None
    assert comparison.changes == (
        ChangeRequest(7, "https://github.com/acme/ledger/pull/7", "grace", ("bo",)),
        ChangeRequest(9, "https://github.com/acme/ledger/pull/9", None, ()),
    )
    assert github.asked.count(f"{REPO}/pulls/7") == 1
    assert f"{REPO}/pulls/9" not in github.asked  # open: nobody merged it
    assert len(comparison.commits) == 3


async def test_reviews_are_followed_page_by_page(github: GitHub, client: GitHubClient) -> None:
    github.on(f"{REPO}/commits/{SHAS[0]}/pulls", [pull(7, merged=False)])
    page_2 = f"{API}/repositories/1/pulls/7/reviews?page=2"

    def reviews(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("page") == "2":
            return httpx.Response(200, json=[review("eve", "APPROVED")])
        link = f'<{page_2}>; rel="next"'
        return httpx.Response(200, json=[review("bo", "APPROVED")], headers={"link": link})

    github.answers[f"{REPO}/pulls/7/reviews"] = reviews
    github.answers["/repositories/1/pulls/7/reviews"] = reviews

    comparison = await client.compare(repo="acme/ledger", base=BASE, head=SHAS[-1])

    assert comparison.changes[0].approved_by == ("bo", "eve")


async def test_a_next_page_elsewhere_leaves_the_people_unknown(
    github: GitHub, client: GitHubClient
) -> None:
    github.on(f"{REPO}/commits/{SHAS[0]}/pulls", [pull(7, merged=False)])
    github.on(
        f"{REPO}/pulls/7/reviews",
        [review("bo", "APPROVED")],
        link='<https://evil.example/steal?page=2>; rel="next"',
    )

    comparison = await client.compare(repo="acme/ledger", base=BASE, head=SHAS[-1])

    assert comparison.changes == ()
    assert comparison.people_unknown is not None
    assert "the next page is elsewhere" in comparison.people_unknown
    assert not any("evil" in path for path in github.asked)


async def test_a_refused_lookup_keeps_the_commits_and_says_why(
    github: GitHub, client: GitHubClient
) -> None:
    github.on(
        f"{REPO}/commits/{SHAS[1]}/pulls",
        {"message": "Resource not accessible by integration"},
        status=403,
    )

    comparison = await client.compare(repo="acme/ledger", base=BASE, head=SHAS[-1])

    assert len(comparison.commits) == 3  # the risk is still scored on them
    assert comparison.changes == ()
    assert comparison.people_unknown is not None
    assert comparison.people_unknown.startswith(
        "GitHub did not list the pull requests of the commits (GET "
    )
    assert "403" in comparison.people_unknown
    assert "the GitHub App needs the pull_requests: read permission" in comparison.people_unknown
    assert "ghp_x" not in comparison.people_unknown


async def test_a_first_deployment_looks_up_its_one_commit(
    github: GitHub, client: GitHubClient
) -> None:
    github.on(f"{REPO}/commits/{SHAS[0]}", {**commit(SHAS[0]), "files": []})
    github.on(f"{REPO}/commits/{SHAS[0]}/pulls", [pull(7)])
    github.on(f"{REPO}/pulls/7", {**pull(7), "merged_by": {"login": "grace"}})
    github.on(f"{REPO}/pulls/7/reviews", [])

    comparison = await client.compare(repo="acme/ledger", base=None, head=SHAS[0])

    assert comparison.changes == (
        ChangeRequest(7, "https://github.com/acme/ledger/pull/7", "grace", ()),
    )
