"""The CLI's words for the core's error codes: the command and the option to use.

The core says what is wrong without naming any face (`smtpgate.errors`); here each
code gets the fix as a command-line user types it. A code missing here falls back to
the core's own neutral hint.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from smtpgate.errors import OpError

Words = Callable[[dict[str, Any]], str]

# the option a field is typed with, to name it in messages
OPTIONS = {
    "expires": "--expires", "overlap": "--overlap", "duration": "--for", "lifetime": "--lifetime",
    "token_lifetime": "--token-lifetime", "since": "--since", "result": "--result", "kind": "--event",
    "bits": "--bits", "selector": "--selector", "algorithm": "--algorithm", "role": "--role", "limit": "--limit",
    "allow_ip": "--allow-ip", "allow_from": "--allow-from", "state": "--state",
}

HINTS: dict[str, Words] = {
    "account-exists": lambda p: f"See it with `smtpgate account show {p.get('login', 'LOGIN')}`.",
    "account-not-found": lambda p: "List the accounts with `smtpgate account list`.",
    "credential-not-found": lambda p: "List them with `smtpgate creds list`.",
    "name-required": lambda p: "Name the app or device: --name printer-3rd-floor",
    "not-rotatable": lambda p: "Change an account password with `smtpgate account set-password`.",
    "credential-ended": lambda p: "Create a new one with `smtpgate app-password create`.",
    "weak-password": lambda p: "Or let smtpgate generate one with --generate.",
    "service-account-exists": lambda p: "See it with `smtpgate service-account list`.",
    "service-account-not-found": lambda p: "List them with `smtpgate service-account list`.",
    "token-not-found": lambda p: "List them with `smtpgate token list`; for an external IdP's token add --issuer ISSUER.",
    "api-token-not-found": lambda p: "List them with `smtpgate api-token list`.",
    "api-token-exists": lambda p: "See them with `smtpgate api-token list`, or pick another name.",
    "upstream-password-missing": lambda p: "Set it with `smtpgate upstream set-password --stdin`.",
    "upstream-password-unreadable": lambda p: "Set the password again with `smtpgate upstream set-password --stdin`.",
    "not-banned": lambda p: "See the bans in force with `smtpgate ban list`.",
    "ban-recorded-backend-down": lambda p: "Servers apply it from the database within [guard] sync_interval; check Redis.",
    "unban-recorded-backend-down": lambda p: "Servers apply it within [guard] sync_interval once Redis is back.",
    "message-not-found": lambda p: "List them with `smtpgate queue list`.",
    "captured-message-not-found": lambda p: "List them with `smtpgate capture list`.",
    "queue-busy": lambda p: "Run the command again.",
    "hold-rules-unreadable": lambda p: "Fix or remove that file (it lists held credential ids and accounts), "
                                       "then run the command again.",
    "dkim-key-exists": lambda p: "Pick another --selector (keys are never overwritten).",
    "smarthost-failed": lambda p: "Check [delivery.relay] and the password (`smtpgate upstream set-password`).",
    "role-insufficient": lambda p: f"Use a token with the {p.get('needed')} role "
                                   f"(`smtpgate api-token create NAME --role {p.get('needed')}`).",
    "store-unavailable": lambda p: "Check [database] url in the config and that the server runs.",
    "unauthorized": lambda p: "Give a valid operator token in $SMTPGATE_API_TOKEN or --api-token-file.",
    "incident-not-found": lambda p: "List them with `smtpgate incident list`.",
    "incident-closed": lambda p: "See it with `smtpgate incident show ID`; held mail is released with `smtpgate queue release`.",
    "autoconfig-unavailable": lambda p: "Set [autoconfig] incoming (and domains) in the config; see docs/autoconfig.md.",
    "invalid-role": lambda p: "--role takes viewer, operator or admin (and none for `smtpgate account set`).",
    "account-disabled": lambda p: f"Enable it first: `smtpgate account enable {p.get('login', 'EMAIL')}`.",
    "invite-unknown": lambda p: "Make a new link with `smtpgate account invite EMAIL`.",
    "not-an-app-password": lambda p: "Profiles are for app passwords: `smtpgate app-password create EMAIL --name NAME`.",
}

# where the CLI's own wording of the problem differs from the core's sentence
MESSAGES: dict[str, Words] = {
    "selection-required": lambda p: "name the messages: one ID, or --credential ID, or --account EMAIL",
    "selection-conflict": lambda p: "--all excludes an ID, --credential and --account",
    "invalid-bits": lambda p: f"--bits {p.get('bits')} is out of range",
    "password-and-generate": lambda p: "--password-stdin and --generate exclude each other",
    "incident-subject-required": lambda p: "name what leaked: --credential ID or --account EMAIL (one of them)",
    "release-and-delete": lambda p: "--release-held and --delete-held exclude each other",
}


def words(exc: OpError) -> tuple[str, str]:
    """(message, hint) as the CLI prints them."""
    params = exc.params
    message = MESSAGES[exc.code](params) if exc.code in MESSAGES else str(exc)
    if exc.code == "store-unavailable":
        message = f"the database is unreachable: {exc}"
    option = OPTIONS.get(exc.field or "")
    if option and exc.code in ("invalid-duration", "invalid-choice", "invalid-limit") and not message.startswith("--"):
        message = f"{option}: {message}"
    hint = HINTS[exc.code](params) if exc.code in HINTS else ""
    if exc.hint and (not hint or exc.code == "weak-password"):
        hint = f"{exc.hint} {hint}".strip() if exc.code == "weak-password" else exc.hint
    return message, hint


def exit_code(exc: OpError) -> int:
    """2 for input that is not well-formed (a usage error); 1 for a refusal of a well-formed request."""
    return 2 if exc.malformed else 1
