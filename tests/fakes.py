"""Test doubles that satisfy bot.ports, recording what happened as data."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from bot.domain.errors import DeliveryFailed
from bot.ports import Commit, Comparison, FileChange


class FrozenClock:
    """A clock that moves only when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 11, 17, 10, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, **delta: float) -> datetime:
        self._now += timedelta(**delta)
        return self._now

    def set(self, when: datetime) -> None:
        self._now = when


class FakeScm:
    """A code host's compare API: answers from a table of comparisons, records every call."""

    def __init__(self) -> None:
        self.comparisons: dict[tuple[str | None, str], Comparison] = {}
        self.calls: list[tuple[str, str | None, str]] = []
        self.failures: list[DeliveryFailed] = []
        self.refs: dict[str, str] = {}  # branch or tag -> the full sha it names

    def add(self, *, base: str | None, head: str, comparison: Comparison) -> None:
        self.comparisons[(base, head)] = comparison

    async def compare(self, *, repo: str, base: str | None, head: str) -> Comparison:
        self.calls.append((repo, base, head))
        if self.failures:
            raise self.failures.pop(0)
        try:
            return self.comparisons[(base, head)]
        except KeyError:
            raise DeliveryFailed(f"compare {base}...{head}: 404", retryable=False) from None

    async def resolve_ref(self, *, repo: str, ref: str) -> str | None:
        """The sha `refs` names, a full sha as it is, else None (no such ref)."""
        if ref in self.refs:
            return self.refs[ref]
        return ref.lower() if len(ref) == 40 and all(c in "0123456789abcdef" for c in ref) else None


def commits(count: int, *, message: str = "Change {i}", author: str = "Dev One") -> Comparison:
    start = datetime(2026, 11, 10, 9, 0, tzinfo=UTC)
    made = tuple(
        Commit(
            sha=f"{i + 1:040x}",
            message=message.format(i=i),
            author=author,
            author_login="dev-one",
            authored_at=start + timedelta(minutes=i),
            url=f"https://github.com/acme/checkout/commit/{i + 1:040x}",
        )
        for i in range(count)
    )
    files = (FileChange(path="app/main.py", additions=12 * count, deletions=3 * count),)
    return Comparison(
        commits=made,
        files=files,
        total_commits=count,
        truncated=False,
        url="https://github.com/acme/checkout/compare/a...b",
    )


class FakeGitHub:
    """GitHub's REST API as an httpx transport: App tokens, compare, protection-rule
    callbacks and workflow dispatches, answering as GitHub does and recording every call."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.compare_files: list[dict[str, Any]] = [
            {"filename": "app/main.py", "status": "modified", "additions": 10, "deletions": 2}
        ]
        self.commit_author: str | None = "octo-owner"  # None: no GitHub account matched
        self.commit_author_email = "olga@acme.example"
        self.callback_status = 204
        self.commit_message = "Speed up checkout"
        # Pull requests, as `pull(...)` adds them: the commits they brought in, `merged_by`,
        # and the reviews (GitHub's shapes); a commit no pull request brought in has none.
        self.pulls: dict[int, dict[str, Any]] = {}
        self.pull_commits: dict[int, list[str] | None] = {}
        self.reviews: dict[int, list[dict[str, Any]]] = {}
        self.compare_status = 200  # e.g. 503: GitHub cannot list the commits
        self.pulls_status = 200  # e.g. 403: the App lacks pull_requests: read
        # Branches and tags `GET /repos/{repo}/commits/{ref}` resolves (ref -> full sha). Once
        # any is set, a ref that is neither one of them nor a full sha is answered with
        # GitHub's 422 "No commit found for SHA: <ref>".
        self.refs: dict[str, str] = {}

    def pull(
        self,
        number: int,
        *,
        merged_by: str | None = None,
        approved_by: tuple[str, ...] = (),
        other_reviews: tuple[tuple[str, str], ...] = (),
        commits: list[str] | None = None,
    ) -> None:
        """A pull request that brought in `commits` (None: every commit asked about), merged
        by `merged_by` (None: still open), with APPROVED reviews by `approved_by` and
        `(login, state)` reviews beside them."""
        merger = {"login": merged_by, "id": 1000 + number, "type": "User"} if merged_by else None
        self.pulls[number] = {
            "number": number,
            "state": "closed" if merged_by else "open",
            "html_url": f"https://github.com/acme/checkout/pull/{number}",
            "merged_at": "2026-11-16T10:00:00Z" if merged_by else None,
            "merged_by": merger,
            "user": {"login": "olga-author", "id": 7, "type": "User"},
        }
        self.pull_commits[number] = commits
        self.reviews[number] = [
            {
                "id": 80 + i,
                "user": {"login": login, "id": 900 + i, "type": "User"},
                "state": state,
                "submitted_at": "2026-11-16T09:30:00Z",
            }
            for i, (login, state) in enumerate(
                [*((login, "APPROVED") for login in approved_by), *other_reviews]
            )
        ]

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self._handle)

    def calls(self, method: str, path_part: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method and path_part in r.url.path]

    def decisions(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.calls("POST", "/deployment_protection_rule")]

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if path.endswith("/installation"):
            return httpx.Response(200, json={"id": 42})
        if path.startswith("/app/installations/") and path.endswith("/access_tokens"):
            expires = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
            return httpx.Response(201, json={"token": "ghs_installation", "expires_at": expires})
        if "/pulls" in path:
            return self._pulls(path)
        if self.refs and "/commits/" in path and "/compare/" not in path:
            answered = self._ref(path)
            if answered is not None:
                return answered
        if self.compare_status != 200 and ("/compare/" in path or "/commits/" in path):
            return httpx.Response(self.compare_status, json={"message": "Service Unavailable"})
        if "/compare/" in path or "/commits/" in path:
            return httpx.Response(200, json=self._comparison(path))
        if path.endswith("/deployment_protection_rule"):
            return httpx.Response(self.callback_status)
        if path.endswith("/dispatches"):
            return httpx.Response(204)
        return httpx.Response(404, json={"message": "Not Found"})

    def _ref(self, path: str) -> httpx.Response | None:
        """`/repos/{o}/{r}/commits/{ref}` for a branch or tag of `refs`, or an unknown ref;
        None for a full sha (answered as a single commit)."""
        ref = path.split("/commits/", 1)[1]
        if ref in self.refs:
            sha = self.refs[ref]
            return httpx.Response(200, json=self._comparison(path.replace(ref, sha)))
        if len(ref) == 40 and all(c in "0123456789abcdef" for c in ref):
            return None
        return httpx.Response(422, json={"message": f"No commit found for SHA: {ref}"})

    def _pulls(self, path: str) -> httpx.Response:
        """`/commits/{sha}/pulls`, `/pulls/{number}` and `/pulls/{number}/reviews`."""
        if self.pulls_status != 200:
            message = "Resource not accessible by integration"
            return httpx.Response(self.pulls_status, json={"message": message})
        parts = path.split("/")
        if path.endswith("/pulls") and "/commits/" in path:
            sha = parts[-2]
            return httpx.Response(
                200,
                json=[
                    pull
                    for number, pull in self.pulls.items()
                    if self.pull_commits[number] is None or sha in (self.pull_commits[number] or ())
                ],
            )
        number = int(parts[-2] if path.endswith("/reviews") else parts[-1])
        if number not in self.pulls:
            return httpx.Response(404, json={"message": "Not Found"})
        if path.endswith("/reviews"):
            return httpx.Response(200, json=self.reviews[number])
        return httpx.Response(200, json=self.pulls[number])

    def _comparison(self, path: str) -> dict[str, Any]:
        head = path.rsplit("...", 1)[-1].rsplit("/", 1)[-1]
        commit = {
            "sha": head,
            "html_url": f"https://github.com/acme/checkout/commit/{head}",
            "commit": {
                "message": self.commit_message,
                "author": {
                    "name": "Olga Owner",
                    "email": self.commit_author_email,
                    "date": "2026-11-16T09:00:00Z",
                },
            },
            "author": {"login": self.commit_author} if self.commit_author else None,
            "committer": {"login": self.commit_author} if self.commit_author else None,
        }
        if "/compare/" in path:
            return {
                "html_url": "https://github.com/acme/checkout/compare/x...y",
                "total_commits": 1,
                "commits": [commit],
                "files": self.compare_files,
            }
        return {**commit, "files": self.compare_files}


class FakeHealth:
    """A service's /healthz: answers the statuses queued, then `default`."""

    def __init__(self, default: int = 200) -> None:
        self.default = default
        self.queued: list[int] = []
        self.requests: list[httpx.Request] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        status = self.queued.pop(0) if self.queued else self.default
        return httpx.Response(status, json={"status": "ok" if status < 400 else "down"})


class FakePrometheus:
    """Prometheus' instant query API answering one value for every query."""

    def __init__(self, value: str = "0.001") -> None:
        self.value = value
        self.queries: list[str] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.queries.append(request.url.params.get("query", ""))
        return httpx.Response(
            200,
            json={
                "status": "success",
                "data": {
                    "resultType": "vector",
                    "result": [{"metric": {}, "value": [1700000000.0, self.value]}],
                },
            },
        )


class FakePagerDuty:
    """PagerDuty's Events API v2: accepts events and change events, recording them."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.changes: list[dict[str, Any]] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if request.url.path == "/v2/change/enqueue":
            self.changes.append(body)
            return httpx.Response(
                202, json={"status": "success", "message": "Change event processed"}
            )
        self.events.append(body)
        return httpx.Response(
            202,
            json={
                "status": "success",
                "message": "Event processed",
                "dedup_key": body.get("dedup_key") or "generated",
            },
        )


class FakeEdge:
    """Every outside HTTP API the bot reaches, behind one httpx transport, routed by host."""

    def __init__(self) -> None:
        self.github = FakeGitHub()
        self.health = FakeHealth()
        self.prometheus = FakePrometheus()
        self.pagerduty = FakePagerDuty()

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self._route)

    def _route(self, request: httpx.Request) -> httpx.Response:
        host, port = request.url.host, request.url.port
        if host == "events.pagerduty.com":
            return self.pagerduty.handle(request)
        if port == 9310:
            return self.health.handle(request)
        if port == 9390:
            return self.prometheus.handle(request)
        return self.github._handle(request)
