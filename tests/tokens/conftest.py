"""Fixtures of the token tests: a test IdP on loopback, a token service on both databases."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from joserfc import jwt

from smtpgate.credentials import CredentialService
from smtpgate.credentials.idp import ExternalIssuer
from smtpgate.credentials.jwks import RemoteKeySet, SigningKeys
from smtpgate.credentials.passwords import PasswordHashing, PasswordPolicy
from smtpgate.credentials.tokens import TokenService, TokenSettings
from smtpgate.store import Store
from tests.conftest import FAST_HASH, FakeClock
from tests.tokens.idp import TestIdP

OWN_ISSUER = "urn:smtpgate:test"
OWN_AUDIENCE = "urn:smtpgate:test:smtp"
APP_KEY = b"k" * 32


@pytest.fixture
def idp() -> Iterator[TestIdP]:
    provider = TestIdP()
    yield provider
    provider.close()


@pytest.fixture
def tokens(store: Store, clock: FakeClock, tmp_path: Path, idp: TestIdP) -> TokenService:
    keys = SigningKeys(tmp_path / "keys", "ES256", keep_retired=24 * 3600 + 30, clock=lambda: clock().timestamp())
    corp = ExternalIssuer(
        name="corp", issuer=idp.issuer, audience=idp.audience, algorithms=frozenset({"RS256", "ES256"}),
        login_claim="email", required_scope="smtp",
        keys=RemoteKeySet(url=idp.jwks_url, ttl=3600, min_refresh=0),
    )
    return TokenService(
        store, keys=keys, settings=TokenSettings(issuer=OWN_ISSUER, audience=OWN_AUDIENCE),
        app_key=APP_KEY, issuers=[corp], clock=clock,
    )


@pytest.fixture
def credentials(store: Store, clock: FakeClock, tokens: TokenService) -> CredentialService:
    """The credential service with the token service plugged in, as Runtime builds it."""
    return CredentialService(store, app_key=APP_KEY, hashing=PasswordHashing(FAST_HASH),
                             policy=PasswordPolicy(), clock=clock, tokens=tokens)


def own_token(tokens: TokenService, clock: FakeClock, **overrides: Any) -> str:
    """A token signed with the server's own key, with any claims (for the bad cases)."""
    now = int(clock().timestamp())
    claims = {"iss": OWN_ISSUER, "aud": OWN_AUDIENCE, "sub": "bot@example.com", "client_id": "sa_x",
              "scope": "smtp", "jti": "j1", "iat": now, "nbf": now, "exp": now + 600}
    claims.update(overrides)
    typ = claims.pop("typ", "at+jwt")
    claims = {k: v for k, v in claims.items() if v is not None}
    key = tokens.keys.active()
    return jwt.encode({"alg": key.algorithm, "kid": key.kid, "typ": typ}, claims, key.key,
                      algorithms=[key.algorithm], default_type=None)
