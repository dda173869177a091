"""`smtpgate dkim ...`: DKIM signing keys, their rotation and the DNS records that publish them."""

from __future__ import annotations

from typing import Annotated

import typer

from smtpgate.cli.common import ConfigOption, JsonOption, err, fail, out, print_json, runtime
from smtpgate.delivery.dkim import ALGORITHMS, DkimError

app = typer.Typer(help="DKIM keys: make, rotate, show the DNS records to publish.", no_args_is_help=True)

AlgorithmOption = Annotated[str, typer.Option(help="rsa (verified everywhere) or ed25519 (RFC 8463).")]
BitsOption = Annotated[int, typer.Option(help="RSA key size.")]


def _check(domain: str, algorithm: str, bits: int) -> str:
    domain = domain.strip().lower().rstrip(".")
    if not domain or "." not in domain or any(c in domain for c in "@/ \t"):
        fail(f"{domain!r} is not a domain name", "Give the domain of the From: address, e.g. example.com.", code=2)
    if algorithm not in ALGORITHMS:
        fail(f"unknown algorithm {algorithm!r}", f"Use one of: {', '.join(ALGORITHMS)}.", code=2)
    if algorithm == "rsa" and not 1024 <= bits <= 8192:
        fail(f"--bits {bits} is out of range", "Use 2048 (or 1024 to 8192).", code=2)
    return domain


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
    from smtpgate.delivery.keyring import keyring_from

    domain = _check(domain, algorithm, bits)
    with runtime(config) as rt:
        keyring = keyring_from(rt.config)
        try:
            entry = keyring.add(domain, selector=selector or "", algorithm=algorithm, bits=bits)
            name, value = next((n, v) for e, n, v in keyring.published(domain) if e.selector == entry.selector)
        except DkimError as exc:
            fail(str(exc).replace("already", "exists already"), "Keys are never overwritten.")
        path = keyring.folder / entry.file
        relative = path.relative_to(rt.config.base_dir) if path.is_relative_to(rt.config.base_dir) else path
    snippet = f'"{domain}" = {{ selector = "{entry.selector}", key_file = "{relative}" }}'
    if json:
        print_json({"domain": domain, "selector": entry.selector, "algorithm": entry.algorithm, "key_file": str(path),
                    "state": entry.state, "dns_name": name, "dns_txt": value, "config": snippet})
        return
    out.print(f"Key written to {path} (mode 0600).", markup=False)
    out.print(f"\nPublish this DNS TXT record:\n\n{name}. IN TXT {_quoted(value)}\n", markup=False)
    out.print(f"It starts signing as soon as the record is visible in DNS (the server checks, or run "
              f"`smtpgate dkim rotate {domain}`). No config edit, no restart.", markup=False)


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
    from smtpgate.deliverability.rotation import rotate as do_rotate

    domain = _check(domain, algorithm, bits)
    with runtime(config) as rt:
        try:
            result = do_rotate(rt.config, domain, algorithm=algorithm, bits=bits, selector=selector or "")
        except DkimError as exc:
            fail(str(exc))
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
    from smtpgate.delivery.dkim import load_key, txt_record
    from smtpgate.delivery.keyring import PUBLISHED, keyring_from

    with runtime(config) as rt:
        rows = []
        try:
            for entry in keyring_from(rt.config).entries(domain):
                if entry.state not in PUBLISHED:
                    continue
                name, value = txt_record(keyring_from(rt.config).load(entry))
                rows.append({"domain": entry.domain, "selector": entry.selector, "algorithm": entry.algorithm,
                             "state": entry.state, "dns_name": name, "dns_txt": value})
            for d, k in sorted(rt.config.delivery.dkim.items()):
                if (domain and d != domain.lower().rstrip(".")) or any(r["domain"] == d and r["selector"] == k.selector for r in rows):
                    continue
                key = load_key(d, k.selector, rt.config.path(k.key_file))
                name, value = txt_record(key)
                rows.append({"domain": d, "selector": k.selector, "algorithm": key.algorithm, "state": "config",
                             "dns_name": name, "dns_txt": value})
        except DkimError as exc:
            fail(str(exc))
    if json:
        print_json(rows)
        return
    if not rows:
        err.print("No DKIM keys yet; make one with `smtpgate dkim rotate DOMAIN`.", markup=False)
    for row in rows:
        out.print(f"; {row['state']}\n{row['dns_name']}. IN TXT {_quoted(row['dns_txt'])}", markup=False)


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
