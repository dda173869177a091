"""One exit-code table for every command (README, "Exit codes"): 0 ok, 1 refused,
2 usage or config, 3 a server it needs is unreachable. Through the real entry point."""

from __future__ import annotations

import socket

import pytest

from tests.cli.conftest import Cli

PASSWORD = "tulip-anvil-orbit-quartz-59"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Cli:
    from tests.cli.conftest import _initialised

    cli = _initialised(tmp_path_factory.mktemp("codes") / "data")
    cli.ok("account", "add", "alice@example.com", "--no-password")
    return cli


USAGE = [
    ("account", "add"),  # missing argument
    ("creds", "list", "--bogus"),  # unknown option
    ("ban", "add", "192.0.2.0/24", "--for", "soon"),
    ("ban", "add", "192.0.2.300"),
    ("ban", "add", "192.0.2.7/24"),
    ("app-password", "create", "alice@example.com", "--name", "x", "--allow-ip", "10.0.0.1/8"),
    ("app-password", "create", "alice@example.com", "--name", "x", "--allow-from", "nodomain"),
    ("app-password", "create", "alice@example.com", "--name", "x", "--expires", "soon"),
    ("audit", "--since", "yesterday"),
    ("queue", "delete"),
    ("send", "--server", "localhost:99999", "--from", "a@example.com", "--to", "b@example.com"),
    ("doctor",),
]
REFUSED = [
    ("account", "show", "nobody@example.com"),
    ("account", "add", "alice@example.com", "--no-password"),
    ("creds", "revoke", "ap_000000000000"),
    ("creds", "show", "ap_000000000000"),
    ("capture", "show", "nope"),
    ("ban", "remove", "192.0.2.0/24"),
    ("ban", "add", "127.0.0.1"),
    ("app-password", "create", "nobody@example.com", "--name", "x"),
    ("app-password", "create", "alice@example.com", "--name", "x", "--allow-from", "@evil.com"),
]


@pytest.mark.parametrize("args", USAGE, ids=" ".join)
def test_usage_errors_exit_2(shared: Cli, args: tuple[str, ...]) -> None:
    result = shared(*args)
    assert result.code == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and "Value error" not in result.stderr


@pytest.mark.parametrize("args", REFUSED, ids=" ".join)
def test_refusals_exit_1(shared: Cli, args: tuple[str, ...]) -> None:
    result = shared(*args)
    assert result.code == 1, (result.stdout, result.stderr)
    assert "error:" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("args", [("account", "list"), ("creds", "list"), ("ban", "list"), ("capture", "list"), ("audit",)], ids=" ".join)
def test_a_missing_or_broken_config_exits_2(tmp_path, args: tuple[str, ...]) -> None:
    missing = Cli(tmp_path / "nope.toml")(*args)
    assert missing.code == 2 and "smtpgate init" in missing.stderr
    broken = tmp_path / "broken.toml"
    broken.write_text("[smtp]\nmax_recipients = 'lots'\n")
    assert Cli(broken)(*args).code == 2


def test_an_unreachable_database_exits_3(tmp_path) -> None:
    data = tmp_path / "d"
    Cli(None).ok("init", "--data-dir", str(data))
    config = data / "smtpgate.toml"
    text = config.read_text()
    assert '\nurl = ""\n' in text
    config.write_text(text.replace('\nurl = ""\n', f'\nurl = "postgresql://nobody@127.0.0.1:{closed_port()}/x"\n', 1))
    for args in (("account", "list"), ("creds", "list")):
        result = Cli(config)(*args)
        assert result.code == 3, (result.stdout, result.stderr)
        assert "database is unreachable" in result.stderr


def test_an_unreachable_smtp_server_exits_3(shared: Cli) -> None:
    port = closed_port()
    sent = shared("send", "--server", f"127.0.0.1:{port}", "--from", "a@example.com", "--to", "b@example.com",
                  "--body", "hi", "--tls", "none")
    assert sent.code == 3, (sent.stdout, sent.stderr)
    checked = shared("doctor", "127.0.0.1", "--port", str(port), "--connect-timeout", "1")
    assert checked.code == 3, (checked.stdout, checked.stderr)


def test_revoking_twice_says_it_already_was_and_exits_0(shared: Cli) -> None:
    created = shared.ok("app-password", "create", "alice@example.com", "--name", "twice", "--json").json()
    first = shared.ok("creds", "revoke", created["id"])
    assert "Revoked" in first.stdout
    second = shared.ok("creds", "revoke", created["id"])
    assert "already revoked" in second.stdout and "nothing changed" in second.stdout
    assert shared.ok("creds", "revoke", created["id"], "--json").json()["already_revoked"] is True


def test_ban_add_and_ban_list_return_the_same_fields(shared: Cli) -> None:
    added = shared.ok("ban", "add", "198.51.100.0/24", "--for", "1h", "--reason", "scan", "--json").json()
    listed = next(b for b in shared.ok("ban", "list", "--json").json() if b["network"] == "198.51.100.0/24")
    assert set(added) == set(listed) and added == listed
