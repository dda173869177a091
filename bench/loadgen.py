#!/usr/bin/env python3
"""Loopback SMTP submission load generator (benchmark only, not part of the tests).

This is a *load generator*, not an SMTP client library.  It speaks just enough
ESMTP -- EHLO, STARTTLS, AUTH PLAIN, MAIL, RCPT, DATA, NOOP, QUIT and, when the
server advertises it, PIPELINING -- over raw asyncio streams (uvloop when it is
importable), with pre-built byte strings, so that the client costs as little
CPU as possible and is not the bottleneck.  smtplib is deliberately not used.
The same code drives every server under test.

Every reply code is checked; anything unexpected (wrong code, timeout, reset)
is counted as an error under "stage:code" and reported in the summary.

Scenarios
  a  one connection per message: connect, EHLO, STARTTLS, EHLO, AUTH PLAIN,
     MAIL, RCPT, DATA (one --size byte message), QUIT.  Latency = connect
     until the 250 after the final dot.  --clients concurrent clients.
  b  --clients persistent sessions (STARTTLS + AUTH once, not timed), then
     MAIL/RCPT/DATA repeatedly; with --pipelining auto (default) MAIL+RCPT+DATA
     go in one write when the server advertises PIPELINING.  Latency = first
     command byte until the 250 after the final dot.
  c  --connections idle authenticated TLS sessions (STARTTLS + AUTH, then
     idle); reports the summed RSS (and PSS) of the server's processes from
     /proc while they are held, then checks every session still answers NOOP.

Bounds: a/b stop at --duration seconds or --max-messages messages, whichever
comes first; c stops after --ramp-timeout (connecting) + --hold (idle) seconds.
Only loopback addresses are accepted as --host.

Output: one JSON line on stdout (human notes go to stderr).
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import ipaddress
import json
import os
import resource
import socket
import ssl
import subprocess
import sys
import time

try:  # optional, faster event loop
    import uvloop  # type: ignore
except ImportError:  # pragma: no cover
    uvloop = None

perf = time.perf_counter
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


# --------------------------------------------------------------------------- /proc


def _ppid_map() -> dict[int, int]:
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        rest = data[data.rfind(b")") + 2:].split()
        out[int(name)] = int(rest[1])
    return out


def process_tree(roots: list[int]) -> list[int]:
    """roots plus all their live descendants."""
    if not roots:
        return []
    ppid = _ppid_map()
    children: dict[int, list[int]] = {}
    for pid, parent in ppid.items():
        children.setdefault(parent, []).append(pid)
    seen: list[int] = []
    stack = [p for p in roots if p in ppid]
    while stack:
        p = stack.pop()
        if p in seen:
            continue
        seen.append(p)
        stack.extend(children.get(p, ()))
    return seen


def memory_of(roots: list[int]) -> dict:
    """Sum of VmRSS (and Pss, which splits shared pages fairly) over the tree."""
    rss_kb = pss_kb = 0
    pids = process_tree(roots)
    names: dict[str, int] = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("Name:"):
                        n = line.split()[1]
                        names[n] = names.get(n, 0) + 1
                    elif line.startswith("VmRSS:"):
                        rss_kb += int(line.split()[1])
        except OSError:
            continue
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        pss_kb += int(line.split()[1])
                        break
        except OSError:
            pass
    return {"processes": len(pids), "rss_mib": round(rss_kb / 1024, 1),
            "pss_mib": round(pss_kb / 1024, 1), "by_name": names}


def cpu_of(roots: list[int]) -> float:
    """utime+stime (+ reaped children's) of the tree, in seconds."""
    ticks = 0
    for pid in process_tree(roots):
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        rest = data[data.rfind(b")") + 2:].split()
        # fields 14..17 (1-based) = utime stime cutime cstime; rest starts at field 3
        ticks += sum(int(x) for x in rest[11:15])
    return ticks / CLK_TCK


def machine_busy() -> float:
    """CPU seconds the whole machine spent in processes (user+nice+system).

    irq/softirq time is left out: on loopback most of it is this benchmark's own
    network traffic, which is not charged to any process."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (v[0] + v[1] + v[2]) / CLK_TCK


def nofile_limit(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/limits") as f:
            for line in f:
                if line.startswith("Max open files"):
                    soft = line.split()[3]
                    return -1 if soft == "unlimited" else int(soft)
    except OSError:
        return None
    return None


def raise_nofile(needed: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return soft
    if hard != resource.RLIM_INFINITY and hard < needed:
        try:  # root may raise the hard limit
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, needed))
            return needed
        except (ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            return hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    return needed


# --------------------------------------------------------------------------- SMTP


class SmtpFail(Exception):
    def __init__(self, stage: str, code: int | str, text: bytes = b""):
        super().__init__(f"{stage}:{code} {text[:200]!r}")
        self.key = f"{stage}:{code}"


class Session:
    """One SMTP connection.  Deliberately minimal."""

    __slots__ = ("ext", "r", "w")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.r = reader
        self.w = writer
        self.ext: set[bytes] = set()

    async def reply(self, stage: str) -> tuple[int, list[bytes]]:
        lines = []
        while True:
            line = await self.r.readline()
            if not line:
                raise SmtpFail(stage, "eof")
            lines.append(line)
            if len(line) < 4 or line[3:4] != b"-":
                break
        try:
            code = int(lines[-1][:3])
        except ValueError:
            raise SmtpFail(stage, "garbage", lines[-1]) from None
        return code, lines

    async def expect(self, stage: str, want: int) -> list[bytes]:
        code, lines = await self.reply(stage)
        if code != want:
            raise SmtpFail(stage, code, b"".join(lines))
        return lines

    async def cmd(self, data: bytes, stage: str, want: int) -> list[bytes]:
        self.w.write(data)
        return await self.expect(stage, want)

    async def ehlo(self, stage: str, name: bytes) -> None:
        lines = await self.cmd(b"EHLO " + name + b"\r\n", stage, 250)
        self.ext = {ln[4:].strip().split(b" ")[0].upper() for ln in lines[1:]}

    def abort(self) -> None:
        with contextlib.suppress(OSError, RuntimeError, AttributeError):
            self.w.transport.abort()

    def close(self) -> None:
        with contextlib.suppress(OSError, RuntimeError, AttributeError):
            self.w.close()


class Generator:
    def __init__(self, args: argparse.Namespace):
        self.a = args
        self.host = args.host
        self.port = args.port
        user = args.user.encode()
        password = os.environ.get(args.password_env)
        if password is None:
            sys.exit(f"loadgen: environment variable {args.password_env} is not set")
        self.auth = (b"AUTH PLAIN "
                     + base64.b64encode(b"\0" + user + b"\0" + password.encode())
                     + b"\r\n")
        self.ehlo_name = b"loadgen.localhost"
        self.mail = b"MAIL FROM:<" + user + b">\r\n"
        self.rcpt = b"RCPT TO:<" + args.rcpt.encode() + b">\r\n"
        self.pipelined = self.mail + self.rcpt + b"DATA\r\n"
        self._build_message(args.user, args.rcpt, args.size)

        self.ctx = ssl.create_default_context(cafile=args.cafile) if args.cafile else \
            ssl.create_default_context()
        if args.insecure:
            self.ctx.check_hostname = False
            self.ctx.verify_mode = ssl.CERT_NONE
        self.tls_name = args.tls_name
        # several loopback source addresses (127.1.0.1, 127.1.0.2, ...) so that a
        # per-client-IP connection limit of the server does not cap scenario c
        first = args.source_ip_offset
        self.sources = [f"127.1.{i // 250}.{i % 250 + 1}"
                        for i in range(first, first + args.source_ips)] \
            if args.source_ips > 1 else []
        self.src_i = 0

        self.errors: dict[str, int] = {}
        self.lat: list[float] = []
        self.started = 0
        self.deadline = 0.0
        self.stopped_by = "duration"
        self.tls_info: dict | None = None
        self.pipelining_used = False
        self.seq = 0

    # -- message ---------------------------------------------------------------
    def _build_message(self, sender: str, rcpt: str, size: int) -> None:
        head = (f"From: <{sender}>\r\nTo: <{rcpt}>\r\nSubject: smtpgate benchmark\r\n"
                f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S +0000', time.gmtime())}\r\n"
                f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n"
                f"Message-ID: <").encode()
        mid_tail = f".{os.getpid()}@loadgen.localhost>\r\n\r\n".encode()
        fixed = len(head) + 12 + len(mid_tail) + len(b".\r\n")
        line = b"The quick brown fox jumps over the lazy dog; 0123456789 abcdefghijklmnopqrs\r\n"
        need = max(size - fixed, 2)
        body = (line * (need // len(line) + 1))[:need - 2] + b"\r\n"
        self._head, self._mid_tail, self._body = head, mid_tail, body + b".\r\n"
        self.msg_bytes = len(head) + 12 + len(mid_tail) + len(self._body)

    def message(self) -> bytes:
        self.seq += 1
        return b"".join((self._head, b"%012d" % self.seq, self._mid_tail, self._body))

    # -- bookkeeping -------------------------------------------------------------
    def error(self, key: str) -> None:
        self.errors[key] = self.errors.get(key, 0) + 1

    def claim(self) -> bool:
        if self.started >= self.a.max_messages:
            self.stopped_by = "max-messages"
            return False
        if perf() >= self.deadline:
            return False
        self.started += 1
        return True

    # -- session building blocks -------------------------------------------------
    async def open_session(self) -> Session:
        kw = {}
        if self.sources:
            self.src_i += 1
            kw["local_addr"] = (self.sources[self.src_i % len(self.sources)], 0)
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port, limit=65536,
                                                           **kw)
        except OSError as e:
            raise SmtpFail("connect", type(e).__name__) from None
        s = Session(reader, writer)
        try:
            await s.expect("banner", 220)
            await s.ehlo("ehlo1", self.ehlo_name)
            if b"STARTTLS" not in s.ext:
                raise SmtpFail("ehlo1", "no-starttls")
            await s.cmd(b"STARTTLS\r\n", "starttls", 220)
            try:
                await writer.start_tls(self.ctx, server_hostname=self.tls_name)
            except (ssl.SSLError, OSError) as e:
                raise SmtpFail("tls", type(e).__name__, str(e).encode()) from None
            if self.tls_info is None:
                self.tls_info = self._describe_tls(writer)
            await s.ehlo("ehlo2", self.ehlo_name)
            await s.cmd(self.auth, "auth", 235)
        except BaseException:
            s.abort()
            raise
        return s

    def _describe_tls(self, writer: asyncio.StreamWriter) -> dict:
        obj = writer.get_extra_info("ssl_object")
        info = {"version": obj.version() if obj else None,
                "cipher": obj.cipher()[0] if obj else None}
        try:
            from cryptography import x509
            from cryptography.hazmat.primitives.asymmetric import ec, rsa
            key = x509.load_der_x509_certificate(obj.getpeercert(binary_form=True)).public_key()
            if isinstance(key, rsa.RSAPublicKey):
                info["server_key"] = f"rsa{key.key_size}"
            elif isinstance(key, ec.EllipticCurvePublicKey):
                info["server_key"] = f"ec-{key.curve.name}"
            else:
                info["server_key"] = type(key).__name__
        except (ImportError, ValueError, TypeError, AttributeError):
            pass  # only informative
        return info

    async def transaction(self, s: Session, pipeline: bool) -> None:
        if pipeline:
            s.w.write(self.pipelined)
            await s.expect("mail", 250)
            await s.expect("rcpt", 250)
            await s.expect("data", 354)
        else:
            await s.cmd(self.mail, "mail", 250)
            await s.cmd(self.rcpt, "rcpt", 250)
            await s.cmd(b"DATA\r\n", "data", 354)
        await s.cmd(self.message(), "dot", 250)

    # -- scenario a ----------------------------------------------------------------
    async def client_a(self) -> None:
        t_out = self.a.op_timeout
        while self.claim():
            s = None
            t0 = perf()
            try:
                async with asyncio.timeout(t_out):
                    s = await self.open_session()
                    await self.transaction(s, False)
                    self.lat.append(perf() - t0)
                    await s.cmd(b"QUIT\r\n", "quit", 221)
                s.close()
            except SmtpFail as e:
                self.error(e.key)
                if s:
                    s.abort()
                await asyncio.sleep(0.01)
            except TimeoutError:
                self.error("timeout")
                if s:
                    s.abort()
            except OSError as e:
                self.error(f"io:{type(e).__name__}")
                if s:
                    s.abort()
                await asyncio.sleep(0.01)

    # -- scenario b ----------------------------------------------------------------
    async def setup_b(self) -> Session | None:
        try:
            async with asyncio.timeout(self.a.op_timeout):
                return await self.open_session()
        except SmtpFail as e:
            self.error(e.key)
        except TimeoutError:
            self.error("setup-timeout")
        except OSError as e:
            self.error(f"io:{type(e).__name__}")
        return None

    def use_pipelining(self, s: Session) -> bool:
        mode = self.a.pipelining
        return mode == "on" or (mode == "auto" and b"PIPELINING" in s.ext)

    async def client_b(self, s: Session | None, go: asyncio.Event) -> None:
        await go.wait()
        t_out = self.a.op_timeout
        while self.claim():
            if s is None:
                s = await self.setup_b()
                if s is None:
                    await asyncio.sleep(0.05)
                    continue
            pipe = self.use_pipelining(s)
            self.pipelining_used |= pipe
            t0 = perf()
            try:
                async with asyncio.timeout(t_out):
                    await self.transaction(s, pipe)
                self.lat.append(perf() - t0)
                continue
            except SmtpFail as e:
                self.error(e.key)
            except TimeoutError:
                self.error("timeout")
            except OSError as e:
                self.error(f"io:{type(e).__name__}")
            s.abort()   # unknown protocol state: start a fresh session
            s = None
        if s is not None:
            s.w.write(b"QUIT\r\n")
            s.close()

    # -- scenario c ----------------------------------------------------------------
    async def scenario_c(self, roots: list[int], before: dict | None = None,
                         others: int = 0) -> dict:
        """`before`: the idle memory, when measured before other generator processes
        (--procs) opened `others` sessions that are held meanwhile."""
        a = self.a
        sessions: list[Session] = []
        sem = asyncio.Semaphore(a.ramp_concurrency)
        if before is None:
            before = memory_of(roots) if roots else None

        async def one() -> None:
            try:
                async with sem:
                    async with asyncio.timeout(a.op_timeout):
                        sessions.append(await self.open_session())
            except SmtpFail as e:
                self.error(e.key)
            except TimeoutError:
                self.error("setup-timeout")
            except OSError as e:
                self.error(f"io:{type(e).__name__}")
            except asyncio.CancelledError:  # the ramp was stopped (time cap or stall)
                self.error("not-established-ramp-stopped")

        t0 = perf()
        tasks = [asyncio.create_task(one()) for _ in range(a.connections)]
        everything = asyncio.gather(*tasks)
        last_n, last_progress, ramp_stop = 0, t0, "complete"
        while True:
            done, _ = await asyncio.wait({everything}, timeout=1.0)
            if done:
                break
            now = perf()
            if len(sessions) > last_n:
                last_n, last_progress = len(sessions), now
            if now - t0 >= a.ramp_timeout:
                ramp_stop = f"ramp-timeout {a.ramp_timeout:g}s"
            elif now - last_progress >= a.ramp_stall:
                ramp_stop = f"stalled: no new session for {a.ramp_stall:g}s"
            else:
                continue
            log(f"c: stopping the ramp ({ramp_stop}) at {len(sessions)} sessions")
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            break
        ramp_s = perf() - t0
        log(f"c: {len(sessions)}/{a.connections} sessions authenticated in {ramp_s:.1f}s; "
            f"holding {a.hold:.0f}s")
        samples = []
        if a.child:  # held until the measuring process is done with its own hold
            print(f"HELD {len(sessions)}", flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        hold_end = perf() + (0 if a.child else a.hold)
        while True:
            await asyncio.sleep(min(2.0, max(0.0, hold_end - perf())))
            if roots:
                samples.append(memory_of(roots))
            if perf() >= hold_end:
                break
        # still alive and authenticated?  A NOOP on each (the server must answer 250).
        alive = 0

        async def noop(s: Session) -> None:
            nonlocal alive
            try:
                async with asyncio.timeout(a.op_timeout):
                    await s.cmd(b"NOOP\r\n", "noop", 250)
                alive += 1
            except SmtpFail as e:
                self.error(e.key)
            except (TimeoutError, OSError):
                self.error("noop:timeout-or-io")

        await asyncio.gather(*(noop(s) for s in sessions))
        for s in sessions:
            with contextlib.suppress(OSError, RuntimeError, AttributeError):
                s.w.write(b"QUIT\r\n")
            s.abort()
        peak = max(samples, key=lambda m: m["rss_mib"]) if samples else None
        out = {"connections_requested": a.connections, "authenticated": len(sessions),
               "alive_after_hold": alive, "ramp_s": round(ramp_s, 2), "ramp_end": ramp_stop,
               "hold_s": a.hold, "memory_before": before, "memory_held_peak": peak}
        held = len(sessions) + others
        if peak and before and held:
            out["kib_per_connection_rss"] = round(
                (peak["rss_mib"] - before["rss_mib"]) * 1024 / held, 1)
            out["kib_per_connection_pss"] = round(
                (peak["pss_mib"] - before["pss_mib"]) * 1024 / held, 1)
        return out


def log(msg: str) -> None:
    print(f"loadgen: {msg}", file=sys.stderr, flush=True)


def percentiles(lat_s: list[float]) -> dict:
    if not lat_s:
        return {}
    v = sorted(lat_s)
    n = len(v)

    def q(p: float) -> float:  # nearest rank
        return round(v[min(n - 1, max(0, int(p * n + 0.999999) - 1))] * 1000, 2)

    return {"p50": q(0.50), "p90": q(0.90), "p99": q(0.99), "max": round(v[-1] * 1000, 2),
            "mean": round(sum(v) / n * 1000, 2)}


# --------------------------------------------------------------------------- drivers


async def run_ab(g: Generator, roots: list[int], child: bool) -> dict:
    a = g.a
    go = asyncio.Event()
    if a.scenario == "b":
        sessions = await asyncio.gather(*(g.setup_b() for _ in range(a.clients)))
        log(f"b: {sum(s is not None for s in sessions)}/{a.clients} sessions ready")
        tasks = [asyncio.create_task(g.client_b(s, go)) for s in sessions]
    else:
        tasks = None
    if child:  # wait for the parent's start signal so that all processes start together
        print("READY", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    cpu0, srv0, mach0, t0 = time.process_time(), cpu_of(roots), machine_busy(), perf()
    g.deadline = t0 + a.duration
    if a.scenario == "a":
        tasks = [asyncio.create_task(g.client_a()) for _ in range(a.clients)]
    go.set()
    await asyncio.gather(*tasks)
    elapsed = perf() - t0
    ok = len(g.lat)
    out = {"elapsed_s": round(elapsed, 3), "messages_ok": ok,
           "msg_per_s": round(ok / elapsed, 1) if elapsed else 0.0,
           "latency_ms": percentiles(g.lat),
           "stopped_by": g.stopped_by,
           "client_cpu_s": round(time.process_time() - cpu0, 2)}
    if roots:
        out["server_cpu_s"] = round(cpu_of(roots) - srv0, 2)
        other = machine_busy() - mach0 - out["server_cpu_s"] - out["client_cpu_s"]
        out["other_load_cores"] = round(max(0.0, other) / elapsed, 2) if elapsed else None
    if a.scenario == "b":
        out["pipelining"] = g.pipelining_used
    if child:
        out["raw_latencies"] = g.lat
    return out


def start_child(args: argparse.Namespace, own: list[str]) -> subprocess.Popen:
    """One generator process of a --procs run: this one's server, login and TLS options, plus its `own` share."""
    cmd = [sys.executable, os.path.abspath(__file__), "--child",
           "--host", args.host, "--port", str(args.port), "--user", args.user,
           "--password-env", args.password_env, "--op-timeout", str(args.op_timeout),
           "--tls-name", args.tls_name, *own]
    if args.cafile:
        cmd += ["--cafile", args.cafile]
    if args.insecure:
        cmd.append("--insecure")
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def run_multi(args: argparse.Namespace, roots: list[int]) -> dict:
    """Split --clients and --max-messages over --procs child processes."""
    procs = []
    for i in range(args.procs):
        clients = args.clients // args.procs + (1 if i < args.clients % args.procs else 0)
        maxm = args.max_messages // args.procs + (1 if i < args.max_messages % args.procs else 0)
        procs.append(start_child(args, [
            "--rcpt", args.rcpt, "--scenario", args.scenario, "--clients", str(clients),
            "--duration", str(args.duration), "--max-messages", str(maxm), "--size", str(args.size),
            "--pipelining", args.pipelining]))
    for p in procs:
        line = p.stdout.readline()
        if line.strip() != "READY":
            for q in procs:
                q.kill()
            sys.exit(f"loadgen: child did not get ready: {line!r}")
    c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    srv0, mach0 = cpu_of(roots), machine_busy()
    for p in procs:
        p.stdin.write("GO\n")
        p.stdin.flush()
    results = []
    for p in procs:
        out, _ = p.communicate(timeout=args.duration + 4 * args.op_timeout + 30)
        results.append(json.loads(out.strip().splitlines()[-1]))
    c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    lat = [x for r in results for x in r.pop("raw_latencies")]
    elapsed = max(r["elapsed_s"] for r in results)
    errors: dict[str, int] = {}
    for r in results:
        for k, v in r["error_kinds"].items():
            errors[k] = errors.get(k, 0) + v
    out = {"elapsed_s": elapsed, "messages_ok": len(lat),
           "msg_per_s": round(len(lat) / elapsed, 1) if elapsed else 0.0,
           "latency_ms": percentiles(lat),
           "stopped_by": ",".join(sorted({r["stopped_by"] for r in results})),
           "client_cpu_s": round(c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime, 2),
           "errors": sum(errors.values()), "error_kinds": errors,
           "tls": results[0].get("tls")}
    if roots:
        out["server_cpu_s"] = round(cpu_of(roots) - srv0, 2)
        other = machine_busy() - mach0 - out["server_cpu_s"] - out["client_cpu_s"]
        out["other_load_cores"] = round(max(0.0, other) / elapsed, 2) if elapsed else None
    if args.scenario == "b":
        out["pipelining"] = any(r.get("pipelining") for r in results)
    return out


def run_c_multi(args: argparse.Namespace, roots: list[int]) -> dict:
    """Scenario c over --procs processes (one process's open files are capped by its hard
    limit): the others open their share and hold it; this one measures the idle memory
    first, then opens its own share, samples the memory of everything held, and asks
    each of them for a NOOP on every session at the end."""
    before = memory_of(roots) if roots else None
    n, k = args.connections, args.procs
    ips = max(1, args.source_ips // k)
    share = [n // k + (1 if i < n % k else 0) for i in range(k)]
    procs = []
    for i in range(1, k):
        procs.append(start_child(args, [
            "--scenario", "c", "--connections", str(share[i]), "--source-ips", str(ips),
            "--source-ip-offset", str(i * ips), "--ramp-concurrency", str(args.ramp_concurrency),
            "--ramp-timeout", str(args.ramp_timeout), "--ramp-stall", str(args.ramp_stall)]))
    others = 0
    for p in procs:  # one after the other: each waits for its whole ramp
        line = p.stdout.readline().split()
        if not line or line[0] != "HELD":
            for q in procs:
                q.kill()
            sys.exit(f"loadgen: c child failed before holding its sessions: {line!r}")
        others += int(line[1])
    log(f"c: {others} sessions held by {k - 1} other process(es)")
    args.source_ips, args.connections = ips, share[0]
    g = Generator(args)
    runner = asyncio.Runner(loop_factory=uvloop.new_event_loop) if uvloop else asyncio.Runner()
    with runner:
        out = runner.run(g.scenario_c(roots, before=before, others=others))
    errors = dict(g.errors)
    for p in procs:
        res, _ = p.communicate("GO\n", timeout=4 * args.op_timeout + 60)
        r = json.loads(res.strip().splitlines()[-1])
        out["authenticated"] += r["authenticated"]
        out["alive_after_hold"] += r["alive_after_hold"]
        for key, v in r["error_kinds"].items():
            errors[key] = errors.get(key, 0) + v
    out["connections_requested"] = n
    out["procs"] = k
    out["errors"], out["error_kinds"], out["tls"] = sum(errors.values()), errors, g.tls_info
    out["msg_bytes"] = g.msg_bytes
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--user", required=True, help="AUTH login, also the MAIL FROM address")
    p.add_argument("--password-env", required=True, metavar="VAR",
                   help="name of the environment variable holding the password")
    p.add_argument("--rcpt", default="sink@example.test", help="RCPT TO address")
    p.add_argument("--cafile", help="CA file the client trusts for STARTTLS")
    p.add_argument("--insecure", action="store_true",
                   help="do not verify the server certificate (say so when reporting)")
    p.add_argument("--tls-name", default="localhost", help="SNI / name checked in the cert")
    p.add_argument("--scenario", choices="abc", required=True)
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--duration", type=float, default=15.0, help="a/b: seconds of load")
    p.add_argument("--max-messages", type=int, default=100_000, help="a/b: hard cap")
    p.add_argument("--size", type=int, default=4096, help="message size in bytes")
    p.add_argument("--pipelining", choices=("auto", "on", "off"), default="auto")
    p.add_argument("--op-timeout", type=float, default=30.0,
                   help="timeout for one message (a/b) or one session setup (c)")
    p.add_argument("--connections", type=int, default=5000, help="c: idle sessions")
    p.add_argument("--ramp-concurrency", type=int, default=64,
                   help="c: sessions being set up at once")
    p.add_argument("--ramp-timeout", type=float, default=180.0, help="c: connect phase cap")
    p.add_argument("--ramp-stall", type=float, default=20.0,
                   help="c: stop connecting when no new session succeeded for this long")
    p.add_argument("--hold", type=float, default=10.0, help="c: seconds to hold them idle")
    p.add_argument("--source-ips", type=int, default=1,
                   help="spread connections over this many loopback source addresses "
                        "127.1.0.1, 127.1.0.2, ... (1: let the kernel choose)")
    p.add_argument("--source-ip-offset", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--server-pids", nargs="*", default=[],
                   help="server process ids (comma or space separated); their "
                        "descendants are included")
    p.add_argument("--procs", type=int, default=1,
                   help="run the clients (a/b) or the connections (c) in this many "
                        "generator processes")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not ipaddress.ip_address(socket.gethostbyname(args.host)).is_loopback:
        p.error("--host must be a loopback address (this benchmark never leaves the machine)")
    args.roots = [int(x) for item in args.server_pids for x in item.split(",") if x]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    roots = [] if args.child else args.roots
    summary: dict = {"scenario": args.scenario, "host": args.host, "port": args.port,
                     "clients": args.clients, "size": args.size,
                     "event_loop": "uvloop" if uvloop else "asyncio",
                     "verify_tls": not args.insecure, "source_ips": args.source_ips}
    needed = (args.connections // max(1, args.procs) + 1 if args.scenario == "c"
              else args.clients * 2) + 256
    got = raise_nofile(needed)
    if got < needed:
        log(f"WARNING: generator RLIMIT_NOFILE is {got}, below the {needed} needed")
    summary["client_nofile"] = got
    if roots:
        lims = {pid: nofile_limit(pid) for pid in roots}
        summary["server_nofile"] = lims
        if args.scenario == "c":
            low = {p: v for p, v in lims.items() if v is not None and 0 <= v < needed}
            if low:
                log(f"WARNING: server process(es) {low} have RLIMIT_NOFILE below "
                    f"{needed}; a single process cannot hold {args.connections} "
                    f"connections (raise it, e.g. `ulimit -n {needed}` before starting "
                    f"the server; multi-process servers may still be fine)")
                summary["server_nofile_warning"] = low

    if args.scenario in "ab" and args.procs > 1 and not args.child:
        summary.update(run_multi(args, roots))
        summary["procs"] = args.procs
    elif args.scenario == "c" and args.procs > 1 and not args.child:
        summary.update(run_c_multi(args, roots))
    else:
        g = Generator(args)
        if uvloop:
            runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
        else:
            runner = asyncio.Runner()
        with runner:
            if args.scenario == "c":
                summary.update(runner.run(g.scenario_c(roots)))
            else:
                summary.update(runner.run(run_ab(g, roots, args.child)))
        summary["msg_bytes"] = g.msg_bytes
        summary["errors"] = sum(g.errors.values())
        summary["error_kinds"] = g.errors
        summary["tls"] = g.tls_info
    if summary["errors"]:
        log(f"RUN HAD ERRORS: {summary['errors']} {summary['error_kinds']}")
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
