"""A refused API token counts in the guard like a failed SMTP login: the source is banned."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.admin.conftest import start_api
from tests.admin.test_api import problem
from tests.guard.servers import eventually


def test_guessing_tokens_bans_the_source_and_is_audited(tmp_path: Path) -> None:
    server, api = start_api(tmp_path / "data", guard={"allow_networks": "[]", "ip_failures": "3"})
    try:
        with api.client("admin") as good:
            assert good.get("/api/v1/accounts").status_code == 200
            for guess in ("sga_" + "a" * 39, "not-a-token", "sga_" + "b" * 39):
                problem(httpx.get(f"{api.base}/api/v1/accounts", headers={"Authorization": f"Bearer {guess}"}),
                        401, "unauthorized")
            body = problem(good.get("/api/v1/accounts"), 403, "source-banned")
            assert "banned" in body["detail"]
        bans = eventually(server.runtime.guard.recorded_bans, lambda found: len(found) == 1)
        assert [b.network for b in bans] == ["127.0.0.1/32"] and "failed logins" in bans[0].reason
        refused = eventually(
            lambda: [s.event for s in server.runtime.audit_store.query(kind="auth", result="fail", limit=10)],
            lambda found: len(found) >= 3, timeout=60)
        assert {e.listener for e in refused} == {"api"} and len(refused) == 3
        assert {e.reason for e in refused} == {"token-malformed"}  # checksums fail before any look-up
        assert all(api.tokens["admin"].secret not in str(e.to_json()) for e in refused)
    finally:
        server.close()
