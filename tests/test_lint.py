"""ruff and mypy on src/: part of the suite, so `make test` (and CI) fails when either does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_ruff_finds_nothing_in_src() -> None:
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "src"], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_finds_nothing_in_src() -> None:
    # pyproject's [tool.mypy] names what it checks (src/smtpgate); its cache keeps a rerun quick
    result = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
