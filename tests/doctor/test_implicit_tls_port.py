"""`smtpgate doctor HOST --port 2465`, without `:tls`: smtpgate's implicit-TLS listener closes a
connection that sends no ClientHello within `tls_handshake_timeout`, before the doctor's own
timeout; the doctor must still find that the port speaks implicit TLS, not report a ban."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from smtpgate.doctor import Status
from tests.doctor.conftest import doctor
from tests.smtp.server_harness import RunningServer, init_data_dir


@pytest.fixture
def quick_closing_server(tmp_path: Path) -> Iterator[RunningServer]:
    server = RunningServer(init_data_dir(tmp_path / "data", smtp={"tls_handshake_timeout": '"500ms"'}))
    server.start()
    yield server
    server.close()


def test_a_port_that_closes_on_a_silent_client_is_tried_with_implicit_tls(quick_closing_server: RunningServer) -> None:
    port = quick_closing_server.submissions_port
    report = doctor(str(port), cafile=str(quick_closing_server.ca), timeout=3.0)
    assert report.get(f"tls:{port}").status is Status.PASS, report
    assert [c.id for c in report.checks if c.status is Status.FAIL] == []
