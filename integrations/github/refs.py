"""A branch, tag or commit of a GitHub repository, as the full sha it names.

    sha = await resolve_ref(get, "acme/checkout", "v1.4.2")   # None: no such ref

`GET /repos/{owner}/{repo}/commits/{ref}` answers the commit a branch, a tag or a (short)
sha names, with its full `sha`. GitHub answers 422 ("No commit found for SHA: ...") for a
ref it does not know, and 404 for some malformed ones; both mean "no such ref". Any other
failure (credentials, rate limit, GitHub down) is raised as the `DeliveryFailed` it is.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from bot.domain.errors import DeliveryFailed
from integrations.github.pulls import Get

__all__ = ["NO_SUCH_REF", "resolve_ref"]

NO_SUCH_REF = (404, 422)
"""The statuses GitHub answers for a ref that names no commit."""

_SHA = re.compile(r"^[0-9a-f]{40}$")


async def resolve_ref(get: Get, repo: str, ref: str) -> str | None:
    """The full sha `ref` names in `repo` ("owner/name"), or None when it names nothing."""
    path = f"/repos/{repo}/commits/{quote(ref, safe='/')}"
    try:
        response = await get(repo, path)
    except DeliveryFailed as failure:
        if failure.status in NO_SUCH_REF and not failure.retryable:
            return None
        raise
    try:
        data = response.json()
    except ValueError:
        raise DeliveryFailed(
            f"GET {path}: the reply is not JSON", retryable=True, status=response.status_code
        ) from None
    sha = data.get("sha") if isinstance(data, dict) else None
    if not isinstance(sha, str) or not _SHA.match(sha.lower()):
        raise DeliveryFailed(f"GET {path}: the reply has no commit sha", retryable=False)
    return sha.lower()
