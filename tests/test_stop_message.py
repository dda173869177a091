"""Ctrl-C on `make run` stops the supervisor and its workers with status 0, no traceback, and a
last line that says the server stopped (the supervisor forwards the signal to the workers)."""

from __future__ import annotations

import signal
from functools import partial

import httpx

from tests.guard.servers import eventually
from tests.smtp.server_harness import RunningServer


def status_of(url: str) -> int:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return 0


def test_ctrl_c_stops_the_supervisor_and_its_workers_and_the_log_says_so(fresh_server: RunningServer) -> None:
    fresh_server.start("--workers", "2", env={"PYTHONUNBUFFERED": "1"})
    assert fresh_server.proc is not None
    assert eventually(lambda: fresh_server.log().count("(submission, STARTTLS)"), lambda n: n == 2, timeout=20) == 2
    healthz = partial(status_of, f"http://{fresh_server.config.admin.listen}/healthz")
    assert eventually(healthz, lambda code: code == 200) == 200  # worker 0 serves it once its signal handlers are set
    fresh_server.proc.send_signal(signal.SIGINT)
    assert fresh_server.proc.wait(30) == 0
    log = fresh_server.log()
    assert log.count("stopping: finishing transactions in flight") == 2 and "Traceback" not in log
    assert log.rstrip().splitlines()[-1].endswith("smtpgate.process: stopped")
