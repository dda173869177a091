"""`smtpgate send`: one message through any SMTP server, with the password kept off argv.

Also home of the password options that `doctor` and `profile` share: standard input, an
environment variable, a 0600 file, or a saved profile. A password is never an argument:
it would land in the shell history and in every `ps` listing.
"""

from __future__ import annotations

import mimetypes
import os
import sys
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from smtpgate.cli.common import REFUSED, UNREACHABLE, err, fail, out, print_json, read_secret_from_stdin
from smtpgate.profiles import ProfileError, ProfileStore, read_private_file

if TYPE_CHECKING:
    from smtpgate.client import ServerSettings

PasswordStdin = Annotated[bool, typer.Option("--password-stdin", help="Read the password from the first line of standard input.")]
PasswordEnv = Annotated[str | None, typer.Option("--password-env", metavar="VAR", help="Read the password from this environment variable.")]
PasswordFile = Annotated[Path | None, typer.Option("--password-file", help="Read the password from a file only you can read (chmod 600).")]
ProfileName = Annotated[str | None, typer.Option("--profile", help="A saved profile (smtpgate profile add): server, login and secret.")]
PasswordOnArgv = Annotated[str | None, typer.Option("--password", hidden=True, show_default=False)]
TlsMode = Annotated[str, typer.Option("--tls", help="auto (465: implicit TLS, else STARTTLS), starttls, tls, or none.")]

NEVER_ARGV = ("Passwords are never command-line arguments: they end up in shell history and in `ps`. "
              "Use --password-stdin, --password-env VAR, --password-file FILE or --profile NAME.")


def refuse_argv_password(value: str | None) -> None:
    if value is not None:
        fail("--password is not accepted", NEVER_ARGV, code=2)


def password_from(stdin: bool, env_var: str | None, file: Path | None) -> str | None:
    """The password from the one source given, or None when none was given."""
    if sum(bool(x) for x in (stdin, env_var, file)) > 1:
        fail("--password-stdin, --password-env and --password-file exclude each other", "Give one of them.", code=2)
    if stdin:
        return read_secret_from_stdin("password")
    if env_var:
        value = os.environ.get(env_var, "")
        if not value:
            fail(f"the environment variable {env_var} is not set or is empty",
                 f"Export it first (export {env_var}=...), or use another password source.", code=2)
        return value
    if file:
        try:
            return read_private_file(file, "password")
        except ProfileError as exc:
            fail(str(exc), exc.hint)
    return None


def prompt_password(user: str) -> str:
    """Ask on the terminal; fail with the choices when there is none."""
    if sys.stdin.isatty():
        return typer.prompt(f"Password for {user}", hide_input=True)
    fail(f"no password given for {user}", NEVER_ARGV, code=2)


def split_server(value: str) -> tuple[str, int | None]:
    """HOST, HOST:PORT or [IPv6]:PORT."""
    value = value.strip()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest.removeprefix(":")
    elif value.count(":") == 1:
        host, _, port = value.partition(":")
    else:
        host, port = value, ""
    if not host or (port and (not port.isdigit() or not 0 < int(port) < 65536)):
        fail(f"--server {value!r} is not HOST or HOST:PORT", "Example: --server mail.example.com:587", code=2)
    return host, int(port) if port else None


def tls_for(mode: str, port: int) -> str:
    mode = mode.lower()
    if mode not in ("auto", "starttls", "tls", "none"):
        fail(f"--tls {mode}: expected auto, starttls, tls or none", code=2)
    return ("tls" if port == 465 else "starttls") if mode == "auto" else mode


def send(
    server: Annotated[str | None, typer.Option("--server", "-s", help="HOST or HOST:PORT (default port 587).")] = None,
    port: Annotated[int | None, typer.Option("--port", "-p", help="Port, if not in --server.")] = None,
    tls: TlsMode = "auto",
    cafile: Annotated[Path | None, typer.Option("--cafile", help="Trust this CA (or self-signed) certificate file.")] = None,
    sender: Annotated[str | None, typer.Option("--from", "-f", help="Sender address (From: and MAIL FROM).")] = None,
    to: Annotated[list[str] | None, typer.Option("--to", "-t", help="Recipient; repeat for more.")] = None,
    subject: Annotated[str, typer.Option("--subject", help="Subject line.")] = "",
    body: Annotated[str | None, typer.Option("--body", help="Message text; without it, read from standard input.")] = None,
    attach: Annotated[list[Path] | None, typer.Option("--attach", "-a", help="Attach a file; repeat for more.")] = None,
    header: Annotated[list[str] | None, typer.Option("--header", help="Extra header 'Name: value'; repeatable.")] = None,
    user: Annotated[str | None, typer.Option("--user", "-u", help="Login (often the full address).")] = None,
    password_stdin: PasswordStdin = False,
    password_env: PasswordEnv = None,
    password_file: PasswordFile = None,
    profile: ProfileName = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for the server at each step.")] = 30.0,
    json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    password: PasswordOnArgv = None,
) -> None:
    """Send one message (like swaks): server, TLS and login from options or a saved profile."""
    from smtpgate.client import (  # here: other commands need not load it
        SendError,
        send_with,
    )

    refuse_argv_password(password)
    if not to:
        fail("no recipient", "Give at least one --to ADDRESS.", code=2)
    if body is None and password_stdin:
        fail("standard input carries the password, so the body cannot come from it too",
             "Give the body with --body TEXT, or the password another way (--password-env, --password-file, --profile).", code=2)
    secret = password_from(password_stdin, password_env, password_file)
    settings, secret = client_settings(server, port, tls, cafile, user, profile, secret)
    if body is None:
        if sys.stdin.isatty():
            fail("no message body", "Give --body TEXT, or pipe the body in: echo hi | smtpgate send ...", code=2)
        body = sys.stdin.read()
    message = _message(settings, sender, to, subject, body, attach or [], header or [])
    try:
        result = send_with(settings, secret, message, to=list(to), sender=sender, timeout=timeout)
    except SendError as exc:
        code = UNREACHABLE if exc.code == 0 and exc.stage in ("dns", "connect") else REFUSED
        if json:
            print_json({"sent": False, **exc.to_json()})
            raise typer.Exit(code) from None
        fail(exc.summary, f"cause: {exc.cause}\nfix:   {exc.fix}", code=code)
    except ProfileError as exc:
        fail(str(exc), exc.hint)
    if json:
        print_json({"sent": True, **result.to_json()})
        return
    out.print(f"Sent to {', '.join(result.recipients)}: {result.reply}", markup=False)
    for rcpt, why in result.refused.items():
        err.print(f"refused: {rcpt}: {why}", markup=False)


def client_settings(server: str | None, port: int | None, tls: str, cafile: Path | None, user: str | None,
                    profile: str | None, secret: str | None) -> tuple[ServerSettings, str]:
    """Where to connect and the password: options first, then the profile, then a prompt."""
    from smtpgate.client import ServerSettings

    store = ProfileStore()
    try:
        saved = store.get(profile) if profile else None
        settings = ServerSettings.from_profile(saved) if saved else ServerSettings(host="")
        if server:
            settings.host, server_port = split_server(server)
            settings.port = server_port or settings.port
        if not settings.host:
            fail("no server", "Give --server HOST[:PORT], or --profile NAME.", code=2)
        settings.port = port or settings.port
        if tls != "auto" or saved is None or settings.port != saved.port:
            settings.tls = tls_for(tls, settings.port)
        settings.cafile = str(cafile) if cafile else settings.cafile
        settings.user = settings.user if user is None else user
        if secret is None and saved is not None and saved.user and settings.user == saved.user:
            secret = store.secret(saved)
    except ProfileError as exc:
        fail(str(exc), exc.hint)
    if settings.user and secret is None:
        secret = prompt_password(settings.user)
    return settings, secret or ""


def _message(settings: ServerSettings, sender: str | None, to: list[str], subject: str, body: str,
             attach: list[Path], headers: list[str]) -> EmailMessage:
    message = EmailMessage()
    from_addr = sender or settings.sender or (settings.user if "@" in settings.user else "")
    if not from_addr:
        fail("no sender address", "Give --from ADDRESS (or a login that is an address).", code=2)
    message["From"] = from_addr
    message["To"] = ", ".join(to)
    message["Subject"] = subject
    for line in headers:
        name, sep, value = line.partition(":")
        if not sep or not name.strip() or " " in name.strip():
            fail(f"--header {line!r} is not 'Name: value'", code=2)
        message[name.strip()] = value.strip()
    message.set_content(body)
    for path in attach:
        try:
            data = path.read_bytes()
        except OSError as exc:
            fail(f"cannot attach {path}: {exc.strerror}", "Check the path and that this user may read it.")
        kind, _ = mimetypes.guess_type(path.name)
        maintype, _, subtype = (kind or "application/octet-stream").partition("/")
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=path.name)
    return message


def register(root: typer.Typer) -> None:
    root.command("send")(send)
