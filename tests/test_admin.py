"""The admin HTTP listener answers on the real server."""

import httpx
import pytest

from tests.smtp.server_harness import RunningServer


def test_healthz_on_the_admin_listener(fresh_server: RunningServer) -> None:
    fresh_server.start()
    host, _, port = fresh_server.config.admin.listen.rpartition(":")
    response = httpx.get(f"http://{host}:{port}/healthz", timeout=5)
    assert response.status_code == 200 and response.json()["status"] == "ok"
    # on loopback it stays plain HTTP, says so, and warns of nothing
    log = fresh_server.log()
    assert f"admin listener on http://127.0.0.1:{port} (" in log and "non-loopback" not in log
    form = httpx.get(f"http://{host}:{port}/signin", timeout=5)
    flags = {part.strip().lower() for part in form.headers["set-cookie"].split(";")[1:]}
    assert form.status_code == 200 and "httponly" in flags and "secure" not in flags
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"https://{host}:{port}/healthz", timeout=5, verify=False)
