"""`/metrics` on the admin listener of a server with two workers: the totals of both, exact."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.guard.servers import client, eventually, guarded_config, message
from tests.smtp.server_harness import RunningServer

LOGIN = "metrics@example.com"


@pytest.fixture
def two_workers(tmp_path: Path, redis_prefix: str) -> Iterator[RunningServer]:
    """Two workers share quotas and bans through Redis (the in-memory backend is per process)."""
    config = guarded_config(tmp_path / "data", backend="redis", redis_prefix=redis_prefix, guard={"ip_failures": "3"})
    server = RunningServer(config)
    server.start("--workers", "2")
    yield server
    server.close()


def scrape(server: RunningServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    host, _, port = server.config.admin.listen.rpartition(":")
    response = httpx.get(f"http://{host}:{port}/metrics", timeout=10)
    assert response.status_code == 200
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "pid"))
            samples[(sample.name, labels)] = samples.get((sample.name, labels), 0.0) + sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    """The sum over every series of `name` whose labels include `labels`."""
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls))


def test_metrics_add_up_across_workers(two_workers: RunningServer) -> None:
    server = two_workers
    secret = server.account_with_app_password(LOGIN, max_per_hour=4)
    # the harness's port probe reaches a worker in its own time: wait until it is counted
    before = eventually(lambda: scrape(server), lambda s: value(s, "smtpgate_connections_total") >= 1)
    assert value(before, "smtpgate_messages_total") == 0
    for n in range(4):
        with client(server) as smtp:
            smtp.login(LOGIN, secret)
            smtp.sendmail(LOGIN, ["a@example.org", "b@example.org"], message(LOGIN, f"m{n}"))
    with client(server) as smtp:
        smtp.login(LOGIN, secret)
        assert smtp.mail(LOGIN)[0] == 451  # the quota
    for _ in range(3):  # three failures from 127.0.0.40: banned
        smtp = client(server, "127.0.0.40")
        smtp.ehlo("x.test")
        smtp.user, smtp.password = LOGIN, "not-the-secret"
        with pytest.raises(smtplib.SMTPAuthenticationError):
            smtp.auth("PLAIN", smtp.auth_plain)
        smtp.close()
    with pytest.raises(smtplib.SMTPConnectError):
        client(server, "127.0.0.40")
    after = scrape(server)

    def delta(name: str, **labels: str) -> float:  # the harness's own probes came before
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("smtpgate_messages_total", result="accepted") == 4
    assert delta("smtpgate_recipients_total") == 8
    assert delta("smtpgate_quota_hits_total", kind="messages", scope="credential", period="hour") == 1
    assert delta("smtpgate_messages_total", result="rejected", reason="quota") == 1
    assert delta("smtpgate_auth_attempts_total", mechanism="PLAIN", result="ok") == 5
    assert delta("smtpgate_auth_attempts_total", mechanism="PLAIN", result="fail", reason="bad-secret") == 3
    assert delta("smtpgate_bans_total", scope="address") == 1
    assert delta("smtpgate_connections_total", result="accepted") == 8
    assert delta("smtpgate_connections_total", result="banned") == 1
    assert delta("smtpgate_tls_handshakes_total", listener="submission", result="ok", version="TLSv1.3") == 8
    assert delta("smtpgate_auth_seconds_count", result="ok") == 5
    assert delta("smtpgate_message_commit_seconds_count") == 4
    open_now = eventually(lambda: value(scrape(server), "smtpgate_connections_open"), lambda v: v == 0)
    assert open_now == 0


def test_open_connections_is_a_live_sum(two_workers: RunningServer) -> None:
    server = two_workers
    held = [smtplib.SMTP("127.0.0.1", server.submission_port, timeout=10) for _ in range(5)]
    try:
        assert eventually(lambda: value(scrape(server), "smtpgate_connections_open"), lambda v: v == 5) == 5
    finally:
        for smtp in held:
            smtp.quit()
    assert eventually(lambda: value(scrape(server), "smtpgate_connections_open"), lambda v: v == 0) == 0


def test_the_metrics_directory_is_fresh_at_every_start(tmp_path: Path) -> None:
    config = guarded_config(tmp_path / "data", backend="memory")
    server = RunningServer(config)
    server.start()
    try:
        secret = server.account_with_app_password(LOGIN)
        with client(server) as smtp:
            smtp.login(LOGIN, secret)
            smtp.sendmail(LOGIN, ["a@example.org"], message(LOGIN))
        assert value(scrape(server), "smtpgate_messages_total", result="accepted") == 1
        server.stop()
        (config.parent / "metrics" / "counter_12345.db").write_bytes(b"not a metrics file")
        server.start()
        assert not (config.parent / "metrics" / "counter_12345.db").exists()
        assert value(scrape(server), "smtpgate_messages_total", result="accepted") == 0
    finally:
        server.close()
