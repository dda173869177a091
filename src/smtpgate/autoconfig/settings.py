"""What clients are told: the submission host and ports, and the organisation's mailbox server.

smtpgate is submission only, yet Thunderbird, Outlook and Apple Mail all set up an account
as a pair (incoming and outgoing) and refuse a document with no incoming server. So the
documents are offered only when `[autoconfig] incoming` names the mailbox server; without
it every document answers "not here" (404), and the client falls back to its own guesses.
"""

from __future__ import annotations

from dataclasses import dataclass

from smtpgate.config import Config
from smtpgate.errors import Kind, OpError

MAX_ADDRESS = 320


class AutoconfigUnavailable(OpError):
    """No document for this request: none configured, or an address we do not serve."""

    code = "autoconfig-unavailable"
    kind = Kind.NOT_FOUND


@dataclass(frozen=True)
class IncomingServer:
    protocol: str   # imap | pop3
    host: str
    port: int
    security: str   # SSL | STARTTLS | plain

    @classmethod
    def parse(cls, text: str) -> IncomingServer:
        protocol, host, port, security = text.split(":")
        return cls(protocol, host, int(port), security)


@dataclass(frozen=True)
class ClientSettings:
    provider: str
    host: str
    submission_port: int     # STARTTLS (RFC 6409)
    submissions_port: int    # implicit TLS (RFC 8314), preferred
    incoming: IncomingServer | None
    domains: tuple[str, ...]

    def check_address(self, address: str) -> tuple[str, str]:
        """(address, domain) for an address these documents may describe, else AutoconfigUnavailable."""
        value = address.strip().lower()
        local, at, domain = value.rpartition("@")
        if not at or not local or not domain or len(value) > MAX_ADDRESS or any(c.isspace() or c in "<>\"'&" for c in value):
            raise AutoconfigUnavailable("that is not an email address", code="autoconfig-bad-address", kind=Kind.INVALID,
                                        field="emailaddress")
        self.check_domain(domain)
        return value, domain

    def domain_for_host(self, host: str) -> str:
        """The mail domain of a request without an address: `autoconfig.<domain>`, else the one served."""
        name = host.strip().lower()
        if name.count(":") == 1:
            name = name.partition(":")[0]
        if name.startswith(("autoconfig.", "autodiscover.")):
            name = name.partition(".")[2]
        elif self.domains:
            name = self.domains[0]
        return self.check_domain(name)

    def check_domain(self, domain: str) -> str:
        domain = domain.strip().lower().rstrip(".")
        if self.incoming is None:
            raise AutoconfigUnavailable(
                "client auto-configuration is off: no incoming (mailbox) server is configured",
                "Set [autoconfig] incoming, e.g. \"imap:imap.example.com:993:SSL\".",
            )
        if self.domains and domain not in self.domains:
            raise AutoconfigUnavailable(f"mail for {domain} is not set up here", domain=domain)
        return domain


def _listen_port(listen: str) -> int:
    return int(listen.rpartition(":")[2])


def settings_from(config: Config) -> ClientSettings:
    a = config.autoconfig
    host = (a.hostname or config.hostname).rstrip(".")
    return ClientSettings(
        provider=a.provider_name or host,
        host=host,
        submission_port=a.submission_port or _listen_port(config.smtp.submission),
        submissions_port=a.submissions_port or _listen_port(config.smtp.submissions),
        incoming=IncomingServer.parse(a.incoming) if a.incoming else None,
        domains=tuple(a.domains),
    )
