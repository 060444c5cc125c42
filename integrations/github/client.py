"""`bot.ports.ScmClient` over GitHub's REST API (github.com or GitHub Enterprise Server).

    scm = github_client_from_settings(settings)          # None when GitHub is not configured
    comparison = await scm.compare(repo="acme/ledger", base=old_sha, head=new_sha)

Authentication is a token (`GITHUB_TOKEN`, a PAT or any bearer token) or a GitHub App
(`GITHUB_APP_ID` + `GITHUB_APP_PRIVATE_KEY`): the App signs a short JWT, finds the
repository's installation and trades the JWT for an installation token, cached until five
minutes before it expires.

GitHub's compare endpoint is not paged here: it lists at most 250 commits (`total_commits`
says how many there are) and at most 300 files with no flag, so the comparison is marked
`truncated` when either cap may have been hit. Without a base (a service's first
deployment) the head commit alone is the comparison.

Failures are `DeliveryFailed` (see `integrations.http.request_with_retries`); reasons name
the method and path, never a token or a JWT.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from bot.domain.errors import DeliveryFailed
from bot.ports import Comparison
from bot.settings import Settings
from integrations.errors import CredentialsError
from integrations.github.pulls import with_changes
from integrations.github.refs import resolve_ref
from integrations.github.shapes import commit_from, file_from, mapping, opt_str, parse_time
from integrations.http import RetryPolicy, make_client

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
__all__ = [
    "API_VERSION",
    "COMPARE_COMMITS_CAP",
    "COMPARE_FILES_CAP",
    "GITHUB_HEADERS",
    "GitHubAppAuth",
    "GitHubClient",
    "github_client_from_settings",
]

API_VERSION = "2022-11-28"
GITHUB_HEADERS = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": API_VERSION}

COMPARE_COMMITS_CAP = 250
"""Commits GitHub lists in one unpaged compare; `total_commits` counts them all."""
COMPARE_FILES_CAP = 300
"""Files GitHub lists per compare (and per page of a commit), with no truncation flag."""
COMMIT_FILES_MAX_PAGES = 10
"""Pages of a single commit's files followed (GitHub stops at 3000 files, 10 pages)."""

JWT_BACKDATE_SECONDS = 60
JWT_LIFETIME_SECONDS = 540
TOKEN_REFRESH_MARGIN_SECONDS = 300.0

NOT_FOUND = "repository or commit not found, or the token cannot read it"

_REPO_RE = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")


class GitHubAppAuth:
    """A GitHub App's credentials: JWTs, installation lookups and cached installation tokens.

    **Parameters:**

    * **app_id** - the App ID (or its client ID), the JWT's `iss`.
    * **private_key** - the App's PEM private key (literal `\\n` sequences, as env files
      often carry them, are accepted).
    * **now** - epoch seconds (`time.time`); tests inject a fixed clock.
    * **retry** - how the token and installation calls retry.
    """

    def __init__(
        self,
        app_id: str | int,
        private_key: str,
        *,
        now: Callable[[], float] = time.time,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.app_id = str(app_id).strip()
        if not self.app_id:
            raise CredentialsError("the GitHub App ID is empty")
        self._key = _load_private_key(private_key)
        self._now = now
        self._retry = retry or RetryPolicy()
        self._tokens: dict[int, tuple[str, float]] = {}
        self._installations: dict[str, int] = {}
        self._lock = asyncio.Lock()

    def jwt(self) -> str:
        """A fresh RS256 JWT: `iat` a minute in the past (clock drift), `exp` nine minutes on."""
        now = int(self._now())
        claims = {
            "iat": now - JWT_BACKDATE_SECONDS,
            "exp": now + JWT_LIFETIME_SECONDS,
            "iss": self.app_id,
        }
        import jwt  # with cryptography, only where a GitHub App signs in

        return jwt.encode(claims, self._key, algorithm="RS256")

    async def installation_token(self, client: httpx.AsyncClient, installation_id: int) -> str:
        """An installation access token, reused until 5 minutes before its `expires_at`."""
        async with self._lock:
            cached = self._tokens.get(installation_id)
            if cached is not None and self._now() < cached[1] - TOKEN_REFRESH_MARGIN_SECONDS:
                return cached[0]
            app_jwt = self.jwt()
            path = f"/app/installations/{int(installation_id)}/access_tokens"
            try:
                response = await self._retry.request(
                    client,
                    "POST",
                    path,
                    headers=self._jwt_headers(app_jwt),
                    secrets=[app_jwt],
                )
            except DeliveryFailed as failure:
                raise _explained(failure, _APP_FAILURES) from failure
            data = _json_object(response, f"POST {path}")
            token = data.get("token")
            if not isinstance(token, str) or not token:
                raise DeliveryFailed(f"POST {path}: the reply carried no token", retryable=False)
            expires = parse_time(data.get("expires_at"))
            expires_at = expires.timestamp() if expires else self._now() + 3600
            self._tokens[installation_id] = (token, expires_at)
            return token

    async def installation_for_repo(self, client: httpx.AsyncClient, repo: str) -> int:
        """The id of the App's installation on `repo` ("owner/name"), cached per repository."""
        _check_repo(repo)
        key = repo.lower()
        cached = self._installations.get(key)
        if cached is not None:
            return cached
        app_jwt = self.jwt()
        path = f"/repos/{repo}/installation"
        try:
            response = await self._retry.request(
                client, "GET", path, headers=self._jwt_headers(app_jwt), secrets=[app_jwt]
            )
        except DeliveryFailed as failure:
            raise _explained(
                failure, {**_APP_FAILURES, 404: f"the GitHub App is not installed on {repo}"}
            ) from failure
        installation_id = _json_object(response, f"GET {path}").get("id")
        if not isinstance(installation_id, int) or isinstance(installation_id, bool):
            raise DeliveryFailed(
                f"GET {path}: the reply carried no installation id", retryable=False
            )
        self._installations[key] = installation_id
        return installation_id

    def forget_token(self, installation_id: int) -> None:
        """Drop a cached token (GitHub refused it: revoked, or the App's permissions changed)."""
        self._tokens.pop(installation_id, None)

    @staticmethod
    def _jwt_headers(app_jwt: str) -> dict[str, str]:
        return {**GITHUB_HEADERS, "Authorization": f"Bearer {app_jwt}"}

    def __repr__(self) -> str:
        return f"GitHubAppAuth(app_id={self.app_id!r})"


class GitHubClient:
    """`ScmClient` for GitHub: `compare`, with its commits' pull requests, over REST.

    **Parameters:**

    * **client** - an `httpx.AsyncClient` whose `base_url` is the API root
      (`https://api.github.com`, or `https://ghe.example/api/v3` on Enterprise Server).
    * **token** or **app** - a bearer token, or a `GitHubAppAuth` (exactly one).
    * **installation_id** - with `app`: use this installation instead of looking it up
      per repository.
    * **retry** - the retry policy of every call.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        token: str | None = None,
        app: GitHubAppAuth | None = None,
        installation_id: int | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        if (token is None) == (app is None):
            raise CredentialsError("GitHubClient needs either a token or a GitHubAppAuth")
        self._client = client
        self._token = token
        self._app = app
        self._installation_id = installation_id
        self._retry = retry or RetryPolicy()

    async def compare(self, *, repo: str, base: str | None, head: str) -> Comparison:
        """What changed from `base` to `head` in `repo` ("owner/name"); just `head` without base."""
        _check_repo(repo)
        if not head:
            raise DeliveryFailed(f"{repo}: no head commit to compare", retryable=False)
        if not base:
            return await self._single_commit(repo, head)
        path = f"/repos/{repo}/compare/{_ref(base)}...{_ref(head)}"
        data = _json_object(await self._get(repo, path), f"GET {path}")
        raw_commits = _list(data.get("commits"), f"GET {path}: commits")
        raw_files = _list(data.get("files", []), f"GET {path}: files")
        commits = tuple(commit_from(item) for item in raw_commits if isinstance(item, Mapping))
        files = tuple(file_from(item) for item in raw_files if isinstance(item, Mapping))
        total = data.get("total_commits")
        total_commits = total if isinstance(total, int) and total >= len(commits) else len(commits)
        found = Comparison(
            commits=commits,
            files=files,
            total_commits=total_commits,
            truncated=total_commits > len(commits) or len(files) >= COMPARE_FILES_CAP,
            url=opt_str(data.get("html_url")),
        )
        return await with_changes(self._get, repo, found, api_root=str(self._client.base_url))

    async def resolve_ref(self, *, repo: str, ref: str) -> str | None:
        """The full sha a branch, tag or commit names in `repo`; None when it names none."""
        _check_repo(repo)
        return await resolve_ref(self._get, repo, ref)

    async def check_access(self) -> str:
        """Whether GitHub answers to these credentials, as a short note for `releasebot doctor`.

        A token asks `/rate_limit` (which costs nothing against the limit), a GitHub App
        `/app` with its JWT. Raises `DeliveryFailed` saying what GitHub refused.
        """
        if self._app is None:
            assert self._token is not None
            try:
                response = await self._send("/rate_limit", self._token)
            except DeliveryFailed as failure:
                raise _explained(failure, self._failures()) from failure
            resources = mapping(_json_object(response, "GET /rate_limit").get("resources"))
            limits = mapping(resources.get("core"))
            return (
                f"answers to GITHUB_TOKEN; {limits.get('remaining', '?')} of "
                f"{limits.get('limit', '?')} calls left this hour"
            )
        app_jwt = self._app.jwt()
        try:
            response = await self._retry.request(
                self._client,
                "GET",
                "/app",
                headers=self._app._jwt_headers(app_jwt),
                secrets=[app_jwt],
            )
        except DeliveryFailed as failure:
            raise _explained(failure, _APP_FAILURES) from failure
        name = _json_object(response, "GET /app").get("slug") or self._app.app_id
        return f"answers to the GitHub App {name}"

    async def aclose(self) -> None:
        """Close the underlying HTTP client."""
        await self._client.aclose()

    async def _single_commit(self, repo: str, head: str) -> Comparison:
        path = f"/repos/{repo}/commits/{_ref(head)}"
        response = await self._get(repo, path)
        data = _json_object(response, f"GET {path}")
        commit = commit_from(data)
        files = [
            file_from(item)
            for item in _list(data.get("files", []), f"GET {path}: files")
            if isinstance(item, Mapping)
        ]
        pages = 1
        next_url = _next_link(response)
        while next_url is not None and pages < COMMIT_FILES_MAX_PAGES:
            if not next_url.startswith(str(self._client.base_url)):
                break  # only ever send the token to our own API root
            response = await self._get(repo, next_url)
            page = _json_object(response, f"GET {path}")
            files.extend(
                file_from(item)
                for item in _list(page.get("files", []), f"GET {path}: files")
                if isinstance(item, Mapping)
            )
            pages += 1
            next_url = _next_link(response)
        at_cap = len(files) >= COMPARE_FILES_CAP * COMMIT_FILES_MAX_PAGES
        found = Comparison(
            commits=(commit,),
            files=tuple(files),
            total_commits=1,
            truncated=next_url is not None or at_cap,
            url=commit.url,
        )
        return await with_changes(self._get, repo, found, api_root=str(self._client.base_url))

    async def _get(self, repo: str, path: str) -> httpx.Response:
        token, installation_id = await self._credentials(repo)
        try:
            return await self._send(path, token)
        except DeliveryFailed as failure:
            if failure.status == 401 and self._app is not None and installation_id is not None:
                # The cached installation token was revoked early: fetch a new one, once.
                self._app.forget_token(installation_id)
                token, _ = await self._credentials(repo)
                try:
                    return await self._send(path, token)
                except DeliveryFailed as second:
                    raise _explained(second, self._failures()) from second
            raise _explained(failure, self._failures()) from failure

    async def _send(self, path: str, token: str) -> httpx.Response:
        return await self._retry.request(
            self._client,
            "GET",
            path,
            headers={**GITHUB_HEADERS, "Authorization": f"Bearer {token}"},
            secrets=[token],
        )

    async def _credentials(self, repo: str) -> tuple[str, int | None]:
        if self._app is None:
            assert self._token is not None
            return self._token, None
        installation_id = self._installation_id
        if installation_id is None:
            installation_id = await self._app.installation_for_repo(self._client, repo)
        return await self._app.installation_token(self._client, installation_id), installation_id

    def _failures(self) -> dict[int, str]:
        who = "GITHUB_TOKEN" if self._app is None else "the GitHub App installation token"
        return {
            404: NOT_FOUND,
            401: f"GitHub refused the credentials; check {who}",
            422: "GitHub cannot compare these commits (unknown ref, or no common history)",
        }

    def __repr__(self) -> str:
        auth = "token" if self._app is None else repr(self._app)
        return f"GitHubClient(base_url={str(self._client.base_url)!r}, auth={auth})"


def github_client_from_settings(
    settings: Settings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    retry: RetryPolicy | None = None,
) -> GitHubClient | None:
    """A `GitHubClient` for `GITHUB_API_URL`, or None when no GitHub credentials are set.

    App credentials win over `GITHUB_TOKEN` when both are complete. Raises `ValueError` for
    half an App (an ID without a key or the other way round) or a key that is not an RSA PEM.
    """
    app_id = (settings.github_app_id or "").strip()
    key = settings.github_app_private_key
    key_text = key.get_secret_value().strip() if key is not None else ""
    token = settings.github_token.get_secret_value().strip() if settings.github_token else ""
    if bool(app_id) != bool(key_text):
        raise CredentialsError("GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY must be set together")
    if not app_id and not token:
        return None
    client = make_client(settings.github_api_url, headers=dict(GITHUB_HEADERS), transport=transport)
    if app_id:
        app = GitHubAppAuth(app_id, key_text, retry=retry)
        return GitHubClient(client, app=app, retry=retry)
    return GitHubClient(client, token=token, retry=retry)


_APP_FAILURES = {
    401: "GitHub refused the App's JWT; check GITHUB_APP_ID, GITHUB_APP_PRIVATE_KEY and the clock",
    403: "the GitHub App may not do this; check its permissions",
    404: "GitHub App installation not found",
}


def _explained(failure: DeliveryFailed, explanations: Mapping[int, str]) -> DeliveryFailed:
    """`failure` with what its status means for us appended to the reason."""
    if failure.status is None or failure.retryable or failure.status not in explanations:
        return failure
    return DeliveryFailed(
        f"{failure.reason} ({explanations[failure.status]})",
        retryable=failure.retryable,
        retry_after=failure.retry_after,
        status=failure.status,
    )


def _next_link(response: httpx.Response) -> str | None:
    url = response.links.get("next", {}).get("url")
    return url or None


def _load_private_key(pem: str) -> RSAPrivateKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

    text = pem.strip()
    if "\\n" in text and "\n" not in text:
        text = text.replace("\\n", "\n")
    try:
        key = serialization.load_pem_private_key(text.encode(), password=None)
    except (ValueError, TypeError):
        # Never echo the key material.
        raise CredentialsError(
            "the GitHub App private key is not a readable PEM private key"
        ) from None
    if not isinstance(key, RSAPrivateKey):
        raise CredentialsError("the GitHub App private key must be an RSA key (RS256)")
    return key


def _check_repo(repo: str) -> None:
    name = repo.split("/", 1)[-1]
    if not _REPO_RE.match(repo) or name in (".", "..") or repo.split("/", 1)[0] in (".", ".."):
        raise DeliveryFailed(f"{repo!r} is not a GitHub repository (owner/name)", retryable=False)


def _ref(ref: str) -> str:
    return quote(ref, safe="/")


def _json_object(response: httpx.Response, what: str) -> Mapping[str, Any]:
    try:
        data: Any = response.json()
    except ValueError:
        raise DeliveryFailed(
            f"{what}: the reply is not JSON", retryable=True, status=response.status_code
        ) from None
    if not isinstance(data, Mapping):
        raise DeliveryFailed(f"{what}: the reply is not a JSON object", retryable=False)
    return data


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise DeliveryFailed(f"{what} is not a list", retryable=False)
    return value
