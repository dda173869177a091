"""No two modules of the delivery package import each other, not even inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parents[2] / "src" / "smtpgate" / "delivery"


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("smtpgate.delivery."):
            found.add(node.module.rpartition(".")[2])
        elif isinstance(node, ast.Import):
            found |= {a.name.rpartition(".")[2] for a in node.names if a.name.startswith("smtpgate.delivery.")}
    return found


def test_the_delivery_modules_import_each_other_one_way_only() -> None:
    graph = {path.stem: imports(path) for path in PACKAGE.glob("*.py")}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in graph.get(start, ()))

    circles = sorted(name for name in graph if reaches(name, name, {name}))
    assert circles == [], f"modules on an import circle: {circles}"
    assert "routes" not in graph["relay"]  # the relay takes its secrets from upstream, not from the route table
