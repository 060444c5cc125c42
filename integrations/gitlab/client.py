"""`bot.ports.ScmClient` over GitLab's REST API (gitlab.com or self-managed), plus deployments.

    scm = gitlab_client_from_settings(settings)         # None when GITLAB_TOKEN is not set
    comparison = await scm.compare(repo="acme/ledger", base=old_sha, head=new_sha)
    deployment = await scm.deployment("acme/ledger", 15)  # the Deployment Hook has no full sha

Projects are named by id or by their full path, which goes into URLs percent-encoded
(`acme/ledger` -> `acme%2Fledger`). Authentication is the `PRIVATE-TOKEN` header.

Every comparison then names the merge requests that brought its commits in, with who merged
and who approved each (`integrations.gitlab.merge_requests`; `people_unknown` says why when
GitLab would not list them).

GitLab's compare reply has no per-file line counts, so additions and deletions are counted
from each diff's text (`count_diff_lines`). Diffs GitLab left out (`too_large`, `collapsed`)
or a compare that hit GitLab's limits (`compare_timeout`) make the comparison `truncated`.

Failures are `DeliveryFailed` (see `integrations.http.request_with_retries`); reasons name
the method and path, never the token.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

from bot.domain.errors import DeliveryFailed
from bot.ports import Commit, Comparison, FileChange
from bot.settings import Settings
from integrations.errors import CredentialsError
from integrations.gitlab.merge_requests import with_changes
from integrations.http import RetryPolicy, make_client

__all__ = [
    "DIFF_PAGE_SIZE",
    "GitLabClient",
    "GitLabDeployment",
    "count_diff_lines",
    "deployment_from",
    "pick_waiting",
    "waiting_query",
    "gitlab_client_from_settings",
    "project_path",
]

DIFF_PAGE_SIZE = 100
"""Files per page of a single commit's diff (GitLab's maximum `per_page`)."""
DIFF_MAX_PAGES = 10

NOT_FOUND = "project or commit not found, or the token cannot read it"


@dataclass(frozen=True)
class GitLabDeployment:
    """What `GET /projects/:id/deployments/:deployment_id` says about one deployment."""

    id: int
    sha: str
    ref: str
    status: str  # created | running | success | failed | canceled | skipped | blocked
    environment: str | None = None  # the environment's name
    user: str | None = None  # the username of whoever triggered it
    deployable_url: str | None = None  # the job's page; None for API or trigger deploys
    iid: int | None = None

    @property
    def waits_for_approval(self) -> bool:
        """GitLab holds it until enough approvals are given (`blocked`)."""
        return self.status == "blocked"


class GitLabClient:
    """`ScmClient` for GitLab, and the deployment lookup the Deployment Hook needs.

    **Parameters:**

    * **client** - an `httpx.AsyncClient` whose `base_url` is the API root
      (`https://gitlab.com/api/v4`, or `https://gitlab.example/api/v4` when self-managed).
    * **token** - a personal, project or group access token with `read_api`.
    * **retry** - the retry policy of every call.
    """

    def __init__(
        self, client: httpx.AsyncClient, *, token: str, retry: RetryPolicy | None = None
    ) -> None:
        if not token:
            raise CredentialsError("GitLabClient needs a token")
        self._client = client
        self._token = token
        self._retry = retry or RetryPolicy()

    async def compare(self, *, repo: str, base: str | None, head: str) -> Comparison:
        """What changed from `base` to `head` in project `repo`; just `head` without a base.

        Uses the merge base (`straight=false`), like `git diff base...head`.
        """
        if not head:
            raise DeliveryFailed(f"{repo}: no head commit to compare", retryable=False)
        if not base:
            return await self._single_commit(repo, head)
        path = f"/projects/{project_path(repo)}/repository/compare"
        response = await self._get(path, params={"from": base, "to": head, "straight": "false"})
        data = _json_object(response, f"GET {path}")
        # GitLab lists compare commits oldest first (its own `commit` field is the last one).
        commits = tuple(
            _commit(item)
            for item in _list(data.get("commits", []), f"GET {path}: commits")
            if isinstance(item, Mapping)
        )
        diffs = [
            item
            for item in _list(data.get("diffs", []), f"GET {path}: diffs")
            if isinstance(item, Mapping)
        ]
        files = tuple(_file(item) for item in diffs)
        truncated = data.get("compare_timeout") is True or any(_omitted(item) for item in diffs)
        found = Comparison(
            commits=commits,
            files=files,
            total_commits=len(commits),
            truncated=truncated,
            url=_opt_str(data.get("web_url")),
        )
        return await with_changes(self._get_with, project_path(repo), found)

    async def resolve_ref(self, *, repo: str, ref: str) -> str | None:
        """The full sha a branch, tag or commit names in project `repo`; None when it names
        none (`GET /projects/:id/repository/commits/:ref` answers 404)."""
        path = f"/projects/{project_path(repo)}/repository/commits/{quote(ref, safe='')}"
        try:
            response = await self._get(path)
        except DeliveryFailed as failure:
            if failure.status == 404 and not failure.retryable:
                return None
            raise
        sha = _json_object(response, f"GET {path}").get("id")
        if not isinstance(sha, str) or len(sha) != 40:
            raise DeliveryFailed(f"GET {path}: the reply has no commit id", retryable=False)
        return sha.lower()

    async def deployment(self, project: str | int, deployment_id: int) -> GitLabDeployment:
        """One deployment of `project` (id or path), with the full sha the hook leaves out."""
        path = f"/projects/{project_path(project)}/deployments/{int(deployment_id)}"
        data = _json_object(
            await self._get(
                path, not_found="deployment or project not found, or the token cannot read it"
            ),
            f"GET {path}",
        )
        found = deployment_from(data)
        if found is None:
            raise DeliveryFailed(f"GET {path}: the reply carried no id or sha", retryable=False)
        return found

    async def waiting_deployment(
        self, project: str | int, environment: str, sha: str
    ) -> GitLabDeployment | None:
        """The newest deployment of `environment` at commit `sha` that waits for approval
        (`blocked`), or None when none does (a Job Hook names the job, not the deployment)."""
        path, params = waiting_query(project, environment)
        response = await self._get(path, params=params)
        items = _list(_json(response, f"GET {path}"), f"GET {path}")
        return pick_waiting(items, sha)

    async def check_access(self) -> str:
        """Whether GitLab answers to the token (`GET /version`), as a note for `releasebot doctor`.

        Raises `DeliveryFailed` saying what GitLab refused.
        """
        response = await self._get("/version", not_found="no GitLab API at GITLAB_API_URL")
        version = _json_object(response, "GET /version").get("version")
        return f"answers to GITLAB_TOKEN; GitLab {version or '(version not given)'}"

    async def aclose(self) -> None:
        """Close the underlying HTTP client."""
        await self._client.aclose()

    async def _single_commit(self, repo: str, head: str) -> Comparison:
        commit_path = f"/projects/{project_path(repo)}/repository/commits/{quote(head, safe='')}"
        data = _json_object(await self._get(commit_path), f"GET {commit_path}")
        commit = _commit(data)
        diff_path = f"{commit_path}/diff"
        diffs: list[Mapping[str, Any]] = []
        page = 1
        more = True
        while more and page <= DIFF_MAX_PAGES:
            response = await self._get(diff_path, params={"per_page": DIFF_PAGE_SIZE, "page": page})
            items = _list(_json(response, f"GET {diff_path}"), f"GET {diff_path}")
            diffs.extend(item for item in items if isinstance(item, Mapping))
            next_page = response.headers.get("x-next-page", "").strip()
            more = bool(next_page) and bool(items)
            page += 1
        files = tuple(_file(item) for item in diffs)
        found = Comparison(
            commits=(commit,),
            files=files,
            total_commits=1,
            truncated=more or any(_omitted(item) for item in diffs),
            url=commit.url,
        )
        return await with_changes(self._get_with, project_path(repo), found)

    async def _get_with(self, path: str, params: Mapping[str, str | int]) -> httpx.Response:
        return await self._get(path, params=params or None)

    async def _get(
        self,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        not_found: str = NOT_FOUND,
    ) -> httpx.Response:
        try:
            return await self._retry.request(
                self._client,
                "GET",
                path,
                params=params,
                headers={"PRIVATE-TOKEN": self._token},
                secrets=[self._token],
            )
        except DeliveryFailed as failure:
            explanation = {
                404: not_found,
                401: "GitLab refused the token; check GITLAB_TOKEN",
                403: "the token may not read this project; it needs read_api",
            }.get(failure.status or 0)
            if failure.retryable or explanation is None:
                raise
            raise DeliveryFailed(
                f"{failure.reason} ({explanation})",
                retryable=False,
                status=failure.status,
            ) from failure

    def __repr__(self) -> str:
        return f"GitLabClient(base_url={str(self._client.base_url)!r})"


def gitlab_client_from_settings(
    settings: Settings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    retry: RetryPolicy | None = None,
) -> GitLabClient | None:
    """A `GitLabClient` for `GITLAB_API_URL`, or None when `GITLAB_TOKEN` is not set."""
    token = settings.gitlab_token.get_secret_value().strip() if settings.gitlab_token else ""
    if not token:
        return None
    client = make_client(
        settings.gitlab_api_url, headers={"Accept": "application/json"}, transport=transport
    )
    return GitLabClient(client, token=token, retry=retry)


def waiting_query(project: str | int, environment: str) -> tuple[str, dict[str, str | int]]:
    """`GET /projects/:id/deployments` of one environment's deployments waiting for approval,
    newest first."""
    params: dict[str, str | int] = {
        "environment": environment,
        "status": "blocked",
        "order_by": "id",
        "sort": "desc",
        "per_page": 100,  # GitLab's maximum; a page of waiting deployments is plenty
    }
    return f"/projects/{project_path(project)}/deployments", params


def pick_waiting(items: list[Any], sha: str) -> GitLabDeployment | None:
    """Of a `waiting_query` reply, the newest blocked deployment at commit `sha`."""
    wanted = sha.lower()
    found = [
        deployment
        for deployment in (deployment_from(item) for item in items if isinstance(item, Mapping))
        if deployment is not None and deployment.sha.lower() == wanted
    ]
    waiting = [deployment for deployment in found if deployment.waits_for_approval]
    return max(waiting, key=lambda deployment: deployment.id, default=None)


def deployment_from(data: Mapping[str, Any]) -> GitLabDeployment | None:
    """A deployment of the Deployments API, or None when it carries no id or sha."""
    sha = data.get("sha")
    ident = data.get("id")
    if not isinstance(sha, str) or not sha or not isinstance(ident, int):
        return None
    iid = data.get("iid")
    return GitLabDeployment(
        id=ident,
        iid=iid if isinstance(iid, int) and not isinstance(iid, bool) else None,
        sha=sha,
        ref=_opt_str(data.get("ref")) or "",
        status=_opt_str(data.get("status")) or "",
        environment=_opt_str(_mapping(data.get("environment")).get("name")),
        user=_opt_str(_mapping(data.get("user")).get("username")),
        deployable_url=_opt_str(_mapping(data.get("deployable")).get("web_url")),
    )


def project_path(project: str | int) -> str:
    """A project id for a URL: a number as is, a path percent-encoded (`acme%2Fledger`)."""
    if isinstance(project, int):
        return str(project)
    text = project.strip().strip("/")
    if not text or any(part in ("", ".", "..") for part in text.split("/")):
        raise DeliveryFailed(f"{project!r} is not a GitLab project path or id", retryable=False)
    return quote(text, safe="")


def count_diff_lines(diff: str) -> tuple[int, int]:
    """(added, removed) lines of one file's unified diff.

    Only `+`/`-` lines inside hunks count: the `---`/`+++` file headers before the first `@@`
    do not, while a removed line that itself starts with `--` (`--- SQL comment`) does.
    """
    added = removed = 0
    in_hunk = False
    for line in diff.splitlines():
        if line.startswith("@@"):
            in_hunk = True
        elif line.startswith("diff --git"):
            in_hunk = False  # the next file's headers follow
        elif not in_hunk:
            continue  # `---`/`+++` headers, "Binary files ... differ", mode lines
        elif line.startswith("+"):
            added += 1
        elif line.startswith("-"):
            removed += 1
    return added, removed


def _file(item: Mapping[str, Any]) -> FileChange:
    new_path = _opt_str(item.get("new_path"))
    old_path = _opt_str(item.get("old_path"))
    diff = item.get("diff")
    added, removed = count_diff_lines(diff) if isinstance(diff, str) else (0, 0)
    if item.get("new_file") is True:
        status = "added"
    elif item.get("deleted_file") is True:
        status = "removed"
    elif item.get("renamed_file") is True:
        status = "renamed"
    else:
        status = "modified"
    return FileChange(
        path=new_path or old_path or "",
        additions=added,
        deletions=removed,
        status=status,
        previous_path=old_path if status == "renamed" and old_path != new_path else None,
    )


def _omitted(item: Mapping[str, Any]) -> bool:
    """GitLab left this file's diff out, so its counts are unknown."""
    return item.get("too_large") is True or item.get("collapsed") is True


def _commit(item: Mapping[str, Any]) -> Commit:
    sha = item.get("id")
    if not isinstance(sha, str) or not sha:
        raise DeliveryFailed("a commit in GitLab's reply has no id", retryable=False)
    message = _opt_str(item.get("message")) or _opt_str(item.get("title")) or ""
    return Commit(
        sha=sha,
        message=message,
        author=_opt_str(item.get("author_name")) or "unknown",
        author_login=None,
        committer_login=None,
        author_email=_opt_str(item.get("author_email")),
        committer_email=_opt_str(item.get("committer_email")),
        authored_at=_parse_time(item.get("authored_date")) or _parse_time(item.get("created_at")),
        url=_opt_str(item.get("web_url")),
    )


def _json(response: httpx.Response, what: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise DeliveryFailed(
            f"{what}: the reply is not JSON", retryable=True, status=response.status_code
        ) from None


def _json_object(response: httpx.Response, what: str) -> Mapping[str, Any]:
    data = _json(response, what)
    if not isinstance(data, Mapping):
        raise DeliveryFailed(f"{what}: the reply is not a JSON object", retryable=False)
    return data


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise DeliveryFailed(f"{what} is not a list", retryable=False)
    return value


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
