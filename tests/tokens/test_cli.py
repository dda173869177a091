"""`smtpgate service-account ...` and `smtpgate token ...` through the real entry point."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.cli.conftest import Cli, _initialised


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return _initialised(tmp_path / "data")


@pytest.fixture(scope="module")
def shared_cli(tmp_path_factory: pytest.TempPathFactory) -> Cli:
    """One data dir for the tests that only read or fail (each CLI run costs a process start)."""
    return _initialised(tmp_path_factory.mktemp("token-cli") / "data")


def test_service_account_life_cycle(cli: Cli) -> None:
    """The store under it runs on SQLite and PostgreSQL in test_service.py; here, the faces."""
    created = cli.ok("service-account", "create", "Billing-Bot@Example.com", "--name", "billing",
                     "--allow-from", "@example.com", "--token-lifetime", "15m", "--json").json()
    assert created["login"] == "billing-bot@example.com" and created["client_id"].startswith("sa_")
    assert created["client_secret"].startswith("sgc_") and created["token_lifetime"] == 900
    human = cli.ok("service-account", "create", "printer@example.com")
    assert "Client secret (shown once, store it now): sgc_" in human.stdout
    listed = cli.ok("service-account", "list", "--json").json()
    assert [a["login"] for a in listed] == ["billing-bot@example.com", "printer@example.com"]
    assert all("client_secret" not in a and "secret_hash" not in a for a in listed)
    shown = cli.ok("service-account", "show", created["client_id"])
    assert "may send as    @example.com" in shown.stdout and "token lifetime 15m" in shown.stdout

    token = cli.ok("token", "issue", "billing-bot@example.com", "--scope", "smtp sender:a@example.com")
    access = token.stdout.strip()
    assert access.count(".") == 2 and "jti " in token.stderr  # only the token on stdout
    jwks = cli.ok("token", "jwks").json()
    claims = jwt.decode(access, KeySet.import_key_set(jwks), algorithms=["ES256"]).claims
    assert claims["scope"] == "smtp sender:a@example.com" and claims["exp"] - claims["iat"] == 900
    tokens = cli.ok("token", "list", "--json").json()
    assert [t["jti"] for t in tokens] == [claims["jti"]] and access not in json.dumps(tokens)

    revoked = cli.ok("token", "revoke", claims["jti"], "--json").json()
    assert revoked["revoked_at"] is not None
    reset = cli.ok("service-account", "reset-secret", "printer@example.com", "--json").json()
    assert reset["client_secret"].startswith("sgc_") and reset["client_secret"] != human.stdout
    gone = cli.ok("service-account", "revoke", created["client_id"], "--json").json()
    assert gone["state"] == "revoked"
    refused = cli("token", "issue", created["client_id"])
    assert refused.code == 1 and "revoked" in refused.stderr


def test_signing_keys(cli: Cli) -> None:
    first = cli.ok("token", "jwks").json()["keys"]
    assert len(first) == 1 and "d" not in first[0]
    key_file = cli.config.parent / "secrets" / "token-keys" / f"{first[0]['kid']}.jwk.json"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    rotated = cli.ok("token", "rotate-key", "--json").json()
    assert rotated["kid"] != first[0]["kid"] and set(rotated["published"]) == {first[0]["kid"], rotated["kid"]}


@pytest.mark.parametrize(("args", "code", "message"), [
    (("service-account", "show", "nobody@example.com"), 1, "no service account nobody@example.com"),
    (("service-account", "create", "not-an-address"), 1, "is not an address"),
    (("service-account", "create", "x@example.com", "--allow-from", "bogus"), 2, "is not a sender address"),
    (("service-account", "create", "x@example.com", "--token-lifetime", "soon"), 2, "--token-lifetime"),
    (("token", "issue", "nobody@example.com"), 1, "service-account list"),
    (("token", "issue", "x", "--lifetime", "forever"), 2, "--lifetime"),
    (("token", "revoke", "no-such-jti"), 1, "no token with jti no-such-jti"),
    (("token", "revoke", "--", "-an-idp-jti"), 1, "no token with jti -an-idp-jti"),
    (("token", "revoke", "j", "--issuer", "https://unknown.test/"), 1, "not a configured token issuer"),
])
def test_clear_errors(shared_cli: Cli, args: tuple[str, ...], code: int, message: str) -> None:
    result = shared_cli(*args)
    assert result.code == code, (result.stdout, result.stderr)
    assert message in result.stderr


def test_scope_beyond_the_account_is_refused(shared_cli: Cli) -> None:
    shared_cli.ok("service-account", "create", "bot@example.com")
    result = shared_cli("token", "issue", "bot@example.com", "--scope", "smtp sender:ceo@example.com")
    assert result.code == 1 and "beyond what this service account may send as" in result.stderr


def test_bad_tokens_config_names_the_key(cli: Cli) -> None:
    config = cli.config
    config.write_text(config.read_text() + '\n[[tokens.issuers]]\nname = "corp"\nissuer = "https://i.test"\n'
                      'audience = "a"\njwks_url = "https://i.test/keys"\nalgorithms = ["none"]\n')
    result = cli("token", "jwks")
    assert result.code == 2 and "tokens.issuers.0.algorithms" in result.stderr and "'none'" in result.stderr
