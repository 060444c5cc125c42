"""Start-up benchmark: process start to `/readyz` 200, and the import time under it.

    .venv/bin/python bench/startup.py                  # 5 starts, the median reported
    .venv/bin/python bench/startup.py --runs 9 --slack sandbox
    .venv/bin/python bench/startup.py --importtime 15  # and the 15 slowest imports

Design target (issue "Fast start"): `/readyz` answers 200 within 2 s of process start.

Each run starts `python -m bot serve` on a free port of 127.0.0.1 with the example config
(`examples/releasebot.yaml`), a fresh SQLite file in a temp dir (so the migrations run, as
on a first start), the webhook secrets, and, by default, a bot token with
`RELEASEBOT_SLACK_API_URL` pointing at a closed port (a real deployment's shape: nothing
at start-up waits on Slack); `--slack sandbox` runs without a token, on the built-in
sandbox. Your shell's `SLACK_*`, `RELEASEBOT_*`, `GITHUB_*`... variables are not passed.
The clock starts just before the process is spawned and stops at the first `/readyz` 200
(polled every 10 ms); the server's CPU time by then is read from /proc (Linux), a figure
that moves less than wall time when other work shares the CPUs. The server is then
stopped with SIGINT.

One start before them is not timed: it writes the bytecode caches, as installing the
wheel compiles them. Then, as many times, a fresh interpreter imports what `serve` imports
before it listens (`bot.cli`, `bot.app`, `uvicorn`) and reports how long that took: the
import time.

Exit status 0 whenever the benchmark ran, whatever the figures; 1 when a server did not
come up (its log's tail is printed). This is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_CONFIG = REPO_ROOT / "examples" / "releasebot.yaml"
HOST = "127.0.0.1"
TARGET_S = 2.0
CLEARED_PREFIXES = ("SLACK_", "RELEASEBOT_", "GITHUB_", "GITLAB_", "ARGOCD_", "PAGERDUTY_")
IMPORTS = "import bot.cli, bot.app, uvicorn"


def out(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def clean_environ() -> dict[str, str]:
    """Your environment without the bot's settings. Bytecode is written (an installed wheel
    has it compiled): with PYTHONDONTWRITEBYTECODE every start would compile what changed
    since the last cache from source (a quarter second after an edit)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(CLEARED_PREFIXES)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env | {"PYTHONPATH": str(REPO_ROOT)}


def server_env(workdir: Path, port: int, slack: str) -> dict[str, str]:
    env = clean_environ() | {
        "RELEASEBOT_DATABASE_URL": f"sqlite:///{workdir / 'releasebot.db'}",
        "RELEASEBOT_CONFIG": str(EXAMPLE_CONFIG),
        "RELEASEBOT_LOG_LEVEL": "WARNING",
        "RELEASEBOT_PUBLIC_URL": f"http://{HOST}:{port}",
        "GITHUB_WEBHOOK_SECRET": "bench-github-secret",
        "GITLAB_WEBHOOK_TOKEN": "bench-gitlab-token",
        "RELEASEBOT_GENERIC_WEBHOOK_SECRET": "bench-generic-secret",
    }
    if slack == "token":
        env |= {
            "SLACK_BOT_TOKEN": "xoxb-bench",
            "SLACK_SIGNING_SECRET": "bench-slack-signing-secret",
            "RELEASEBOT_SLACK_API_URL": f"http://{HOST}:{free_port()}/api/",
        }
    return env


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/readyz", timeout=2.0) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux /proc), None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def one_start(slack: str, timeout: float) -> tuple[float, float | None]:
    """Seconds from spawning `releasebot serve` to its first /readyz 200, and the CPU
    seconds the server used by then (steadier than wall time on a busy machine)."""
    workdir = Path(tempfile.mkdtemp(prefix="releasebot-bench-startup-"))
    port = free_port()
    log_path = workdir / "releasebot.log"
    command = [sys.executable, "-m", "bot", "serve", "--host", HOST, "--port", str(port)]
    try:
        with log_path.open("wb") as log:
            started = time.perf_counter()
            process = subprocess.Popen(
                command,
                cwd=REPO_ROOT,
                env=server_env(workdir, port, slack),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        try:
            while time.perf_counter() - started < timeout:
                if ready(port):
                    return time.perf_counter() - started, cpu_seconds(process.pid)
                if process.poll() is not None:
                    break
                time.sleep(0.01)
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
            raise RuntimeError(f"releasebot did not answer /readyz 200:\n{tail}")
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGINT)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def import_seconds() -> float:
    """A fresh interpreter's time to import what `serve` needs before it listens."""
    code = f"import time; t = time.perf_counter(); {IMPORTS}; print(time.perf_counter() - t)"
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=clean_environ(),
        capture_output=True,
        text=True,
        check=True,
    )
    return float(done.stdout.strip())


def slowest_imports(count: int) -> list[tuple[int, str]]:
    """The `count` imports with the most time of their own (µs), from `-X importtime`."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", IMPORTS],
        cwd=REPO_ROOT,
        env=clean_environ(),
        capture_output=True,
        text=True,
        check=True,
    )
    rows: list[tuple[int, str]] = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        own, _, name = line.removeprefix("import time:").split("|", 2)
        rows.append((int(own), name.strip()))
    return sorted(rows, reverse=True)[:count]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5, help="starts to time (default 5)")
    parser.add_argument("--slack", choices=("token", "sandbox"), default="token")
    parser.add_argument("--timeout", type=float, default=60.0, help="per start, seconds")
    parser.add_argument("--importtime", type=int, default=0, help="list the N slowest imports")
    parser.add_argument("--json", action="store_true", help="also print the results as JSON")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be positive")
    try:
        one_start(args.slack, args.timeout)  # not timed: writes the bytecode caches
        timed = [one_start(args.slack, args.timeout) for _ in range(args.runs)]
    except RuntimeError as exc:
        sys.stderr.write(f"the benchmark could not run: {exc}\n")
        return 1
    starts = [wall for wall, _ in timed]
    cpu = [used for _, used in timed if used is not None]
    imports = [import_seconds() for _ in range(args.runs)]
    median = statistics.median(starts)
    verdict = "PASS" if median <= TARGET_S else "MISS"
    out(
        f"start to /readyz 200 ({args.slack}): median {median:.2f} s of {args.runs} "
        f"(min {min(starts):.2f}, max {max(starts):.2f})  {verdict} (goal <= {TARGET_S:.0f} s)"
    )
    if cpu:
        out(f"server CPU time to /readyz 200: median {statistics.median(cpu):.2f} s")
    out(
        f"import time ({IMPORTS}): median {statistics.median(imports):.2f} s "
        f"(min {min(imports):.2f}, max {max(imports):.2f})"
    )
    if args.importtime:
        out(f"slowest {args.importtime} imports by their own time:")
        for own, name in slowest_imports(args.importtime):
            out(f"  {own / 1000:7.1f} ms  {name}")
    if args.json:
        out(
            json.dumps(
                {
                    "slack": args.slack,
                    "start_to_ready_s": [round(s, 3) for s in starts],
                    "median_s": round(median, 3),
                    "cpu_to_ready_s": [round(c, 3) for c in cpu],
                    "import_s": [round(s, 3) for s in imports],
                    "target_s": TARGET_S,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
