"""A test identity provider: keys of its own, its JWKS served over HTTP on 127.0.0.1.

It mints tokens with any claims, and the bad ones a real IdP never would: signed with
a key it does not publish, `alg: none`, over-long.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey, Key, RSAKey

ISSUER = "https://idp.test/tenant-1"
AUDIENCE = "api://smtpgate"


_KEYS: dict[str, Key] = {}


def _key(name: str) -> Key:
    """Keys made once per run (RSA generation is slow); each TestIdP still gets the same set."""
    if name not in _KEYS:
        _KEYS[name] = ECKey.generate_key("P-256", auto_kid=True) if name == "ec" else RSAKey.generate_key(2048, auto_kid=True)
    return _KEYS[name]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class TestIdP:
    __test__ = False  # not a test class, whatever its name

    def __init__(self, issuer: str = ISSUER, audience: str = AUDIENCE) -> None:
        self.issuer = issuer
        self.audience = audience
        self.rsa = _key("rsa")
        self.ec = _key("ec")
        self.algs: dict[str, str] = {str(self.rsa.kid): "RS256", str(self.ec.kid): "ES256"}
        self.published: list[Key] = [self.rsa, self.ec]
        self.fetches = 0
        self.fail = False
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != "/jwks.json" or idp.fail:
                    self.send_error(503 if idp.fail else 404)
                    return
                idp.fetches += 1
                body = json.dumps(idp.jwks()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def jwks_url(self) -> str:
        return f"http://127.0.0.1:{self.http.server_address[1]}/jwks.json"

    def jwks(self) -> dict[str, Any]:
        return {"keys": [{**k.as_dict(private=False), "alg": self.algs[str(k.kid)], "use": "sig"} for k in self.published]}

    def write_jwks(self, path: Path) -> Path:
        path.write_text(json.dumps(self.jwks()))
        return path

    def rotate(self) -> Key:
        """A new signing key, published next to the others."""
        key = RSAKey.generate_key(2048, auto_kid=True)
        self.algs[str(key.kid)] = "RS256"
        self.published.append(key)
        return key

    def claims(self, now: datetime | None = None, **overrides: Any) -> dict[str, Any]:
        now = now or datetime.now(UTC)
        stamp = int(now.timestamp())
        claims: dict[str, Any] = {
            "iss": self.issuer, "aud": self.audience, "sub": "0f1e2d3c", "email": "alice@example.com",
            "scope": "openid smtp", "iat": stamp, "nbf": stamp, "exp": stamp + 600, "jti": secrets.token_hex(8),
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def token(self, now: datetime | None = None, *, key: Key | None = None, kid: str | None = None,
              alg: str | None = None, **overrides: Any) -> str:
        key = key or self.rsa
        alg = alg or self.algs.get(str(key.kid), "RS256" if isinstance(key, RSAKey) else "ES256")
        header = {"alg": alg, "kid": kid or str(key.kid), "typ": "JWT"}
        return jwt.encode(header, self.claims(now, **overrides), key, algorithms=[alg])

    def forged(self, now: datetime | None = None, **overrides: Any) -> str:
        """Signed with a key nobody published, under the kid of one that is."""
        return self.token(now, key=_key("stranger"), kid=str(self.rsa.kid), alg="RS256", **overrides)

    def unsigned(self, now: datetime | None = None, **overrides: Any) -> str:
        """`alg: none`, the oldest trick in the JWT book."""
        header = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
        payload = b64url(json.dumps(self.claims(now, **overrides)).encode())
        return f"{header}.{payload}."

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


def now_minus(**kwargs: float) -> datetime:
    return datetime.now(UTC) - timedelta(**kwargs)
