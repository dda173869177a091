"""What a new user meets first: the install and the README's own examples."""

from __future__ import annotations

import ast
import builtins
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_the_license_is_an_spdx_string() -> None:
    """A `project.license` table makes setuptools warn at every install (PEP 639)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"] == "Apache-2.0"
    assert (ROOT / "LICENSE").exists()


def test_every_python_snippet_in_the_readme_defines_what_it_uses() -> None:
    snippets = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert snippets
    for code in snippets:
        tree = ast.parse(code)
        bound = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        bound |= {a.asname or a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom) for a in n.names}
        used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
        assert used - bound - set(dir(builtins)) == set(), code
