"""Send mail from apps and scripts without a secret in the code.

    from smtpgate.client import send
    send(message, profile="billing")          # settings and secret saved by `smtpgate profile add`
    send(message)                             # SMTPGATE_PROFILE, or the container form below

The container form needs no profile file: SMTPGATE_URL=smtps://billing%40example.com@mail.example.com:465
(`smtps://` implicit TLS, `smtp://` STARTTLS, required) with the password in SMTPGATE_PASSWORD_FILE
(a mounted secret, mode 0600 or 0400) or SMTPGATE_PASSWORD; SMTPGATE_CAFILE trusts a private CA.
A password inside the URL is refused: URLs end up in logs and process lists.

Sending is smtplib's; a refusal raises SendError carrying the server's reply and the same
plain-words cause and fix as `smtpgate doctor`. No error text ever includes the password.
"""

from __future__ import annotations

import email.utils
import os
import smtplib
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage, Message
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from smtpgate.doctor.certs import verify_problem
from smtpgate.doctor.explain import (
    Explanation,
    explain_broken,
    explain_certificate,
    explain_connect_error,
    explain_dns,
    explain_reply,
    explain_tls_failure,
)
from smtpgate.profiles import Profile, ProfileError, ProfileStore, read_private_file

URL_ENV = "SMTPGATE_URL"
PASSWORD_ENV = "SMTPGATE_PASSWORD"
PASSWORD_FILE_ENV = "SMTPGATE_PASSWORD_FILE"
PROFILE_ENV = "SMTPGATE_PROFILE"
CAFILE_ENV = "SMTPGATE_CAFILE"

__all__ = ["SendError", "SendResult", "ServerSettings", "send", "send_with", "settings_from_env"]


class SendError(Exception):
    """Sending failed. `code` and `reply` are the server's (0 and "" for network trouble)."""

    def __init__(self, summary: str, why: Explanation, *, code: int = 0, reply: str = "", stage: str = "") -> None:
        super().__init__(summary)
        self.summary = summary
        self.cause = why.cause
        self.fix = why.fix
        self.code = code
        self.reply = reply
        self.stage = stage

    def __str__(self) -> str:
        return f"{self.summary}. {self.cause} {self.fix}"

    def to_json(self) -> dict[str, Any]:
        return {"error": self.summary, "stage": self.stage, "code": self.code, "reply": self.reply,
                "cause": self.cause, "fix": self.fix}


@dataclass
class ServerSettings:
    host: str
    port: int = 587
    tls: str = "starttls"  # starttls, tls or none
    user: str = ""
    sender: str = ""
    cafile: str = ""

    @classmethod
    def from_url(cls, url: str) -> ServerSettings:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("smtp", "smtps"):
            raise ProfileError(f"{URL_ENV}: the scheme is {scheme or 'missing'}; expected smtps:// or smtp://",
                               "smtps://USER@HOST:465 for implicit TLS, smtp://USER@HOST:587 for STARTTLS.")
        if parts.password is not None:
            raise ProfileError(f"{URL_ENV} holds a password",
                               f"Remove it from the URL and put it in {PASSWORD_FILE_ENV} (a 0600 file) or {PASSWORD_ENV}.")
        if not parts.hostname:
            raise ProfileError(f"{URL_ENV} has no server name", "Example: smtps://billing%40example.com@mail.example.com:465")
        try:
            port = parts.port or (465 if scheme == "smtps" else 587)
        except ValueError:
            raise ProfileError(f"{URL_ENV}: the port is not a number") from None
        return cls(host=parts.hostname, port=port, tls="tls" if scheme == "smtps" else "starttls",
                   user=unquote(parts.username or ""))

    @classmethod
    def from_profile(cls, profile: Profile) -> ServerSettings:
        return cls(host=profile.host, port=profile.port, tls=profile.tls, user=profile.user,
                   sender=profile.sender, cafile=profile.cafile)


@dataclass
class SendResult:
    message_id: str
    recipients: list[str]
    reply: str  # the server's final answer, e.g. "250 2.0.0 Ok: queued as 01J..."
    refused: dict[str, str] = field(default_factory=dict)  # recipients the server refused

    def to_json(self) -> dict[str, Any]:
        return {"message_id": self.message_id, "recipients": self.recipients, "reply": self.reply,
                "refused": self.refused}


# ---------------------------------------------------------------- settings


def settings_from_env(env: Mapping[str, str] | None = None) -> tuple[ServerSettings, str]:
    """Settings and password from SMTPGATE_URL + SMTPGATE_PASSWORD_FILE / SMTPGATE_PASSWORD."""
    env = os.environ if env is None else env
    settings = ServerSettings.from_url(env[URL_ENV])
    settings.cafile = env.get(CAFILE_ENV, "")
    password = ""
    if env.get(PASSWORD_FILE_ENV):
        password = read_private_file(Path(env[PASSWORD_FILE_ENV]), PASSWORD_FILE_ENV)
    elif env.get(PASSWORD_ENV):
        password = env[PASSWORD_ENV]
    if settings.user and not password:
        raise ProfileError(f"{URL_ENV} names the login {settings.user} but no password is given",
                           f"Set {PASSWORD_FILE_ENV} to a 0600 file holding it (or {PASSWORD_ENV}).")
    return settings, password


def resolve(profile: str | None = None, env: Mapping[str, str] | None = None) -> tuple[ServerSettings, str]:
    """Where to send and with which password: a profile, $SMTPGATE_PROFILE, or $SMTPGATE_URL."""
    env = os.environ if env is None else env
    name = profile or env.get(PROFILE_ENV, "")
    if name:
        store = ProfileStore()
        saved = store.get(name)
        return ServerSettings.from_profile(saved), store.secret(saved) if saved.user else ""
    if env.get(URL_ENV):
        return settings_from_env(env)
    raise ProfileError("no server to send through",
                       f"Pass profile=NAME (see `smtpgate profile add`), or set {PROFILE_ENV} or {URL_ENV}.")


# ---------------------------------------------------------------- sending


def send(message: Message | bytes | str, *, profile: str | None = None, to: list[str] | None = None,
         sender: str | None = None, timeout: float = 30.0) -> SendResult:
    """Send one message through a saved profile (or the environment's settings); SendError on refusal."""
    settings, password = resolve(profile)
    return send_with(settings, password, message, to=to, sender=sender, timeout=timeout)


def send_with(settings: ServerSettings, password: str, message: Message | bytes | str, *,
              to: list[str] | None = None, sender: str | None = None, timeout: float = 30.0) -> SendResult:
    msg = _as_message(message)
    from_addr = sender or settings.sender or (settings.user if "@" in settings.user else "")
    if "From" not in msg:
        if not from_addr:
            raise ProfileError("the message has no From: header and no sender is known",
                               "Set From: in the message, or a sender (--from, or the profile's `from`).")
        msg["From"] = from_addr
    if "Date" not in msg:
        msg["Date"] = email.utils.formatdate(localtime=False)
    if "Message-ID" not in msg:
        domain = (from_addr or email.utils.parseaddr(str(msg["From"]))[1]).rpartition("@")[2]
        msg["Message-ID"] = email.utils.make_msgid(domain=domain or None)
    if settings.user and settings.tls == "none":
        raise ProfileError("refusing to send a password without TLS",
                           "Use tls = starttls (port 587) or tls (port 465).")
    try:
        with _connect(settings, timeout) as smtp:
            if settings.user:
                smtp.login(settings.user, password)
            refused = smtp.send_message(msg, from_addr=sender or None, to_addrs=to)
            code, text = getattr(smtp, "last_data_reply", (0, b""))  # _Recording keeps it
    except SendError:
        raise
    except Exception as exc:  # noqa: BLE001 - every failure becomes one explained SendError
        raise _explain(exc, settings, timeout) from None
    recipients = to or [a for _, a in email.utils.getaddresses(
        [str(v) for h in ("To", "Cc", "Bcc") for v in msg.get_all(h, [])])]
    return SendResult(
        message_id=str(msg["Message-ID"]),
        recipients=[r for r in recipients if r not in refused],
        reply=f"{code} {text.decode('utf-8', 'replace') if isinstance(text, bytes) else text}",
        refused={r: f"{c} {t.decode('utf-8', 'replace')}" for r, (c, t) in refused.items()},
    )


class _Recording:
    """Keeps the reply to DATA (smtplib drops it), which carries the server's queue id."""

    last_data_reply: tuple[int, bytes] = (0, b"")

    def data(self, msg: Any) -> tuple[int, bytes]:
        self.last_data_reply = super().data(msg)  # type: ignore[misc]
        return self.last_data_reply


class _SMTP(_Recording, smtplib.SMTP):
    pass


class _SMTPS(_Recording, smtplib.SMTP_SSL):
    pass


def _connect(settings: ServerSettings, timeout: float) -> smtplib.SMTP:
    context = ssl.create_default_context(cafile=settings.cafile or None)
    if settings.tls == "tls":
        return _SMTPS(settings.host, settings.port, timeout=timeout, context=context)
    smtp = _SMTP(settings.host, settings.port, timeout=timeout)
    try:
        if settings.tls == "starttls":
            smtp.ehlo()
            if not smtp.has_extn("starttls"):
                raise SendError(f"{settings.host}:{settings.port} does not offer STARTTLS",
                                Explanation("The server does not offer STARTTLS, so the connection cannot be encrypted.",
                                            "Use port 465 with implicit TLS (smtps://), or ask the administrator to enable TLS."),
                                stage="starttls")
            smtp.starttls(context=context)
            smtp.ehlo()
    except BaseException:
        smtp.close()
        raise
    return smtp


def _as_message(message: Message | bytes | str) -> Message:
    if isinstance(message, Message):
        return message
    raw = message.encode("utf-8") if isinstance(message, str) else message
    parsed = message_from_bytes(raw, policy=policy.SMTP)
    assert isinstance(parsed, EmailMessage)
    return parsed


def _explain(exc: BaseException, settings: ServerSettings, timeout: float) -> SendError:
    where = f"{settings.host}:{settings.port}"
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return _refusal("authentication refused", exc.smtp_code, exc.smtp_error, "auth")
    if isinstance(exc, smtplib.SMTPSenderRefused):
        return _refusal(f"sender {exc.sender} refused", exc.smtp_code, exc.smtp_error, "mail")
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        rcpt, (code, text) = next(iter(exc.recipients.items()))
        return _refusal(f"recipient {rcpt} refused", code, text, "rcpt")
    if isinstance(exc, smtplib.SMTPDataError):
        return _refusal("message refused", exc.smtp_code, exc.smtp_error, "data")
    if isinstance(exc, smtplib.SMTPConnectError):
        return _refusal(f"{where} refused the connection", exc.smtp_code, exc.smtp_error, "banner")
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return SendError(f"{where}: {exc}", Explanation(
            "The server does not offer what this send needs here (AUTH is often off on port 25, or only after TLS).",
            "Use the submission port (587 with STARTTLS, 465 with implicit TLS)."), stage="auth")
    if isinstance(exc, smtplib.SMTPResponseException):
        return _refusal("the server refused", exc.smtp_code, exc.smtp_error, "")
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        if "timed out" in str(exc):
            return SendError(f"{where} stopped answering", explain_broken("timeout"), stage="connect")
        return SendError(f"{where} closed the connection", explain_broken("closed"), stage="connect")
    if isinstance(exc, ssl.SSLCertVerificationError):
        problem = verify_problem(exc)
        return SendError(f"{where}: certificate not trusted ({exc.verify_message})",
                         explain_certificate(problem, settings.host, detail=exc.verify_message or ""), stage="tls")
    if isinstance(exc, ssl.SSLError):
        return SendError(f"{where}: TLS failed ({exc.reason or exc})",
                         explain_tls_failure(str(exc), settings.tls == "tls", settings.port), stage="tls")
    if isinstance(exc, socket.gaierror):
        return SendError(f"{settings.host}: name not found", explain_dns("nxdomain", settings.host), stage="dns")
    if isinstance(exc, (TimeoutError, socket.timeout)):  # smtplib turns later timeouts into disconnects
        return SendError(f"{where}: timed out", explain_connect_error("timeout", settings.port, timeout), stage="connect")
    if isinstance(exc, ConnectionRefusedError):
        return SendError(f"{where}: connection refused", explain_connect_error("refused", settings.port), stage="connect")
    if isinstance(exc, OSError):
        return SendError(f"{where}: {exc.strerror or exc}", explain_connect_error("other", settings.port), stage="connect")
    if isinstance(exc, smtplib.SMTPException):
        return SendError(f"{where}: {exc}", Explanation("The SMTP conversation failed.", "Run `smtpgate doctor` on this server."))
    return SendError(f"{where}: {type(exc).__name__}", Explanation("Sending failed unexpectedly.",
                                                                  "Run `smtpgate doctor` on this server."))


def _refusal(summary: str, code: int, text: bytes | str, stage: str) -> SendError:
    reply = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return SendError(f"{summary}: {code} {reply}", explain_reply(code, reply, stage), code=code, reply=reply, stage=stage)
