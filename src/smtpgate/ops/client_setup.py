"""Client set-up for a credential: the Apple configuration profile offered after an app password is made."""

from __future__ import annotations

from smtpgate.autoconfig import settings_from
from smtpgate.autoconfig.apple import ProfileRequest, mobileconfig
from smtpgate.credentials import CredentialKind
from smtpgate.errors import Invalid
from smtpgate.ops.actor import Actor
from smtpgate.ops.base import Concern


class ClientSetup(Concern):
    def check_apple_profile(self, account: str) -> None:
        """Refuse early when no profile can be made for this account (autoconfig off, domain not
        served), so a caller checks before it makes the app password the profile is for."""
        settings_from(self.rt.config).check_address(account)

    def apple_profile(self, actor: Actor, credential_id: str, *, password: str | None = None) -> bytes:
        """The `.mobileconfig` for an app password; the secret is embedded only when given, and
        only when it is that credential's own (so a profile never carries a wrong secret)."""
        info = self.rt.credentials.get_credential(credential_id)
        if info.kind is not CredentialKind.APP_PASSWORD:
            raise Invalid(f"{info.id} is a {info.kind}, not an app password: profiles are made for app passwords",
                          code="not-an-app-password", field="credential", credential=info.id)
        if password is not None and not self.rt.credentials.is_secret_of(info.id, password):
            raise Invalid("that is not this app password's secret", code="secret-mismatch", field="password",
                          credential=info.id)
        settings = settings_from(self.rt.config)
        address, _ = settings.check_address(info.account)
        return mobileconfig(settings, ProfileRequest(address, info.id, info.name, password))
