"""Errors of the credential core: neutral codes and parameters (see `smtpgate.errors`)."""

from __future__ import annotations

from smtpgate.errors import Kind, OpError


class CredentialError(OpError):
    """Base class: `str(err)` says what is wrong, `code` which refusal it is."""

    code = "credential-error"
    kind = Kind.INVALID

    def _default_malformed(self) -> bool:
        return isinstance(self, InvalidValue)  # a refused value (a weak password, a foreign sender) is not a typo


class AccountExists(CredentialError):
    code = "account-exists"
    kind = Kind.CONFLICT


class AccountNotFound(CredentialError):
    code = "account-not-found"
    kind = Kind.NOT_FOUND


class CredentialNotFound(CredentialError):
    code = "credential-not-found"
    kind = Kind.NOT_FOUND


class InvalidValue(CredentialError):
    """A value that is not well-formed (an address, a network, a number): the request is
    wrong, not refused. The CLI exits 2 for it, as for any usage error."""

    code = "invalid-value"
    kind = Kind.INVALID


class InvalidScope(InvalidValue):
    code = "invalid-scope"


class ForeignSender(CredentialError):
    """A sender outside the account's own domain, not explicitly allowed."""

    code = "foreign-sender"
    kind = Kind.INVALID


class DuplicateName(CredentialError):
    """Another live credential of the account has that name."""

    code = "duplicate-name"
    kind = Kind.CONFLICT


class InvalidOperation(CredentialError):
    code = "invalid-operation"
    kind = Kind.INVALID


class WeakPassword(CredentialError):
    """The password policy refused a password; `reasons` lists every rule it broke."""

    code = "weak-password"
    kind = Kind.INVALID

    def __init__(self, reasons: list[str], suggestions: list[str]) -> None:
        message = "password refused: " + "; ".join(reasons)
        hint = " ".join(suggestions) or "Use a passphrase of four or more random words, or a generated password."
        super().__init__(message, hint, field="password")
        self.reasons = reasons


class PasswordTooLong(WeakPassword):
    """Longer than the accepted maximum: refused before any other rule runs."""

    code = "password-too-long"

    def __init__(self, length: int, maximum: int) -> None:
        super().__init__(
            [f"it has {length:,} characters, at most {maximum:,} are accepted"],
            [f"Use a passphrase of up to {maximum:,} characters; five or six random words are plenty."],
        )
