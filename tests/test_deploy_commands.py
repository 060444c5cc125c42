"""The commands the image, the compose file and the chart run work, outside any container.

The commands are read from deploy/Dockerfile (ENTRYPOINT + CMD), deploy/compose.yaml (the
migration and the bot replicas) and the chart's templates, so they cannot drift from what
is run here: the migration on a fresh SQLite file, then the server on a free loopback port
(its `--host 0.0.0.0` becomes 127.0.0.1) until /readyz answers 200, then SIGTERM.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from bot.config import load_config
from tests.helpers import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"
CHART = DEPLOY / "helm" / "releasebot"
STARTUP_SECONDS = 60.0
STOP_SECONDS = 30.0
CLEARED_PREFIXES = ("SLACK_", "RELEASEBOT_", "GITHUB_", "GITLAB_", "ARGOCD_", "PAGERDUTY_")


def dockerfile_command() -> list[str]:
    """What the image runs: its last ENTRYPOINT followed by its last CMD (exec form)."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        match = re.match(r"\s*(ENTRYPOINT|CMD)\s+(.*)$", line)
        if match:
            arguments = match.group(2).strip()
            words = json.loads(arguments) if arguments.startswith("[") else shlex.split(arguments)
            found[match.group(1)] = words
    return found.get("ENTRYPOINT", []) + found.get("CMD", [])


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return data


def chart_args(template: str) -> list[str]:
    match = re.search(
        r"^\s*args:\s*(\[.*\])\s*$", (CHART / "templates" / template).read_text(), re.M
    )
    assert match, f"no args in {template}"
    words: list[str] = json.loads(match.group(1))
    return words


def entry_point() -> str:
    """The console script the image's commands start with, and where it leads."""
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"releasebot": "bot.cli:main"}
    return "releasebot"


def local(command: list[str], port: int) -> list[str]:
    """`releasebot ...` as this interpreter runs it, listening on loopback at `port`."""
    assert command[0] == entry_point()
    args = list(command[1:])
    if "--host" in args:
        args[args.index("--host") + 1] = "127.0.0.1"
    if "--port" in args:
        args[args.index("--port") + 1] = str(port)
    return [sys.executable, "-m", "bot", *args]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def environment(tmp_path: Path) -> dict[str, str]:
    """The environment outside a container: the compose file's config, a SQLite file."""
    [mount] = [
        volume
        for volume in compose()["x-releasebot"]["volumes"]
        if volume.split(":")[1] == "/etc/releasebot/releasebot.yaml"
    ]
    config = (DEPLOY / mount.split(":")[0]).resolve()
    env = {k: v for k, v in os.environ.items() if not k.startswith(CLEARED_PREFIXES)}
    return env | {
        "RELEASEBOT_DATABASE_URL": f"sqlite:///{tmp_path / 'releasebot.db'}",
        "RELEASEBOT_CONFIG": str(config),
        "PYTHONPATH": str(REPO_ROOT),
        "PYTHONUNBUFFERED": "1",
    }


def test_the_image_compose_and_chart_run_the_same_commands() -> None:
    services = compose()["services"]
    image = dockerfile_command()
    bots = [s["command"] for s in services.values() if s.get("command", [None])[0] == "serve"]
    assert image[0] == entry_point()
    assert len(bots) == 2 and all(command == image[1:] for command in bots)
    assert chart_args("deployment.yaml") == image[1:]
    assert services["migrate"]["command"] == chart_args("migration-job.yaml") == ["db", "upgrade"]


def test_the_charts_default_config_is_a_valid_releasebot_config(tmp_path: Path) -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    path = tmp_path / "releasebot.yaml"
    path.write_text(yaml.safe_dump(values["config"]))
    assert load_config(path).services


def test_migration_then_serve_as_deployed_reach_ready_and_stop_on_sigterm(tmp_path: Path) -> None:
    env = environment(tmp_path)
    migrate = local([entry_point(), *compose()["services"]["migrate"]["command"]], 0)
    done = subprocess.run(
        migrate, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "(head)" in done.stdout

    port = free_port()
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            local(dockerfile_command(), port),
            cwd=tmp_path,
            env=env | {"RELEASEBOT_PUBLIC_URL": f"http://127.0.0.1:{port}"},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        status = 0
        while status != 200:
            if process.poll() is not None:
                pytest.fail(f"serve exited with {process.returncode}:\n{log_path.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(
                    f"no 200 from /readyz in {STARTUP_SECONDS:.0f} s:\n{log_path.read_text()}"
                )
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2.0).status_code
            except httpx.TransportError:
                status = 0
            if status != 200:
                threading.Event().wait(0.1)  # polling a real process, not a fixed delay
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=STOP_SECONDS) == 0, log_path.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=STOP_SECONDS)
