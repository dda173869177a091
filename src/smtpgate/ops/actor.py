"""Who asks for an operation: a local CLI user, or the holder of an operator API token."""

from __future__ import annotations

import getpass
from dataclasses import dataclass

from smtpgate.credentials.api_tokens import ApiTokenInfo, Role

__all__ = ["Actor", "Role"]


@dataclass(frozen=True)
class Actor:
    """The `who` and `from where` of the operator audit trail, and the role that decides."""

    name: str            # cli:alice | api:terraform
    role: Role
    face: str            # cli | api | web
    remote_ip: str = ""  # the API client's address; empty for the local CLI

    @classmethod
    def local(cls) -> Actor:
        """The user running the CLI on the server: whoever can read the config is an admin."""
        try:
            user = getpass.getuser()
        except Exception:  # noqa: BLE001 - no user name is not an error
            user = ""
        return cls(f"cli:{user}" if user else "cli", Role.ADMIN, "cli")

    @classmethod
    def api(cls, token: ApiTokenInfo, remote_ip: str) -> Actor:
        return cls(f"api:{token.name}", token.role, "api", remote_ip)

    @classmethod
    def owner(cls, login: str, remote_ip: str) -> Actor:
        """An account's owner in the web console: acts on that account only (ops.portal checks
        it); the viewer role is what the journal records, never a key to other accounts."""
        return cls(f"owner:{login}", Role.VIEWER, "web", remote_ip)

    @property
    def owned_login(self) -> str:
        return self.name.removeprefix("owner:") if self.face == "web" and self.name.startswith("owner:") else ""

    def may(self, needed: Role) -> bool:
        return self.role.covers(needed)
