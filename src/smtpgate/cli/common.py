"""What every command shares: the --config option, the runtime, output, and error handling."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console

from smtpgate.config import CONFIG_ENV, ConfigError, load_config
from smtpgate.errors import OpError
from smtpgate.runtime import Runtime

if TYPE_CHECKING:
    from smtpgate.ops import Actor, Operations

# Piped output keeps whole ids and addresses instead of wrapping at 80 columns.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False, soft_wrap=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        envvar=CONFIG_ENV,
        help=f"Config file (default: ./smtpgate.toml, or ${CONFIG_ENV}).",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON only, for scripts.")]


# One exit-code table for every command (README, "Exit codes"; tests/cli/test_exit_codes.py).
OK, REFUSED, USAGE, UNREACHABLE = 0, 1, 2, 3
remote_api: Any = None
"""`--api URL` and its token for this run (a `cli.remote.Remote`), or None: the commands run on this machine."""
UNREACHABLE_CODES = ("store-unavailable", "ban-recorded-backend-down", "unban-recorded-backend-down", "api-unreachable")


def fail(message: str, hint: str = "", code: int = REFUSED) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", markup=True) if sys.stderr.isatty() else err.print(
        f"error: {message}", markup=False
    )
    if hint:
        err.print(hint, markup=False)
    raise typer.Exit(code)


@contextmanager
def operations(config_path: Path | None) -> Iterator[tuple[Operations, Actor]]:
    """The operations layer on this machine's runtime, and the local user as the actor;
    with `--api URL`, the remote server's, reached through its REST API (`cli/remote.py`)."""
    from smtpgate.ops import Actor, Operations

    if remote_api is not None:
        from smtpgate.ops.remote import RemoteOperations

        with handled_errors():
            client = RemoteOperations(remote_api.url, remote_api.token)
            try:
                yield client, Actor.local()  # type: ignore[misc]  # Operations' shape, over HTTP
            finally:
                client.close()
        return
    with runtime(config_path) as rt:
        yield Operations(rt), Actor.local()


@contextmanager
def runtime(config_path: Path | None) -> Iterator[Runtime]:
    """Load the config and open the services; turn known errors into clear messages."""
    if remote_api is not None:
        fail("this command runs on the server itself; it has no --api mode", code=USAGE)
    with handled_errors():
        rt = Runtime(load_config(config_path))
        try:
            yield rt
        finally:
            rt.close()


@contextmanager
def handled_errors() -> Iterator[None]:
    try:
        yield
    except ConfigError as exc:
        fail(str(exc), code=2)
    except OpError as exc:
        fail_with(exc)


def fail_with(exc: OpError) -> NoReturn:
    """An operation's refusal in the CLI's words (the command and option to use)."""
    from smtpgate.cli.errors import exit_code, words

    message, hint = words(exc)
    fail(message, hint, code=UNREACHABLE if exc.code in UNREACHABLE_CODES else exit_code(exc))


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def when(value: Any) -> str:
    if value is None:
        return "-"
    return value.strftime("%Y-%m-%d %H:%M") if hasattr(value, "strftime") else str(value)


def read_secret_from_stdin(what: str) -> str:
    """One line from standard input, without its line ending; it must be UTF-8."""
    try:
        secret = sys.stdin.buffer.readline().decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as exc:
        fail(f"the {what} on standard input is not UTF-8 (byte {exc.start + 1})",
             "Secrets are text: save it as UTF-8, or let smtpgate make one with --generate.", code=2)
    if not secret:
        fail(f"no {what} on standard input", f"Pipe it in: printf '%s\\n' \"$PW\" | smtpgate ... --{what}-stdin")
    return secret


def choose_password(password_stdin: bool, generate: bool, prompt: Callable[[], str] | None = None) -> str | None:
    """The new password as typed, or None when smtpgate is to generate one; never from the command line."""
    if password_stdin and generate:
        fail("--password-stdin and --generate exclude each other")
    if generate:
        return None
    if password_stdin:
        return read_secret_from_stdin("password")
    if sys.stdin.isatty():
        return typer.prompt("New password", hide_input=True, confirmation_prompt=True)
    fail(
        "no password given",
        "Use --password-stdin (pipe it in), --generate, or run in a terminal to be prompted. "
        "Passwords are never taken as arguments: they would end up in shell history and ps.",
    )


# ------------------------------------------------------------- scopes on the command line

AllowFromOption = Annotated[list[str] | None, typer.Option("--allow-from", help="Allowed sender: ADDRESS or @DOMAIN (repeatable). Default: its own address.")]
AllowIpOption = Annotated[list[str] | None, typer.Option("--allow-ip", help="Allowed source network, CIDR (repeatable). Default: any.")]
AllowForeignOption = Annotated[bool, typer.Option("--allow-foreign-sender", help="Allow --allow-from outside the account's own domain.")]
MaxPerHourOption = Annotated[int | None, typer.Option("--max-per-hour", help="Messages per hour.")]
MaxPerDayOption = Annotated[int | None, typer.Option("--max-per-day", help="Messages per day.")]
MaxRcptPerHourOption = Annotated[int | None, typer.Option("--max-rcpt-per-hour", help="Recipients per hour.")]
MaxRcptPerDayOption = Annotated[int | None, typer.Option("--max-rcpt-per-day", help="Recipients per day.")]


def scope_request(
    allow_from: list[str] | None, allow_ip: list[str] | None, max_per_hour: int | None,
    max_per_day: int | None, max_rcpt_per_hour: int | None, max_rcpt_per_day: int | None,
    allow_foreign_sender: bool = False,
) -> Any:
    """The scopes an operator asked for with the options above (validated by the service)."""
    from smtpgate.credentials import ScopeRequest

    return ScopeRequest(
        allowed_senders=tuple(allow_from or ()),
        allowed_networks=tuple(allow_ip or ()),
        max_per_hour=max_per_hour,
        max_per_day=max_per_day,
        max_rcpt_per_hour=max_rcpt_per_hour,
        max_rcpt_per_day=max_rcpt_per_day,
        allow_foreign_sender=allow_foreign_sender,
    )


def scope_rows(scopes: Any) -> list[tuple[str, str]]:
    """How `show` commands print a credential's scopes."""
    s = scopes
    return [
        ("may send as", ", ".join(s.allowed_senders)),
        ("from networks", ", ".join(s.allowed_networks) or "any"),
        ("messages", f"{s.max_per_hour or '-'}/hour, {s.max_per_day or '-'}/day"),
        ("recipients", f"{s.max_rcpt_per_hour or '-'}/hour, {s.max_rcpt_per_day or '-'}/day"),
    ]
