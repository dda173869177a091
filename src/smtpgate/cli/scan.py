"""`smtpgate scan PATH... [--git]`: our secrets in files, folders and git history, and whether they are live."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from smtpgate.cli.common import ConfigOption, JsonOption, err, fail, out, print_json


def scan(
    paths: Annotated[list[Path], typer.Argument(help="Files and folders to search.", show_default=False)],
    git: Annotated[bool, typer.Option("--git", help="Also search the whole history of each git repository given.")] = False,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Find app passwords, client secrets and API tokens (by prefix and checksum) and say whether each is live here.

    Exit 0 when nothing was found, 1 when a secret was found (whatever its state).
    Only a short prefix of each secret is ever printed."""
    from smtpgate.credentials.leaks import Finding, NotARepository, scan_git, scan_paths

    findings: list[Finding] = list(scan_paths(paths))
    if git:
        for path in paths:
            try:
                findings.extend(scan_git(path))
            except NotARepository as exc:
                fail(f"--git: {exc}", "Give the top folder of a git repository, or leave out --git.", code=2)
    statuses = _statuses(findings, config)
    rows = [{"kind": f.kind, "secret": f.shown, "location": f.location, "state": statuses[f.secret][0],
             "credential_id": statuses[f.secret][1]} for f in findings]
    if as_json:
        print_json({"findings": rows})
    else:
        for row in rows:
            ident = f" ({row['credential_id']})" if row["credential_id"] else ""
            out.print(f"{row['location']}: {row['kind']} {row['secret']} {str(row['state']).upper()}{ident}", markup=False)
        live = sum(r["state"] == "live" for r in rows)
        out.print(f"{len(rows)} secret(s) found, {live} live" + (
            ": revoke them now (smtpgate creds revoke ID, or incident open --credential ID)" if live else ""), markup=False)
    if rows:
        raise typer.Exit(1)


def _statuses(findings: list[Any], config: Path | None) -> dict[str, tuple[str, str | None]]:
    """What the server knows of each secret; "unchecked" when there is no server config here."""
    from smtpgate.config import ConfigError, load_config
    from smtpgate.credentials import api_tokens, app_passwords
    from smtpgate.runtime import Runtime

    if not findings:
        return {}
    try:
        rt = Runtime(load_config(config))
    except ConfigError as exc:
        err.print(f"note: states not checked ({exc}); pass --config to check them", markup=False)
        return {f.secret: ("unchecked", None) for f in findings}
    try:
        result = {}
        for f in findings:
            if f.secret.startswith(app_passwords.PREFIX):
                result[f.secret] = rt.credentials.secret_status(f.secret)
            elif f.secret.startswith(api_tokens.PREFIX):
                result[f.secret] = rt.credentials.api_tokens.secret_status(f.secret)
            else:
                result[f.secret] = rt.tokens.client_secret_status(f.secret)
        return result
    finally:
        rt.close()


def register(root: typer.Typer) -> None:
    root.command("scan")(scan)
