"""`make run` as the quick start uses it: ports from the command line, and it says where the admin listener is."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.cli.conftest import Cli
from tests.conftest import need
from tests.smtp.server_harness import free_port

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(sys.executable).parent.parent


def wait_for(what: str, check, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"make run exited with {proc.returncode}:\n{log.read_text()}"
        try:
            if result := check():
                return result
        except (OSError, httpx.HTTPError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"{what} within {timeout:.0f} s:\n{log.read_text()}")


def test_make_run_takes_ports_and_prints_the_admin_listener(tmp_path: Path) -> None:
    need(shutil.which("make") is not None, "make is not installed")
    port, tls_port, admin_port = free_port(), free_port(), free_port()
    log = tmp_path / "make-run.log"
    # -o: the venv of this test run is up to date; make must not reinstall it.
    command = ["make", "-C", str(ROOT), "--no-print-directory", f"VENV={VENV}", "-o", f"{VENV}/.installed", "run",
               f"DATA={tmp_path / 'data'}", f"PORT={port}", f"TLS_PORT={tls_port}", f"ADMIN_PORT={admin_port}"]
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                env={k: v for k, v in os.environ.items() if k != "SMTPGATE_CONFIG"})
    try:
        wait_for("the admin listener's address in the log",
                 lambda: f"admin listener on http://127.0.0.1:{admin_port}" in log.read_text(), proc, log)
        health = wait_for("/healthz", lambda: httpx.get(f"http://127.0.0.1:{admin_port}/healthz", timeout=2), proc, log)
        assert health.status_code == 200 and health.json()["status"] == "ok"
        banner = wait_for("the submission banner", lambda: _banner(port), proc, log)
        assert banner.startswith(b"220 ")
        context = ssl.create_default_context(cafile=str(tmp_path / "data" / "tls" / "ca.pem"))
        with socket.create_connection(("127.0.0.1", tls_port), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                assert tls.recv(512).startswith(b"220 ")
        # the data dir remembers the ports it was first made with
        assert f'submission = "127.0.0.1:{port}"' in (tmp_path / "data" / "smtpgate.toml").read_text()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(60)


def _banner(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        return s.recv(512)


def test_serve_refuses_a_port_that_is_not_one(tmp_path: Path) -> None:
    Cli(None).ok("init", "--data-dir", str(tmp_path / "d"))
    result = Cli(tmp_path / "d" / "smtpgate.toml")("serve", "--tls-port", "70000")
    assert result.code == 2
    assert "--tls-port 70000 is not a TCP port" in result.stderr
