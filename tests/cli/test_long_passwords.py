"""Long passphrases through the real entry point: `account add --password-stdin`,
`account set-password`, then SMTP AUTH with them over real TLS (PLAIN and LOGIN)."""

from __future__ import annotations

import base64
import itertools
import smtplib

from hypothesis import HealthCheck, Phase, given, settings, strategies as st

from smtpgate.credentials.passwords import MAX_PASSWORD_LENGTH
from tests.cli.conftest import Cli
from tests.credentials.test_passwords import ALPHABETS, STRONG
from tests.smtp.server_harness import RunningServer

LOGINS = (f"long{n}@example.com" for n in itertools.count())


def typed(min_size: int = 0):
    """What one line of standard input can carry: no CR or LF, and no control character."""
    alphabets = [a.filter(lambda c: c not in "\r\n") for a in ALPHABETS.values()]
    return st.sampled_from(alphabets).flatmap(
        lambda a: st.text(a, min_size=min_size, max_size=MAX_PASSWORD_LENGTH - len(STRONG))
    ).map(lambda tail: STRONG + tail)


def smtp_login(server: RunningServer, login: str, password: str, *, mechanism: str, implicit: bool) -> None:
    if implicit:
        client: smtplib.SMTP = smtplib.SMTP_SSL("127.0.0.1", server.submissions_port, context=server.client_context(), timeout=20)
    else:
        client = smtplib.SMTP("127.0.0.1", server.submission_port, timeout=20)
        client.starttls(context=server.client_context())
    with client:
        client.ehlo("client.test")
        # by hand: smtplib's own AUTH encodes as ASCII only
        if mechanism == "PLAIN":
            code, reply = client.docmd("AUTH", "PLAIN " + b64(f"\0{login}\0{password}"))
        else:
            assert client.docmd("AUTH", "LOGIN")[0] == 334
            assert client.docmd(b64(login))[0] == 334
            code, reply = client.docmd(b64(password))
        assert code == 235, reply


def b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


@settings(max_examples=3, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=typed(min_size=50), second=typed(min_size=50), implicit=st.booleans())
def test_long_passphrases_are_set_and_log_in(server: RunningServer, first: str, second: str, implicit: bool) -> None:
    cli = Cli(server.config_path)
    login = next(LOGINS)
    added = cli("account", "add", login, "--password-stdin", input=first + "\n")
    assert added.code == 0, added.stderr
    smtp_login(server, login, first, mechanism="PLAIN", implicit=implicit)
    changed = cli("account", "set-password", login, "--password-stdin", input=second + "\n")
    assert changed.code == 0, changed.stderr
    smtp_login(server, login, second, mechanism="LOGIN", implicit=not implicit)


def test_the_longest_accepted_and_one_more(server: RunningServer) -> None:
    cli = Cli(server.config_path)
    longest = STRONG + "ü" * (MAX_PASSWORD_LENGTH - len(STRONG))
    cli.ok("account", "add", "longest@example.com", "--password-stdin", input=longest + "\n")
    smtp_login(server, "longest@example.com", longest, mechanism="PLAIN", implicit=False)
    refused = cli("account", "set-password", "longest@example.com", "--password-stdin", input=longest + "ü\n")
    assert refused.code == 1
    assert "1,025 characters, at most 1,024 are accepted" in refused.stderr
    assert "Traceback" not in refused.stderr
    smtp_login(server, "longest@example.com", longest, mechanism="LOGIN", implicit=True)  # unchanged


def test_a_password_that_is_not_utf8_is_refused(cli: Cli) -> None:
    import subprocess

    from tests.cli.conftest import SMTPGATE

    proc = subprocess.run(
        [SMTPGATE, "--config", str(cli.config), "account", "add", "a@example.com", "--password-stdin"],
        input=STRONG.encode() + b"\xff\xfe\n", capture_output=True, timeout=60,
    )
    assert proc.returncode == 2
    assert b"not UTF-8" in proc.stderr and b"Traceback" not in proc.stderr
