"""`smtpgate import ...`: accounts from a Dovecot passwd-file or a CSV file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from smtpgate.cli.common import ConfigOption, JsonOption, fail, out, print_json, runtime

app = typer.Typer(help="Bring accounts from the server you leave, with their password hashes.", no_args_is_help=True)

FileArg = Annotated[Path, typer.Argument(help="The file to read.", exists=True, dir_okay=False, readable=True)]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Report what would happen; change nothing.")]
Domain = Annotated[str, typer.Option("--domain", help="Complete bare user names: alice -> alice@DOMAIN.")]


def _run(kind: str, path: Path, domain: str, dry_run: bool, as_json: bool, config: Path | None) -> None:
    from smtpgate.cli.accounts import _actor
    from smtpgate.credentials.importing import import_records, read_csv, read_dovecot_passwd

    reader = read_dovecot_passwd if kind == "dovecot-passwd" else read_csv
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        fail(f"{path} is not UTF-8 text", "Convert it first, e.g. iconv -f latin1 -t utf-8.", code=2)
    with runtime(config) as rt:
        report = import_records(rt.credentials, reader(text, domain=domain), actor=_actor(), dry_run=dry_run)
    if as_json:
        print_json(report.to_json())
    else:
        verb = "would create" if dry_run else "created"
        for rec in report.created:
            out.print(f"line {rec.line}: {verb} {rec.login} ({rec.scheme})", markup=False)
        for rec in report.existing:
            out.print(f"line {rec.line}: {rec.login} exists already, left unchanged", markup=False)
        for problem in report.problems:
            who = f" {problem.login}:" if problem.login else ""
            out.print(f"line {problem.line}:{who} skipped: {problem.reason}", markup=False)
        out.print(
            f"{len(report.created)} {verb}, {len(report.existing)} unchanged, {len(report.problems)} skipped"
            + (" (dry run: nothing was written)" if dry_run else ""),
            markup=False,
        )
    if report.problems:
        raise typer.Exit(1)


@app.command("dovecot-passwd")
def dovecot_passwd(file: FileArg, domain: Domain = "", dry_run: DryRun = False, as_json: JsonOption = False,
                   config: ConfigOption = None) -> None:
    """Import a Dovecot passwd-file (user:{SCHEME}hash:...); hashes are verified at login, then rehashed."""
    _run("dovecot-passwd", file, domain, dry_run, as_json, config)


@app.command("csv")
def csv_file(file: FileArg, domain: Domain = "", dry_run: DryRun = False, as_json: JsonOption = False,
             config: ConfigOption = None) -> None:
    """Import a CSV file with a header row: login, and hash or password."""
    _run("csv", file, domain, dry_run, as_json, config)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="import")
