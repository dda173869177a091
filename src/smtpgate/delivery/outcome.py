"""What an attempt did to each recipient, and one SMTP transaction over aiosmtplib.

Every route answers the worker in the same terms: per recipient, delivered, temporary
(4xx, network, our own trouble: try later) or permanent (5xx: bounce). A transaction
sends MAIL/RCPT/DATA on a connection someone else opened (the relay's pool or one MX
connection) and maps aiosmtplib's exceptions to those terms. Losing the connection is
raised as `ConnectionProblem`, so the caller can try another connection or host.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from smtpgate.delivery.dsn import status_of

if TYPE_CHECKING:  # loaded by the routes that send; an SMTP worker that only reads the
    import aiosmtplib  # routes (foresight) never needs it

__all__ = ["ConnectionProblem", "Outcome", "Outgoing", "all_recipients", "send_transaction"]

Kind = Literal["delivered", "temporary", "permanent"]


@dataclass(frozen=True)
class Outcome:
    kind: Kind
    reply: str          # "250 2.0.0 Ok: queued as X", "451 4.3.0 ...", or our reason
    remote: str = ""    # the host that answered, for the DSN and `queue show`

    @property
    def status(self) -> str:
        code = self.reply[:3]
        return status_of(int(code) if code.isdigit() else (4 if self.kind == "temporary" else 5), self.reply[4:])

    @classmethod
    def from_reply(cls, code: int, message: str, remote: str) -> Outcome:
        kind: Kind = "delivered" if 200 <= code < 300 else "temporary" if 400 <= code < 500 else "permanent"
        return cls(kind, f"{code} {' '.join(message.split())}".strip(), remote)


@dataclass(frozen=True)
class Outgoing:
    """One message on its way: the recipients still pending, the bytes as signed."""

    id: str
    mail_from: str
    recipients: tuple[str, ...]
    data: bytes
    credential_id: str | None = None
    account: str | None = None


class ConnectionProblem(Exception):
    """The connection failed or broke before the transaction got a reply to act on."""


def all_recipients(recipients: tuple[str, ...], outcome: Outcome) -> dict[str, Outcome]:
    return {r: outcome for r in recipients}


def _needs_smtputf8(message: Outgoing) -> bool:
    return not all(a.isascii() for a in (message.mail_from, *message.recipients))


async def send_transaction(client: aiosmtplib.SMTP, message: Outgoing, remote: str) -> dict[str, Outcome]:
    """MAIL, RCPT for each pending recipient, DATA; per-recipient outcomes."""
    import aiosmtplib

    options: list[str] = []
    if not message.data.isascii() and client.supports_extension("8bitmime"):
        options.append("BODY=8BITMIME")
    if _needs_smtputf8(message):
        if not client.supports_extension("smtputf8"):
            return all_recipients(
                message.recipients,
                Outcome("permanent", "553 5.6.7 The receiving server does not support SMTPUTF8 (non-ASCII addresses)", remote),
            )
        options.append("SMTPUTF8")
    try:
        errors, text = await client.sendmail(message.mail_from, list(message.recipients), message.data, mail_options=options)
    except aiosmtplib.SMTPRecipientsRefused as exc:
        return {r.recipient: Outcome.from_reply(r.code, r.message, remote) for r in exc.recipients}
    except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, ConnectionError, OSError) as exc:
        raise ConnectionProblem(f"{remote}: {exc}") from exc
    except aiosmtplib.SMTPResponseException as exc:
        return all_recipients(message.recipients, Outcome.from_reply(exc.code, exc.message, remote))
    except aiosmtplib.SMTPException as exc:  # e.g. an address aiosmtplib will not send
        return all_recipients(message.recipients, Outcome("permanent", f"554 5.6.0 {exc}", remote))
    delivered = Outcome.from_reply(250, text, remote)
    return {r: Outcome.from_reply(errors[r].code, errors[r].message, remote) if r in errors else delivered for r in message.recipients}
