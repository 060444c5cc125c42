"""The merge requests behind a comparison's commits: who merged each and who approved it.

    comparison = await with_changes(get, "acme/ledger", comparison)

For every commit listed, `GET /projects/:id/repository/commits/:sha/merge_requests` names the
merge requests that brought it in (merged ones, and open ones whose branch holds it). Each
merge request is then read once: its merger is `merge_user` (GitLab 14.7 and later; the
person who merged it or set it to merge when the pipeline succeeds), else the older
`merged_by`, for a merge request in state `merged`; `GET /projects/:id/merge_requests/:iid/
approvals` lists who approved it (`approved_by: [{user: {username}}]`). The token's
`read_api` scope covers both calls.

These people are barred from approving the release like its authors, so a failure is never
silent: the comparison keeps its commits and says in `people_unknown` why the mergers and
approvers are not known, and gates then refuse approvals by default.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import quote

import httpx

from bot.domain.errors import DeliveryFailed
from bot.ports import ChangeRequest, Comparison

__all__ = ["CONCURRENT_CALLS", "Get", "with_changes"]

Get = Callable[[str, Mapping[str, str | int]], Awaitable[httpx.Response]]
"""`get(path, params)`: an authenticated GET against the API root, raising `DeliveryFailed`
for anything but a 2xx answer (its reason names the method and path, never the token)."""

CONCURRENT_CALLS = 4
"""Calls in flight at once while looking the merge requests up."""
PER_PAGE = 100
"""Merge requests asked for per commit (GitLab's maximum page size)."""


async def with_changes(get: Get, project: str, comparison: Comparison) -> Comparison:
    """`comparison` with the merge requests of its commits, or with `people_unknown` saying
    why they could not be looked up. `project`: the id or the percent-encoded path."""
    limit = asyncio.Semaphore(CONCURRENT_CALLS)
    shas = list(dict.fromkeys(commit.sha for commit in comparison.commits))
    try:
        listed = await asyncio.gather(
            *(_merge_requests_of(get, project, sha, limit) for sha in shas)
        )
        found: dict[int, Mapping[str, Any]] = {}
        for merge_requests in listed:
            for merge_request in merge_requests:
                found.setdefault(int(merge_request["iid"]), merge_request)
        changes = await asyncio.gather(
            *(_change(get, project, merge_request, limit) for merge_request in found.values())
        )
    except DeliveryFailed as failure:
        reason = f"GitLab did not list the merge requests of the commits ({failure.reason})"
        return replace(comparison, people_unknown=reason)
    return replace(comparison, changes=tuple(sorted(changes, key=lambda c: c.number)))


async def _merge_requests_of(
    get: Get, project: str, sha: str, limit: asyncio.Semaphore
) -> list[Mapping[str, Any]]:
    path = f"/projects/{project}/repository/commits/{quote(sha, safe='')}/merge_requests"
    async with limit:
        items = _json(await get(path, {"per_page": PER_PAGE}), f"GET {path}")
    if not isinstance(items, list):
        raise DeliveryFailed(f"GET {path}: the reply is not a list", retryable=False)
    found = [item for item in items if isinstance(item, Mapping)]
    for merge_request in found:
        if not _whole(merge_request.get("iid")):
            raise DeliveryFailed(f"GET {path}: a merge request has no iid", retryable=False)
    return found


async def _change(
    get: Get, project: str, merge_request: Mapping[str, Any], limit: asyncio.Semaphore
) -> ChangeRequest:
    iid = int(merge_request["iid"])
    merged_by: str | None = None
    if merge_request.get("state") == "merged":
        merged_by = _username(merge_request.get("merge_user")) or _username(
            merge_request.get("merged_by")
        )
    path = f"/projects/{project}/merge_requests/{iid}/approvals"
    async with limit:
        approvals = _json(await get(path, {}), f"GET {path}")
    if not isinstance(approvals, Mapping):
        raise DeliveryFailed(f"GET {path}: the reply is not a JSON object", retryable=False)
    approved_by = approvals.get("approved_by") or []
    if not isinstance(approved_by, list):
        raise DeliveryFailed(f"GET {path}: approved_by is not a list", retryable=False)
    approvers = [
        name
        for name in (
            _username(entry.get("user")) for entry in approved_by if isinstance(entry, Mapping)
        )
        if name
    ]
    url = merge_request.get("web_url")
    return ChangeRequest(
        number=iid,
        url=url if isinstance(url, str) and url else None,
        merged_by=merged_by,
        approved_by=tuple(dict.fromkeys(approvers)),
    )


def _username(user: Any) -> str | None:
    name = user.get("username") if isinstance(user, Mapping) else None
    return name if isinstance(name, str) and name else None


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _json(response: httpx.Response, what: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise DeliveryFailed(f"{what}: the reply is not JSON", retryable=False) from None
