"""scripts/peers/postfix-dovecot.sh, the Postfix + Dovecot peer other tests rely on: its commands do what they say."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from tests.peer import SCRIPT, peer_env, postfix_peer, run_script

USER, PASSWORD = "peer-check@example.test", "peer-script-Vb4!passphrase"


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_start_status_check_stop(tmp_path: Path) -> None:
    output = tmp_path / "script.log"
    with postfix_peer(USER, PASSWORD) as peer:
        env = peer_env(peer.base, peer.port, USER, PASSWORD)
        assert run_script("status", env, output) == 0, output.read_text()
        assert run_script("check", env, output) == 0, output.read_text()
        assert "check: accepted (250)" in output.read_text()
        assert run_script("check", {**env, "SMTP_PASS": "not-the-password"}, output) == 1
        listeners = subprocess.run(["ss", "-Hltn", f"sport = :{peer.port}"], capture_output=True, text=True).stdout
        assert {line.split()[3] for line in listeners.splitlines()} == {f"127.0.0.1:{peer.port}"}  # loopback only
        assert run_script("stop", env, output) == 0
        assert not listening(peer.port)
        assert run_script("status", env, output) == 3
        assert "not listening" in output.read_text()


def test_unknown_command_is_a_usage_error() -> None:
    done = subprocess.run(["bash", str(SCRIPT), "bogus"], capture_output=True, text=True)
    assert done.returncode == 2 and "usage:" in done.stderr
