#!/usr/bin/env python3
"""Benchmark orchestrator: smtpgate against Postfix + Dovecot and Haraka, same generator.

For every scenario (a, b, c -- see bench/loadgen.py) and every server, this
starts a *fresh* server in its own temporary directory on free loopback
ports, runs a short unmeasured warm-up (a and b), runs bench/loadgen.py with
identical settings, waits until the server has finished the work it queued
(its CPU goes quiet), then stops it.  At the end it prints one table per
scenario with the ratios smtpgate/Postfix and smtpgate/Haraka, and writes the raw JSON to
bench/out/.  Everything it started is stopped at the end, also on error or
Ctrl-C.  Every run is bounded in time and in messages; nothing leaves
127.0.0.1.

    .venv/bin/python bench/run.py                 # everything (about 6-8 minutes)
    .venv/bin/python bench/run.py --only postfix --scenarios ab --duration 5
    .venv/bin/python bench/run.py --peers postfix,haraka --scenarios ab --repeat 2

Haraka is installed from npm (the version pinned in bench/peers/haraka/package.json)
the first time it is measured, by scripts/peers/haraka.sh; --help needs none of it.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LOADGEN = HERE / "loadgen.py"
sys.path.insert(0, str(HERE))
from loadgen import (  # same /proc accounting as the generator
    cpu_of,
    machine_busy,
    process_tree,
)

PEER_SCRIPT = ROOT / "scripts" / "peers" / "postfix-dovecot.sh"
HARAKA_SCRIPT = ROOT / "scripts" / "peers" / "haraka.sh"
PEERS = ("postfix", "haraka")
TITLES = {"postfix": "Postfix", "haraka": "Haraka"}
SCENARIO_TITLES = {
    "a": "one connection per message (connect, EHLO, STARTTLS, EHLO, AUTH PLAIN, "
         "MAIL, RCPT, DATA, QUIT)",
    "b": "persistent authenticated connections, MAIL/RCPT/DATA repeated",
    "c": "idle authenticated TLS connections held open: server memory",
}


def say(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float, alive=lambda: True) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not alive():
            raise RuntimeError("server process exited during start-up")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.2)
    raise RuntimeError(f"port 127.0.0.1:{port} did not open within {timeout:.0f}s")


def wait_quiet(roots: list[int], limit: float = 60.0, idle_share: float = 0.03) -> float:
    """Wait until the server tree uses < idle_share of a core over 1 s; returns seconds."""
    t0 = time.monotonic()
    prev = cpu_of(roots)
    while time.monotonic() - t0 < limit:
        time.sleep(1.0)
        cur = cpu_of(roots)
        if cur - prev < idle_share:
            break
        prev = cur
    return round(time.monotonic() - t0, 1)


def wait_machine_quiet(limit: float, max_cores: float = 0.2) -> tuple[float, float]:
    """Wait (at most limit s) until the whole machine is nearly idle over 2 s.

    Other people's jobs on this machine (test suites, fuzzers) would steal CPU
    from whichever server is being measured.  Returns (waited s, load seen)."""
    t0 = time.monotonic()
    load = 0.0
    while True:
        b0 = machine_busy()
        time.sleep(2.0)
        load = (machine_busy() - b0) / 2.0
        if load <= max_cores or time.monotonic() - t0 >= limit:
            return round(time.monotonic() - t0, 1), round(load, 2)


def apply_nice(pids: list[int], nice: int) -> None:
    """Set the niceness of processes and of their scheduler autogroups.

    With kernel.sched_autogroup_enabled=1 (the default), CPU is first shared
    between autogroups (one per session), so a process's own niceness only
    counts inside its group; daemons that call setsid() get a group of their
    own.  Both are set, so that the priority really applies."""
    for pid in pids:
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, pid, nice)
        with contextlib.suppress(OSError), open(f"/proc/{pid}/autogroup", "w") as f:
            f.write(str(nice))


def run_cmd(cmd: list[str], env: dict | None = None, timeout: float = 120) -> str:
    # Output goes to a file, not a pipe: daemons started by the command inherit its
    # stdout/stderr, and a pipe would then never reach EOF.
    with tempfile.TemporaryFile() as f:
        r = subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT,
                           stdin=subprocess.DEVNULL, timeout=timeout, check=False)
        f.seek(0)
        text = f.read().decode(errors="replace")
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed ({r.returncode}):\n{text[-3000:]}")
    return text


def last_json(text: str) -> dict:
    """The first JSON object in a command's output (a CLI may print notes around it)."""
    start = text.find("{")
    if start < 0:
        raise ValueError(f"no JSON in: {text[:300]!r}")
    obj, _ = json.JSONDecoder().raw_decode(text[start:])
    return obj


# --------------------------------------------------------------------------- servers


class ScriptPeer:
    """A peer run by its script in scripts/peers: a fresh base directory, a free port, one
    SASL user with a random password, all handed to the script in its environment."""

    name = ""

    def __init__(self, opts: argparse.Namespace, keytype: str, **knobs: str):
        self.opts = opts
        self.keytype = keytype
        self.base = Path(tempfile.mkdtemp(prefix=f"bench-{self.name}-"))
        self.port = free_port()
        self.user = "bench@example.test"
        self.password = secrets.token_urlsafe(18)
        self.env = dict(os.environ, PEER_BASE=str(self.base), PORT=str(self.port),
                        SMTP_USER=self.user, SMTP_PASS=self.password, KEYTYPE=keytype, **knobs)


class LoggedProcess:
    """A server the benchmark runs as its own child, its output in `log`."""

    name = ""
    log: Path
    proc: subprocess.Popen | None = None

    def log_tail(self, n: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-n:]
        return ""

    def pids(self) -> list[int]:
        return [self.proc.pid] if self.proc and self.proc.poll() is None else []

    def end_process(self, *, whole_group: bool) -> None:
        """SIGTERM (to its process group, or to it alone when it forwards the signal itself),
        then after 20 s SIGKILL to the group."""
        p = self.proc
        if p and p.poll() is None:
            if whole_group:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGTERM)
            else:
                p.send_signal(signal.SIGTERM)
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                say(f"{self.name} did not stop within 20 s of SIGTERM: killing its process group")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)


class Postfix(ScriptPeer):
    name = "postfix"

    def __init__(self, opts: argparse.Namespace, keytype: str):
        super().__init__(opts, keytype, SCHEME="SHA512-CRYPT", IN_FLOW_DELAY="0",
                         PROCESS_LIMIT=str(opts.postfix_process_limit or 100))
        self.cafile = str(self.base / "tls" / "cert.pem")
        self.started = False

    def start(self) -> None:
        self.started = True
        run_cmd(["bash", str(self.opts.postfix_script), "start"], env=self.env, timeout=120)
        wait_port(self.port, 30)

    def pids(self) -> list[int]:
        out = []
        for f in (self.base / "queue/pid/master.pid", self.base / "dovecot/run/master.pid"):
            with contextlib.suppress(OSError, ValueError):
                out.append(int(f.read_text().strip()))
        return out

    def describe(self) -> dict:
        return {"scheme": "SHA512-CRYPT", "in_flow_delay": "0", "keytype": self.keytype,
                "process_limit": self.opts.postfix_process_limit or 100}

    def stop(self) -> None:
        if self.started:
            with contextlib.suppress(Exception):
                run_cmd(["bash", str(self.opts.postfix_script), "stop"], env=self.env, timeout=60)
        if not self.opts.keep:
            shutil.rmtree(self.base, ignore_errors=True)


class Haraka(ScriptPeer, LoggedProcess):
    """Haraka from npm (scripts/peers/haraka.sh): STARTTLS, AUTH PLAIN against a flat
    file, every message accepted after auth and discarded from memory (no disk write)."""

    name = "haraka"

    def __init__(self, opts: argparse.Namespace, keytype: str):
        super().__init__(opts, keytype, NODES=str(opts.workers), LOG_LEVEL="notice")
        self.cafile = str(self.base / "config" / "tls_cert.pem")
        self.log = self.base / "haraka.log"
        self.proc = None

    def start(self) -> None:
        run_cmd(["bash", str(self.opts.haraka_script), "config"], env=self.env, timeout=300)
        with open(self.log, "wb") as logf:
            # `run` execs node: the child is Haraka's master, its workers are its children
            self.proc = subprocess.Popen(
                ["bash", str(self.opts.haraka_script), "run"], env=self.env, stdout=logf,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            wait_port(self.port, 60, alive=lambda: self.proc.poll() is None)
        except RuntimeError as e:
            raise RuntimeError(f"{e}\n--- {self.log} ---\n{self.log_tail()}") from None
        self._wait_workers(30)

    def _wait_workers(self, timeout: float) -> None:
        """The port opens with the first cluster worker; wait for all of them."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.log_tail(200_000).count("listening on 127.0.0.1") >= self.opts.workers:
                return
            time.sleep(0.2)
        say(f"haraka: not all {self.opts.workers} workers said they listen; measuring anyway")

    def describe(self) -> dict:
        version = ""
        with contextlib.suppress(OSError, ValueError):
            pkg = HERE / "peers" / "haraka" / "node_modules" / "Haraka" / "package.json"
            version = json.loads(pkg.read_text()).get("version", "")
        return {"version": version, "nodes": self.opts.workers, "keytype": self.keytype,
                "queue": "discard (in memory, no fsync)", "auth": "auth/flat_file (plain text)"}

    def stop(self) -> None:
        self.end_process(whole_group=True)
        if not self.opts.keep:
            shutil.rmtree(self.base, ignore_errors=True)


class Smtpgate(LoggedProcess):
    name = "smtpgate"

    def __init__(self, opts: argparse.Namespace):
        self.opts = opts
        self.exe = str(opts.smtpgate)
        self.dir = Path(tempfile.mkdtemp(prefix="bench-smtpgate-"))
        self.port = free_port()
        self.port_tls = free_port()
        self.port_admin = free_port()
        self.user = opts.smtpgate_user
        self.password = ""
        self.config = self.dir / "smtpgate.toml"
        self.env = dict(os.environ, SMTPGATE_CONFIG=str(self.config))
        self.cafile = str(self.dir / "tls" / "ca.pem")
        self.proc = None
        self.log = self.dir / "serve.log"

    def start(self) -> None:
        self.source, self.head = source_fingerprint(), git_head()
        run_cmd([self.exe, "init", "--data-dir", str(self.dir), "--hostname", "localhost",
                 "--submission-port", str(self.port), "--submissions-port", str(self.port_tls),
                 "--admin-port", str(self.port_admin)], env=self.env)
        run_cmd([self.exe, "account", "add", self.user, "--generate", "--json"], env=self.env)
        pw = last_json(run_cmd([self.exe, "app-password", "create", self.user,
                                "--name", "bench", "--json"], env=self.env))
        self.password = pw["secret"]
        with open(self.log, "wb") as logf:
            self.proc = subprocess.Popen(
                [self.exe, "serve", "--workers", str(self.opts.workers)], env=self.env,
                stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        try:
            wait_port(self.port, 60, alive=lambda: self.proc.poll() is None)
        except RuntimeError as e:
            raise RuntimeError(f"{e}\n--- {self.log} ---\n{self.log_tail()}") from None

    def describe(self) -> dict:
        return {"workers": self.opts.workers, "source": self.source, "git_head": self.head}

    def stop(self) -> None:
        self.end_process(whole_group=False)
        p = self.proc
        if p and p.returncode not in (0, -signal.SIGTERM, None):
            say(f"smtpgate serve exited with {p.returncode}; log tail:\n{self.log_tail(1500)}")
        if not self.opts.keep:
            shutil.rmtree(self.dir, ignore_errors=True)


def source_fingerprint() -> str:
    """Short hash of smtpgate's Python sources: shows whether the code under test
    changed between runs (it is started afresh for every run)."""
    import hashlib

    h = hashlib.sha256()
    src = ROOT / "src" / "smtpgate"
    for f in sorted(src.rglob("*.py")):
        with contextlib.suppress(OSError):
            h.update(str(f.relative_to(src)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def git_head() -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        r = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                           capture_output=True, text=True, timeout=10, check=False)
        return r.stdout.strip()
    return ""


def smtpgate_ready(exe: Path) -> tuple[bool, str]:
    if not exe.exists():
        return False, f"{exe} does not exist"
    try:
        r = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60,
                           check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, str(e)
    text = r.stdout + r.stderr
    missing = [c for c in ("init", "account", "app-password", "serve") if c not in text]
    if r.returncode != 0 or missing:
        return False, f"`smtpgate --help` rc={r.returncode}, missing {missing}: {text[-300:]}"
    return True, ""


# --------------------------------------------------------------------------- driving


def generator_procs(opts: argparse.Namespace, scenario: str) -> int:
    """c: enough generator processes that each stays within this machine's open-files limit."""
    if scenario != "c":
        return opts.procs
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return max(opts.procs, -(-(opts.connections + 512) // max(1, nofile - 512)))


def loadgen(server, opts: argparse.Namespace, scenario: str, *, warmup: bool = False) -> dict:
    env = dict(os.environ, BENCH_SMTP_PASSWORD=server.password)
    cmd = [sys.executable, str(LOADGEN), "--host", "127.0.0.1", "--port", str(server.port),
           "--user", server.user, "--password-env", "BENCH_SMTP_PASSWORD",
           "--cafile", server.cafile, "--tls-name", "localhost", "--scenario", scenario,
           "--clients", str(opts.clients), "--size", str(opts.size),
           "--op-timeout", str(opts.op_timeout), "--procs", str(generator_procs(opts, scenario)),
           "--pipelining", opts.pipelining]
    if warmup:
        cmd += ["--duration", "10", "--max-messages", str(opts.warmup)]
    else:
        cmd += ["--duration", str(opts.duration), "--max-messages", str(opts.max_messages),
                "--connections", str(opts.connections), "--hold", str(opts.hold),
                "--ramp-timeout", str(opts.ramp_timeout), "--ramp-stall", str(opts.ramp_stall)]
        cmd += ["--server-pids", ",".join(map(str, server.pids()))]
        if scenario == "c":
            cmd += ["--source-ips", str(opts.source_ips)]
    budget = (opts.ramp_timeout + opts.hold + 2 * opts.op_timeout + 60 if scenario == "c"
              else opts.duration + 2 * opts.op_timeout + 60)
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=budget,
                       check=False)
    if r.stderr.strip():
        for line in r.stderr.strip().splitlines()[-5:]:
            say(f"  {line}")
    if r.returncode != 0:
        raise RuntimeError(f"loadgen failed ({r.returncode}): {r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def measure(server, opts: argparse.Namespace, scenario: str) -> dict:
    say(f"{scenario}/{server.name}: starting a fresh server")
    try:
        server.start()
        if opts.nice:
            apply_nice(process_tree(server.pids()), opts.nice)
        if scenario in "ab" and opts.warmup:
            w = loadgen(server, opts, scenario, warmup=True)
            if w.get("errors"):
                say(f"{scenario}/{server.name}: warm-up had {w['errors']} errors "
                    f"{w['error_kinds']}")
            wait_quiet(server.pids())
        best = None
        for attempt in range(opts.load_retries + 1):
            waited, load = wait_machine_quiet(opts.quiet_wait)
            if load > 0.2:
                say(f"{scenario}/{server.name}: machine still busy after {waited:.0f}s "
                    f"({load:.2f} cores used by other processes); measuring anyway")
            say(f"{scenario}/{server.name}: measuring")
            res = loadgen(server, opts, scenario)
            res["quiet_wait"] = {"waited_s": waited, "load_before_cores": load}
            other = res.get("other_load_cores") or 0.0
            res["disturbed"] = other > opts.max_other_load
            # keep the attempt least disturbed by other processes
            if best is None or other < (best.get("other_load_cores") or 0.0):
                best = res
            if not res["disturbed"] or attempt == opts.load_retries:
                break
            say(f"{scenario}/{server.name}: other processes used {other:.2f} cores during "
                f"the run (> {opts.max_other_load}); measuring again")
            if scenario in "ab":
                wait_quiet(server.pids())
        res = best
        res["attempts"] = attempt + 1
        if scenario in "ab":
            res["drain_s"] = wait_quiet(server.pids())
        res["server"] = server.name
        res["server_settings"] = server.describe()
        return res
    finally:
        server.stop()


def summarise(runs: list[dict]) -> dict:
    """One row per server: the run with the median msg/s, plus every run's figures."""
    ok = [r for r in runs if "failed" not in r]
    if not ok:
        return runs[-1]
    if len(runs) == 1:
        return ok[0]
    ok.sort(key=lambda r: r.get("msg_per_s", 0))
    row = dict(ok[(len(ok) - 1) // 2])  # lower median
    row["all_runs"] = [{"msg_per_s": r.get("msg_per_s"), "latency_ms": r.get("latency_ms"),
                        "errors": r.get("errors"),
                        "source": (r.get("server_settings") or {}).get("source")}
                       for r in runs if "failed" not in r]
    row["failed_runs"] = len(runs) - len(ok)
    kinds: dict[str, int] = {}
    for r in ok:
        for k, v in (r.get("error_kinds") or {}).items():
            kinds[k] = kinds.get(k, 0) + v
    row["errors"] = sum(kinds.values())  # errors of all runs, not only the median one
    row["error_kinds"] = kinds
    return row


def fmt(x, nd=1) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    return str(x)


def ratio(s, p) -> str:
    try:
        return f"{s / p:.2f}" if s is not None and p else "-"
    except TypeError:
        return "-"


def table(results: dict, opts: argparse.Namespace, pending: str | None) -> str:
    out = []
    for sc in opts.scenarios:
        rows = results.get(sc, {})
        out.append(f"\n### Scenario {sc}: {SCENARIO_TITLES[sc]}\n")
        if sc in "ab":
            mode = ("" if sc == "a" else
                    "pipelining when offered, " if opts.pipelining == "auto" else "one round trip per command, ")
            out.append(f"{opts.clients} clients, {opts.size} B messages, {mode}"
                       f"{opts.duration:g} s or {opts.max_messages} messages per run; "
                       f"median of {opts.repeat} run(s), msg/s range in brackets, "
                       f"errors summed over all runs\n")
            out.append("| server | msg/s | p50 ms | p99 ms | messages | errors | "
                       "server CPU ms/msg | drain s | client CPU s | other load (cores) |")
            out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        else:
            out.append(f"{opts.connections} connections requested from {opts.source_ips} "
                       f"loopback source addresses, held {opts.hold:g} s\n")
            out.append("| server | authenticated | alive after hold | RSS sum MiB | "
                       "PSS sum MiB | idle RSS MiB | PSS KiB/conn | processes | ramp s | errors |")
            out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        vals = {}
        for name in (*PEERS, "smtpgate"):
            r = rows.get(name)
            if r is None:
                if name == "smtpgate" and pending:
                    out.append("| smtpgate | pending | | | | | | |")
                elif name in rows.get("_skipped", {}):
                    out.append(f"| {name} | skipped: {rows['_skipped'][name]} | | | | | | |")
                continue
            if "failed" in r:
                out.append(f"| {name} | FAILED: {r['failed'][:120]} | | | | | | |")
                continue
            errs = r.get("errors", 0)
            err_s = f"**{errs}** {r.get('error_kinds')}" if errs else "0"
            if sc in "ab":
                lat = r.get("latency_ms", {})
                n = r.get("messages_ok", 0)
                cpu = r.get("server_cpu_s")
                per = cpu * 1000 / n if cpu is not None and n else None
                vals[name] = (r.get("msg_per_s"), lat.get("p50"), lat.get("p99"), per)
                rate = fmt(r.get("msg_per_s"))
                if r.get("all_runs"):
                    rr = [x["msg_per_s"] for x in r["all_runs"]]
                    rate += f" ({min(rr):.0f}-{max(rr):.0f})"
                if r.get("failed_runs"):
                    rate += f" [{r['failed_runs']} run(s) FAILED]"
                out.append(f"| {name} | {rate} | {fmt(lat.get('p50'))} | "
                           f"{fmt(lat.get('p99'))} | {n} | {err_s} | {fmt(per, 2)} | "
                           f"{fmt(r.get('drain_s'))} | {fmt(r.get('client_cpu_s'))} | "
                           f"{fmt(r.get('other_load_cores'), 2)}"
                           f"{' (disturbed)' if r.get('disturbed') else ''} |")
            else:
                m = r.get("memory_held_peak") or {}
                vals[name] = (m.get("rss_mib"), m.get("pss_mib"))
                out.append(f"| {name} | {r.get('authenticated')}/{r.get('connections_requested')}"
                           f" | {r.get('alive_after_hold')} | {fmt(m.get('rss_mib'))} | "
                           f"{fmt(m.get('pss_mib'))} | "
                           f"{fmt((r.get('memory_before') or {}).get('rss_mib'))} | "
                           f"{fmt(r.get('kib_per_connection_pss'))} | "
                           f"{m.get('processes', '-')} | {fmt(r.get('ramp_s'))} | {err_s} |")
        for peer in PEERS:
            if peer not in vals or "smtpgate" not in vals:
                continue
            p, s = vals[peer], vals["smtpgate"]
            label = f"smtpgate/{TITLES[peer]}"
            if sc in "ab":
                out.append(f"| **{label}** | **{ratio(s[0], p[0])}** | {ratio(s[1], p[1])}"
                           f" | {ratio(s[2], p[2])} | | | {ratio(s[3], p[3])} | | | |")
            else:
                out.append(f"| **{label}** | | | **{ratio(s[0], p[0])}** | "
                           f"{ratio(s[1], p[1])} | | | | | |")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=("smtpgate", *PEERS))
    ap.add_argument("--peers", default="postfix,haraka",
                    help="comma-separated peers measured beside smtpgate, servers alternating "
                         "(postfix: Postfix + Dovecot; haraka: Haraka from npm, installed on "
                         "first use into bench/peers/haraka)")
    ap.add_argument("--scenarios", default="abc", help="subset of abc, run in that order")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                    help="passed to `smtpgate serve --workers` (default: number of cores)")
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--duration", type=float, default=15.0, help="seconds per a/b run")
    ap.add_argument("--max-messages", type=int, default=60_000, help="hard cap per a/b run")
    ap.add_argument("--repeat", type=int, default=3,
                    help="a/b: runs per server, alternating servers; the table shows the "
                         "median run and the range of msg/s")
    ap.add_argument("--quiet-wait", type=float, default=60.0,
                    help="before each measurement wait up to this long for the machine "
                         "to be idle (other jobs would distort the figures)")
    ap.add_argument("--max-other-load", type=float, default=0.25,
                    help="a/b: a run during which other processes used more CPU (cores) "
                         "is measured again, up to --load-retries times")
    ap.add_argument("--load-retries", type=int, default=2)
    ap.add_argument("--nice", type=int, default=0,
                    help="scheduling niceness for the servers and the generator (inherited "
                         "by everything started from here); e.g. -10 on a shared machine, "
                         "so that other jobs disturb the runs less (root only for < 0)")
    ap.add_argument("--warmup", type=int, default=200,
                    help="unmeasured messages before each a/b run (0: none)")
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--pipelining", choices=("auto", "off"), default="auto",
                    help="b: auto = MAIL+RCPT+DATA in one write when the server offers "
                         "PIPELINING; off = one round trip per command, as most clients do")
    ap.add_argument("--connections", type=int, default=5000)
    ap.add_argument("--hold", type=float, default=10.0)
    ap.add_argument("--ramp-timeout", type=float, default=150.0)
    ap.add_argument("--ramp-stall", type=float, default=20.0)
    ap.add_argument("--op-timeout", type=float, default=30.0)
    ap.add_argument("--source-ips", type=int, default=0,
                    help="c: loopback source addresses to spread the connections over "
                         "(default: one per 100 connections)")
    ap.add_argument("--procs", type=int, default=1,
                    help="generator processes (c: at least as many as the open-files limit needs)")
    ap.add_argument("--skip-postfix-c", action="store_true",
                    help="do not run scenario c against Postfix")
    ap.add_argument("--postfix-process-limit", type=int, default=0,
                    help="override Postfix default_process_limit (default: leave it at 100)")
    ap.add_argument("--postfix-keytype", choices=("auto", "rsa", "ec"), default="auto",
                    help="Postfix's and Haraka's certificate key; auto = the kind smtpgate serves (rsa when "
                         "smtpgate is not run)")
    ap.add_argument("--postfix-script", type=Path, default=PEER_SCRIPT)
    ap.add_argument("--haraka-script", type=Path, default=HARAKA_SCRIPT)
    ap.add_argument("--smtpgate", type=Path, default=ROOT / ".venv" / "bin" / "smtpgate")
    ap.add_argument("--smtpgate-user", default="bench@example.test")
    ap.add_argument("--keep", action="store_true", help="keep the temporary server dirs")
    ap.add_argument("--out", type=Path, default=HERE / "out")
    opts = ap.parse_args()
    if set(opts.scenarios) - set("abc"):
        ap.error("--scenarios takes letters from abc")
    peers = [p.strip() for p in opts.peers.split(",") if p.strip()]
    if set(peers) - set(PEERS):
        ap.error(f"--peers takes names from {','.join(PEERS)}, not {opts.peers!r}")
    if not opts.source_ips:
        opts.source_ips = max(1, -(-opts.connections // 100))

    if opts.nice:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, opts.nice)
        except OSError as e:
            say(f"cannot set niceness {opts.nice}: {e}")
        apply_nice([os.getpid()], opts.nice)
    # the servers inherit this; 5000 connections need more than the usual 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = opts.connections + 1024
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), max(hard, want)))
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if nofile < want:
        say(f"WARNING: RLIMIT_NOFILE is {nofile} (< {want}); servers started from here "
            f"cannot hold {opts.connections} connections in one process")

    servers = [*peers, "smtpgate"] if not opts.only else [opts.only]
    pending = None
    if "smtpgate" in servers:
        ok, why = smtpgate_ready(opts.smtpgate)
        if not ok:
            if opts.only == "smtpgate":
                say(f"smtpgate is not runnable: {why}")
                return 2
            pending = why
            servers.remove("smtpgate")
            say(f"smtpgate is not runnable yet ({why}); its rows are marked pending")
    if "postfix" in servers and not opts.postfix_script.exists():
        say(f"{opts.postfix_script} not found")
        return 2
    if "haraka" in servers:
        try:  # npm install of the pinned version, once; not timed
            run_cmd(["bash", str(opts.haraka_script), "install"], timeout=600)
        except (RuntimeError, OSError, subprocess.SubprocessError) as e:
            if opts.only == "haraka":
                say(f"Haraka cannot be installed: {e}")
                return 2
            say(f"Haraka cannot be installed, measuring without it: {str(e)[-500:]}")
            servers.remove("haraka")

    keytype = opts.postfix_keytype
    started = dt.datetime.now(dt.UTC)
    results: dict[str, dict] = {}
    stopping = {"flag": False}

    def on_signal(signum, _frame):
        stopping["flag"] = True
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    status = 0
    try:
        for sc in opts.scenarios:
            results[sc] = {}
            runs: dict[str, list[dict]] = {}
            reps = opts.repeat if sc in "ab" else 1
            for rep in range(reps):
                # smtpgate first in each round, so that "auto" can match its key type;
                # the servers alternate round by round
                for name in sorted(servers, key=lambda n: n != "smtpgate"):
                    if name == "postfix" and sc == "c" and opts.skip_postfix_c:
                        results[sc].setdefault("_skipped", {})["postfix"] = "--skip-postfix-c"
                        continue
                    if name in PEERS:
                        kt = keytype
                        if kt == "auto":
                            sg = runs.get("smtpgate") or [{}]
                            sk = (sg[0].get("tls") or {}).get("server_key", "")
                            kt = "ec" if str(sk).startswith("ec") else "rsa"
                        server = Postfix(opts, kt) if name == "postfix" else Haraka(opts, kt)
                    else:
                        server = Smtpgate(opts)
                    tag = f"{sc}/{name}" + (f" run {rep + 1}/{reps}" if reps > 1 else "")
                    try:
                        r = measure(server, opts, sc)
                    except KeyboardInterrupt:
                        raise
                    except Exception as e:  # noqa: BLE001 -- record it, go on with the others
                        say(f"{tag} FAILED: {e}")
                        r = {"failed": str(e).splitlines()[0] if str(e) else repr(e)}
                        status = 1
                    runs.setdefault(name, []).append(r)
                    if "failed" in r:
                        continue
                    if sc == "c":
                        m = r.get("memory_held_peak") or {}
                        say(f"{tag}: {r['authenticated']}/{r['connections_requested']} "
                            f"authenticated, RSS {m.get('rss_mib')} MiB, PSS "
                            f"{m.get('pss_mib')} MiB, errors {r['errors']}")
                    else:
                        say(f"{tag}: {r['msg_per_s']} msg/s p50 "
                            f"{r['latency_ms'].get('p50')} ms p99 "
                            f"{r['latency_ms'].get('p99')} ms errors {r['errors']}")
            for name, lst in runs.items():
                results[sc][name] = summarise(lst)
    except KeyboardInterrupt as e:
        say(f"interrupted ({e}); servers were stopped")
        status = 130
    text = table(results, opts, pending)
    print(f"# smtpgate benchmark {started:%Y-%m-%d %H:%M} UTC "
          f"(nproc {os.cpu_count()}, smtpgate workers {opts.workers}, "
          f"niceness {os.getpriority(os.PRIO_PROCESS, 0)})")
    print(text)
    if pending:
        print(f"\nsmtpgate: pending ({pending})")
    versions = sorted({x.get("source") or ""
                       for sc in results.values() for k, r in sc.items() if k == "smtpgate"
                       for x in [r.get("server_settings") or {}, *r.get("all_runs", [])]}
                      - {""})
    if versions:
        print(f"\nsmtpgate source fingerprint(s): {', '.join(versions)}"
              + (" -- WARNING: the code changed during the run" if len(versions) > 1 else ""))
    opts.out.mkdir(parents=True, exist_ok=True)
    dump = opts.out / f"results-{started:%Y%m%dT%H%M%SZ}.json"
    dump.write_text(json.dumps({"started": started.isoformat(), "argv": sys.argv[1:],
                                "options": {k: str(v) for k, v in vars(opts).items()},
                                "results": results}, indent=1))
    say(f"raw results: {dump}")
    any_errors = any(r.get("errors") for sc in results.values() for k, r in sc.items()
                     if k != "_skipped")
    if any_errors:
        say("NOTE: some runs had errors (see the errors column)")
    return status


if __name__ == "__main__":
    sys.exit(main())
