"""The wheel carries everything the installed bot reads from disk; the version has one home.

The wheel is built from a copy of the sources in a temporary directory (so no build/ or
egg-info is left in the checkout). Running the installed wheel is `.ci/wheel-smoke`'s job.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import bot
from bot import migrate
from bot.cli import main
from tests.helpers import REPO_ROOT

SOURCES = (
    "pyproject.toml",
    "setup.py",
    "README.md",
    "bot",
    "handlers",
    "integrations",
    "migrations",
)
BUILD_TIMEOUT_SECONDS = 300


@pytest.fixture(scope="module")
def wheel_files(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        origin = REPO_ROOT / name
        if origin.is_dir():
            shutil.copytree(origin, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(origin, src / name)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp / "dist"),
            str(src),
        ],
        check=True,
        timeout=BUILD_TIMEOUT_SECONDS,
        stdin=subprocess.DEVNULL,
    )
    (wheel,) = (tmp / "dist").glob("releasebot-*.whl")
    assert wheel.name == f"releasebot-{bot.__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def _tracked(directory: str, *, suffixes: tuple[str, ...] | None = None) -> set[str]:
    root = REPO_ROOT / directory
    return {
        path.relative_to(REPO_ROOT).as_posix()
        for path in root.rglob("*")
        if path.is_file()
        and "__pycache__" not in path.parts
        and (suffixes is None or path.suffix in suffixes)
    }


def test_the_wheel_carries_the_migrations_as_bot_migrations(wheel_files: set[str]) -> None:
    migrations = {f"bot/{name}" for name in _tracked("migrations", suffixes=(".py", ".mako"))}
    assert "bot/migrations/env.py" in migrations
    assert "bot/migrations/script.py.mako" in migrations
    assert any(name.startswith("bot/migrations/versions/") for name in migrations)
    assert migrations <= wheel_files
    assert not any(name.startswith("migrations/") for name in wheel_files)


def test_the_wheel_carries_every_template_and_static_file(wheel_files: set[str]) -> None:
    data = (
        _tracked("bot/templates")
        | _tracked("bot/static")
        | _tracked("bot/domain", suffixes=(".json",))
        | _tracked("integrations/sandbox/templates")
        | {"integrations/sandbox/directory.yaml", "bot/py.typed"}
    )
    assert {"bot/templates/html/base.html", "bot/static/dashboard.css"} <= data
    assert data <= wheel_files


def test_the_wheel_carries_every_module_and_nothing_from_outside(wheel_files: set[str]) -> None:
    modules = _tracked("bot", suffixes=(".py",)) | _tracked("handlers", suffixes=(".py",))
    modules |= _tracked("integrations", suffixes=(".py",))
    assert modules <= wheel_files
    top_level = {name.split("/", 1)[0] for name in wheel_files}
    assert top_level == {
        "bot",
        "handlers",
        "integrations",
        f"releasebot-{bot.__version__}.dist-info",
    }


def test_the_migrations_are_found_in_a_checkout_and_in_an_installed_package(
    tmp_path: Path,
) -> None:
    assert migrate.MIGRATIONS == REPO_ROOT / "migrations"
    installed = tmp_path / "site-packages" / "bot"
    (installed / "migrations").mkdir(parents=True)
    (installed / "migrations" / "env.py").write_text("")
    assert migrate.migrations_dir(installed) == installed / "migrations"
    assert migrate.migrations_dir(REPO_ROOT / "bot") == REPO_ROOT / "migrations"


def test_version_prints_the_one_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"releasebot {bot.__version__}\n"
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject
    assert 'version = { attr = "bot.__version__" }' in pyproject
