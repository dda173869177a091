"""`smtpgate profile ...`: saved SMTP settings for scripts, the secret in the OS keyring or a 0600 file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from smtpgate.cli.common import JsonOption, err, fail, out, print_json
from smtpgate.cli.send import (
    PasswordEnv,
    PasswordFile,
    PasswordOnArgv,
    PasswordStdin,
    TlsMode,
    password_from,
    prompt_password,
    refuse_argv_password,
    split_server,
    tls_for,
)
from smtpgate.profiles import Profile, ProfileError, ProfileStore, check_name

app = typer.Typer(help="Saved SMTP settings for apps and scripts (the secret never in a script).",
                  no_args_is_help=True)


@app.command("add")
def add(
    name: str,
    server: Annotated[str, typer.Option("--server", "-s", help="HOST or HOST:PORT (default port 587).")],
    port: Annotated[int | None, typer.Option("--port", "-p", help="Port, if not in --server.")] = None,
    tls: TlsMode = "auto",
    user: Annotated[str, typer.Option("--user", "-u", help="Login (often the full address).")] = "",
    sender: Annotated[str, typer.Option("--from", help="Default sender address.")] = "",
    cafile: Annotated[Path | None, typer.Option("--cafile", help="Trust this CA certificate file.")] = None,
    store: Annotated[str, typer.Option("--store", help="auto (OS keyring when there is one, else a 0600 file), keyring, or file.")] = "auto",
    password_stdin: PasswordStdin = False,
    password_env: PasswordEnv = None,
    password_file: PasswordFile = None,
    replace: Annotated[bool, typer.Option("--replace", help="Overwrite a profile of this name.")] = False,
    json: JsonOption = False,
    password: PasswordOnArgv = None,
) -> None:
    """Save a profile; its password goes to the OS keyring or a 0600 file, never the profiles file."""
    refuse_argv_password(password)
    try:
        check_name(name)
    except ProfileError as exc:
        fail(str(exc), exc.hint, code=2)
    host, server_port = split_server(server)
    number = server_port or port or 587
    secret = password_from(password_stdin, password_env, password_file)
    if user and secret is None:
        secret = prompt_password(user)
    if secret and not user:
        fail("a password without a login", "Give --user LOGIN too.", code=2)
    profile = Profile(name=name, host=host, port=number, tls=tls_for(tls, number), user=user, sender=sender,
                      cafile=str(cafile.resolve()) if cafile else "")
    profiles = ProfileStore()
    try:
        saved = profiles.add(profile, secret, store=store, replace=replace)
    except ProfileError as exc:
        fail(str(exc), exc.hint)
    if json:
        print_json(saved.to_json())
        return
    where = {"keyring": "in the OS keyring", "file": f"in {profiles.secrets_dir / name} (mode 0600)",
             "": "none (no login)"}[saved.secret_store]
    out.print(f"Saved profile {name}: {host}:{number} ({saved.tls}), login {user or '-'}", markup=False)
    out.print(f"  secret: {where}", markup=False)
    err.print(f"Check it: smtpgate doctor --profile {name}", markup=False)
    err.print(f'Use it:   python -c \'from smtpgate.client import send; send(msg, profile="{name}")\'', markup=False)


@app.command("list")
def list_(json: JsonOption = False) -> None:
    """Saved profiles (settings only; secrets are never shown)."""
    try:
        profiles = ProfileStore().load()
    except ProfileError as exc:
        fail(str(exc), exc.hint)
    if json:
        print_json([p.to_json() for p in profiles.values()])
        return
    table = Table("name", "server", "tls", "login", "from", "secret")
    for p in profiles.values():
        table.add_row(p.name, f"{p.host}:{p.port}", p.tls, p.user or "-", p.sender or "-", p.secret_store or "-")
    out.print(table)


@app.command("show")
def show(name: str, json: JsonOption = False) -> None:
    """One profile's settings."""
    try:
        profile = ProfileStore().get(name)
    except ProfileError as exc:
        fail(str(exc), exc.hint)
    if json:
        print_json(profile.to_json())
        return
    for key, value in profile.to_json().items():
        out.print(f"{key:>7}: {value if value != '' else '-'}", markup=False)


@app.command("remove")
def remove(name: str) -> None:
    """Delete a profile and its saved secret."""
    try:
        ProfileStore().remove(name)
    except ProfileError as exc:
        fail(str(exc), exc.hint)
    out.print(f"Removed profile {name} and its secret.", markup=False)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="profile")
