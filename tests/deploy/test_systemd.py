"""deploy/systemd/smtpgate.service: valid for systemd, hardened by its own measure, and smtpgate runs within it.

No systemd runs here, so the last test reproduces the unit's privileges by hand: every
capability dropped but CAP_NET_BIND_SERVICE (bounding, inheritable, ambient sets; uid 0
made powerless with SECBIT_NOROOT), no_new_privs, and MemoryDenyWriteExecute (the same
W^X rule, through prctl(PR_SET_MDWE)); then it binds 587 and 465 and serves mail.
"""

from __future__ import annotations

import ctypes
import os
import random
import re
import shutil
import smtplib
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from smtpgate.delivery.capture import CaptureStore
from tests.conftest import need
from tests.delivery.harness import message, wait_until
from tests.smtp.server_harness import PASSWORD, RunningServer, free_port, init_data_dir

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "systemd" / "smtpgate.service"
SHIPPED_EXEC = "/opt/smtpgate/bin/smtpgate"
MAX_EXPOSURE = 2.5
PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1
NET_BIND_SERVICE_ONLY = "0000000000000400"  # bit 10


def systemd_analyze() -> str:
    tool = shutil.which("systemd-analyze")
    need(tool is not None, "systemd-analyze is not installed (apt-get install systemd)")
    return str(tool)


@pytest.fixture
def unit(tmp_path: Path) -> Path:
    """The shipped unit, its ExecStart pointed at this checkout's smtpgate (verify checks it exists)."""
    text = UNIT.read_text()
    assert f"ExecStart={SHIPPED_EXEC} serve" in text
    copy = tmp_path / "smtpgate.service"
    copy.write_text(text.replace(SHIPPED_EXEC, str(Path(sys.executable).with_name("smtpgate"))))
    return copy


def directives(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key, []).append(value)
    return found


def test_systemd_analyze_verify_accepts_the_unit(unit: Path) -> None:
    done = subprocess.run([systemd_analyze(), "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout + done.stderr == "", done.stdout + done.stderr


def test_exposure_is_ok_by_systemd_analyze_security(unit: Path) -> None:
    done = subprocess.run([systemd_analyze(), "security", "--offline=true", "--no-pager", str(unit)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    match = re.search(r"Overall exposure level for smtpgate\.service: (\d+\.\d) (\w+)", done.stdout)
    assert match, done.stdout
    assert float(match.group(1)) <= MAX_EXPOSURE and match.group(2) == "OK", done.stdout
    for passed in ("NoNewPrivileges=", "MemoryDenyWriteExecute=", "ProtectSystem=", "ProtectHome=", "PrivateTmp=",
                   "SystemCallFilter=~@privileged", "CapabilityBoundingSet=~CAP_SYS_ADMIN", "User=/DynamicUser="):
        assert re.search(rf"^✓ {re.escape(passed)}", done.stdout, re.M), f"{passed} not satisfied:\n{done.stdout}"


def test_the_unit_grants_only_net_bind_service_to_a_dedicated_user() -> None:
    found = directives(UNIT.read_text())
    assert found["CapabilityBoundingSet"] == ["CAP_NET_BIND_SERVICE"]
    assert found["AmbientCapabilities"] == ["CAP_NET_BIND_SERVICE"]
    assert found["User"] == ["smtpgate"] and found["StateDirectory"] == ["smtpgate"]
    assert found["SystemCallFilter"][0] == "@system-service"
    assert found["RestrictAddressFamilies"] == ["AF_INET AF_INET6 AF_UNIX"]
    sysusers = (ROOT / "deploy" / "systemd" / "smtpgate.sysusers").read_text()
    assert re.search(r"^u smtpgate - .* /var/lib/smtpgate ", sysusers, re.M)


def _unit_memory_rule() -> None:
    """In the child before exec: MemoryDenyWriteExecute, as the kernel's own W^X switch."""
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_MDWE)")


def confined(*caps: str) -> list[str]:
    wanted = ",".join(["-all", *(f"+{c}" for c in caps)])
    return [shutil.which("setpriv") or "setpriv", "--securebits", "+noroot,+noroot_locked", "--no-new-privs",
            f"--bounding-set={wanted}", f"--inh-caps={wanted}", f"--ambient-caps={wanted}"]


def status_of(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


def children_of(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_serves_587_and_465_with_only_net_bind_service_and_no_wx_memory(tmp_path: Path) -> None:
    need(os.geteuid() == 0, "dropping capabilities needs root")
    need(shutil.which("setpriv") is not None, "setpriv is not installed (util-linux)")
    host = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"  # 587 free there
    admin = free_port()
    config = init_data_dir(tmp_path / "data")
    text = re.sub(r'submission = "[^"]+"', f'submission = "{host}:587"', config.read_text())
    text = re.sub(r'submissions = "[^"]+"', f'submissions = "{host}:465"', text)
    config.write_text(re.sub(r'listen = "127.0.0.1:\d+"', f'listen = "127.0.0.1:{admin}"', text))
    env = {**os.environ, "SMTPGATE_CONFIG": str(config)}
    serve = [sys.executable, "-m", "smtpgate", "serve", "--workers", "2"]

    # Without the capability, binding 587 is refused: the capability is what makes it work.
    refused = subprocess.run([*confined(), *serve], env=env, capture_output=True, text=True, timeout=120,
                             preexec_fn=_unit_memory_rule)
    assert refused.returncode != 0 and "Permission denied" in refused.stdout + refused.stderr

    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([*confined("net_bind_service"), *serve], env=env, stdout=out,
                                stderr=subprocess.STDOUT, preexec_fn=_unit_memory_rule)
    gateway = RunningServer(config)
    try:
        workers = wait_until(lambda: proc.poll() is None and len(children_of(proc.pid)) == 2 and children_of(proc.pid),
                             timeout=60, what=f"two workers:\n{log.read_text()}")
        wait_until(lambda: f"listening on {host}:465" in log.read_text(), timeout=60, what="the listeners")
        for pid in [proc.pid, *workers]:
            status = status_of(pid)
            assert status["CapEff"] == status["CapPrm"] == status["CapBnd"] == NET_BIND_SERVICE_ONLY, status
            assert status["NoNewPrivs"] == "1"
        secret = gateway.account_with_app_password("alice@example.com")
        context = ssl.create_default_context(cafile=str(gateway.ca))
        context.check_hostname = False  # the certificate names localhost; the chain is still verified
        with smtplib.SMTP(host, 587, timeout=30) as client:
            client.starttls(context=context)
            client.login("alice@example.com", secret)
            client.sendmail("alice@example.com", ["bob@example.org"], message("over 587"))
        with smtplib.SMTP_SSL(host, 465, timeout=30, context=context) as client:
            client.login("alice@example.com", PASSWORD)
            client.sendmail("alice@example.com", ["bob@example.org"], message("over 465"))
        assert httpx.get(f"http://127.0.0.1:{admin}/healthz", timeout=10).json()["status"] == "ok"
        captured = CaptureStore(gateway.config.capture_dir).list()
        assert sorted(m.subject for m in captured) == ["over 465", "over 587"]
        assert proc.poll() is None, log.read_text()
    finally:
        proc.terminate()
        assert proc.wait(60) == 0, log.read_text()
        gateway.runtime.close()
