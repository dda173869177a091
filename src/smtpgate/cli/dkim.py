"""`smtpgate dkim ...`: DKIM signing keys, their rotation and the DNS records that publish them."""

from __future__ import annotations

from typing import Annotated

import typer

from smtpgate.cli.common import (
    ConfigOption,
    JsonOption,
    err,
    operations,
    out,
    print_json,
)

app = typer.Typer(help="DKIM keys: make, rotate, show the DNS records to publish.", no_args_is_help=True)

AlgorithmOption = Annotated[str, typer.Option(help="rsa (verified everywhere) or ed25519 (RFC 8463).")]
BitsOption = Annotated[int, typer.Option(help="RSA key size.")]


def _quoted(value: str) -> str:
    """A TXT value in zone-file form: strings of at most 255 characters."""
    return " ".join(f'"{value[i:i + 255]}"' for i in range(0, len(value), 255))


@app.command("keygen")
def keygen(
    domain: Annotated[str, typer.Argument(help="The signing domain (the From: domain), e.g. example.com.")],
    selector: Annotated[str | None, typer.Option(help="Selector; default sgYYYYMMDD.")] = None,
    algorithm: AlgorithmOption = "rsa",
    bits: BitsOption = 2048,
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Make a new key (0600, in the data dir) and print its DNS TXT record; it signs once published."""
    with operations(config) as (ops, actor):
        record = ops.dkim.keygen(actor, domain, selector=selector, algorithm=algorithm, bits=bits)
    if json:
        print_json(record.to_json())
        return
    out.print(f"Key written to {record.key_file} (mode 0600).", markup=False)
    out.print(f"\nPublish this DNS TXT record:\n\n{record.dns_name}. IN TXT {_quoted(record.dns_txt)}\n", markup=False)
    out.print(f"It starts signing as soon as the record is visible in DNS (the server checks, or run "
              f"`smtpgate dkim rotate {record.domain}`). No config edit, no restart.", markup=False)


@app.command("rotate")
def rotate(
    domain: Annotated[str, typer.Argument(help="The signing domain.")],
    selector: Annotated[str | None, typer.Option(help="Selector of the new key; default sgYYYYMMDD.")] = None,
    algorithm: AlgorithmOption = "rsa",
    bits: BitsOption = 2048,
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """New key, publish, switch when visible, retire the old one later. Run it again to move on."""
    with operations(config) as (ops, actor):
        result = ops.dkim.rotate(actor, domain, selector=selector, algorithm=algorithm, bits=bits)
    if json:
        print_json(result.to_json())
        return
    if result.made is not None:
        out.print(f"New key {result.made.selector} for {domain} ({result.made.algorithm}).", markup=False)
    for change in result.changes:
        out.print(f"- {change}", markup=False)
    _print_keys(result)


@app.command("show")
def show(
    domain: Annotated[str | None, typer.Argument(help="Only this domain.")] = None,
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """The keys (with their state) and the DNS TXT records that must be published now."""
    with operations(config) as (ops, actor):
        rows = ops.dkim.records(actor, domain)
    if json:
        print_json([r.to_json() for r in rows])
        return
    if not rows:
        err.print("No DKIM keys yet; make one with `smtpgate dkim rotate DOMAIN`.", markup=False)
    for row in rows:
        out.print(f"; {row.state}\n{row.dns_name}. IN TXT {_quoted(row.dns_txt)}", markup=False)


def _print_keys(result) -> None:  # type: ignore[no-untyped-def]
    out.print("", markup=False)
    for key in result.keys:
        when = {"pending": f"made {key.created[:16]}", "active": f"signing since {key.activated[:16]}",
                "retiring": f"published until {key.retire_after[:16]}", "retired": f"retired {key.retired[:16]}"}[key.state]
        out.print(f"  {key.selector:<14} {key.algorithm:<8} {key.state:<9} {when}", markup=False)
    if result.publish:
        out.print("\nTXT records to have in DNS now:\n", markup=False)
        for name, value in result.publish:
            out.print(f"{name}. IN TXT {_quoted(value)}", markup=False)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="dkim")
