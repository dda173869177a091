"""Likely causes and fixes, in plain words, for what an SMTP server or the network did.

The wording follows what people search for: the reply codes of RFC 4954 and RFC 3463, the
texts of the big providers, and the usual network trouble (a blocked port 25, a firewall
that strips STARTTLS). `smtpgate send` and `smtpgate.client` use the same table, so an error
from a script explains itself the same way the doctor does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SUBMISSION_PORTS = "port 587 (STARTTLS) or 465 (implicit TLS)"


@dataclass(frozen=True)
class Explanation:
    cause: str
    fix: str


# ----------------------------------------------------------------- replies

_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})\b")

_WRONG_LOGIN = Explanation(
    "The server does not accept this login and password.",
    "Check which account or alias the server expects as the login (often the full address; for "
    "an alias, the main account's login) and the password. After a password change, check that "
    "every client got the new one "
    "(phones, printers, scripts): a forgotten one keeps failing and can get your address banned. "
    "With two-factor authentication on, use an app password.",
)
_APP_PASSWORD = Explanation(
    "The account has two-factor authentication (or app passwords only) turned on, so the account "
    "password is refused for SMTP.",
    "Create an app password for this client (in your account's security settings, or "
    "`smtpgate app-password create LOGIN --name NAME` on smtpgate) and use it instead.",
)
_TLS_FIRST = Explanation(
    "The server wants TLS before AUTH or MAIL: the client tried on an unencrypted connection.",
    f"Turn on STARTTLS (\"TLS\" or \"SSL/TLS\" in the client's settings), or use {SUBMISSION_PORTS}.",
)
_AUTH_FIRST = Explanation(
    "The server accepts mail only from authenticated clients, and this client did not log in.",
    "Turn on authentication (\"SMTP server requires authentication\") with the account's login and "
    "password or an app password.",
)
_TEMPORARY_AUTH = Explanation(
    "Temporary trouble on the server: it could not check the password (its user database or "
    "authentication service is unreachable).",
    "Try again in a few minutes. If it persists, tell the server's administrator; nothing is "
    "wrong with your password.",
)
_TOO_MANY = Explanation(
    "The server closes the connection for your address: too many connections or failed logins "
    "from it (rate limited or banned), or the server is overloaded.",
    "Wait before retrying, and stop every client that retries with an old password (it keeps the "
    "ban going). If it lasts, ask the administrator to lift the ban for your address.",
)
_SHUTTING_DOWN = Explanation(
    "The server is shutting down or restarting.", "Try again in a minute."
)
_MECHANISM = Explanation(
    "The server does not support this authentication mechanism.",
    "Use a mechanism it advertises after EHLO (PLAIN or LOGIN over TLS work nearly everywhere).",
)
_SENDER = Explanation(
    "This login may not send as this sender address.",
    "Send from the account's own address (or an alias the server knows for it), or ask the "
    "administrator to allow this sender for the credential.",
)
_RELAY = Explanation(
    "The server refuses to pass mail on to this recipient for you (relay access denied): the "
    "client is not authenticated, or not allowed to relay.",
    "Log in before sending (authentication on, over TLS).",
)
_RATE = Explanation(
    "A sending limit was reached (messages per hour or day for this login), or the server "
    "greylists new senders.",
    "Wait and retry later; ask the administrator for a higher limit if it is too low.",
)

# (code, enhanced) first, then code alone; stage-specific entries win over general ones.
_REPLIES: dict[tuple[int, str], Explanation] = {
    (535, "5.7.8"): _WRONG_LOGIN,
    (535, "5.7.139"): Explanation(
        "SMTP AUTH is turned off for this mailbox or the whole organisation (Microsoft 365 "
        "\"SmtpClientAuthentication is disabled\").",
        "Enable \"Authenticated SMTP\" for the mailbox in the admin centre, or send through an app "
        "that uses OAuth.",
    ),
    (535, "5.7.3"): Explanation(
        "Authentication is not allowed for this account (disabled, or SMTP AUTH turned off).",
        "Ask the administrator to enable the account for SMTP.",
    ),
    (534, "5.7.9"): _APP_PASSWORD,
    (534, "5.7.14"): Explanation(
        "The provider wants a sign-in through its web page first (a security check), or blocks "
        "password sign-in for this account.",
        "Sign in once in a web browser from this network, then retry; or use an app password.",
    ),
    (538, "5.7.11"): _TLS_FIRST,
    (454, "4.7.0"): _TEMPORARY_AUTH,
    (432, "4.7.12"): Explanation(
        "The server needs the password changed (or converted) before it accepts it for SMTP.",
        "Sign in once with a mail client that can change the password, or ask the administrator.",
    ),
    (421, "4.3.2"): _SHUTTING_DOWN,
    (421, "4.7.0"): _TOO_MANY,
    (504, "5.5.4"): _MECHANISM,
    (553, "5.7.1"): _SENDER,
    (550, "5.7.1"): _SENDER,
    (554, "5.7.1"): _RELAY,
    (451, "4.7.1"): _RATE,
    (450, "4.7.1"): _RATE,
    (452, "4.5.3"): Explanation(
        "Too many recipients in one message for this server.",
        "Split the recipients over several messages.",
    ),
    (552, "5.3.4"): Explanation(
        "The message is larger than the server accepts (the SIZE it advertises).",
        "Send smaller attachments, or share a link instead.",
    ),
    (550, "5.1.1"): Explanation(
        "The recipient address does not exist.", "Check the recipient's spelling."
    ),
    (550, "5.6.0"): Explanation(
        "The message is malformed for this server (for smtpgate: it has no From: header).",
        "Add a From: header with an address this login may use.",
    ),
}
_BY_CODE: dict[int, Explanation] = {
    535: _WRONG_LOGIN,
    534: _APP_PASSWORD,
    538: _TLS_FIRST,
    454: _TEMPORARY_AUTH,
    421: _TOO_MANY,
    504: _MECHANISM,
    553: _SENDER,
    451: Explanation(
        "Temporary trouble on the server while handling the message.",
        "Try again later; a good client retries by itself.",
    ),
    452: Explanation("The server is out of room or over a limit for now.", "Try again later."),
    552: _REPLIES[(552, "5.3.4")],
    500: Explanation(
        "The server did not understand the command (it does not support it, or something between "
        "you and the server mangled it).",
        "Use only what the server advertises after EHLO; check for a proxy or firewall in between.",
    ),
    502: Explanation(
        "The server does not implement this command here (AUTH is often off on a port meant for "
        "server-to-server mail, such as 25).",
        f"Use the submission ports, {SUBMISSION_PORTS}.",
    ),
    503: Explanation(
        "The command came in the wrong order (for example AUTH before EHLO, or twice).",
        "Send EHLO first, STARTTLS, EHLO again, then AUTH once.",
    ),
}


def parse_enhanced(text: str) -> str:
    """The RFC 3463 status code at the start of a reply text ("5.7.8"), or ""."""
    match = _ENHANCED.match(text.strip())
    return ".".join(match.groups()) if match else ""


def explain_reply(code: int, text: str, stage: str = "") -> Explanation:
    """Why the server answered `code text` at this stage (banner, auth, mail, rcpt, data...)."""
    enhanced = parse_enhanced(text)
    lowered = text.lower()
    if code == 530:
        return _TLS_FIRST if ("tls" in lowered or stage == "auth") else _AUTH_FIRST
    if code == 554 and stage == "banner":
        return Explanation(
            "The server refuses connections from your address (a block list or a local policy).",
            "Check whether your IP address is listed on a block list; send from another network "
            "or ask the administrator to allow your address.",
        )
    if code == 454 and stage == "starttls":
        return Explanation(
            "The server offers STARTTLS but cannot start TLS right now (often its certificate or "
            "key cannot be loaded).",
            "Tell the server's administrator; until it is fixed, try implicit TLS on port 465.",
        )
    if code == 550 and stage == "rcpt" and "relay" in lowered:
        return _RELAY
    if code == 554 and stage == "rcpt":
        return _RELAY
    found = _REPLIES.get((code, enhanced)) or _BY_CODE.get(code)
    if found is not None:
        return found
    if 400 <= code < 500:
        return Explanation(
            "The server reports a temporary problem.",
            "Try again later; if it persists, show the reply to the administrator.",
        )
    return Explanation(
        "The server refused the request permanently.",
        "Read the server's text in the reply; if it is unclear, show it to the administrator.",
    )


# ----------------------------------------------------------------- network


def explain_connect_error(kind: str, port: int, timeout: float = 0.0) -> Explanation:
    """A TCP connect that failed: `kind` is timeout, refused, unreachable or other."""
    if kind == "timeout":
        if port == 25:
            return Explanation(
                f"Nothing answered on port 25 within {timeout:g} s: a firewall, your ISP or your "
                "cloud provider blocks outgoing port 25 (most do, against spam).",
                f"Port 25 is for server-to-server mail; submit through {SUBMISSION_PORTS} with a login.",
            )
        return Explanation(
            f"Nothing answered on port {port} within {timeout:g} s: a firewall (here, on the way, "
            "or at the server) or your ISP silently drops connections to it.",
            f"Try {SUBMISSION_PORTS}, whichever is not blocked; check this machine's and this "
            "network's firewall, or try from another network to compare.",
        )
    if kind == "refused":
        return Explanation(
            f"The host answered, but nothing listens on port {port} (or a firewall rejects it).",
            "Check the port in your provider's settings (587 for STARTTLS, 465 for implicit TLS) "
            "and that the mail server is running.",
        )
    if kind == "unreachable":
        return Explanation(
            "There is no route to the host from here (network down, VPN, or an IPv6 address "
            "without IPv6 connectivity).",
            "Check this machine's network connection; try the host's IPv4 address.",
        )
    return Explanation(
        "The connection could not be made.", "Check the host name and port, and the network."
    )


def explain_dns(kind: str, name: str, record: str = "A/AAAA") -> Explanation:
    """A DNS lookup that failed: nxdomain, noanswer, timeout, or other."""
    if kind == "nxdomain":
        return Explanation(
            f"The name {name} does not exist in DNS.",
            "Check the spelling of the server name (your provider's help page lists it, often "
            "smtp.DOMAIN or mail.DOMAIN).",
        )
    if kind == "noanswer":
        return Explanation(
            f"{name} exists, but has no {record} record.",
            "Check that this is the server's name and not just the domain; ask its administrator.",
        )
    if kind == "timeout":
        return Explanation(
            "The DNS server did not answer in time.",
            "Check this machine's DNS settings (/etc/resolv.conf) and network connection.",
        )
    return Explanation("The DNS lookup failed.", "Check this machine's DNS settings and network.")


def explain_no_greeting(kind: str, port: int, timeout: float) -> Explanation:
    """The TCP connection opened but no 220 greeting came: `kind` is timeout or closed."""
    if kind == "timeout":
        return Explanation(
            f"The connection opened but the server said nothing in {timeout:g} s: the port may "
            "speak implicit TLS (the client must start TLS first), the server may be overloaded "
            "or deliberately slow (a tarpit), or a firewall or antivirus \"mail shield\" holds the "
            "connection.",
            f"If this port uses implicit TLS, tell the client (\"SSL/TLS\", or --port {port}:tls "
            "here); otherwise retry later or from another network, and check local security "
            "software.",
        )
    return Explanation(
        "The server closed the connection without a greeting: your address is banned or on a "
        "block list, the server has too many connections, or it only accepts certain networks.",
        "Wait and retry; check that no client is failing logins from your address; ask the "
        "administrator whether your address is blocked.",
    )


def explain_broken(kind: str) -> Explanation:
    """The conversation stopped half-way: `kind` is timeout, closed or garbled."""
    if kind == "timeout":
        return Explanation(
            "The server stopped answering in the middle of the conversation (overloaded, or a "
            "firewall dropped the connection).",
            "Retry; if it happens again, show the --verbose transcript to the administrator.",
        )
    if kind == "garbled":
        return Explanation(
            "The server (or something in between) answered with something that is not SMTP.",
            "Check that this port is a mail server; a proxy or antivirus may be in the way.",
        )
    return Explanation(
        "The server closed the connection in the middle of the conversation: it may limit or "
        "ban your address, or it crashed.",
        "Retry later; if it persists, show the --verbose transcript to the administrator.",
    )


# ----------------------------------------------------------------- TLS


def explain_no_starttls(firewall_mangled: bool) -> Explanation:
    if firewall_mangled:
        return Explanation(
            "A firewall with SMTP inspection sits between you and the server and removes STARTTLS "
            "(the greeting shows XXXXXXXA, its telltale).",
            "Turn off the firewall's SMTP/ESMTP inspection, or use implicit TLS on port 465.",
        )
    return Explanation(
        "The server does not offer STARTTLS on this port, so a password would cross the network "
        "in clear text (or something between you and the server strips it).",
        "Use port 465 (implicit TLS) if the server has it, or ask the administrator to enable TLS. "
        "If it works from another network, a firewall on this one strips STARTTLS.",
    )


def explain_tls_failure(message: str, implicit: bool, port: int) -> Explanation:
    """A TLS handshake that failed for a reason other than the certificate."""
    lowered = message.lower()
    if "wrong version number" in lowered or "record layer failure" in lowered or "http request" in lowered:
        if implicit:
            return Explanation(
                f"Port {port} does not speak implicit TLS: the server answered in plain text.",
                f"Use STARTTLS on this port (--port {port}:starttls here), or port 465 for "
                "implicit TLS.",
            )
        return Explanation(
            "The server said yes to STARTTLS but did not speak TLS after it.",
            "The server's TLS setup is broken: tell its administrator.",
        )
    if "unsupported protocol" in lowered or "no protocols available" in lowered or "version too low" in lowered:
        return Explanation(
            "The server only speaks old TLS versions (1.0 or 1.1), which are insecure and refused.",
            "The server must enable TLS 1.2 or 1.3: tell its administrator.",
        )
    if "handshake failure" in lowered or "no shared cipher" in lowered or "insufficient security" in lowered:
        return Explanation(
            "Client and server have no cipher or key type in common.",
            "The server must offer modern ciphers (ECDHE with AES-GCM or ChaCha20).",
        )
    if "timed out" in lowered:
        return Explanation(
            "The TLS handshake did not finish in time (the server or the network stalls).",
            "Retry; if it persists, a middlebox may be interfering with TLS.",
        )
    return Explanation(
        f"The TLS handshake failed ({message}).",
        "Retry; if it persists, show this to the server's administrator.",
    )


def explain_certificate(problem: str, host: str, *, detail: str = "") -> Explanation:
    """A certificate problem: expired, not-yet-valid, hostname, self-signed, untrusted, incomplete."""
    if problem == "expired":
        return Explanation(
            f"The server's certificate expired{(' on ' + detail) if detail else ''}; clients refuse it, "
            "and a client that accepts it anyway could be talking to an impostor.",
            "The administrator must renew the certificate (certbot renew, or the provider's panel) "
            "and reload the mail server.",
        )
    if problem == "expiring":
        return Explanation(
            f"The certificate expires soon ({detail}).",
            "Renew it now and check that automatic renewal (and the server reload after it) works.",
        )
    if problem == "not-yet-valid":
        return Explanation(
            "The certificate is not valid yet: this machine's clock is wrong, or the certificate "
            "was issued with a future start date.",
            "Check this machine's date and time (NTP); otherwise tell the administrator.",
        )
    if problem == "hostname":
        return Explanation(
            f"The certificate is for {detail or 'another name'}, not {host}: you are connecting "
            "by a name it does not cover (or to the wrong server).",
            "Connect using a name the certificate covers (your provider's documented server name), "
            f"or the administrator must get a certificate that includes {host}.",
        )
    if problem == "self-signed":
        return Explanation(
            "The certificate is self-signed: no public authority vouches for it, so it cannot be "
            "told apart from an impostor's.",
            "If it is your own server, trust its certificate or CA file explicitly (--cafile here); "
            "better, install a certificate from a public CA such as Let's Encrypt.",
        )
    if problem == "untrusted":
        return Explanation(
            "The certificate is signed by a CA this machine does not trust (a private CA such as "
            "smtpgate's local CA), or the server does not send the intermediate certificate.",
            "If the CA is your own, give its file with --cafile (smtpgate: tls/ca.pem); otherwise "
            "the server must send its full chain (leaf plus intermediates).",
        )
    return Explanation(
        f"The certificate could not be verified ({detail or problem}).",
        "Show this to the server's administrator.",
    )
