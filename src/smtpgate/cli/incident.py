"""`smtpgate incident ...`: contain a leaked credential in one step, report on it, close it.

The logic is `smtpgate.ops.incidents` (the API calls the same); this module parses
options and prints.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from smtpgate.cli.common import ConfigOption, JsonOption, err, fail, operations, out, print_json, when

app = typer.Typer(help="Incidents: contain a leaked credential in one step, report, close.", no_args_is_help=True)
IdArgument = Annotated[int, typer.Argument(help="The incident's number (`smtpgate incident list`).", show_default=False)]


@app.command("open")
def open_(
    credential: Annotated[str | None, typer.Option("--credential", help="The leaked credential's id.")] = None,
    account: Annotated[str | None, typer.Option("--account", help="The account (login) whose credentials all leaked.")] = None,
    reason: Annotated[str, typer.Option("--reason", help="What happened, for the record and the alert.")] = "",
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Revoke, hold its queued mail, ban the sources that used it (not the owner's), alert, record."""
    if bool(credential) == bool(account):
        fail("name what leaked: --credential ID or --account EMAIL (one of them)", code=2)
    logging.getLogger("smtpgate.alerts").setLevel(logging.ERROR)  # the alert is printed below, not logged twice
    with operations(config) as (ops, actor):
        incident = asyncio.run(ops.incidents.open(actor, credential=credential, account=account, reason=reason))
    data = incident.to_json()
    if json:
        print_json(data)
        return
    out.print(f"Incident {incident.id} opened for {'credential ' + credential if credential else 'account ' + str(account)}"
              f" ({incident.account}).", markup=False)
    for c in data["revoked"]:
        out.print(f"  revoked  {c['id']} ({c['kind']}, {c['name']}){' (already revoked)' if c['already'] else ''}", markup=False)
    if data["password_reset"]:
        out.print("  the account password is unusable until its owner sets a new one (account set-password)", markup=False)
    out.print(f"  held     {len(data['held'])} queued message(s){_ids(data['held'])}", markup=False)
    out.print(f"  left     {len(data['left'])} message(s) had already left{_ids(data['left'])}", markup=False)
    for b in data["banned"]:
        out.print(f"  banned   {b['network']} until {b['until']}", markup=False)
    for s in data["spared"]:
        out.print(f"  spared   {s['source']}: {s['why']}", markup=False)
    out.print(f"  alert    {data['alert_id'] if data['alert_id'] is not None else '-'} (critical)", markup=False)
    for problem in data["problems"]:
        err.print(f"warning: {problem}", markup=False)
    out.print(f"Report: smtpgate incident show {incident.id}", markup=False)


@app.command("show")
def show(
    incident_id: IdArgument,
    html: Annotated[Path | None, typer.Option("--html", help="Also write the report as one self-contained HTML file.")] = None,
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """The report: what was contained, and the timeline of logins and messages in the window."""
    with operations(config) as (ops, actor):
        report = ops.incidents.report(actor, incident_id)
    if html is not None:
        try:
            html.write_text(report.to_html(), encoding="utf-8")
        except OSError as exc:
            fail(f"--html {html}: {exc.strerror}", code=2)
        err.print(f"Report written to {html}", markup=False)
    data = report.to_json()
    if json:
        print_json(data)
        return
    i = data["incident"]
    subject = f"credential {i['credential']}" if "credential" in i else f"account {i['account']}"
    out.print(f"Incident {i['id']} ({i['state']}): {subject} of {i['account']}", markup=False)
    rows = [("reason", i["reason"] or "-"), ("opened", f"{i['opened_at']} by {i['opened_by']}"),
            ("window from", i["window_start"]),
            ("revoked", ", ".join(c["id"] for c in i["revoked"]) or "-"),
            ("held", f"{len(i['held'])}{_ids(i['held'])}"), ("already left", f"{len(i['left'])}{_ids(i['left'])}"),
            ("banned", ", ".join(f"{b['network']} until {b['until']}" for b in i["banned"]) or "-"),
            ("spared", ", ".join(f"{s['source']} ({s['why']})" for s in i["spared"]) or "-"),
            ("alert", str(i["alert_id"]) if i["alert_id"] is not None else "-")]
    if i["closed_at"]:
        rows.append(("closed", f"{i['closed_at']} by {i['closed_by']}, held mail {i['resolution']}"))
    for key, value in rows:
        out.print(f"{key:13} {value}", markup=False)
    table = Table("time (UTC)", "what", "from", "credential", "rcpts", "domains", "message", "fate / reason",
                  title="timeline", title_justify="left")
    for e in data["timeline"]:
        message = e["what"].startswith("message")
        table.add_row(e["time"], e["what"], e["remote_ip"], e["credential_id"] or "-", str(e["recipients"]) if message else "",
                      ", ".join(e["domains"]), e["message_id"] or "", e["fate"] or e["reason"])
    out.print(table)
    if not data["timeline"]:
        err.print("Nothing in the audit for this window.", markup=False)


@app.command("close")
def close(
    incident_id: IdArgument,
    release_held: Annotated[bool, typer.Option("--release-held", help="Deliver the held messages now.")] = False,
    delete_held: Annotated[bool, typer.Option("--delete-held", help="Delete the held messages, without a bounce.")] = False,
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Close the incident; without an option the held messages stay held (`queue release` later)."""
    if release_held and delete_held:
        fail("--release-held and --delete-held exclude each other", code=2)
    with operations(config) as (ops, actor):
        incident = ops.incidents.close(actor, incident_id, release_held=release_held, delete_held=delete_held)
    if json:
        print_json(incident.to_json())
        return
    out.print(f"Incident {incident.id} closed; held messages {incident.resolution}.", markup=False)


@app.command("list")
def list_(
    state: Annotated[str | None, typer.Option("--state", help="open or closed.")] = None,
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Incidents, newest first."""
    with operations(config) as (ops, actor):
        items = ops.incidents.list(actor, state=state)
    if json:
        print_json([i.to_json() for i in items])
        return
    table = Table("id", "state", "opened", "subject", "account", "revoked", "held", "banned", "reason")
    for i in items:
        c: dict[str, Any] = i.contained
        table.add_row(str(i.id), i.state, when(i.opened_at), f"{i.subject_kind} {i.subject}", i.account,
                      str(len(c.get("revoked", []))), str(len(c.get("held", []))), str(len(c.get("banned", []))), i.reason[:60])
    out.print(table)
    if not items:
        err.print("No incidents.", markup=False)


def _ids(ids: list[str], shown: int = 5) -> str:
    if not ids:
        return ""
    more = f", and {len(ids) - shown} more" if len(ids) > shown else ""
    return ": " + ", ".join(ids[:shown]) + more


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="incident")
