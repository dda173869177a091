"""`smtpgate doctor HOST`: what is wrong between this machine and an SMTP server, in plain words."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from smtpgate.cli.common import ConfigOption, fail, print_json
from smtpgate.cli.send import (
    PasswordEnv,
    PasswordFile,
    PasswordOnArgv,
    PasswordStdin,
    ProfileName,
    password_from,
    prompt_password,
    refuse_argv_password,
    split_server,
)
from smtpgate.profiles import ProfileError, ProfileStore


def doctor(
    host: Annotated[str | None, typer.Argument(
        help="Server name or IP; or an address (user@domain) to find its server through DNS SRV.",
        show_default=False)] = None,
    port: Annotated[list[str] | None, typer.Option(
        "--port", "-p", help="Port to check, repeatable; N:tls for implicit TLS, N:starttls. Default: 587, 465, 25.")] = None,
    user: Annotated[str | None, typer.Option("--user", "-u", help="Login to test (often the full address).")] = None,
    password_stdin: PasswordStdin = False,
    password_env: PasswordEnv = None,
    password_file: PasswordFile = None,
    profile: ProfileName = None,
    send_to: Annotated[str | None, typer.Option("--send-to", metavar="ADDR", help="Send a test message to this address.")] = None,
    check_recipient_domain: Annotated[bool, typer.Option(
        "--check-recipient-domain", help="Also look up the MX of the --send-to domain (advice: never fails the run).")] = False,
    sender: Annotated[str | None, typer.Option("--from", help="Sender of the test message (default: the login).")] = None,
    cafile: Annotated[Path | None, typer.Option("--cafile", help="Trust this CA (or self-signed) certificate file.")] = None,
    insecure: Annotated[bool, typer.Option("--insecure", help="Go on past an untrusted certificate (still reported).")] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for each answer.")] = 15.0,
    connect_timeout: Annotated[float, typer.Option("--connect-timeout", help="Seconds to wait for a TCP connection.")] = 5.0,
    dns_server: Annotated[str | None, typer.Option(
        "--dns-server", envvar="SMTPGATE_DNS_SERVER", hidden=True, help="Ask this DNS server (IP[:PORT]).")] = None,
    json: Annotated[bool, typer.Option("--json", help="Print the checks as JSON.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show the SMTP transcript (secrets redacted).")] = False,
    password: PasswordOnArgv = None,
    legacy: Annotated[bool, typer.Option(
        "--legacy", help="Play a device on a legacy listener (default port 2525; N:starttls to use STARTTLS) and name its weaknesses.")] = False,
    source: Annotated[str | None, typer.Option(
        "--source", metavar="ADDRESS", help="Connect from this local address (the device's, on a machine that has it).")] = None,
    domain: Annotated[str | None, typer.Option(
        "--domain", metavar="DOMAIN", help="Check the domain's SPF, DKIM, DMARC, MTA-STS, TLS-RPT, SRV, autoconfig, PTR and blocklists instead.")] = None,
    config: ConfigOption = None,
) -> None:
    """Check DNS, ports, greeting, TLS, certificate, AUTH, login and (optionally) a test message.

    With --domain: what the domain publishes against what mail sent through this server needs
    (read from the config when there is one). Exit status 0 when no check failed (warnings
    allowed), 1 otherwise.
    """
    if domain is not None:
        _domain(domain, config, dns_server, cafile, timeout, json)
    from smtpgate.doctor import (  # here: other commands need not load it
        DoctorOptions,
        PortSpec,
        diagnose,
    )

    refuse_argv_password(password)
    if timeout <= 0 or connect_timeout <= 0:
        fail("--timeout and --connect-timeout must be more than 0 seconds", code=2)
    if send_to is not None and "@" not in send_to:
        fail(f"--send-to {send_to!r} is not an address", "Example: --send-to you@example.com", code=2)
    try:
        specs = [PortSpec.parse(p) for p in port or []]
    except ValueError as exc:
        fail(f"--port {exc}", code=2)
    secret = password_from(password_stdin, password_env, password_file)
    cafile_text = str(cafile) if cafile else ""
    if profile:
        store = ProfileStore()
        try:
            saved = store.get(profile)
            if secret is None and saved.user and (user is None or user == saved.user):
                secret = store.secret(saved)
        except ProfileError as exc:
            fail(str(exc), exc.hint)
        host = host or saved.host
        specs = specs or [PortSpec(saved.port, saved.tls if saved.tls != "none" else "auto")]
        user = saved.user if user is None else user
        cafile_text = cafile_text or saved.cafile
        sender = sender or saved.sender or None
    if not host:
        fail("no server to check", "Give HOST (smtpgate doctor mail.example.com), or --profile NAME.", code=2)
    if ":" in host and not host.startswith("[") and host.count(":") == 1:  # HOST:PORT, a common slip
        host, extra = split_server(host)
        specs = specs or ([PortSpec.parse(str(extra))] if extra else [])
    if user and secret is None:
        secret = prompt_password(user)
    if source is not None and not _is_address(source):
        fail(f"--source {source!r} is not an IP address", "Example: --source 192.0.2.40", code=2)
    if send_to and not (sender or (user and "@" in user)):
        fail("the test message needs a sender", "Give --from ADDRESS (or a login that is an address).", code=2)
    options = DoctorOptions(
        host=host.strip("[]"), ports=specs, user=user or "", password=secret or "", send_to=send_to or "",
        check_recipient_domain=check_recipient_domain, mail_from=sender or "", cafile=cafile_text, connect_timeout=connect_timeout, timeout=timeout,
        dns_server=dns_server, insecure=insecure, legacy=legacy, source=source or "",
    )
    try:
        report = diagnose(options)
    except ValueError as exc:  # a bad --dns-server
        fail(str(exc), "Give --dns-server as IP or IP:PORT.", code=2)
    if json:
        print_json(report.to_json(transcript=verbose))
    else:
        sys.stdout.write(report.render(transcript=verbose))
    raise typer.Exit(report.exit_code)


def _domain(domain: str, config: Path | None, dns_server: str | None, cafile: Path | None, timeout: float, json: bool) -> None:
    """doctor --domain: the doctor checks, the config (when there is one) says what to expect."""
    from smtpgate.config import default_config_path
    from smtpgate.doctor.domain import DomainOptions, Expectation, check_domain, domain_name
    from smtpgate.doctor.lookup import parse_server

    try:
        name = domain_name(domain)
    except ValueError as exc:
        fail(str(exc), "Example: smtpgate doctor --domain example.com", code=2)
    options = DomainOptions(name, timeout=min(timeout, 10.0), cafile=str(cafile) if cafile else "")
    path = config or default_config_path()
    if config is not None or path.exists():
        from smtpgate.cli.common import runtime
        from smtpgate.config import dns_server_address
        from smtpgate.deliverability.records import plan_for

        with runtime(path) as rt:
            plan = plan_for(rt.config, name)
            cfg = rt.config.delivery
            options.expect = Expectation(
                route=plan.route, spf_term=plan.spf_term, dkim=list(plan.dkim),
                records={r.purpose: f"{r.name}. {r.type} \"{r.value}\"" if r.type == "TXT" else f"{r.name}. {r.type} {r.value}"
                         for r in reversed(plan.records)},
                mta_sts_policy=plan.mta_sts_policy,
                submission={r.name: r.value for r in plan.records if r.type == "SRV"},
                client_setup={r.name: r.value for r in plan.records if r.purpose == "autoconfig"},
                outbound_addresses=list(plan.outbound_addresses), dnsbl=list(plan.dnsbl),
            )
            if cfg.dns_servers:
                options.dns_server = dns_server_address(cfg.dns_servers[0])
            options.policy_host = cfg.mx.mta_sts_policy_host
            if cfg.mx.mta_sts_ca_file and not options.cafile:
                options.cafile = str(rt.config.path(cfg.mx.mta_sts_ca_file))
    if dns_server:
        try:
            options.dns_server = parse_server(dns_server)
        except ValueError as exc:
            fail(str(exc), "Give --dns-server as IP or IP:PORT.", code=2)
    report = check_domain(options)
    if json:
        print_json(report.to_json())
    else:
        sys.stdout.write(report.render())
    raise typer.Exit(report.exit_code)


def register(root: typer.Typer) -> None:
    root.command("doctor")(doctor)


def _is_address(text: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
