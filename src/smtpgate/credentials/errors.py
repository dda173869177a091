"""Errors of the credential core. Each carries a message and, where it helps, a fix."""

from __future__ import annotations


class CredentialError(Exception):
    """Base class: `str(err)` says what is wrong, `hint` what to do about it."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


class AccountExists(CredentialError):
    pass


class AccountNotFound(CredentialError):
    pass


class CredentialNotFound(CredentialError):
    pass


class InvalidValue(CredentialError):
    """A value that is not well-formed (an address, a network, a number): the request is
    wrong, not refused. The CLI exits 2 for it, as for any usage error."""


class InvalidScope(InvalidValue):
    pass


class ForeignSender(CredentialError):
    """A sender outside the account's own domain, not explicitly allowed."""


class DuplicateName(CredentialError):
    """Another live credential of the account has that name."""


class InvalidOperation(CredentialError):
    pass


class WeakPassword(CredentialError):
    """The password policy refused a password; `reasons` lists every rule it broke."""

    def __init__(self, reasons: list[str], suggestions: list[str]) -> None:
        message = "password refused: " + "; ".join(reasons)
        hint = " ".join(suggestions) or (
            "Use a passphrase of four or more random words, or let smtpgate generate one "
            "with --generate."
        )
        super().__init__(message, hint)
        self.reasons = reasons


class PasswordTooLong(WeakPassword):
    """Longer than the accepted maximum: refused before any other rule runs."""

    def __init__(self, length: int, maximum: int) -> None:
        super().__init__(
            [f"it has {length:,} characters, at most {maximum:,} are accepted"],
            [f"Use a passphrase of up to {maximum:,} characters; five or six random words are plenty."],
        )
