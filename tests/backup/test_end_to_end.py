"""Back up a running server (accounts, app passwords, queued and captured mail), restore into a new data dir, serve it."""

from __future__ import annotations

import json
import smtplib
import threading
from pathlib import Path

from smtpgate.delivery.capture import CaptureStore
from smtpgate.delivery.queue import QueueStore
from tests.cli.conftest import Cli
from tests.delivery.harness import message, set_delivery, submit
from tests.smtp.server_harness import PASSWORD, RunningServer, free_port, init_data_dir

# Mail from example.com goes to a smarthost that is never there, so it stays queued;
# mail from example.net is captured.
DELIVERY = """
[delivery]
mode = "relay"
retry_initial = "1h"
retry_max = "2h"

[delivery.routes]
"example.net" = "capture"

[delivery.relay]
host = "127.0.0.1"
port = {port}
tls = "starttls"
"""


def test_backup_while_serving_then_restore_and_serve(tmp_path: Path) -> None:
    config = init_data_dir(tmp_path / "live")
    set_delivery(config, DELIVERY.format(port=free_port()))
    live = RunningServer(config)
    live.start()
    try:
        secret = live.account_with_app_password("alice@example.com")
        carol = live.account_with_app_password("carol@example.net")
        context = live.client_context()
        queued = [submit(live.submission_port, context, "alice@example.com", secret, "alice@example.com",
                         ["bob@example.org"], message(f"queued {i}")) for i in range(3)]
        submit(live.submission_port, context, "carol@example.net", carol, "carol@example.net", ["dan@example.org"],
               message("captured", sender="carol@example.net"))

        # Mail keeps arriving while the backup is taken.
        stop = threading.Event()
        sent: list[str] = []
        errors: list[BaseException] = []
        body = "\r\n".join(["x" * 76] * 700)  # 54 KB: each copy takes a while

        def keep_sending() -> None:
            try:
                while not stop.is_set():
                    sent.append(submit(live.submission_port, context, "alice@example.com", secret, "alice@example.com",
                                       ["bob@example.org"], message("during the backup", body=body)))
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        sender = threading.Thread(target=keep_sending)
        sender.start()
        try:
            result = Cli(config)("backup", str(tmp_path / "backup"), "--json")
        finally:
            stop.set()
            sender.join(60)
        assert result.code == 0, result.stderr
        assert not errors and sent, errors
        summary = result.json()
        assert summary["database"] == "sqlite" and summary["messages"]["capture"] == 1
        assert summary["messages"]["queue"] >= 3
    finally:
        live.close()

    restored_dir = tmp_path / "restored"
    restored = Cli(None)("restore", str(tmp_path / "backup"), "--data-dir", str(restored_dir))
    assert restored.code == 0, restored.stderr
    restored_config = restored_dir / "smtpgate.toml"

    # Every message in the restored queue is whole: its metadata, its data of the size it records.
    queue = QueueStore(restored_dir / "queue")
    ids = queue.ids()
    assert set(queued) <= set(ids) and len(ids) == summary["messages"]["queue"]
    for entry in queue.entries():
        assert len(queue.read_raw(entry.message.id)) == entry.message.size
    assert [m.subject for m in CaptureStore(restored_dir / "capture").list()] == ["captured"]
    manifest = json.loads((tmp_path / "backup" / "manifest.json").read_text())
    assert not [name for name in manifest["files"] if "/tmp/" in name or name.endswith((".db-wal", ".db-shm"))]

    server = RunningServer(restored_config)
    server.start()
    try:
        with smtplib.SMTP("127.0.0.1", server.submission_port, timeout=30) as client:
            client.starttls(context=server.client_context())
            assert client.login("alice@example.com", secret)[0] == 235  # the same app password
            client.sendmail("alice@example.com", ["bob@example.org"], message("after the restore"))
        with smtplib.SMTP_SSL("127.0.0.1", server.submissions_port, timeout=30, context=server.client_context()) as client:
            assert client.login("carol@example.net", PASSWORD)[0] == 235  # the account password
        listed = Cli(restored_config).ok("queue", "list", "--json").json()
        assert set(ids) < {m["id"] for m in listed}
    finally:
        server.close()
