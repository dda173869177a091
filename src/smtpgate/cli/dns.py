"""`smtpgate dns records DOMAIN`: what the domain should publish for the way its mail leaves."""

from __future__ import annotations

from typing import Annotated

import typer

from smtpgate.cli.common import ConfigOption, JsonOption, fail, out, print_json, runtime

app = typer.Typer(help="DNS records for your domains.", no_args_is_help=True)


@app.command("records")
def records(
    domain: Annotated[str, typer.Argument(help="The sending domain (the From: domain), e.g. example.com.")],
    zone: Annotated[bool, typer.Option("--zone", help="Only the zone-file fragment.")] = False,
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """SPF, DKIM, DMARC, MTA-STS, TLS-RPT, SRV and autoconfig records: a table and a zone fragment."""
    from smtpgate.deliverability.records import domain_name, plan_for, zone_fragment
    from smtpgate.delivery.dkim import DkimError

    try:
        name = domain_name(domain)
    except ValueError as exc:
        fail(str(exc), "Give the domain of the From: address, e.g. example.com.", code=2)
    with runtime(config) as rt:
        try:
            plan = plan_for(rt.config, name)
        except DkimError as exc:
            fail(str(exc))
    if json:
        print_json(plan.to_json())
        return
    fragment = zone_fragment(plan)
    if zone:
        out.print(fragment, markup=False, end="")
        return
    out.print(f"Records for {plan.domain} (mail leaves by: {plan.route})\n", markup=False)
    width = max(len(r.name) for r in plan.records)
    for r in plan.records:
        out.print(f"  {r.purpose:<10} {r.type:<5} {r.name:<{width}}  {r.value}", markup=False)
        if r.note:
            out.print(f"  {'':<10} {'':<5} {'':<{width}}  ({r.note})", markup=False)
    if plan.mta_sts_policy:
        out.print("\nMTA-STS policy (served at /.well-known/mta-sts.txt on the admin listener):\n", markup=False)
        out.print(plan.mta_sts_policy.replace("\r\n", "\n"), markup=False, end="")
    for note in plan.notes:
        out.print(f"\nNote: {note}.", markup=False)
    out.print("\nZone-file fragment:\n", markup=False)
    out.print(fragment, markup=False, end="")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="dns")
