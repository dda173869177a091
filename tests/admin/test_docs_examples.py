"""docs/api.md's curl and Python examples, run as written against a running server."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.admin.conftest import Api
from tests.conftest import need

DOC = Path(__file__).parents[2] / "docs" / "api.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), re.S)


def environment(api: Api) -> dict[str, str]:
    server = api.server
    return {**os.environ, "API": api.base, "TOKEN": api.tokens["admin"].secret,
            "SMTP": f"127.0.0.1:{server.submission_port}", "CA": str(server.ca)}


def test_the_curl_walkthrough_runs_as_written(api: Api, tmp_path: Path) -> None:
    need(shutil.which("curl") is not None, "curl is not installed")
    script = "set -euo pipefail\n" + "\n".join(blocks("sh"))
    run = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=environment(api), capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert '"state":"revoked"' in run.stdout.replace(" ", "")
    assert "credential.revoke" in run.stdout
    credentials = api.server.credentials.list_credentials(account="alice@example.com")
    assert [c.state for c in credentials] == ["revoked"] and credentials[0].use_count == 1


def test_the_python_example_runs_as_written(api: Api, tmp_path: Path) -> None:
    (code,) = blocks("python")
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=environment(api), capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "account password, shown once:" in run.stdout and "successor ap_" in run.stdout
    assert "account.create dora@example.com ok" in run.stdout
