"""Setup instructions for the mail client an owner picks when making an app password:
the server, port, TLS mode and login to type, in the words each client uses."""

from __future__ import annotations

from dataclasses import dataclass

from smtpgate.config import Config

CLIENTS = {
    "thunderbird": "Thunderbird",
    "apple": "Apple Mail (Mac, iPhone, iPad)",
    "outlook": "Outlook",
    "android": "Android (Gmail app and others)",
    "script": "A script or a device",
}


@dataclass(frozen=True)
class Setup:
    client: str
    server: str
    port: int
    tls: str
    login: str
    steps: tuple[str, ...]
    alternative: str


def _port(listen: str) -> int:
    return int(listen.rpartition(":")[2])


def setup_for(config: Config, client: str, login: str) -> Setup:
    server = config.hostname
    port, alt = _port(config.smtp.submission), _port(config.smtp.submissions)
    steps = {
        "thunderbird": (
            "Open Account Settings, then Outgoing Server (SMTP), and add a server or edit yours.",
            f"Server Name: {server}; Port: {port}; Connection security: STARTTLS.",
            f"Authentication method: Normal password; User Name: {login}.",
            "Send a message: Thunderbird asks for the password once. Paste the app password and let it remember it.",
        ),
        "apple": (
            "On a Mac: Mail, Settings, Accounts, Server Settings. On an iPhone or iPad: Settings, Apps, Mail, Mail Accounts.",
            f"Outgoing Mail Server: Host Name {server}, User Name {login}, Password: the app password.",
            f"Turn off 'Automatically manage connection settings', then Port {port} with TLS/SSL on (STARTTLS).",
        ),
        "outlook": (
            "File, Account Settings, your account, Change, then More Settings.",
            f"Outgoing server (SMTP): {server}, port {port}, encrypted connection: STARTTLS (or TLS on port {alt}).",
            f"My outgoing server requires authentication: log on with {login} and the app password.",
        ),
        "android": (
            "In your mail app, open the account's settings, then Outgoing settings (SMTP).",
            f"SMTP server {server}, port {port}, security type STARTTLS.",
            f"Require sign-in: on; username {login}; password: the app password.",
        ),
        "script": (
            f"SMTP submission to {server}, port {port} with STARTTLS (or port {alt} with TLS from the start).",
            f"AUTH PLAIN or LOGIN with the username {login} and the app password.",
            f"Python: smtplib.SMTP('{server}', {port}) then .starttls() and .login('{login}', app_password).",
        ),
    }
    chosen = client if client in CLIENTS else "thunderbird"
    return Setup(CLIENTS[chosen], server, port, "STARTTLS", login, steps[chosen],
                 f"or port {alt} with TLS from the start (SSL/TLS)")
