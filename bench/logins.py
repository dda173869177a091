#!/usr/bin/env python3
"""Account-password (argon2id) logins: how many per second, and what they cost others.

For each setting of `[credentials] login_cache_ttl` ("0s": every login runs argon2; "5m":
a repeat login with the same password is answered from the verified-login cache):

1. scenario b alone (persistent sessions with an app password, one round trip per
   command): the other sessions' latency without argon2 load;
2. scenario a alone with the account password: logins (connections) per second;
3. both at once: the other sessions' p99 while the argon2 logins run.

Same generator as run.py (loadgen.py); loopback only; not part of the test suite.

    .venv/bin/python bench/logins.py --duration 10 --nice -10
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run import LOADGEN, Smtpgate, apply_nice, last_json, process_tree, run_cmd, say, wait_port  # noqa: E402


class AccountSmtpgate(Smtpgate):
    """run.py's smtpgate, with a login cache setting and an account password as well."""

    def __init__(self, opts: argparse.Namespace, cache_ttl: str) -> None:
        super().__init__(opts)
        self.cache_ttl = cache_ttl
        self.account_password = ""

    def start(self) -> None:
        run_cmd([self.exe, "init", "--data-dir", str(self.dir), "--hostname", "localhost",
                 "--submission-port", str(self.port), "--submissions-port", str(self.port_tls),
                 "--admin-port", str(self.port_admin)], env=self.env)
        text = self.config.read_text()
        text, n = re.subn(r'(?m)^login_cache_ttl = "[^"]*"', f'login_cache_ttl = "{self.cache_ttl}"', text)
        assert n == 1, "login_cache_ttl not found in the config init wrote"
        self.config.write_text(text)
        self.account_password = last_json(run_cmd([self.exe, "account", "add", self.user, "--generate", "--json"],
                                                  env=self.env))["password"]
        self.password = last_json(run_cmd([self.exe, "app-password", "create", self.user, "--name", "bench",
                                           "--json"], env=self.env))["secret"]
        with open(self.log, "wb") as logf:
            self.proc = subprocess.Popen([self.exe, "serve", "--workers", str(self.opts.workers)], env=self.env,
                                         stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        wait_port(self.port, 60, alive=lambda: self.proc is not None and self.proc.poll() is None)


def generator(server: AccountSmtpgate, opts: argparse.Namespace, scenario: str, password: str,
              clients: int) -> subprocess.Popen[str]:
    env = dict(os.environ, BENCH_PW=password)
    cmd = [sys.executable, str(LOADGEN), "--port", str(server.port), "--user", server.user,
           "--password-env", "BENCH_PW", "--cafile", server.cafile, "--scenario", scenario,
           "--clients", str(clients), "--duration", str(opts.duration), "--max-messages", "1000000",
           "--pipelining", "off", "--server-pids", ",".join(map(str, server.pids()))]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def result(proc: subprocess.Popen[str]) -> dict:
    out, err = proc.communicate(timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"loadgen failed: {err[-1500:]}")
    return json.loads(out.strip().splitlines()[-1])


def measure(opts: argparse.Namespace, cache_ttl: str) -> dict:
    server = AccountSmtpgate(opts, cache_ttl)
    try:
        server.start()
        if opts.nice:
            apply_nice(process_tree(server.pids()), opts.nice)
        time.sleep(1)
        alone = result(generator(server, opts, "b", server.password, opts.others))
        logins = result(generator(server, opts, "a", server.account_password, opts.logins))
        others = generator(server, opts, "b", server.password, opts.others)
        hashing = generator(server, opts, "a", server.account_password, opts.logins)
        loaded, during = result(others), result(hashing)
    finally:
        server.stop()
    row = {
        "login_cache_ttl": cache_ttl,
        "logins_per_s": logins["msg_per_s"],
        "logins_server_cpu_ms": round(1000 * logins["server_cpu_s"] / max(1, logins["messages_ok"]), 2),
        "others_p99_alone_ms": alone["latency_ms"]["p99"],
        "others_p99_loaded_ms": loaded["latency_ms"]["p99"],
        "others_msg_per_s_alone": alone["msg_per_s"],
        "others_msg_per_s_loaded": loaded["msg_per_s"],
        "logins_per_s_during": during["msg_per_s"],
        "other_load_cores": max(alone.get("other_load_cores") or 0, loaded.get("other_load_cores") or 0),
    }
    row["p99_ratio"] = round(row["others_p99_loaded_ms"] / row["others_p99_alone_ms"], 2)
    say(json.dumps(row))
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--others", type=int, default=10, help="persistent app-password sessions")
    ap.add_argument("--logins", type=int, default=10, help="clients logging in with the account password")
    ap.add_argument("--nice", type=int, default=0)
    ap.add_argument("--smtpgate", type=Path, default=HERE.parent / ".venv" / "bin" / "smtpgate")
    ap.add_argument("--smtpgate-user", default="bench@example.test")
    ap.add_argument("--keep", action="store_true")
    opts = ap.parse_args()
    if opts.nice:
        os.nice(opts.nice)
    rows = [measure(opts, ttl) for ttl in ("0s", "5m")]
    print("| login_cache_ttl | logins/s | server CPU ms/login | others' p99 alone ms | others' p99 with logins ms "
          "| ratio | others' msg/s alone / loaded | logins/s meanwhile | other load (cores) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['login_cache_ttl']} | {r['logins_per_s']} | {r['logins_server_cpu_ms']} | "
              f"{r['others_p99_alone_ms']} | {r['others_p99_loaded_ms']} | {r['p99_ratio']} | "
              f"{r['others_msg_per_s_alone']} / {r['others_msg_per_s_loaded']} | {r['logins_per_s_during']} | "
              f"{r['other_load_cores']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
