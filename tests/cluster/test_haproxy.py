"""Three smtpgate nodes behind a real HAProxy (`send-proxy-v2`, health checks on /healthz),
one PostgreSQL schema and one Redis prefix: the nodes see the clients, not the balancer.

Clients connect to HAProxy from their own loopback addresses (127.0.0.5, ...); HAProxy
connects to the nodes from 127.0.0.2, the one address in their `proxy_protocol_from`.
Round robin sends consecutive connections to the nodes in turn, so three connections in a
row meet all three nodes.
"""

from __future__ import annotations

import re
import secrets
import shutil
import signal
import smtplib
import socket
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from smtpgate.audit import events as ev
from tests.cluster.haproxy import BALANCER_SOURCE, HAProxy
from tests.conftest import PG_URL, _postgres_available, need
from tests.guard.conftest import delete_prefix, redis_problem, unique_prefix
from tests.guard.servers import eventually, guarded_config, message, one_auth_try, set_section
from tests.smtp.proxy_clients import closed_unserved, header
from tests.smtp.server_harness import RunningServer, free_port

NODES = 3


@dataclass
class Cluster:
    nodes: list[RunningServer]
    balancer: HAProxy

    def via_starttls(self, source: str) -> smtplib.SMTP:
        smtp = smtplib.SMTP("127.0.0.1", self.balancer.submission_port, local_hostname="client.test",
                            timeout=15, source_address=(source, 0))
        smtp.starttls(context=self.nodes[0].client_context())
        return smtp

    def via_implicit_tls(self, source: str) -> smtplib.SMTP_SSL:
        return smtplib.SMTP_SSL("127.0.0.1", self.balancer.submissions_port, local_hostname="client.test",
                                timeout=15, source_address=(source, 0), context=self.nodes[0].client_context())

    def audit(self, kind: str) -> list[ev.AuditEvent]:
        """The one audit trail every node writes to (the shared database)."""
        return [e.event for e in self.nodes[0].runtime.audit_store.query(kind=kind)]


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    problem = _postgres_available()
    need(problem is None, problem or "")
    import psycopg

    schema = f"sgtest_{secrets.token_hex(4)}"
    plain = PG_URL.replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, pg_url: str) -> Iterator[Cluster]:
    need(shutil.which("haproxy") is not None, "haproxy is missing (scripts/install-test-clients.sh installs it)")
    problem = redis_problem()
    need(problem is None, problem or "")
    prefix = unique_prefix()
    base = tmp_path_factory.mktemp("cluster")
    first = guarded_config(base / "n1", backend="redis", redis_prefix=prefix, database_url=pg_url,
                           guard={"ip_failures": "3"},
                           smtp={"proxy_protocol_from": f'["{BALANCER_SOURCE}/32"]'})
    configs = [first]
    for n in range(2, NODES + 1):  # the same keys, database and Redis; ports and data dir of its own
        shutil.copytree(base / "n1", base / f"n{n}")
        config = base / f"n{n}" / "smtpgate.toml"
        set_section(config, "smtp", {"submission": f'"127.0.0.1:{free_port()}"',
                                     "submissions": f'"127.0.0.1:{free_port()}"'})
        set_section(config, "admin", {"listen": f'"127.0.0.1:{free_port()}"'})
        configs.append(config)
    nodes = [RunningServer(config) for config in configs]
    balancer = HAProxy(base)
    try:
        with ThreadPoolExecutor(NODES) as pool:
            list(pool.map(lambda node: node.start(), nodes))
        balancer.start(nodes)
        balancer.wait_until_all_up(2 * NODES)
        yield Cluster(nodes, balancer)
    finally:
        balancer.close()
        for node in nodes:  # all at once: each drains on its own
            if node.proc is not None and node.proc.poll() is None:
                node.proc.send_signal(signal.SIGTERM)
        for node in nodes:
            node.close()
        delete_prefix(prefix)


def captured(cluster: Cluster, subject_prefix: str) -> dict[int, list[bytes]]:
    """Each node's captured messages (its own data dir) whose subject starts so: node -> raw messages."""
    found: dict[int, list[bytes]] = {}
    for n, node in enumerate(cluster.nodes):
        for m in node.runtime.capture.list():
            if m.subject.startswith(subject_prefix):
                found.setdefault(n, []).append(node.runtime.capture.open_raw(m.id).read())
    return found


def test_clients_through_the_balancer_are_seen_by_their_own_address_on_both_ports(cluster: Cluster) -> None:
    login = "lb@example.com"
    secret = cluster.nodes[0].account_with_app_password(login)
    for n in range(NODES):
        with cluster.via_starttls("127.0.0.5") as smtp:
            smtp.login(login, secret)
            assert smtp.sendmail(login, ["bob@example.org"], message(login, f"lb 587 {n}")) == {}
        with cluster.via_implicit_tls("127.0.0.6") as smtp:
            smtp.login(login, secret)
            assert smtp.sendmail(login, ["bob@example.org"], message(login, f"lb 465 {n}")) == {}
    for port, client in (("587", "127.0.0.5"), ("465", "127.0.0.6")):
        per_node = captured(cluster, f"lb {port}")
        assert sorted(per_node) == list(range(NODES))  # one on each node: round robin reached them all
        for raws in per_node.values():
            assert all(raw.startswith(f"Received: from client.test ([{client}])".encode()) for raw in raws)
    accepted = eventually(lambda: [e for e in cluster.audit(ev.MESSAGE) if e.login == login],
                          lambda found: len(found) == 2 * NODES)
    assert sorted(e.remote_ip for e in accepted) == ["127.0.0.5"] * NODES + ["127.0.0.6"] * NODES
    logins = [e for e in cluster.audit(ev.AUTH) if e.login == login]
    assert {(e.listener, e.remote_ip) for e in logins} == {("submission", "127.0.0.5"), ("submissions", "127.0.0.6")}
    assert all(e.remote_ip != BALANCER_SOURCE for e in cluster.audit(ev.AUTH) + cluster.audit(ev.MESSAGE))


def fail_login(cluster: Cluster, source: str) -> str:
    return one_auth_try(lambda: cluster.via_starttls(source), "nobody@example.com", "not-the-password-at-all")


def greeting_via(cluster: Cluster, source: str, implicit: bool) -> str:
    try:
        smtp = cluster.via_implicit_tls(source) if implicit else cluster.via_starttls(source)
    except smtplib.SMTPConnectError as exc:
        return f"{exc.smtp_code}"
    smtp.close()
    return "220"


def test_a_ban_made_on_one_node_refuses_the_source_on_every_node(cluster: Cluster) -> None:
    answers = [fail_login(cluster, "127.0.0.7") for _ in range(NODES)]  # one failure on each node
    assert answers == ["535"] * NODES  # three together: [guard] ip_failures, the ban
    for implicit in (False, True):
        assert [greeting_via(cluster, "127.0.0.7", implicit) for _ in range(NODES)] == ["421"] * NODES
        assert greeting_via(cluster, "127.0.0.8", implicit) == "220"  # its neighbour is not affected


def test_a_quota_is_exact_across_the_nodes(cluster: Cluster) -> None:
    login = "quota@example.com"
    secret = cluster.nodes[0].account_with_app_password(login, max_per_hour=4)
    answers = []
    for n in range(2 * NODES):
        via = cluster.via_implicit_tls if n % 2 else cluster.via_starttls
        with via("127.0.0.10") as smtp:
            smtp.login(login, secret)
            code = smtp.mail(login)[0]
            if code == 250:
                smtp.rcpt("bob@example.org")
                code = smtp.data(message(login, f"quota {n}"))[0]
            answers.append(code)
    assert answers == [250] * 4 + [451] * 2
    per_node = captured(cluster, "quota")
    assert sum(len(raws) for raws in per_node.values()) == 4 and len(per_node) >= 2


def proxy_refusals(cluster: Cluster, peer: str) -> list[ev.AuditEvent]:
    return eventually(lambda: [e for e in cluster.audit(ev.CONNECT)
                               if e.reason == ev.PROXY_PROTOCOL and e.remote_ip == peer],
                      lambda found: bool(found), timeout=5)


def test_a_header_sent_straight_to_a_node_by_anyone_else_is_refused(cluster: Cluster) -> None:
    node = cluster.nodes[1]
    with socket.create_connection(("127.0.0.1", node.submission_port), timeout=5,
                                  source_address=("127.0.0.9", 0)) as sock:
        sock.sendall(header(2, "203.0.113.1"))
        received = closed_unserved(sock)  # at most the greeting a direct client gets before it speaks
        assert received == b"" or (received.startswith(b"220 ") and received.count(b"\r\n") == 1), received
    with socket.create_connection(("127.0.0.1", cluster.nodes[2].submissions_port), timeout=5,
                                  source_address=("127.0.0.9", 0)) as sock:
        sock.sendall(header(1, "203.0.113.1", 465))
        assert closed_unserved(sock) == b""
    refusals = eventually(lambda: proxy_refusals(cluster, "127.0.0.9"), lambda found: len(found) >= 2, timeout=5)
    assert {e.listener for e in refusals} == {"submission", "submissions"}
    assert all(e.details["balancer"] is False for e in refusals)


def test_a_balancer_connection_without_a_header_is_refused(cluster: Cluster) -> None:
    with socket.create_connection(("127.0.0.1", cluster.nodes[0].submission_port), timeout=5,
                                  source_address=(BALANCER_SOURCE, 0)) as sock:
        sock.sendall(b"EHLO client.test\r\n")
        assert closed_unserved(sock) == b""  # not even a greeting
    refusal = proxy_refusals(cluster, BALANCER_SOURCE)[0]
    assert refusal.details["balancer"] is True and refusal.listener == "submission"


def test_a_draining_node_is_passed_over_without_a_client_noticing(cluster: Cluster) -> None:
    """Last in the module: it stops a node. Its ports close at once, HAProxy's connection is
    refused and redispatched to another node, and its health check takes it out."""
    login = "drain@example.com"
    secret = cluster.nodes[0].account_with_app_password(login)
    leaving = cluster.nodes[2]
    assert leaving.proc is not None
    leaving.proc.send_signal(signal.SIGTERM)
    assert leaving.proc.wait(20) == 0
    for n in range(NODES):
        for via in (cluster.via_starttls, cluster.via_implicit_tls):
            with via("127.0.0.11") as smtp:
                smtp.login(login, secret)
                assert smtp.sendmail(login, ["bob@example.org"], message(login, f"after drain {n}")) == {}
    rows = eventually(cluster.balancer.servers, lambda rows: all(
        row["status"] == "DOWN" for (_, server), row in rows.items() if server == "n3"), timeout=10)
    assert {key: row["status"] for key, row in rows.items() if key[1] == "n3"} == {
        ("smtpgate_submission", "n3"): "DOWN", ("smtpgate_submissions", "n3"): "DOWN"}
    assert sum(len(raws) for raws in captured(cluster, "after drain").values()) == 2 * NODES


def test_the_documented_haproxy_configuration_is_valid(tmp_path_factory: pytest.TempPathFactory) -> None:
    need(shutil.which("haproxy") is not None, "haproxy is missing (scripts/install-test-clients.sh installs it)")
    doc = (Path(__file__).parents[2] / "docs" / "proxy-protocol.md").read_text()
    (block,) = re.findall(r"```haproxy\n(.*?)```", doc, re.S)
    assert "send-proxy-v2" in block and "uri /healthz" in block
    config = tmp_path_factory.mktemp("doc") / "haproxy.cfg"
    config.write_text(block)
    check = subprocess.run(["haproxy", "-c", "-f", str(config)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
