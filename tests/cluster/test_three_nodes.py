"""Three nodes (own process and data dir each) on one PostgreSQL schema and one Redis prefix,
delivering through a smarthost (the local sink, tests/delivery/sink.py).

Revocation everywhere at once:
A credential revoked on node A (through the operations layer with A's config, as
`smtpgate creds revoke` on A does) must be refused by nodes B and C, whose caches hold
it: timed over 50 trials, p50 and p99 printed (docs/cluster.md keeps the figures). Then
node C loses its notification channel only (the database still answers), then the
database as well: the caches fall back to their bounded lifetime, new mail is answered
451 4.3.0, and all comes back with the database. Last, a load run with node B killed
(SIGKILL) half-way: no acknowledged message is lost, every one reaches the sink at least
once, and the duplicates are counted and printed.

Timing: each AUTH runs on a session whose TLS handshake was done beforehand, so an
attempt costs one round trip; the figure of a trial is when the first refused attempt
began, counted from the moment the revocation's commit returned on A (an upper bound:
the change may have arrived before that attempt).
"""

from __future__ import annotations

import asyncio
import base64
import shutil
import smtplib
import socket
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Iterator

import pytest

from smtpgate.config import load_config
from smtpgate.ops import Actor, Operations
from smtpgate.runtime import Runtime
from tests.cli.conftest import Cli
from tests.cluster.haproxy import BALANCER_SOURCE, HAProxy
from tests.cluster.harness import Relay, cluster_schema, node_configs, start_all
from tests.conftest import need
from tests.delivery.harness import make_pki
from tests.delivery.sink import SinkServer
from tests.guard.conftest import delete_prefix, redis_problem, unique_prefix
from tests.smtp.server_harness import RunningServer

LOGIN = "rev@example.com"
TRIALS = 50
PREPARED = 2


class Nodes:
    def __init__(self, servers: list[RunningServer], ops: Operations, relays: dict[str, Relay],
                 sink: SinkServer, balancer: HAProxy) -> None:
        self.a, self.b, self.c = servers
        self.all = servers
        self.ops = ops
        self.relays = relays
        self.sink = sink
        self.balancer = balancer


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nodes]:
    problem = redis_problem()
    need(problem is None, problem or "")
    need(shutil.which("haproxy") is not None, "haproxy is missing (scripts/install-test-clients.sh installs it)")
    prefix = unique_prefix()
    relay_db, relay_listen, relay_redis = Relay(), Relay(), Relay(("127.0.0.1", 6379))
    base = tmp_path_factory.mktemp("cluster")
    pki = make_pki(base / "pki", ["sink.test"])
    sink = SinkServer(tls_context=pki.server_context())
    sink_port = sink.start()
    with cluster_schema() as url:
        configs = node_configs(
            base, ["a", "b", "c"], database_url=url, redis_prefix=prefix, database_urls={"c": relay_db.url(url)},
            redis_urls={"c": f"redis://127.0.0.1:{relay_redis.port}/0"},
            sections={"delivery": {"mode": '"relay"', "poll_interval": '"200ms"', "retry_initial": '"500ms"',
                                   "retry_max": '"1s"'},
                      "delivery.relay": {"host": '"127.0.0.1"', "port": str(sink_port), "ca_file": f'"{pki.ca_file}"'},
                      "deliverability": {"misaligned": '"accept"'},
                      "smtp": {"proxy_protocol_from": f'["{BALANCER_SOURCE}/32"]'}},
        )
        text = configs[2].read_text().replace("[cluster]\n", f'[cluster]\nlisten_url = "{relay_listen.url(url)}"\n', 1)
        configs[2].write_text(text)
        runtime = Runtime(load_config(configs[0]))
        runtime.credentials.create_account(LOGIN, password="tulip-anvil-orbit-quartz-59")
        servers = [RunningServer(c) for c in configs]
        balancer = HAProxy(base)
        try:
            start_all(servers)
            balancer.start(servers)
            balancer.wait_until_all_up(2 * len(servers), timeout=60)
            yield Nodes(servers, Operations(runtime), {"db": relay_db, "listen": relay_listen, "redis": relay_redis},
                        sink, balancer)
        finally:
            balancer.close()
            for server in servers:
                server.close()
            runtime.close()
            relay_db.close()
            relay_listen.close()
            relay_redis.close()
            sink.stop()
            delete_prefix(prefix)


def prepared(node: RunningServer) -> smtplib.SMTP:
    smtp = smtplib.SMTP("127.0.0.1", node.submission_port, local_hostname="client.test", timeout=30)
    smtp.starttls(context=node.client_context())
    smtp.ehlo("client.test")
    return smtp


def try_auth(smtp: smtplib.SMTP, secret: str) -> tuple[int, float]:
    """(reply code, monotonic time the AUTH was sent) on a prepared session."""
    token = base64.b64encode(f"\0{LOGIN}\0{secret}".encode()).decode()
    started = time.monotonic()
    code, _ = smtp.docmd("AUTH", f"PLAIN {token}")
    return code, started


def auth(smtp: smtplib.SMTP, secret: str) -> tuple[int, float]:
    """try_auth(), then the session is closed."""
    result = try_auth(smtp, secret)
    try:
        smtp.quit()
    except smtplib.SMTPException:
        pass
    return result


def new_secret(nodes: Nodes) -> tuple[str, str]:
    created = nodes.ops.app_passwords.create(Actor.local(), LOGIN, f"t{time.monotonic_ns()}")
    return created.credential.id, created.secret


def first_refusal(node: RunningServer, secret: str, since: float, sessions: list[smtplib.SMTP],
                  refused: int = 535, timeout: float = 10.0) -> float:
    """Seconds from `since` to the start of the first AUTH refused with `refused`. Sessions
    come from `sessions` (TLS done); a refused one goes back there, still unauthenticated."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        smtp = sessions.pop(0) if sessions else prepared(node)
        code, started = try_auth(smtp, secret)
        if code == refused:
            sessions.append(smtp)
            return max(0.0, started - since)
        assert code == 235, code
        smtp.close()
    raise AssertionError(f"still accepted {timeout}s after the revocation")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def revocation_trials(nodes: Nodes, targets: list[RunningServer], trials: int) -> list[float]:
    """Per trial: a new credential, cached on every target; revoked; each target polled at once.
    Sessions refused in one trial serve the next (a handshake costs more than the AUTH)."""
    latencies: list[float] = []
    pools: dict[int, list[smtplib.SMTP]] = {id(n): [] for n in targets}
    for _ in range(trials):
        credential_id, secret = new_secret(nodes)
        for node in targets:  # each node's cache holds the credential now
            pool = pools[id(node)]
            smtp = pool.pop() if pool else prepared(node)
            assert try_auth(smtp, secret)[0] == 235
            smtp.close()
            pool.extend(prepared(node) for _ in range(PREPARED - len(pool)))
        nodes.ops.credentials.revoke(Actor.local(), credential_id)
        revoked = time.monotonic()
        with ThreadPoolExecutor(len(targets)) as pool_threads:
            found = [pool_threads.submit(first_refusal, n, secret, revoked, pools[id(n)]) for n in targets]
            latencies += [f.result() for f in found]
    for pool in pools.values():
        for smtp in pool:
            smtp.close()
    return latencies


def report(what: str, latencies: list[float]) -> str:
    line = (f"{what}: n={len(latencies)} p50={statistics.median(latencies) * 1000:.1f} ms "
            f"p99={percentile(latencies, 99) * 1000:.1f} ms max={max(latencies) * 1000:.1f} ms")
    print(line)
    return line


def test_a_revocation_on_a_is_refused_by_b_and_c_within_a_second(nodes: Nodes) -> None:
    latencies = revocation_trials(nodes, [nodes.b, nodes.c], TRIALS)
    report("revocation A -> B, C (NOTIFY)", latencies)
    assert max(latencies) < 1.0
    assert percentile(latencies, 50) < 0.1


def test_with_the_channel_down_the_database_version_still_refuses_at_once(nodes: Nodes) -> None:
    """Node C's LISTEN connection is cut (a pooler, a firewall); its database still answers."""
    relay = nodes.relays["listen"]
    relay.cut()
    try:
        time.sleep(0.3)  # the listener notices at once (its connection is reset)
        latencies = revocation_trials(nodes, [nodes.c], 10)
        report("revocation A -> C, channel down (version row)", latencies)
        assert max(latencies) < 1.0
    finally:
        relay.restore()


def test_with_the_database_down_a_cached_login_lasts_its_bounded_lifetime_and_mail_gets_451(nodes: Nodes) -> None:
    """Node C cut off from PostgreSQL: cached logins only for cache_fallback_ttl (1 s here),
    then 454; mail is never acknowledged (451 4.3.0); all well again once it is back."""
    credential_id, secret = new_secret(nodes)
    time.sleep(0.3)  # the creation's own notification has emptied C's cache of the account
    assert auth(prepared(nodes.c), secret)[0] == 235  # now C caches it
    sessions = [prepared(nodes.c) for _ in range(3)]
    mail = prepared(nodes.c)
    nodes.relays["db"].cut()
    nodes.relays["listen"].cut()
    cut = time.monotonic()
    try:
        assert auth(sessions.pop(0), secret)[0] == 235  # from the cache, within its lifetime
        mail_code = send_one(mail, secret)
        lifetime = first_refusal(nodes.c, secret, cut, sessions, refused=454)
        for smtp in sessions:
            smtp.close()
        report("cached login on C with PostgreSQL down, until refused", [lifetime])
        assert lifetime < 1.0 + 1.0 + 1.5  # the listener's ping, the 1 s lifetime, a loaded machine
        assert mail_code == 451
    finally:
        nodes.relays["db"].restore()
        nodes.relays["listen"].restore()
    deadline = time.monotonic() + 15
    while auth(prepared(nodes.c), secret)[0] != 235:
        assert time.monotonic() < deadline, "node C did not come back with the database"
        time.sleep(0.1)
    del credential_id


def send_one(smtp: smtplib.SMTP, secret: str) -> int:
    """AUTH, MAIL, RCPT, DATA on a prepared session: the code of the end of DATA."""
    token = base64.b64encode(f"\0{LOGIN}\0{secret}".encode()).decode()
    code, _ = smtp.docmd("AUTH", f"PLAIN {token}")
    assert code == 235, code
    assert smtp.mail(LOGIN)[0] == 250
    assert smtp.rcpt("someone@example.org")[0] == 250
    code, _ = smtp.docmd("DATA")
    if code != 354:
        return code
    smtp.send(f"From: {LOGIN}\r\nSubject: x\r\n\r\nbody\r\n.\r\n".encode())
    code, _ = smtp.getreply()
    smtp.close()
    return code


def test_a_ban_made_on_a_refuses_the_source_on_b_and_c(nodes: Nodes) -> None:
    def greetings() -> list[bytes]:
        found = []
        for node in (nodes.b, nodes.c):
            with socket.create_connection(("127.0.0.1", node.submission_port), timeout=30,
                                          source_address=("127.0.0.77", 0)) as raw:
                found.append(raw.makefile("rb").readline())
        return found

    async def ban_then_look() -> list[bytes]:
        await nodes.ops.bans.add(Actor.local(), "127.0.0.77/32", "10m", reason="cluster test")
        try:
            return await asyncio.to_thread(greetings)
        finally:
            await nodes.ops.bans.remove(Actor.local(), "127.0.0.77/32")
            await nodes.ops.runtime.guard.close()  # its Redis client belongs to this loop

    found = asyncio.run(ban_then_look())
    assert all(g.startswith(b"421 4.7.0") for g in found), found
    assert prepared(nodes.b).noop()[0] == 250  # another source still gets in


def test_with_redis_down_a_node_lets_mail_through_and_says_so(nodes: Nodes) -> None:
    """The decision of docs/cluster.md: the balancer takes the node out (/healthz); a node
    reached directly fails open for bans and counting (no quota here) and logs the outage."""
    secret = new_secret(nodes)[1]
    nodes.relays["redis"].cut()
    try:
        assert send_one(prepared(nodes.c), secret) == 250
    finally:
        nodes.relays["redis"].restore()
    assert "guard backend unavailable, letting connections through" in nodes.c.log()


def test_nodes_show_in_cluster_status(nodes: Nodes) -> None:
    """`smtpgate cluster status --json` on node B (the CLI, through ops): every node, up."""
    listed = Cli(nodes.b.config_path).ok("cluster", "status", "--json").json()
    by_name = {n["name"]: n for n in listed}
    assert set(by_name) == {"a", "b", "c"}
    assert all(n["up"] and n["version"] and n["processes"] == 1 for n in by_name.values())
    assert by_name["c"]["address"].startswith("c:")


LOAD = 240
CLIENTS = 6
CLIENT = "127.0.0.9"


def test_a_node_killed_mid_load_loses_no_acknowledged_message(nodes: Nodes) -> None:
    """Clients on persistent sessions through HAProxy (send-proxy-v2, round robin, redispatch),
    from their own address; node B gets SIGKILL when half are acknowledged, and a client whose
    session broke connects again. Every acknowledged message reaches the sink at least once,
    with the client's address in its Received: line; duplicates are counted."""
    secret = new_secret(nodes)[1]
    acknowledged: dict[str, str] = {}   # subject -> queue id
    failures: list[str] = []
    half = threading.Event()
    lock = threading.Lock()

    def client(index: int) -> None:
        """One persistent session at a time; a broken one is dropped and a new one opened."""
        smtp: smtplib.SMTP | None = None
        for number in range(index, LOAD, CLIENTS):
            subject = f"load-{number}"
            body = f"From: {LOGIN}\r\nTo: <sink@example.org>\r\nSubject: {subject}\r\n\r\nbody\r\n".encode()
            for _ in range(6):  # a broken session: connect again (HAProxy picks a live node)
                try:
                    if smtp is None:
                        smtp = smtplib.SMTP("127.0.0.1", nodes.balancer.submission_port, timeout=30,
                                            source_address=(CLIENT, 0))
                        smtp.starttls(context=nodes.a.client_context())
                        smtp.login(LOGIN, secret)
                    smtp.mail(LOGIN)
                    smtp.rcpt("sink@example.org")
                    code, reply = smtp.data(body)
                    if code == 250:
                        with lock:
                            acknowledged[subject] = reply.decode().rsplit(" ", 1)[-1]
                            if len(acknowledged) >= LOAD // 2:
                                half.set()
                        break
                    smtp.rset()
                except (OSError, smtplib.SMTPException):
                    if smtp is not None:
                        smtp.close()
                    smtp = None
            else:
                failures.append(subject)
        if smtp is not None:
            smtp.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    started = time.monotonic()
    for t in threads:
        t.start()
    assert half.wait(120)
    assert nodes.b.proc is not None
    nodes.b.proc.kill()  # SIGKILL: no drain, its claims lapse after the 3 s lease
    killed_at = time.monotonic()
    for t in threads:
        t.join()
    submitted = time.monotonic() - started

    def delivered() -> dict[str, int]:
        counts: dict[str, int] = {}
        for received in list(nodes.sink.messages):
            for line in received.data.split(b"\r\n"):
                if line.startswith(b"Subject: load-"):
                    name = line[len(b"Subject: "):].decode()
                    counts[name] = counts.get(name, 0) + 1
                    addresses.add(received.data.split(b"([", 1)[1].split(b"])", 1)[0].decode())
        return counts

    addresses: set[str] = set()

    deadline = time.monotonic() + 60
    while not set(acknowledged) <= set(delivered()) and time.monotonic() < deadline:
        time.sleep(0.2)
    counts = delivered()
    lost = sorted(set(acknowledged) - set(counts))
    duplicates = sum(n - 1 for n in counts.values() if n > 1)
    print(f"load: {len(acknowledged)} acknowledged of {LOAD} in {submitted:.1f}s, node b killed after "
          f"{killed_at - started:.1f}s; delivered {len(counts)} distinct, lost {len(lost)}, "
          f"duplicates {duplicates}, all delivered {time.monotonic() - killed_at:.1f}s after the kill")
    assert failures == []
    assert lost == []
    assert len(acknowledged) == LOAD
    assert addresses == {CLIENT}  # the client's, from the PROXY header, never the balancer's
    statuses = {s.name: s for s in nodes.ops.cluster.status(Actor.local())}
    deadline = time.monotonic() + 10
    while statuses["b"].up and time.monotonic() < deadline:  # three missed heartbeats
        time.sleep(0.3)
        statuses = {s.name: s for s in nodes.ops.cluster.status(Actor.local())}
    assert not statuses["b"].up and statuses["a"].up and statuses["c"].up
