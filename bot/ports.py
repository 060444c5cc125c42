"""Small protocols between the core and the outside world.

The core (bot/) calls these; integrations/ implement them; tests pass fakes that satisfy them.
Every method that talks to the network raises `bot.domain.errors.DeliveryFailed` on failure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass(frozen=True)
class PostedMessage:
    channel: str
    ts: str


class SlackSender(Protocol):
    async def post_message(
        self,
        *,
        channel: str,
        text: str,
        blocks: list[dict[str, Any]] | None = None,
        thread_ts: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> PostedMessage: ...

    async def update_message(
        self,
        *,
        channel: str,
        ts: str,
        text: str,
        blocks: list[dict[str, Any]] | None = None,
    ) -> None: ...

    async def find_message(
        self,
        *,
        channel: str,
        oldest: float,
        metadata: dict[str, Any],
        thread_ts: str | None = None,
    ) -> PostedMessage | None:
        """The message posted since `oldest` (epoch seconds) whose metadata has the
        `event_type` and every `event_payload` field of `metadata`, in the channel or in
        the thread of `thread_ts`; None when there is none."""
        ...


@dataclass(frozen=True)
class Commit:
    """One commit of a release, as the code host reports it."""

    sha: str
    message: str
    author: str  # display name
    author_login: str | None = None  # code-host login of the author (self-approval ban)
    committer_login: str | None = None
    author_email: str | None = None  # as written in the commit (self-approval ban)
    committer_email: str | None = None
    authored_at: datetime | None = None  # lead time for changes starts here
    url: str | None = None


@dataclass(frozen=True)
class FileChange:
    path: str
    additions: int
    deletions: int
    status: str = "modified"  # added | removed | modified | renamed
    previous_path: str | None = None


@dataclass(frozen=True)
class ChangeRequest:
    """A pull or merge request that brought commits of a release in: who merged it and who
    approved it in review (code-host logins; the self-approval ban)."""

    number: int
    url: str | None = None
    merged_by: str | None = None
    approved_by: tuple[str, ...] = ()


@dataclass(frozen=True)
class Comparison:
    """What changed between two versions (or in one commit when there is no base)."""

    commits: tuple[Commit, ...]
    files: tuple[FileChange, ...]
    total_commits: int  # may exceed len(commits) when the host caps the list
    truncated: bool  # the host capped commits or files: counts are lower bounds
    url: str | None = None  # a page showing the comparison
    changes: tuple[ChangeRequest, ...] = ()  # the pull or merge requests of the commits
    people_unknown: str | None = None  # why the changes' mergers and reviewers are not known

    @property
    def additions(self) -> int:
        return sum(f.additions for f in self.files)

    @property
    def deletions(self) -> int:
        return sum(f.deletions for f in self.files)


class ScmClient(Protocol):
    """A code host's compare API (GitHub, GitLab), and the commit a ref names there."""

    async def compare(self, *, repo: str, base: str | None, head: str) -> Comparison: ...

    async def resolve_ref(self, *, repo: str, ref: str) -> str | None:
        """The full sha a branch, tag or commit names in `repo`; None when it names none."""
        ...


@dataclass(frozen=True)
class DeployRequest:
    """A decision or action to carry out in the real pipeline.

    `kind` names the deployer (github_protection_rule, github_workflow,
    gitlab_deployment_approval, argocd, jenkins, webhook); `target` is that kind's section of
    the environment's `deploy` config; `context` carries provider ids learned from webhooks
    (a protection rule's callback URL and installation id, a GitLab deployment id, ...).
    `request_id` is stable across retries so a deployer can avoid acting twice.
    """

    kind: str
    action: str  # approve | reject | promote | rollback
    service: str
    repo: str  # "owner/name" on the code host
    environment: str
    sha: str
    request_id: str
    version: str | None = None
    reason: str | None = None
    actor: str | None = None
    target: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DeployResult:
    detail: str  # what happened, for the thread and the audit record
    url: str | None = None  # the run, build or operation it started, when known


class Deployer(Protocol):
    async def execute(self, request: DeployRequest) -> DeployResult: ...


@dataclass(frozen=True)
class SlackUser:
    id: str
    name: str | None = None
    email: str | None = None
    is_bot: bool = False


class SlackDirectory(Protocol):
    """Who people are and which user groups they are in (cached by the implementation)."""

    async def user(self, user_id: str) -> SlackUser: ...

    async def group_members(self, group_id: str) -> frozenset[str]: ...


class ResolvedDeployment(Protocol):
    @property
    def id(self) -> int: ...

    @property
    def sha(self) -> str: ...

    @property
    def ref(self) -> str: ...

    @property
    def waits_for_approval(self) -> bool: ...


class DeploymentLookup(Protocol):
    """Finds a CI deployment's full sha when its webhook carried only a short one (GitLab),
    and the deployment a job waiting for approval belongs to."""

    async def deployment(self, project: str | int, deployment_id: int) -> ResolvedDeployment: ...

    async def waiting_deployment(
        self, project: str | int, environment: str, sha: str
    ) -> ResolvedDeployment | None: ...


# ---- verification checks and paging ----------------------------------------------------------

from collections.abc import Mapping  # noqa: E402  (appended section; keeps the lines above as-is)
from typing import Literal  # noqa: E402


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one post-deploy check run.

    `summary` is one plain-English line for the Slack thread ("HTTP 200 in 43 ms", "expected
    HTTP 200, got 500 in 12 ms", "error-rate 0.004 <= max 0.01", "no data: the query returned
    an empty result"); `evidence` holds the details for the audit record (status_code,
    latency_ms, value, query, error, a body excerpt, ...), JSON-serializable.
    """

    passed: bool
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)


class CheckRunner(Protocol):
    """Runs one `verify:` check; a failing or unreachable target is a failed result, not an error.

    `check` is the check's config section as a dict, `VerifyCheck.model_dump(mode="json")`:
    `{"name": ..., "http": {...}, "prometheus": None, "at": [...]}` (durations as "2s").
    """

    async def run(self, check: Mapping[str, Any]) -> CheckResult: ...


PagerAction = Literal["trigger", "resolve", "change"]


@dataclass(frozen=True, kw_only=True)
class PagerEvent:
    """Something to tell the on-call tool: open (`trigger`) or close (`resolve`) an alert keyed by
    `dedup_key`, or record a `change` (a deploy) that never pages.

    `routing_key` is the credential the provider takes with the event: the PagerDuty
    integration's routing key, or the Opsgenie API key. Implementations never put it in an error.
    `severity` is critical | error | warning | info. `links` are `(href, text)` pairs.
    """

    action: PagerAction
    routing_key: str
    summary: str
    source: str
    dedup_key: str | None = None
    severity: str = "error"
    links: tuple[tuple[str, str], ...] = ()
    custom_details: dict[str, Any] = field(default_factory=dict)
    timestamp: datetime | None = None
    component: str | None = None


class Pager(Protocol):
    """PagerDuty / Opsgenie. Returns the provider's dedup key or request id, when it gives one.

    Raises `DeliveryFailed` (retryable for network errors, 5xx and rate limits).
    """

    async def send(self, event: PagerEvent) -> str | None: ...


class BudgetSource(Protocol):
    """Where error ratios come from (Prometheus): `1 - good/total` of an SLO per window.

    `windows` are PromQL durations ("30d", "1h", "5m"); a window without traffic answers
    None. Raises `bot.domain.errors.DeliveryFailed` when the server cannot be asked or
    answers with an error: the budget is then unknown.
    """

    async def error_ratios(
        self, *, url: str, good: str, total: str, windows: tuple[str, ...]
    ) -> dict[str, float | None]: ...


@runtime_checkable
class SlackPeople(Protocol):
    """Slack users found by e-mail (users.lookupByEmail): who on-call is in Slack."""

    async def user_id_by_email(self, email: str) -> str | None: ...


class OncallSchedule(Protocol):
    """Who is on call now for an escalation policy (PagerDuty's REST API), as e-mails.

    Raises `DeliveryFailed` when the provider cannot be asked (wrong token, unknown policy,
    outage); callers then fall back to the configured Slack group.
    """

    async def emails(self, *, escalation_policy: str, token: str) -> list[str]: ...
