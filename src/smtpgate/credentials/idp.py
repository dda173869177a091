"""External identity providers: whose tokens we accept, and what in them names the user.

Each `[[tokens.issuers]]` entry becomes an `ExternalIssuer`: the `iss` it must carry,
the `aud` it must name, the algorithms it may use (asymmetric only: `none` and HMAC
are refused by the config itself), its keys (a JWKS URL fetched with httpx and cached,
or a file), the claim that holds the login, and the scope needed to send.

An IdP authenticates; smtpgate still authorises: the login must be an existing,
enabled account, and the token may send as that account's own address only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from smtpgate.credentials.jwks import RemoteKeySet

if TYPE_CHECKING:
    from smtpgate.config import Config, TokenIssuerConfig


@dataclass(frozen=True)
class ExternalIssuer:
    name: str
    issuer: str
    audience: str
    algorithms: frozenset[str]
    login_claim: str
    required_scope: str
    keys: RemoteKeySet

    @classmethod
    def from_config(cls, entry: TokenIssuerConfig, config: Config) -> ExternalIssuer:
        keys = RemoteKeySet(
            url=entry.jwks_url,
            file=config.path(entry.jwks_file) if entry.jwks_file else None,
            ttl=entry.jwks_cache.total_seconds(),
        )
        return cls(
            name=entry.name,
            issuer=entry.issuer,
            audience=entry.audience,
            algorithms=frozenset(entry.algorithms),
            login_claim=entry.login_claim,
            required_scope=entry.required_scope,
            keys=keys,
        )

    @property
    def credential_id(self) -> str:
        """How these tokens appear in the audit and the Received: header."""
        return f"idp:{self.name}"

    def login_of(self, claims: Mapping[str, Any]) -> str | None:
        value = claims.get(self.login_claim)
        return value.strip() if isinstance(value, str) and value.strip() else None


def scopes_in(claims: Mapping[str, Any]) -> set[str]:
    """OAuth scopes of a token: `scope` (RFC 8693/9068, space-separated) or `scp` (string or list)."""
    found: set[str] = set()
    for name in ("scope", "scp"):
        value = claims.get(name)
        if isinstance(value, str):
            found.update(value.split())
        elif isinstance(value, list):
            found.update(item for item in value if isinstance(item, str))
    return found
