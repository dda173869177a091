"""`smtpgate --api URL ...`: the same commands through the REST API of a running server, with the
same output and exit codes as on the server itself."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from smtpgate.cli.main import app
from smtpgate.delivery.capture import Envelope
from tests.admin.conftest import Api, start_api


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    server, api = start_api(tmp_path_factory.mktemp("remote") / "data")
    yield api
    server.close()


class Faces:
    """The same command run locally (on the server's own config) and through --api."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.runner = CliRunner()

    def local(self, *args: str, input: str | None = None) -> tuple[int, str, str]:
        result = self.runner.invoke(app, ["--config", str(self.api.server.config_path), *args], input=input,
                                    env={"SMTPGATE_API_TOKEN": ""})
        return result.exit_code, result.stdout, result.stderr

    def remote(self, *args: str, role: str = "admin", input: str | None = None) -> tuple[int, str, str]:
        token = self.api.tokens[role].secret
        result = self.runner.invoke(app, ["--api", self.api.base, *args], input=input,
                                    env={"SMTPGATE_API_TOKEN": token, "SMTPGATE_CONFIG": "/nonexistent.toml"})
        return result.exit_code, result.stdout, result.stderr

    def same(self, *args: str) -> tuple[int, str, str]:
        local, remote = self.local(*args), self.remote(*args)
        assert remote == local, (args, local, remote)
        return remote


@pytest.fixture(scope="module")
def faces(api: Api) -> Faces:
    return Faces(api)


def test_accounts_app_passwords_and_creds_through_the_api(faces: Faces, api: Api) -> None:
    code, out, _ = faces.remote("account", "add", "remote@example.com", "--no-password", "--name", "Remote")
    assert (code, out) == (0, "Created account remote@example.com\n")
    assert faces.local("account", "add", "local@example.com", "--no-password", "--name", "Local")[1] \
        == out.replace("remote@", "local@")
    code, out, _ = faces.remote("account", "add", "gen@example.com", "--generate", "--json")
    assert code == 0 and '"password"' in out
    code, out, _ = faces.remote("account", "add", "invited@example.com", "--invite", "--role", "viewer")
    assert code == 0 and "Invitation link (shown once; works once, until " in out and "/invite/sgi_" in out, out
    code, out, _ = faces.remote("account", "invite", "invited@example.com")
    assert code == 0 and "/invite/sgi_" in out, out
    faces.same("account", "list")
    faces.same("account", "list", "--json")
    faces.same("account", "show", "remote@example.com")
    assert faces.remote("account", "set", "remote@example.com", "--owner", "ops")[0] == 0
    faces.same("account", "show", "remote@example.com", "--json")
    assert faces.remote("account", "disable", "remote@example.com") == \
        (0, "Disabled remote@example.com: none of its credentials authenticate any more.\n", "")
    assert faces.remote("account", "enable", "remote@example.com")[0] == 0

    code, out, _ = faces.remote("app-password", "create", "remote@example.com", "--name", "billing",
                                "--allow-ip", "192.0.2.0/24", "--max-per-hour", "50", "--expires", "90d")
    assert code == 0 and out.startswith("Created app-password ap_") and "Secret (shown once, store it now): sgp_" in out
    credential_id = out.split()[2]
    faces.same("creds", "list")
    faces.same("creds", "list", "--account", "remote@example.com", "--json")
    faces.same("creds", "show", credential_id)
    code, out, _ = faces.remote("creds", "rotate", credential_id, "--overlap", "1h")
    assert code == 0 and "Rotated: new app-password" in out and f"The old secret {credential_id} stops at" in out
    successor = out.split()[3]
    assert faces.remote("creds", "revoke", successor) == (0, f"Revoked {successor} (billing) of remote@example.com.\n", "")
    faces.same("creds", "revoke", successor)  # already revoked: exit 0 both ways, the same words
    faces.same("creds", "show", successor, "--json")


def test_refusals_have_the_same_words_and_exit_codes(faces: Faces) -> None:
    assert faces.same("account", "show", "nobody@example.com")[0] == 1
    assert faces.same("creds", "show", "ap_nothere")[0] == 1
    assert faces.same("account", "add", "not an address", "--no-password")[0] == 1  # a refused value, as locally
    faces.local("account", "add", "twice@example.com", "--no-password")
    assert faces.same("account", "add", "twice@example.com", "--no-password")[0] == 1
    assert faces.same("app-password", "create", "twice@example.com", "--name", "x", "--allow-ip", "lan")[0] == 2
    # the API's schema refuses a limit below 1 before the core sees it: the same exit code, in the schema's words
    args = ("app-password", "create", "twice@example.com", "--name", "x", "--max-per-day", "0")
    assert faces.local(*args)[0] == faces.remote(*args)[0] == 2
    assert faces.same("queue", "hold")[0] == 2
    assert faces.same("ban", "remove", "198.51.100.9")[0] == 1


def test_a_viewer_token_is_refused_with_the_role_to_use(faces: Faces) -> None:
    code, _, err = faces.remote("account", "disable", "twice@example.com", role="viewer")
    assert code == 1 and "role-insufficient" not in err and "--role operator" in err


def test_bans_audit_and_the_queue_through_the_api(faces: Faces, api: Api) -> None:
    code, out, _ = faces.remote("ban", "add", "198.51.100.0/24", "--for", "1h", "--reason", "remote test")
    assert code == 0 and out.startswith("Banned 198.51.100.0/24 until ")
    faces.same("ban", "list", "--json")
    assert faces.remote("ban", "remove", "198.51.100.0/24") == (0, "Lifted the ban of 198.51.100.0/24\n", "")
    faces.same("ban", "list")

    queue = api.server.runtime.queue
    envelope = Envelope("remote@example.com", ("b@example.org",), "ap_held", "remote@example.com", "127.0.0.1",
                        "client.test", datetime.now(UTC))
    message = queue.enqueue(envelope, b"Subject: queued\r\n\r\nbody\r\n")
    faces.same("queue", "list")
    code, out, _ = faces.remote("queue", "hold", "--credential", "ap_held")
    assert code == 0 and out.startswith("1 message(s) of credential ap_held held.")
    faces.same("queue", "list", "--held", "--json")
    assert faces.remote("queue", "release", "--credential", "ap_held", "--json")[0] == 0
    assert faces.remote("queue", "hold", message.id)[1] == "1 message(s) held.\n"
    assert faces.remote("queue", "release", message.id)[1] == "1 message(s) released.\n"
    faces.same("queue", "list", "--held")

    faces.same("audit", "--limit", "5")
    code, out, _ = faces.remote("audit", "--kind", "operator", "--json", "--limit", "300")
    assert code == 0 and '"actor": "api:test-admin"' in out and '"action": "ban.add"' in out
    assert faces.local("audit", "--kind", "operator", "--json", "--limit", "300")[1] == out


def test_a_command_that_runs_on_the_server_only_says_so(faces: Faces) -> None:
    for command in (["serve"], ["init"], ["backup", "create"], ["doctor", "localhost"], ["send"], ["profile", "list"],
                    ["upstream", "show"]):
        code, _, err = faces.remote(*command)
        assert code == 2 and "has no --api mode" in err, (command, err)
    code, _, err = faces.remote("creds", "due")  # it reads the server's rotation age from its config
    assert code == 2 and "not available through --api" in err


def test_a_bad_token_a_missing_one_or_an_unreachable_server_is_said_clearly(api: Api, tmp_path: Path) -> None:
    environ = {**os.environ, "SMTPGATE_API_TOKEN": "sga_" + "a" * 39}
    environ.pop("SMTPGATE_CONFIG", None)
    smtpgate = [sys.executable, "-m", "smtpgate", "--api", api.base]
    run = subprocess.run([*smtpgate, "account", "list"], env=environ, capture_output=True, text=True, timeout=60)
    assert run.returncode == 1 and "SMTPGATE_API_TOKEN" in run.stderr and "refused the operator token" in run.stderr
    token_file = tmp_path / "token"
    token_file.write_text(api.tokens["viewer"].secret + "\n")
    runner = CliRunner()
    listed = runner.invoke(app, ["--api", api.base, "--api-token-file", str(token_file), "account", "list", "--json"],
                           env={"SMTPGATE_API_TOKEN": ""})
    assert listed.exit_code == 0 and listed.stdout.startswith("[")
    missing = runner.invoke(app, ["--api", api.base, "creds", "list"], env={"SMTPGATE_API_TOKEN": ""})
    assert missing.exit_code == 2 and "SMTPGATE_API_TOKEN" in missing.stderr
    unreachable = runner.invoke(app, ["--api", "http://127.0.0.1:9", "creds", "list"], env={"SMTPGATE_API_TOKEN": "sga_x"})
    assert unreachable.exit_code == 3 and "unreachable" in unreachable.stderr
