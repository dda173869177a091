"""`smtpgate token ...`: access tokens for scripts, revocation by jti, the signing keys."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from smtpgate.cli.common import (
    ConfigOption,
    JsonOption,
    err,
    operations,
    out,
    print_json,
    when,
)
from smtpgate.timefmt import iso_utc

app = typer.Typer(help="Access tokens of the built-in issuer: issue, list, revoke; signing keys.", no_args_is_help=True)


@app.command("issue")
def issue(
    service_account: Annotated[str, typer.Argument(help="Client id or login of the service account.")],
    scope: Annotated[str | None, typer.Option(help='Narrow it, e.g. "smtp sender:billing@example.com".')] = None,
    lifetime: Annotated[str | None, typer.Option(help="e.g. 15m (default: the account's, else [tokens] access_token_lifetime).")] = None,
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Print a new access token (only the token on stdout, for `TOKEN=$(smtpgate token issue ...)`)."""
    with operations(config) as (ops, actor):
        issued = ops.tokens.issue(actor, service_account, scope=scope, lifetime=lifetime)
    if json:
        print_json({**issued.to_json(), "jti": issued.jti, "service_account": issued.service_account,
                    "login": issued.login, "expires_at": iso_utc(issued.expires_at)})
        return
    out.print(issued.access_token, markup=False)
    err.print(f"jti {issued.jti} for {issued.login}, scope {issued.scope!r}, expires {when(issued.expires_at)} UTC",
              markup=False)


@app.command("list")
def list_(
    service_account: Annotated[str | None, typer.Option(help="Only this service account's tokens.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Include expired tokens.")] = False,
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Tokens issued here (and revocations of external ones), never the tokens themselves."""
    with operations(config) as (ops, actor):
        tokens = ops.tokens.list(actor, service_account=service_account, include_expired=all_)
    if json:
        print_json([t.to_json() for t in tokens])
        return
    table = Table("jti", "service account", "subject", "scope", "issued", "expires", "via", "revoked")
    for t in tokens:
        table.add_row(t.jti, t.service_account or "-", t.subject or "-", t.scope or "-", when(t.issued_at),
                      when(t.expires_at), t.issued_via, when(t.revoked_at))
    out.print(table)


@app.command("revoke")
def revoke(
    jti: Annotated[str, typer.Argument(help="The token's jti (see `smtpgate token list`).")],
    issuer: Annotated[str | None, typer.Option(help="An external IdP's issuer, to revoke one of its tokens.")] = None,
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Revoke one token now: its next authentication fails."""
    with operations(config) as (ops, actor):
        info = ops.tokens.revoke(actor, jti, issuer=issuer)
    if json:
        print_json(info.to_json())
    else:
        out.print(f"Revoked token {info.jti} ({info.issuer}).", markup=False)


@app.command("rotate-key")
def rotate_key(config: ConfigOption = None, json: JsonOption = False) -> None:
    """A new signing key; the old one keeps verifying until its last token has expired."""
    with operations(config) as (ops, actor):
        kid, published = ops.tokens.rotate_key(actor)
    if json:
        print_json({"kid": kid, "published": published})
    else:
        out.print(f"Signing with key {kid}; published: {', '.join(published)}", markup=False)


@app.command("jwks")
def jwks(config: ConfigOption = None) -> None:
    """The public signing keys, as served at /.well-known/jwks.json."""
    with operations(config) as (ops, actor):
        print_json(ops.tokens.jwks(actor))


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="token")
