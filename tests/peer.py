"""Postfix + Dovecot on loopback, from the project's own scripts/peers/postfix-dovecot.sh.

A second, independent SMTP submission server: the delivery tests relay to it, the doctor
tests diagnose it. It needs root and the two packages (scripts/install-test-clients.sh
installs them); without them the tests skip, or fail under SMTPGATE_STRICT=1.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import need
from tests.smtp.server_harness import free_port

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "peers" / "postfix-dovecot.sh"


@dataclass(frozen=True)
class Peer:
    port: int
    base: Path

    @property
    def cafile(self) -> Path:
        return self.base / "tls" / "cert.pem"

    @property
    def log(self) -> Path:
        return self.base / "postfix.log"


def run_script(command: str, env: dict[str, str], output: Path, timeout: float = 120) -> int:
    # A file, not a pipe: the daemons inherit the script's stdout and would hold a pipe open.
    with output.open("ab") as out:
        return subprocess.run(["bash", str(SCRIPT), command], env=env, stdin=subprocess.DEVNULL,
                              stdout=out, stderr=subprocess.STDOUT, timeout=timeout).returncode


def peer_env(base: Path, port: int, user: str, password: str) -> dict[str, str]:
    return {**os.environ, "PEER_BASE": str(base), "PORT": str(port), "SMTP_USER": user, "SMTP_PASS": password,
            "IN_FLOW_DELAY": "0"}


@contextmanager
def postfix_peer(user: str, password: str) -> Iterator[Peer]:
    """Start a fresh peer in its own directory on a free port; stop and remove it afterwards."""
    need(os.geteuid() == 0, "the Postfix peer needs root (Postfix's master runs as root)")
    need(shutil.which("postfix") is not None and shutil.which("dovecot") is not None,
         "Postfix/Dovecot are not installed (scripts/install-test-clients.sh installs them as root)")
    base = Path(tempfile.mkdtemp(prefix="smtpgate-peer-", dir="/tmp"))  # outside pytest's 0700 dirs
    env = peer_env(base, free_port(), user, password)
    output = Path(tempfile.mkstemp(prefix="smtpgate-peer-", suffix=".log")[1])
    try:
        started = run_script("start", env, output)
        need(started == 0, f"the Postfix peer did not start:\n{output.read_text(errors='replace')}")
        yield Peer(int(env["PORT"]), base)
    finally:
        run_script("clean", env, output)
        output.unlink(missing_ok=True)
        shutil.rmtree(base, ignore_errors=True)
