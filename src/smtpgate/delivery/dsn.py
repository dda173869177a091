"""Bounces: delivery status notifications (RFC 3464) to the envelope sender.

Built by hand rather than with `email.mime`: the stdlib treats every `message/*` part as
an embedded message and mangles a `message/delivery-status` body of plain fields, and
the format is a few fixed lines. The envelope sender of a DSN is empty (`MAIL FROM:<>`),
so a DSN about a DSN is never sent (RFC 5321 6.1: no bounce loops).
"""

from __future__ import annotations

import email.utils
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone

__all__ = ["FailedRecipient", "build_dsn", "status_of"]

_ENHANCED = re.compile(r"^\s*[245]\.\d{1,3}\.\d{1,3}\b")
HEADERS_LIMIT = 64 * 1024


@dataclass(frozen=True)
class FailedRecipient:
    address: str
    status: str        # enhanced status code, e.g. 5.1.1 or 4.4.7
    diagnostic: str    # the remote reply ("550 5.1.1 No such user") or our reason
    remote_mta: str = ""


def status_of(code: int, message: str) -> str:
    """The enhanced status code of a reply: the one it gives, or the bare class."""
    match = _ENHANCED.match(message)
    if match:
        return match.group(0).strip()
    return f"{str(code)[0] if code else 5}.0.0"


def _clean(text: str) -> str:
    return re.sub(r"[\r\n\t]+", " ", text).encode("ascii", "replace").decode("ascii").strip()


def _header_section(original: bytes) -> bytes:
    end = original.find(b"\r\n\r\n")
    block = original if end < 0 else original[: end + 2]
    return block[:HEADERS_LIMIT]


def build_dsn(
    *,
    hostname: str,
    queue_id: str,
    sender: str,
    arrival: datetime,
    failed: list[FailedRecipient],
    original: bytes,
    now: datetime | None = None,
) -> bytes:
    """The whole DSN message (CRLF line ends) for the given failed recipients."""
    now = now or datetime.now(timezone.utc)
    boundary = f"=_smtpgate_{secrets.token_hex(12)}"
    expired = any(f.status == "4.4.7" for f in failed)
    lines = "\r\n".join(
        f"  <{f.address}>: {_clean(f.diagnostic)}" + (f" (from {_clean(f.remote_mta)})" if f.remote_mta else "")
        for f in failed
    )
    reason = (
        "could not be delivered within the time the queue keeps a message"
        if expired
        else "was refused by the receiving server"
    )
    human = (
        f"This is the mail system at {hostname}.\r\n\r\n"
        f"Your message (queue id {queue_id}) {reason} for these recipients:\r\n\r\n"
        f"{lines}\r\n\r\n"
        "The headers of your message are attached.\r\n"
    )
    per_recipient = "".join(
        "\r\n"
        f"Final-Recipient: rfc822; {f.address}\r\n"
        "Action: failed\r\n"
        f"Status: {f.status}\r\n"
        + (f"Remote-MTA: dns; {_clean(f.remote_mta)}\r\n" if f.remote_mta else "")
        + f"Diagnostic-Code: smtp; {_clean(f.diagnostic)}\r\n"
        f"Last-Attempt-Date: {email.utils.format_datetime(now)}\r\n"
        for f in failed
    )
    status = (
        f"Reporting-MTA: dns; {hostname}\r\n"
        f"X-Smtpgate-Queue-ID: {queue_id}\r\n"
        f"Arrival-Date: {email.utils.format_datetime(arrival.astimezone(timezone.utc))}\r\n"
        f"{per_recipient}"
    )
    headers = (
        f"From: Mail Delivery System <MAILER-DAEMON@{hostname}>\r\n"
        f"To: <{sender}>\r\n"
        f"Subject: Undelivered Mail Returned to Sender\r\n"
        f"Date: {email.utils.format_datetime(now)}\r\n"
        f"Message-ID: <{secrets.token_hex(12)}.dsn@{hostname}>\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\r\n'
    )
    body = (
        "This is a MIME-encapsulated message.\r\n\r\n"
        f"--{boundary}\r\n"
        "Content-Description: Notification\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
        f"{human}\r\n"
        f"--{boundary}\r\n"
        "Content-Description: Delivery report\r\n"
        "Content-Type: message/delivery-status\r\n\r\n"
        f"{status}\r\n"
        f"--{boundary}\r\n"
        "Content-Description: Undelivered message headers\r\n"
        "Content-Type: text/rfc822-headers\r\n\r\n"
    )
    tail = f"\r\n--{boundary}--\r\n"
    return (headers + "\r\n" + body).encode("utf-8", "replace") + _header_section(original) + tail.encode()
