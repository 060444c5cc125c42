"""Every recipe in docs/recipes/ does what its page says, run from the page itself.

The examples are read out of the markdown by their info strings, so the pages and these
tests cannot drift apart:

- ```sh recipe-command: the tracking script. `bash` runs it with the CI's variables set and
  the real `curl`, `openssl` and `jq`, against the app served on a loopback port.
- ```sh recipe-gate: the gate step. It is run by `bash` with `releasebot` standing for a
  function that hands back its arguments, exactly as the shell expanded them; the real
  `releasebot gate request` parser and loop then run them against the served app, while a
  release manager approves in Slack between two polls (the CLI's sleep, injected).
- ```json recipe-body / ```yaml recipe-body / ```groovy recipe-body: what the CI sends,
  sent exactly so (signed or with its token as the page says).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import anyio.from_thread
import httpx
import pytest
import uvicorn
import yaml
from sqlmodel import col, select

from bot.app import Overrides, create_app
from bot.cli import build_parser, run_gate
from bot.config import Config, parse_config
from bot.runtime import Runtime
from bot.settings import load_settings
from bot.store.tables import Deployment, Gate
from tests.fakes import FakeEdge, FrozenClock
from tests.helpers import (
    ARGOCD_SECRET,
    GENERIC_SECRET,
    JENKINS_SECRET,
    REPO_ROOT,
    SHA_A,
    example_config_data,
)
from tests.test_cli_gate import FakeTime, lifespan_of, slack_click

RECIPES = REPO_ROOT / "docs" / "recipes"
API_TOKEN = "api-token-for-recipes"
BLOCK = re.compile(r"^```(?P<lang>\w+) (?P<name>recipe-[\w-]+)\n(?P<text>.*?)^```", re.M | re.S)
TOOLS = ("bash", "curl", "openssl", "jq", "sed")


def blocks(page: str) -> dict[str, str]:
    """The page's recipe blocks by name (each name once)."""
    found: dict[str, str] = {}
    for match in BLOCK.finditer((RECIPES / page).read_text()):
        assert match["name"] not in found, f"{page}: two {match['name']} blocks"
        found[match["name"]] = match["text"]
    return found


def recipes_config() -> Config:
    """payments-batch (reported by any CI, or by the Jenkins job payments-deploy) and
    storefront (synced by Argo CD) go to a production gated by a release manager; a release
    named by its version only may be approved (recorded as taken blind)."""
    data = example_config_data()
    gate = {"approvals": 1, "approvers": ["S0RELMGRS"], "unknown_people": "allow"}
    [payments] = data["services"]["payments-batch"]["environments"]
    payments["track"] = {"generic": True, "jenkins_job": "payments-deploy"}
    payments["gate"] = gate
    [storefront] = data["services"]["storefront"]["environments"]
    storefront["track"]["generic"] = True
    storefront["gate"] = gate
    storefront.pop("verify", None)
    return parse_config(data)


@dataclass
class Served:
    """The app with its lifespan running, served over HTTP on a loopback port."""

    url: str
    client: httpx.Client
    portal: anyio.from_thread.BlockingPortal
    runtime: Runtime

    def drain(self) -> None:
        """The outbox worker sends what is due (risk assessment, Slack messages)."""
        self.portal.call(self.runtime.worker.drain)

    def deployments(self) -> list[Deployment]:
        with self.runtime.db.read() as session:
            return list(session.exec(select(Deployment).order_by(col(Deployment.id))).all())

    def gates(self) -> list[Gate]:
        with self.runtime.db.read() as session:
            return list(session.exec(select(Gate).order_by(col(Gate.id))).all())


@pytest.fixture
def served(environ: dict[str, str], clock: FrozenClock) -> Iterator[Served]:
    for tool in TOOLS:
        assert shutil.which(tool), f"the recipes need {tool} on PATH"
    settings = load_settings(
        {
            **environ,
            "RELEASEBOT_API_TOKEN": API_TOKEN,
            "RELEASEBOT_GENERIC_WEBHOOK_SECRET": GENERIC_SECRET,
            "ARGOCD_WEBHOOK_SECRET": ARGOCD_SECRET,
            "JENKINS_WEBHOOK_SECRET": JENKINS_SECRET,
        }
    )
    overrides = Overrides(
        clock=clock,
        config=recipes_config(),
        start_scheduler=False,
        run_outbox_worker=False,
        process_before_response=True,
        http_transport=FakeEdge().transport,
        environ={},
    )
    app = create_app(settings, overrides=overrides)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)  # connections wait in the backlog until the server takes them
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        with (
            anyio.from_thread.start_blocking_portal() as portal,
            portal.wrap_async_context_manager(lifespan_of(app)) as running,
            httpx.Client(base_url=url, timeout=30.0) as client,
        ):
            server = uvicorn.Server(
                uvicorn.Config(running, lifespan="off", log_level="warning", access_log=False)
            )
            serving = portal.start_task_soon(partial(server.serve, sockets=[sock]))
            try:
                yield Served(url, client, portal, app.state.runtime)
            finally:
                server.should_exit = True
                serving.result(timeout=30)


def ci_env(served: Served, variables: dict[str, str]) -> dict[str, str]:
    """What the CI job's shell has: its own variables and the releasebot secrets."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "RELEASEBOT_URL": served.url,
        "RELEASEBOT_GENERIC_WEBHOOK_SECRET": GENERIC_SECRET,
        "RELEASEBOT_API_TOKEN": API_TOKEN,
        **variables,
    }


def run_script(script: str, env: dict[str, str], *args: str, cwd: Path | None = None) -> str:
    """Run a recipe's script with bash, as the CI would; its output (curl prints the answer)."""
    done = subprocess.run(
        ["bash", "-c", script, "recipe", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr}{done.stdout}"
    return done.stdout


def track(served: Served, script: str, env: dict[str, str], *statuses: str) -> None:
    """Run the tracking script once per status; each report is accepted."""
    for status in statuses:
        answer = json.loads(run_script(script, env, status))
        assert answer["status"] == "accepted", answer
        served.drain()


def gate_argv(script: str, env: dict[str, str]) -> list[str]:
    """The arguments the gate step passes to `releasebot`, as its shell expanded them."""
    capture = 'releasebot() { printf "%s\\0" "$@"; }\n' + script.replace(
        "#!/usr/bin/env bash\n", ""
    )
    done = subprocess.run(
        ["bash", "-c", capture], env=env, capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.decode().split("\0")[:-1]


def wait_on_gate(served: Served, script: str, env: dict[str, str]) -> Gate:
    """Run the gate step: it opens the gate and waits; a release manager approves it in
    Slack between two polls; the step exits 0. Returns the approved gate."""
    argv = gate_argv(script, env)
    args = build_parser().parse_args(argv)
    assert (args.command, args.action, args.wait) == ("gate", "request", True)
    token = args.token or env["RELEASEBOT_API_TOKEN"]
    clock = FakeTime()

    def meanwhile(seconds: float) -> None:
        clock.sleep(seconds)
        served.drain()  # the risk is assessed, the release message posted
        [pending] = [g for g in served.gates() if g.status == "pending"]
        slack_click(served.client, "U0RM1", pending.id or 0)
        served.drain()

    headers = {"authorization": f"Bearer {token}"}
    with httpx.Client(base_url=args.api_url, headers=headers, timeout=30.0) as client:
        code = run_gate(args, client, sleep=meanwhile, monotonic=clock.monotonic)
    assert code == 0
    [gate] = served.gates()
    assert (gate.status, gate.decided_by) == ("approved", "U0RM1")
    return gate


def deployment_of(served: Served, gate: Gate) -> Deployment:
    [found] = [d for d in served.deployments() if d.id == gate.deployment_id]
    return found


def hmac_hex(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# --- CircleCI, Buildkite, GitHub Actions, GitLab CI: a report script and a gate script ------

VERSION = "v1.4.2"
SCRIPTED: dict[str, dict[str, str]] = {
    "circleci.md": {
        "CIRCLE_SHA1": SHA_A,
        "CIRCLE_TAG": VERSION,
        "CIRCLE_BUILD_URL": "https://circleci.com/gh/acme/payments-batch/981",
        "CIRCLE_USERNAME": "alice",
        "CIRCLE_WORKFLOW_JOB_ID": "0f7a5b1e-2c84-4d1b-9b52-5f8d7b0c1a11",
    },
    "buildkite.md": {
        "BUILDKITE_COMMIT": SHA_A,
        "BUILDKITE_TAG": VERSION,
        "BUILDKITE_BUILD_URL": "https://buildkite.com/acme/payments-batch/builds/981",
        "BUILDKITE_BUILD_CREATOR": "Alice",
        "BUILDKITE_BUILD_CREATOR_EMAIL": "alice@acme.example",
        "BUILDKITE_JOB_ID": "0190c2a4-7d3e-4f8a-9b1c-2d3e4f5a6b7c",
    },
    "github-actions.md": {
        "GITHUB_SHA": SHA_A,
        "GITHUB_REF_NAME": VERSION,
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_REPOSITORY": "acme/payments-batch",
        "GITHUB_RUN_ID": "981",
        "GITHUB_RUN_ATTEMPT": "1",
        "GITHUB_ACTOR": "alice",
    },
    "gitlab-ci.md": {
        "CI_COMMIT_SHA": SHA_A,
        "CI_COMMIT_SHORT_SHA": SHA_A[:8],
        "CI_COMMIT_TAG": VERSION,
        "CI_JOB_URL": "https://gitlab.example/acme/payments-batch/-/jobs/981",
        "CI_JOB_ID": "981",
        "GITLAB_USER_LOGIN": "alice",
        "GITLAB_USER_EMAIL": "alice@acme.example",
    },
}


def assert_gated(served: Served, gate: Gate, *, service: str = "payments-batch") -> Deployment:
    gated = deployment_of(served, gate)
    assert (gated.service, gated.environment, gated.version, gated.sha) == (
        service,
        "production",
        VERSION,
        SHA_A,
    )
    return gated


def assert_deployed(served: Served, gated: Deployment) -> Deployment:
    """The reports landed on the gated deployment (one, not two), which is now deployed."""
    [deployed] = served.deployments()
    assert (deployed.id, deployed.state) == (gated.id, "succeeded")
    assert deployed.ci_url is not None and deployed.ci_url.startswith("https://")
    return deployed


@pytest.mark.parametrize("page", sorted(SCRIPTED))
def test_a_scripted_recipe_waits_on_its_gate_then_tracks_the_deploy(
    served: Served, page: str
) -> None:
    recipe = blocks(page)
    env = ci_env(served, SCRIPTED[page])

    gate = wait_on_gate(served, recipe["recipe-gate"], env)
    gated = assert_gated(served, gate)
    assert gate.requested_by is not None and "alice" in gate.requested_by.lower()

    track(served, recipe["recipe-command"], env, "started", "succeeded")
    deployed = assert_deployed(served, gated)
    assert "alice" in (deployed.deployer or "").lower()


# --- Tekton: the Task's own steps ------------------------------------------------------------


def tekton_step_env(task: dict[str, Any], served: Served) -> dict[str, str]:
    """The stepTemplate's env, as Tekton resolves it for a TaskRun (params, context, secrets);
    only the bot's address differs from the page."""
    params = {"version": VERSION, "revision": SHA_A, "actor": "alice"}
    params["run-url"] = "https://tekton.example/#/taskruns/deploy-981"
    secrets = {"generic-webhook-secret": GENERIC_SECRET, "api-token": API_TOKEN}
    context = {"context.taskRun.name": "deploy-981"}
    env: dict[str, str] = {}
    for item in task["spec"]["stepTemplate"]["env"]:
        if "valueFrom" in item:
            env[item["name"]] = secrets[item["valueFrom"]["secretKeyRef"]["key"]]
            continue
        value = re.sub(r"\$\(params\.([\w-]+)\)", lambda m: params[m[1]], item["value"])
        env[item["name"]] = re.sub(r"\$\(([\w.]+)\)", lambda m: context[m[1]], value)
    declared = {p["name"] for p in task["spec"]["params"]}
    assert set(params) == declared
    assert env.pop("RELEASEBOT_URL").startswith("https://")
    return ci_env(served, env)


def test_the_tekton_task_waits_on_its_gate_then_deploys_and_reports(
    served: Served, tmp_path: Path
) -> None:
    task = yaml.safe_load(blocks("tekton.md")["recipe-task"])
    steps = {step["name"]: step["script"] for step in task["spec"]["steps"]}
    env = tekton_step_env(task, served)

    gated = assert_gated(served, wait_on_gate(served, steps["gate"], env))

    deploy = tmp_path / "deploy.sh"  # the team's deploy, which works
    deploy.write_text("#!/bin/sh\nexit 0\n")
    deploy.chmod(0o755)
    run_script(steps["deploy"], env, cwd=tmp_path)
    served.drain()
    assert assert_deployed(served, gated).deployer == "alice"


# --- Spinnaker: the webhook stage as Orca runs it, and the Run Job's script ------------------

SPINNAKER_SECRET = "encrypted:k8s!n:spin-secrets!k:releasebot-api-token"


def orca(text: str, values: dict[str, str]) -> str:
    """Orca's evaluation of the stage's SpEL expressions `${...}`."""
    return re.sub(r"\$\{([^}]+)\}", lambda m: values[m[1]], text)


def json_path(path: str, document: dict[str, Any]) -> Any:
    assert path.startswith("$.")
    found: Any = document
    for part in path[2:].split("."):
        found = found[part]
    return found


def test_the_spinnaker_webhook_stage_waits_on_the_gate_until_slack_approves(
    served: Served,
) -> None:
    recipe = blocks("spinnaker.md")
    [stage] = yaml.safe_load(recipe["recipe-body"])["webhook"]["preconfigured"]
    values = {
        "parameterValues['service']": "payments-batch",
        "parameterValues['environment']": "production",
        "parameterValues['version']": VERSION,
        "parameterValues['sha']": SHA_A,
        "execution.authentication.user": "alice",
        "execution.application": "payments",
        "execution.id": "01JEXAMPLE981",
    }
    headers = {
        name: orca(values_[0], values).replace(SPINNAKER_SECRET, API_TOKEN)
        for name, values_ in stage["customHeaders"].items()
    }
    url = stage["url"].replace("https://releasebot.example.com", served.url)
    created = served.client.request(
        stage["method"], url, content=orca(stage["payload"], values).encode(), headers=headers
    )
    assert created.status_code == 201, created.text
    assert stage["waitForCompletion"] and stage["statusUrlResolution"] == "locationHeader"
    status_url = created.headers["location"].replace("https://releasebot.example", served.url)

    def poll() -> dict[str, Any]:
        answer = served.client.get(status_url, headers=headers)
        assert answer.status_code == 200, answer.text
        found: dict[str, Any] = answer.json()
        return found

    served.drain()  # the risk is assessed
    waiting = poll()
    assert json_path(stage["statusJsonPath"], waiting) == "RUNNING"
    assert "0 of 1 approvals" in str(json_path(stage["progressJsonPath"], waiting))
    [gate] = served.gates()
    slack_click(served.client, "U0RM1", gate.id or 0)
    served.drain()
    approved = json_path(stage["statusJsonPath"], poll())
    assert approved in stage["successStatuses"].split(",")
    assert {"TERMINAL", "CANCELED"} == {stage["terminalStatuses"], stage["canceledStatuses"]}
    gated = assert_gated(served, gate)

    env = ci_env(
        served,
        {
            "VERSION": VERSION,
            "GIT_SHA": SHA_A,
            "EXECUTION_URL": values_url(values),
            "TRIGGER_USER": "alice",
            "EXECUTION_ID": values["execution.id"],
        },
    )
    track(served, recipe["recipe-command"], env, "started", "succeeded")
    assert assert_deployed(served, gated).deployer == "alice"


def test_a_superseded_gate_reads_canceled_and_where_to_poll_is_said(served: Served) -> None:
    """A newer release asked for in the same environment supersedes the older one's gate;
    the stage polling the older one reads CANCELED and stops."""
    auth = {"authorization": f"Bearer {API_TOKEN}"}
    ask = {"service": "payments-batch", "environment": "production"}
    first = served.client.post("/api/v1/gates", json={**ask, "version": "1.4.1"}, headers=auth)
    assert first.json()["pipeline_status"] == "RUNNING"
    served.drain()
    second = served.client.post("/api/v1/gates", json={**ask, "version": "1.4.2"}, headers=auth)
    assert second.status_code == 201
    older = served.client.get(first.headers["location"].split("example", 1)[1], headers=auth)
    assert (older.json()["status"], older.json()["pipeline_status"]) == ("superseded", "CANCELED")
    assert (
        first.headers["location"] == f"https://releasebot.example/api/v1/gates/{first.json()['id']}"
    )


def values_url(values: dict[str, str]) -> str:
    return (
        "https://spinnaker.example.com/#/applications/"
        f"{values['execution.application']}/executions/details/{values['execution.id']}"
    )


# --- Jenkins: the httpRequest step's body and header -----------------------------------------


def test_the_jenkins_http_request_step_reports_each_phase_with_its_token(served: Served) -> None:
    recipe = blocks("jenkins.md")
    env = ci_env(
        served,
        {
            "VERSION": VERSION,
            "GIT_COMMIT": SHA_A,
            "BUILD_URL": "https://jenkins.example/job/payments-deploy/42/",
            "BUILD_USER_ID": "alice",
        },
    )
    gated = assert_gated(served, wait_on_gate(served, recipe["recipe-gate"], env))

    groovy = recipe["recipe-body"]
    template = re.search(r'def body = """(.*?)"""', groovy, re.S)
    assert template is not None
    call = re.search(r"httpRequest url: \"\$\{env.RELEASEBOT_URL\}(?P<path>/[\w/]+)\"", groovy)
    assert call is not None and "maskValue: true" in groovy
    assert "customHeaders: [[name: 'Authorization', value: \"Bearer ${TOKEN}\"" in groovy
    for phase, status in (("STARTED", ""), ("COMPLETED", "SUCCESS")):
        groovy_values = {
            "env.JOB_NAME": "payments-deploy",
            "env.JOB_URL": "https://jenkins.example/job/payments-deploy/",
            "env.BUILD_NUMBER": "42",
            "env.BUILD_URL": env["BUILD_URL"],
            "env.GIT_COMMIT": SHA_A,
            "params.VERSION": VERSION,
            "phase": phase,
            "status": status,
        }
        body = orca(template[1], groovy_values).encode()
        answer = served.client.post(
            call["path"],
            content=body,
            headers={
                "content-type": "application/json",  # contentType: 'APPLICATION_JSON'
                "authorization": f"Bearer {JENKINS_SECRET}",
            },
        )
        assert answer.status_code == 202 and answer.json()["status"] == "accepted", answer.text
        served.drain()
    assert_deployed(served, gated)


# --- Flux: its own event, signed as its generic-hmac provider signs ---------------------------


def test_flux_generic_hmac_events_are_accepted_as_flux_sends_them(served: Served) -> None:
    recipe = blocks("flux.md")
    secret, provider, alert = yaml.safe_load_all(recipe["recipe-flux"])
    assert (provider["kind"], provider["spec"]["type"]) == ("Provider", "generic-hmac")
    assert provider["spec"]["secretRef"]["name"] == secret["metadata"]["name"]
    assert "token" in secret["stringData"]
    path = "/" + provider["spec"]["address"].split("/", 3)[3]
    assert alert["spec"]["providerRef"]["name"] == provider["metadata"]["name"]

    body = recipe["recipe-body"].encode()
    headers = {
        "content-type": "application/json",
        "gotk-component": "helm-controller",
        "x-signature": "sha256=" + hmac_hex(GENERIC_SECRET, body),
    }
    answer = served.client.post(path, content=body, headers=headers)
    assert answer.status_code == 202 and answer.json()["status"] == "accepted", answer.text
    served.drain()
    [deployed] = served.deployments()
    assert (deployed.service, deployed.environment, deployed.state) == (
        "payments-batch",
        "production",
        "succeeded",
    )
    metadata = alert["spec"]["eventMetadata"]
    assert (deployed.service, deployed.environment) == (
        metadata["service"],
        metadata["environment"],
    )
    # A chart version without a commit: the release is keyed by that version.
    assert (deployed.version, deployed.sha, deployed.deployer) == (
        "1.4.2",
        "v:1.4.2",
        "helm-controller",
    )

    again = served.client.post(path, content=body, headers=headers)
    assert again.json()["status"] == "duplicate"
    forged = {**headers, "x-signature": "sha256=" + hmac_hex("not-the-secret", body)}
    assert served.client.post(path, content=body, headers=forged).status_code == 401


# --- Argo CD: the PreSync hook's gate, then a rendered notification --------------------------


def test_argo_cd_waits_in_a_presync_hook_then_its_notification_lands_on_the_release(
    served: Served,
) -> None:
    recipe = blocks("argocd.md")
    env = ci_env(
        served,
        {"REVISION": SHA_A, "APP_VERSION": VERSION, "ARGOCD_URL": "https://argocd.example.com"},
    )
    gated = assert_gated(
        served, wait_on_gate(served, recipe["recipe-gate"], env), service="storefront"
    )

    body = recipe["recipe-body"].encode()
    template = (ROOT / "docs" / "argocd-notifications.md").read_text()
    succeeded = template.split("template.releasebot-sync-succeeded: |", 1)[1].split("template.", 1)[
        0
    ]
    assert set(json.loads(body)) == set(re.findall(r'"(\w+)":', succeeded))
    answer = served.client.post(
        "/webhooks/argocd",
        content=body,
        headers={"content-type": "application/json", "x-releasebot-token": ARGOCD_SECRET},
    )
    assert answer.status_code == 202 and answer.json()["status"] == "accepted", answer.text
    served.drain()
    assert assert_deployed(served, gated).deployer == "argocd"  # who asked for the gate


OTHERS = {
    "tekton.md": test_the_tekton_task_waits_on_its_gate_then_deploys_and_reports,
    "spinnaker.md": test_the_spinnaker_webhook_stage_waits_on_the_gate_until_slack_approves,
    "jenkins.md": test_the_jenkins_http_request_step_reports_each_phase_with_its_token,
    "flux.md": test_flux_generic_hmac_events_are_accepted_as_flux_sends_them,
    "argocd.md": test_argo_cd_waits_in_a_presync_hook_then_its_notification_lands_on_the_release,
}


def test_every_recipe_page_is_tested_and_listed() -> None:
    pages = sorted(p.name for p in RECIPES.glob("*.md") if p.name != "README.md")
    assert pages == sorted(set(SCRIPTED) | set(OTHERS))
    index = (RECIPES / "README.md").read_text()
    assert all(f"({page})" in index for page in pages)


def test_the_generic_webhook_page_names_the_gate_command_and_the_recipes() -> None:
    page = (ROOT / "docs" / "generic-webhook.md").read_text()
    assert "releasebot gate request" in page and "recipes/README.md" in page


ROOT = REPO_ROOT
