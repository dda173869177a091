"""The admin HTTP listener answers on the real server."""

import httpx

from tests.smtp.server_harness import RunningServer


def test_healthz_on_the_admin_listener(fresh_server: RunningServer) -> None:
    fresh_server.start()
    host, _, port = fresh_server.config.admin.listen.rpartition(":")
    response = httpx.get(f"http://{host}:{port}/healthz", timeout=5)
    assert response.status_code == 200 and response.json()["status"] == "ok"
