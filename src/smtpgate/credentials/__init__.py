"""The credential core: accounts, secrets, scopes, rotation, revocation, verification.

Never imports the wire (smtp), the CLI or the web. `CredentialService` owns every change.
"""

from smtpgate.credentials.errors import CredentialError
from smtpgate.credentials.model import (
    AccountInfo,
    AuthFailure,
    CredentialInfo,
    CredentialKind,
    CredentialState,
    FailureReason,
    IssuedSecret,
    Principal,
)
from smtpgate.credentials.scopes import ScopeRequest, Scopes
from smtpgate.credentials.service import CredentialService, CredentialSettings

__all__ = [
    "AccountInfo",
    "AuthFailure",
    "CredentialError",
    "CredentialInfo",
    "CredentialKind",
    "CredentialService",
    "CredentialSettings",
    "CredentialState",
    "FailureReason",
    "IssuedSecret",
    "Principal",
    "ScopeRequest",
    "Scopes",
]
