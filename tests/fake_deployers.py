"""The remote ends of the deployers, answering as the real APIs do (INTEGRATIONS.md §2, §4,
§5): GitHub's protection-rule callback and workflow dispatch, an Argo CD API server, a
Jenkins controller and a team's deploy webhook receiver, behind one httpx transport with
the rest of the outside world (`DeployEdge`). Each records what it was sent."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any
from urllib.parse import unquote

import httpx

from tests.fakes import FakeEdge, FakeGitHub

ARGOCD_URL = "https://argocd.example"
ARGOCD_TOKEN = "argocd-api-token-for-tests"
JENKINS_URL = "https://jenkins.example"
JENKINS_USER = "releasebot"
JENKINS_API_TOKEN = "11aa22bb33cc44dd55ee66ff77889900aa"
JENKINS_PASSWORD = "correct horse battery staple"  # a password, not an API token
HOOK_PORT = 9320  # examples/releasebot.yaml: payments-batch's deploy webhook
HOOK_SECRET = "payments-deploy-hook-secret"
GITHUB_DOCS = "https://docs.github.com/rest"


def github_error(status: int, message: str, doc: str = GITHUB_DOCS) -> httpx.Response:
    """GitHub's error body: `{message, documentation_url}`."""
    return httpx.Response(status, json={"message": message, "documentation_url": doc})


class DeployGitHub(FakeGitHub):
    """`FakeGitHub` that can answer a protection-rule callback or a workflow dispatch with
    the errors GitHub documents, one queued answer per call (then the usual success)."""

    def __init__(self) -> None:
        super().__init__()
        self.callback_answers: list[httpx.Response] = []
        self.dispatch_answers: list[httpx.Response] = []

    def dispatches(self) -> list[httpx.Request]:
        return self.calls("POST", "/dispatches")

    def _handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/deployment_protection_rule") and self.callback_answers:
            self.requests.append(request)
            return self.callback_answers.pop(0)
        if path.endswith("/dispatches") and self.dispatch_answers:
            self.requests.append(request)
            return self.dispatch_answers.pop(0)
        return super()._handle(request)


# --- Argo CD -------------------------------------------------------------------------------


def grpc_error(status: int, code: int, message: str) -> httpx.Response:
    """Argo CD's error body: a gRPC status over HTTP."""
    return httpx.Response(status, json={"error": message, "code": code, "message": message})


class FakeArgoCD:
    """Argo CD's API server: `GET /api/v1/applications/{name}`, `POST .../sync`,
    `POST .../rollback`, with bearer tokens, per-application permissions, auto-sync and
    the history a rollback picks its id from."""

    def __init__(self) -> None:
        self.token = ARGOCD_TOKEN
        self.requests: list[httpx.Request] = []
        self.history: dict[str, list[dict[str, Any]]] = {}
        self.automated: set[str] = set()
        self.forbidden: set[str] = set()  # apps the token's project role may not touch
        self.busy: set[str] = set()  # apps with an operation running
        # Argo Rollouts: (app, namespace, name) -> the live Rollout object
        self.rollouts: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.denied_actions: set[str] = set()  # resource actions the token's role lacks

    def add_app(self, name: str, *revisions: str) -> None:
        self.history[name] = [
            {
                "id": index,
                "revision": revision,
                "deployedAt": f"2026-11-1{index}T10:00:00Z",
                "source": {"repoURL": "https://github.com/acme/storefront", "path": "deploy"},
            }
            for index, revision in enumerate(revisions, start=1)
        ]

    def calls(self, method: str, suffix: str = "") -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method and r.url.path.endswith(suffix)]

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return grpc_error(401, 16, "invalid session: token signature is invalid")
        parts = request.url.path.removeprefix("/api/v1/applications/").split("/")
        name, verb = unquote(parts[0]), (parts[1] if len(parts) > 1 else "")
        if verb == "resource" and name in self.history and name not in self.forbidden:
            return self._resource(name, parts[2:], request)
        action = {"": "get", "sync": "sync", "rollback": "sync"}.get(verb)
        if action is None or not request.url.path.startswith("/api/v1/applications/"):
            return httpx.Response(404, text="Not Found")
        if name not in self.history or name in self.forbidden:
            # Without ?project= Argo CD does not say whether the app exists.
            return grpc_error(
                403,
                7,
                f"permission denied: applications, {action}, default/{name}, "
                "sub: releasebot, iat: 2026-11-17T09:00:00Z",
            )
        if verb == "":
            return httpx.Response(200, json=self._application(name))
        if name in self.busy:
            return grpc_error(400, 9, "another operation is already in progress")
        body = json.loads(request.content or b"{}")
        if verb == "sync":
            return self._sync(name, body)
        return self._rollback(name, body)

    # --- Argo Rollouts through the resource APIs ---------------------------------------------

    def add_rollout(
        self, app: str, name: str, *, steps: int, step_index: int, paused: bool
    ) -> None:
        """A canary Rollout of `app` (namespace `storefront`), `steps` steps, at 0-based
        `step_index`, paused by a pause step or not."""
        self.rollouts[(app, "storefront", name)] = {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Rollout",
            "metadata": {"name": name, "namespace": "storefront"},
            "spec": {
                "replicas": 5,
                "strategy": {
                    "canary": {
                        "steps": [
                            {"setWeight": 20} if i % 2 == 0 else {"pause": {}} for i in range(steps)
                        ]
                    }
                },
            },
            "status": {
                "currentStepIndex": step_index,
                "phase": "Paused" if paused else "Progressing",
                "pauseConditions": (
                    [{"reason": "CanaryPauseStep", "startTime": "2026-11-17T10:00:00Z"}]
                    if paused
                    else []
                ),
            },
        }

    def actions_run(self) -> list[tuple[str, dict[str, str]]]:
        """The resource actions asked: (action, query)."""
        return [
            (json.loads(r.content), dict(r.url.params))
            for r in self.calls("POST", "/resource/actions")
        ]

    def _resource(self, app: str, rest: list[str], request: httpx.Request) -> httpx.Response:
        query = request.url.params
        for required in ("resourceName", "version", "kind"):
            if not query.get(required):
                return grpc_error(400, 3, f"{required} is required")
        key = (app, query.get("namespace", ""), query["resourceName"])
        found = self.rollouts.get(key)
        if found is None or query["kind"] != "Rollout" or query.get("group") != "argoproj.io":
            return grpc_error(404, 5, f'{query["kind"]}.{query.get("group")} "{key[2]}" not found')
        if request.method == "GET" and not rest:
            return httpx.Response(200, json={"manifest": json.dumps(found)})
        if request.method != "POST" or rest != ["actions"]:
            return httpx.Response(404, text="Not Found")
        action = json.loads(request.content or b"null")
        if not isinstance(action, str):
            return grpc_error(400, 3, "action is required")
        if action in self.denied_actions:
            return grpc_error(
                403,
                7,
                f"permission denied: applications, action/argoproj.io/Rollout/{action}, "
                f"default/{app}, sub: releasebot, iat: 2026-11-17T09:00:00Z",
            )
        return self._run_action(found, action)

    @staticmethod
    def _run_action(rollout: dict[str, Any], action: str) -> httpx.Response:
        status, spec = rollout["status"], rollout["spec"]
        steps = len(spec["strategy"]["canary"]["steps"])
        if action == "resume":
            status["pauseConditions"] = []
            status["currentStepIndex"] = min(status["currentStepIndex"] + 1, steps)
            status["phase"] = "Healthy" if status["currentStepIndex"] >= steps else "Progressing"
        elif action == "promote-full":
            status.update(pauseConditions=[], currentStepIndex=steps, phase="Healthy")
        elif action == "abort":
            status.update(abort=True, pauseConditions=[], phase="Degraded")
        else:
            return grpc_error(400, 3, f"action {action} not found")
        return httpx.Response(200, json={})

    def _sync(self, name: str, body: dict[str, Any]) -> httpx.Response:
        if not isinstance(body.get("revision"), str):
            return grpc_error(400, 3, "revision is required")
        app = self._application(name)
        app["operation"] = {"sync": {"revision": body["revision"], "prune": body.get("prune")}}
        return httpx.Response(200, json=app)

    def _rollback(self, name: str, body: dict[str, Any]) -> httpx.Response:
        if name in self.automated:
            return grpc_error(400, 9, "rollback cannot be initiated when auto-sync is enabled")
        ids = [entry["id"] for entry in self.history[name]]
        if body.get("id") not in ids:
            return grpc_error(
                400, 3, f"application {name} does not have deployment with id {body.get('id')}"
            )
        return httpx.Response(200, json=self._application(name))

    def _application(self, name: str) -> dict[str, Any]:
        history = self.history[name]
        policy: dict[str, Any] = (
            {"automated": {"prune": True, "selfHeal": True}} if name in self.automated else {}
        )
        return {
            "metadata": {"name": name, "namespace": "argocd"},
            "spec": {"project": "default", "syncPolicy": policy},
            "status": {
                "sync": {"status": "Synced", "revision": history[-1]["revision"]},
                "health": {"status": "Healthy"},
                "history": history,
            },
        }


# --- Jenkins -------------------------------------------------------------------------------


class FakeJenkins:
    """A Jenkins controller: `buildWithParameters` under basic auth, 201 with the queue
    item's `Location`, and the queue item once an executor took it.

    Basic auth with the user's API token needs no crumb; with the user's password Jenkins
    wants a `Jenkins-Crumb` (403 without one); anything else is a 401."""

    def __init__(self) -> None:
        self.jobs: set[str] = set()  # "/job/a/job/b" paths of parameterized jobs
        self.may_build = True  # the user has Job/Build
        self.requests: list[httpx.Request] = []
        self.builds: list[dict[str, str]] = []  # the parameters of each build requested

    def build_requests(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path.endswith("/buildWithParameters")]

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        user, secret = _basic(request.headers.get("authorization"))
        if user != JENKINS_USER or secret not in (JENKINS_API_TOKEN, JENKINS_PASSWORD):
            return _html(401, f"Invalid password/token for user: {user}")
        path = request.url.path
        if request.method == "POST" and path.endswith("/buildWithParameters"):
            if secret == JENKINS_PASSWORD and "jenkins-crumb" not in request.headers:
                return _html(403, "No valid crumb was included in the request")
            job = path.removesuffix("/buildWithParameters")
            if job not in self.jobs:
                return _html(404, "Not Found")
            if not self.may_build:
                return _html(403, f"{user} is missing the Job/Build permission")
            self.builds.append(dict(request.url.params))
            item = 4700 + len(self.builds)
            return httpx.Response(
                201,
                headers={"Location": f"{JENKINS_URL}/queue/item/{item}/", "Content-Length": "0"},
            )
        if request.method == "GET" and path.startswith("/queue/item/"):
            item = int(path.split("/")[3])
            number = item - 4700 + 56
            job = self._job_of(item)
            return httpx.Response(
                200,
                json={
                    "_class": "hudson.model.Queue$LeftItem",
                    "id": item,
                    "cancelled": False,
                    "executable": {
                        "_class": "org.jenkinsci.plugins.workflow.job.WorkflowRun",
                        "number": number,
                        "url": f"{JENKINS_URL}{job}/{number}/",
                    },
                },
            )
        return _html(404, "Not Found")

    def _job_of(self, item: int) -> str:
        request = self.build_requests()[item - 4701]
        return request.url.path.removesuffix("/buildWithParameters")


def _basic(header: str | None) -> tuple[str, str]:
    if not header or not header.startswith("Basic "):
        return "", ""
    user, _, secret = base64.b64decode(header.removeprefix("Basic ")).decode().partition(":")
    return user, secret


def _html(status: int, text: str) -> httpx.Response:
    return httpx.Response(
        status, headers={"Content-Type": "text/html"}, text=f"<html><body>{text}</body></html>"
    )


# --- a deploy webhook receiver ---------------------------------------------------------------


class FakeReceiver:
    """A team's deploy endpoint: checks `X-Releasebot-Signature` over the raw body, answers
    the statuses queued (then 202), and records every delivery it accepted or refused."""

    def __init__(self, secret: str = HOOK_SECRET) -> None:
        self.secret = secret
        self.answers: list[int] = []
        self.requests: list[httpx.Request] = []

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests]

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        expected = (
            "sha256=" + hmac.new(self.secret.encode(), request.content, hashlib.sha256).hexdigest()
        )
        if not hmac.compare_digest(expected, request.headers.get("x-releasebot-signature", "")):
            return httpx.Response(401, json={"error": "bad signature"})
        status = self.answers.pop(0) if self.answers else 202
        if status >= 500:
            return httpx.Response(status, text="upstream deploy service unavailable")
        if status >= 400:
            return httpx.Response(status, json={"error": "refused by the deploy service"})
        return httpx.Response(status, json={"accepted": request.headers["x-releasebot-delivery"]})


class DeployEdge(FakeEdge):
    """`FakeEdge` with the deployers' remote ends: GitHub (with its errors), Argo CD,
    Jenkins and the webhook receiver, routed by host."""

    def __init__(self) -> None:
        super().__init__()
        self.github: DeployGitHub = DeployGitHub()
        self.argocd = FakeArgoCD()
        self.jenkins = FakeJenkins()
        self.receiver = FakeReceiver()

    def _route(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        if host == "argocd.example":
            return self.argocd.handle(request)
        if host == "jenkins.example":
            return self.jenkins.handle(request)
        if request.url.port == HOOK_PORT:
            return self.receiver.handle(request)
        return super()._route(request)
