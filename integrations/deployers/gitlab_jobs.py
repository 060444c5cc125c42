"""Running a GitLab deployment's job once its approvals are in.

GitLab holds a job that deploys to a protected environment with deployment approvals: the
deployment is `blocked` and its job (the deployment's `deployable`) waits in `manual`. When
the approvals are in, GitLab leaves that job in `manual` (with approval rules the approver
need not be allowed to deploy), so someone allowed to deploy still has to start it. After an
approval GitLab accepted, `GitLabJobRunner.after_approval` does that:

    GET  /projects/:id/deployments/:deployment_id
         -> status, pending_approval_count (Premium), deployable {id, name, status, web_url}
    POST /projects/:id/jobs/:job_id/play       -> 200 with the job {id, name, status, web_url}
    GET  /projects/:id/jobs/:job_id            -> the job, when playing it was not answered

- approvals still missing (`pending_approval_count` above 0, or a `blocked` deployment when
  GitLab does not say how many): nothing is played, and the outcome says "GitLab waits for
  N more approvals";
- the job in `manual`: it is played, once (`attempts=1`: playing a job that already ran
  would make GitLab retry it, i.e. deploy again);
- the job already started (`created`, `pending`, `running`, `success`, ...), because GitLab
  enqueued it itself or an earlier attempt played it: done, nothing is sent;
- the job `failed`, `canceled` or `skipped`: a non-retryable failure; releasebot never runs
  such a job again behind anyone's back;
- GitLab refusing the play (`400` "Unplayable Job", `403`): the job is read again, and one
  that has started by then counts as done; otherwise the refusal stands, explained;
- no answer to the play (network, 5xx): the job is read once; started means done, anything
  else leaves the failure retryable, and the next attempt reads the job before playing.

The outcome carries the job's `web_url` (`https://gitlab.example.com/acme/ledger/-/jobs/123`),
which the deployer's result passes on so the delivery receipt names the job.

Whether the job is run at all is the environment's `deploy.gitlab_deployment_approval.run_job`
(default true), read from the request's target by `runs_job`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from bot.domain.errors import DeliveryFailed
from bot.ports import DeployRequest
from integrations.deployers import explained, is_ambiguous, json_object, opt_str, refused
from integrations.http import RetryPolicy

__all__ = ["RUN_JOB", "GitLabJobRunner", "JobOutcome", "runs_job"]

RUN_JOB = "run_job"
"""The key of `deploy.gitlab_deployment_approval` saying whether the approved job is run."""

STARTED = frozenset(
    {"created", "waiting_for_resource", "preparing", "pending", "running", "success", "scheduled"}
)
"""Job statuses that mean the job was started (or will start by itself): nothing to play."""

ENDED = frozenset({"failed", "canceled", "canceling", "skipped"})
"""Job statuses releasebot never plays: running the job again is a person's decision."""

PLAY_REFUSALS = {
    400: "GitLab says the job cannot be played",
    403: "the token's user may not run this job: it needs the Developer role or more and "
    "deploy access to the protected environment",
    404: "job not found, or the token cannot see it",
}


def runs_job(request: DeployRequest) -> bool:
    """Whether the environment wants the approved deployment's job run (default true)."""
    return request.target.get(RUN_JOB, True) is not False


@dataclass(frozen=True)
class JobOutcome:
    """What became of the deployment's job: a sentence for the result, and the job's page."""

    detail: str
    url: str | None = None


@dataclass(frozen=True)
class _Job:
    id: int
    status: str
    name: str | None = None
    url: str | None = None

    @property
    def label(self) -> str:
        return f"job {self.id}" + (f" ({self.name})" if self.name else "")


class GitLabJobRunner:
    """Plays the manual job of an approved GitLab deployment, once.

    **Parameters:**

    * **client** - the deployer's `httpx.AsyncClient` (its `base_url` is the API root).
    * **token** - the deployer's token; its user must be allowed to deploy.
    * **retry** - how reads retry (the play itself is sent once).
    """

    def __init__(self, client: httpx.AsyncClient, token: str, retry: RetryPolicy) -> None:
        self._client = client
        self._token = token
        self._retry = retry

    async def after_approval(
        self,
        project_id: str,
        deployment_id: int,
        deployment: Mapping[str, Any] | None = None,
    ) -> JobOutcome:
        """Play the deployment's job when GitLab no longer waits for approvals.

        `deployment` is the deployment as already read, if it was; else it is read now.
        """
        path = f"/projects/{project_id}/deployments/{deployment_id}"
        if deployment is None:
            deployment = json_object(await self._get(path), f"GET {path}")
        waiting = _missing_approvals(deployment)
        job = _job(deployment.get("deployable"))
        if waiting is not None:
            which = f", so {job.label} was not run" if job else ""
            return JobOutcome(detail=f"{waiting}{which}")
        if job is None:
            return JobOutcome(detail=f"GitLab deployment {deployment_id} has no job to run")
        if job.status == "manual":
            return await self._play(project_id, job)
        return _settled(job)

    async def _play(self, project_id: str, job: _Job) -> JobOutcome:
        path = f"/projects/{project_id}/jobs/{job.id}"
        try:
            response = await self._retry.request(
                self._client,
                "POST",
                f"{path}/play",
                headers={"PRIVATE-TOKEN": self._token},
                secrets=[self._token],
                attempts=1,
            )
        except DeliveryFailed as failure:
            now = await self._read_job(path, attempts=1 if is_ambiguous(failure) else None)
            if now is not None and (now.status in STARTED or now.status in ENDED):
                return _settled(now, job)
            raise explained(failure, PLAY_REFUSALS) from failure
        try:
            played = _job(json_object(response, f"POST {path}/play")) or job
        except DeliveryFailed:
            played = job  # GitLab played it all the same
        return JobOutcome(
            detail=f"ran {played.label}: GitLab has it {played.status or 'started'}",
            url=played.url or job.url,
        )

    async def _read_job(self, path: str, *, attempts: int | None) -> _Job | None:
        """The job as GitLab has it now, or None when it cannot be read."""
        try:
            response = await self._get(path, attempts=attempts)
            return _job(json_object(response, f"GET {path}"))
        except DeliveryFailed:
            return None

    async def _get(self, path: str, *, attempts: int | None = None) -> httpx.Response:
        return await self._retry.request(
            self._client,
            "GET",
            path,
            headers={"PRIVATE-TOKEN": self._token},
            secrets=[self._token],
            attempts=attempts,
        )


def _settled(job: _Job, known: _Job | None = None) -> JobOutcome:
    """A job that is not in `manual`: started is done, ended is a refusal."""
    url = job.url or (known.url if known else None)
    label = job.label if job.name or known is None else known.label
    if job.status in STARTED:
        return JobOutcome(
            detail=f"{label} was already {job.status} in GitLab, so it was not run again",
            url=url,
        )
    where = f" ({url})" if url else ""
    raise refused(
        f"GitLab {label} is {job.status or 'in an unknown state'}{where}: releasebot does not "
        "run it again; retry it in GitLab if the deployment should go ahead"
    )


def _missing_approvals(deployment: Mapping[str, Any]) -> str | None:
    """`GitLab waits for N more approvals` while approvals are missing, else None."""
    pending = deployment.get("pending_approval_count")
    if isinstance(pending, int) and not isinstance(pending, bool):
        if pending <= 0:
            return None
        return f"GitLab waits for {pending} more approval{'s' if pending != 1 else ''}"
    if deployment.get("status") == "blocked":
        return "GitLab still waits for approvals"
    return None


def _job(value: Any) -> _Job | None:
    """A job (or a deployment's `deployable`) as GitLab returns it; None without an id."""
    if not isinstance(value, Mapping):
        return None
    ident = value.get("id")
    if not isinstance(ident, int) or isinstance(ident, bool):
        return None
    return _Job(
        id=ident,
        status=opt_str(value.get("status")) or "",
        name=opt_str(value.get("name")),
        url=opt_str(value.get("web_url")),
    )
