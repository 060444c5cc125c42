"""The pull requests behind a comparison's commits: who merged each and who approved it.

    comparison = await with_changes(get, "acme/ledger", comparison, api_root=base_url)

For every commit listed, `GET /repos/{repo}/commits/{sha}/pulls` names the pull request that
brought it in (on the default branch, the merged one; elsewhere also open ones). Each pull
request is then read once: `GET /repos/{repo}/pulls/{number}` for `merged_by`, and
`GET /repos/{repo}/pulls/{number}/reviews` (followed page by page) for the reviewers whose
review is `APPROVED`. A GitHub App needs the `pull_requests: read` permission for these.

These people are barred from approving the release like its authors, so a failure is never
silent: the comparison keeps its commits and says in `people_unknown` why the mergers and
reviewers are not known, and gates then refuse approvals by default.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import quote

import httpx

from bot.domain.errors import DeliveryFailed
from bot.ports import ChangeRequest, Comparison

__all__ = ["CONCURRENT_CALLS", "REVIEW_PAGES_MAX", "Get", "with_changes"]

Get = Callable[[str, str], Awaitable[httpx.Response]]
"""`get(repo, path_or_url)`: an authenticated GET against the API root, raising
`DeliveryFailed` for anything but a 2xx answer."""

CONCURRENT_CALLS = 4
"""Calls in flight at once while looking the pull requests up."""
REVIEW_PAGES_MAX = 10
"""Pages of 100 reviews followed per pull request."""

_PERMISSION_HINT = "the GitHub App needs the pull_requests: read permission"


async def with_changes(get: Get, repo: str, comparison: Comparison, *, api_root: str) -> Comparison:
    """`comparison` with the pull requests of its commits, or with `people_unknown` saying why
    they could not be looked up."""
    limit = asyncio.Semaphore(CONCURRENT_CALLS)
    shas = list(dict.fromkeys(commit.sha for commit in comparison.commits))
    try:
        listed = await asyncio.gather(*(_pulls_of(get, repo, sha, limit) for sha in shas))
        pulls: dict[int, Mapping[str, Any]] = {}
        for found in listed:
            for pull in found:
                pulls.setdefault(pull["number"], pull)
        changes = await asyncio.gather(
            *(_change(get, repo, pull, limit, api_root) for pull in pulls.values())
        )
    except DeliveryFailed as failure:
        return replace(comparison, people_unknown=_unknown(failure))
    return replace(comparison, changes=tuple(sorted(changes, key=lambda c: c.number)))


def _unknown(failure: DeliveryFailed) -> str:
    hint = f"; {_PERMISSION_HINT}" if failure.status == 403 else ""
    return f"GitHub did not list the pull requests of the commits ({failure.reason}{hint})"


async def _pulls_of(
    get: Get, repo: str, sha: str, limit: asyncio.Semaphore
) -> list[Mapping[str, Any]]:
    path = f"/repos/{repo}/commits/{quote(sha, safe='')}/pulls"
    async with limit:
        items = _json(await get(repo, f"{path}?per_page=100"), f"GET {path}")
    if not isinstance(items, list):
        raise DeliveryFailed(f"GET {path}: the reply is not a list", retryable=False)
    pulls = [item for item in items if isinstance(item, Mapping)]
    for pull in pulls:
        number = pull.get("number")
        if not isinstance(number, int) or isinstance(number, bool):
            raise DeliveryFailed(f"GET {path}: a pull request has no number", retryable=False)
    return pulls


async def _change(
    get: Get, repo: str, pull: Mapping[str, Any], limit: asyncio.Semaphore, api_root: str
) -> ChangeRequest:
    number = int(pull["number"])
    merged_by: str | None = None
    if pull.get("merged_at"):
        path = f"/repos/{repo}/pulls/{number}"
        async with limit:
            detail = _json(await get(repo, path), f"GET {path}")
        merged_by = _login(detail.get("merged_by") if isinstance(detail, Mapping) else None)
    approvers = await _approvers(get, repo, number, limit, api_root)
    url = pull.get("html_url")
    return ChangeRequest(
        number=number,
        url=url if isinstance(url, str) and url else None,
        merged_by=merged_by,
        approved_by=tuple(dict.fromkeys(approvers)),
    )


async def _approvers(
    get: Get, repo: str, number: int, limit: asyncio.Semaphore, api_root: str
) -> list[str]:
    """The logins of every review of the pull request whose state is APPROVED."""
    path = f"/repos/{repo}/pulls/{number}/reviews"
    target: str | None = f"{path}?per_page=100"
    found: list[str] = []
    pages = 0
    while target is not None:
        if pages == REVIEW_PAGES_MAX:
            raise DeliveryFailed(
                f"GET {path}: more than {REVIEW_PAGES_MAX} pages of reviews", retryable=False
            )
        async with limit:
            response = await get(repo, target)
        reviews = _json(response, f"GET {path}")
        if not isinstance(reviews, list):
            raise DeliveryFailed(f"GET {path}: the reply is not a list", retryable=False)
        found.extend(_approved(reviews))
        pages += 1
        target = response.links.get("next", {}).get("url") or None
        if target is not None and not target.startswith(api_root):
            # Only ever send the credentials to our own API root.
            raise DeliveryFailed(f"GET {path}: the next page is elsewhere", retryable=False)
    return found


def _approved(reviews: Iterable[Any]) -> list[str]:
    logins: list[str] = []
    for review in reviews:
        if isinstance(review, Mapping) and review.get("state") == "APPROVED":
            login = _login(review.get("user"))
            if login:
                logins.append(login)
    return logins


def _login(user: Any) -> str | None:
    login = user.get("login") if isinstance(user, Mapping) else None
    return login if isinstance(login, str) and login else None


def _json(response: httpx.Response, what: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise DeliveryFailed(f"{what}: the reply is not JSON", retryable=False) from None
