"""docs/architecture.md shows the imports between the code's rooms as they are."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _graph_module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("import_graph", ROOT / "docs" / "import_graph.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_architecture_page_draws_the_imports_of_the_code_as_it_is() -> None:
    graph = _graph_module()
    doc = (ROOT / "docs" / "architecture.md").read_text()
    assert graph.with_graph(doc) == doc, (
        "docs/architecture.md is out of date: run .venv/bin/python docs/import_graph.py --write"
    )


def test_handlers_reach_the_core_only_through_use_cases() -> None:
    edges = set(_graph_module().edges())
    assert ("handlers", "bot.usecases") in edges
    assert not {("handlers", room) for room in ("bot.services", "bot.store", "bot.runtime")} & edges
    assert (
        not {(room, "bot.usecases") for room in ("bot.services", "bot.store", "bot.domain")} & edges
    )
