"""Rotation into the app's secret store: a script sends without pause through three rotations."""

from __future__ import annotations

import smtplib
import threading
import time
from pathlib import Path

import pytest

from tests.cli.conftest import Cli
from tests.smtp.server_harness import RunningServer


@pytest.mark.timeout(400)
def test_a_sender_never_fails_through_three_delivered_rotations(server: RunningServer, tmp_path: Path) -> None:
    login = "rotating@example.com"
    secret = server.account_with_app_password(login)
    envfile = tmp_path / "app.env"
    envfile.write_text(f"SMTP_HOST=127.0.0.1\nSMTP_PASSWORD={secret}\n")
    reloads = tmp_path / "reloads"
    cli = Cli(server.config_path)
    credential_id = next(c["id"] for c in cli.ok("creds", "list", "--account", login, "--json").json()
                         if c["kind"] == "app-password")

    stop = threading.Event()
    sent, failures = [0], []

    def app() -> None:  # reads its secret from its environment file before every message, as a reload would
        while not stop.is_set():
            password = next(line.partition("=")[2] for line in envfile.read_text().splitlines()
                            if line.startswith("SMTP_PASSWORD="))
            try:
                with smtplib.SMTP("127.0.0.1", server.submission_port, timeout=30) as smtp:
                    smtp.starttls(context=server.client_context())
                    smtp.login(login, password)
                    smtp.sendmail(login, ["ops@example.org"], f"From: {login}\r\nSubject: tick\r\n\r\nx\r\n".encode())
                sent[0] += 1
            except (smtplib.SMTPException, OSError) as exc:
                failures.append(repr(exc))

    thread = threading.Thread(target=app, daemon=True)
    thread.start()
    ids = [credential_id]
    try:
        for _ in range(3):
            before = sent[0]
            while sent[0] < before + 2:
                time.sleep(0.05)
            result = cli.ok("creds", "rotate", ids[-1], "--deliver", f"env:{envfile}:SMTP_PASSWORD",
                            "--then", f"sh -c 'echo reload >> {reloads}'", "--json").json()
            assert result["delivered_to"] == f"env:{envfile}:SMTP_PASSWORD" and result["hook"]["exit"] == 0
            assert "secret" not in result  # delivered, never printed
            ids.append(result["credential"]["id"])
        before = sent[0]
        while sent[0] < before + 2:
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(timeout=60)
    assert failures == [], failures
    assert reloads.read_text().count("reload") == 3
    states = {c["id"]: c["state"] for c in cli.ok("creds", "list", "--account", login, "--json").json()}
    assert [states[i] for i in ids[:-1]] == ["expired"] * 3  # each retired at its successor's first use
    assert states[ids[-1]] == "active"
    assert "SMTP_HOST=127.0.0.1" in envfile.read_text()


def test_rotate_due_rotates_only_credentials_with_a_target(server: RunningServer, tmp_path: Path) -> None:
    cli = Cli(server.config_path)
    result = cli("creds", "rotate", "--due", "--json")
    assert result.code == 0, result.stderr
    assert set(result.json()) == {"rotated", "skipped_no_target"}
    refused = cli("creds", "rotate")
    assert refused.code == 2 and "--due" in refused.stderr
