"""`smtpgate dkim ...`: DKIM signing keys and the DNS records that publish them."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated

import typer

from smtpgate.cli.common import (
    ConfigOption,
    JsonOption,
    err,
    fail,
    out,
    print_json,
    runtime,
)
from smtpgate.delivery.dkim import (
    ALGORITHMS,
    DkimError,
    check_selector,
    generate_key,
    load_key,
    txt_record,
)

app = typer.Typer(help="DKIM keys: make one, show the DNS records to publish.", no_args_is_help=True)


def _default_selector() -> str:
    return f"sg{datetime.now(timezone.utc):%Y%m}"


@app.command("keygen")
def keygen(
    domain: Annotated[str, typer.Argument(help="The signing domain (the From: domain), e.g. example.com.")],
    selector: Annotated[str | None, typer.Option(help="Selector; default sgYYYYMM.")] = None,
    algorithm: Annotated[str, typer.Option(help="rsa (verified everywhere) or ed25519 (RFC 8463).")] = "rsa",
    bits: Annotated[int, typer.Option(help="RSA key size.")] = 2048,
    out_file: Annotated[Path | None, typer.Option("--out", help="Key file; default dkim/DOMAIN.SELECTOR.key in the data dir.")] = None,
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Write a new private key (0600) and print the DNS TXT record and the config lines."""
    domain = domain.strip().lower().rstrip(".")
    if not domain or "." not in domain or any(c in domain for c in "@/ \t"):
        fail(f"{domain!r} is not a domain name", "Give the domain of the From: address, e.g. example.com.", code=2)
    selector = selector or _default_selector()
    if algorithm not in ALGORITHMS:
        fail(f"unknown algorithm {algorithm!r}", f"Use one of: {', '.join(ALGORITHMS)}.", code=2)
    if algorithm == "rsa" and not 1024 <= bits <= 8192:
        fail(f"--bits {bits} is out of range", "Use 2048 (or 1024 to 8192).", code=2)
    try:
        check_selector(selector)
    except DkimError as exc:
        fail(str(exc), code=2)
    with runtime(config) as rt:
        relative = out_file or Path("dkim") / f"{domain}.{selector}.key"
        path = rt.config.path(str(relative))
        if path.exists():
            fail(f"{path} exists already", "Pick another --selector (keys are never overwritten).")
        key = generate_key(domain, selector, algorithm, rsa_bits=bits)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key.private)
            fh.flush()
            os.fsync(fh.fileno())
        name, value = txt_record(key)
    snippet = f'"{domain}" = {{ selector = "{selector}", key_file = "{relative}" }}'
    if json:
        print_json({"domain": domain, "selector": selector, "algorithm": algorithm, "key_file": str(path),
                    "dns_name": name, "dns_txt": value, "config": snippet})
        return
    out.print(f"Key written to {path} (mode 0600).", markup=False)
    out.print(f"\nPublish this DNS TXT record:\n\n{name}. IN TXT {_quoted(value)}\n", markup=False)
    out.print(f"Then add to [delivery.dkim] in the config and restart:\n\n{snippet}", markup=False)
    err.print("Publish the record before you turn signing on, or receivers see failing signatures.", markup=False)


def _quoted(value: str) -> str:
    """A TXT value in zone-file form: strings of at most 255 characters."""
    return " ".join(f'"{value[i:i + 255]}"' for i in range(0, len(value), 255))


@app.command("show")
def show(
    domain: Annotated[str | None, typer.Argument(help="Only this domain.")] = None,
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """The DNS TXT records for the keys in the config."""
    with runtime(config) as rt:
        rows = []
        for d, k in sorted(rt.config.delivery.dkim.items()):
            if domain and d != domain.lower().rstrip("."):
                continue
            try:
                key = load_key(d, k.selector, rt.config.path(k.key_file))
            except DkimError as exc:
                fail(str(exc))
            name, value = txt_record(key)
            rows.append({"domain": d, "selector": k.selector, "algorithm": key.algorithm, "dns_name": name, "dns_txt": value})
    if json:
        print_json(rows)
        return
    if not rows:
        err.print("No DKIM keys configured; make one with `smtpgate dkim keygen DOMAIN`.", markup=False)
    for row in rows:
        out.print(f"{row['dns_name']}. IN TXT {_quoted(row['dns_txt'])}", markup=False)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="dkim")
