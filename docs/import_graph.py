"""Print the map of which room of releasebot imports which, as a Mermaid diagram.

    .venv/bin/python docs/import_graph.py          # print the diagram
    .venv/bin/python docs/import_graph.py --write  # redraw it in docs/architecture.md

A room is a package or a top-level module of `bot`, or one of `handlers` and
`integrations`. An arrow A --> B means some module in A imports some module in B. The
graph is read with grimp, the library import-linter checks the contracts in pyproject.toml
with, so the picture and the contracts describe the same code.
"""

from __future__ import annotations

import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]
ROOMS = (
    "bot.cli",
    "bot.app",
    "bot.scheduling",
    "bot.runtime",
    "handlers",
    "bot.usecases",
    "bot.outbox_worker",
    "bot.services",
    "bot.store",
    "bot.domain",
    "integrations",
)


def room_of(module: str) -> str | None:
    for room in ROOMS:
        if module == room or module.startswith(room + "."):
            return room
    return None


def edges() -> list[tuple[str, str]]:
    sys.path.insert(0, str(ROOT))
    graph = grimp.build_graph("bot", "handlers", "integrations", cache_dir=None)
    found: set[tuple[str, str]] = set()
    for module in graph.modules:
        source = room_of(module)
        if source is None:
            continue
        for imported in graph.find_modules_directly_imported_by(module):
            target = room_of(imported)
            if target is not None and target != source:
                found.add((source, target))
    return sorted(found, key=lambda e: (ROOMS.index(e[0]), ROOMS.index(e[1])))


def mermaid() -> str:
    lines = ["```mermaid", "graph TD"]
    lines += [f"    {a.replace('.', '_')}[{a}] --> {b.replace('.', '_')}[{b}]" for a, b in edges()]
    lines.append("```")
    return "\n".join(lines)


START = "<!-- import-graph:start -->"
END = "<!-- import-graph:end -->"
DOC = ROOT / "docs" / "architecture.md"


def with_graph(doc: str) -> str:
    """The architecture page with the diagram between its markers drawn anew."""
    head, _, rest = doc.partition(START)
    _, _, tail = rest.partition(END)
    return f"{head}{START}\n{mermaid()}\n{END}{tail}"


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        DOC.write_text(with_graph(DOC.read_text()))
    else:
        print(mermaid())  # noqa: T201
