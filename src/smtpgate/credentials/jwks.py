"""Signing keys of the built-in issuer, and the key sets of external identity providers.

Own keys live in `[tokens] key_dir`, one 0600 JSON file per key: the private JWK with
its `kid` (the RFC 7638 thumbprint), when it was made and when it was retired. The
newest key that is not retired signs; `rotate()` makes a new one and retires the old,
which keeps verifying (and stays in the JWKS) for `max_token_lifetime`, so no token
issued before a rotation breaks. Every worker re-reads the folder when it changes (one
`stat` per use), so a rotation or a key made by another process is seen at once.

External key sets are fetched with httpx (or read from a file), cached for a TTL, and
fetched again at most once per token when a `kid` is unknown (an IdP that rotated),
never more often than `MIN_REFRESH` so that tokens with made-up kids cannot turn us
into a load generator against the IdP.

joserfc does the JWK and JWS work; what is here is the key life cycle around it.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from joserfc.errors import JoseError
from joserfc.jwk import ECKey, Key, KeySet, OKPKey, import_key
from joserfc.jws import JWSAlgModel, JWSRegistry

if TYPE_CHECKING:  # imported where a key set is fetched: a server without an IdP never loads it
    import httpx

log = logging.getLogger("smtpgate.tokens")



class QuietRegistry(JWSRegistry):
    """joserfc's JWS registry, minus its warning on every use of "EdDSA".

    RFC 9864 prefers the name "Ed25519" for the same signature; "EdDSA" stays the one
    most verifiers know, the operator chose it in [tokens] algorithm, and a warning per
    token would only flood the log. A copy of the algorithm keeps joserfc's own untouched.
    """

    algorithms: dict[str, JWSAlgModel] = dict(JWSRegistry.algorithms)


_eddsa = copy.copy(QuietRegistry.algorithms["EdDSA"])
_eddsa.security_warning = None
QuietRegistry.algorithms["EdDSA"] = _eddsa

SIGNING_ALGORITHMS: dict[str, tuple[str, Literal["P-256", "Ed25519"]]] = {"ES256": ("EC", "P-256"), "EdDSA": ("OKP", "Ed25519"), "Ed25519": ("OKP", "Ed25519")}
MIN_REFRESH = 30.0  # seconds between two fetches of one IdP's keys on unknown kids
RELOAD_AFTER = 5.0  # re-read our own key folder at least this often (coarse mtimes can hide a change)


class KeysUnavailable(Exception):
    """An identity provider's keys could not be fetched or parsed (a temporary failure)."""


@dataclass(frozen=True)
class SigningKey:
    kid: str
    algorithm: str
    key: Key
    created: float
    retired: float | None


def _write_private(path: Path, data: dict[str, Any], *, replace: bool) -> bool:
    """Write a key file 0600 and fsync'd; with `replace` atomically over the old one."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = path.with_name(path.name + ".tmp") if replace else path
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if not replace:
            return False
        os.unlink(target)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
        fh.flush()
        os.fsync(fh.fileno())
    if replace:
        os.replace(target, path)
    return True


class SigningKeys:
    """The built-in issuer's keys in one folder; safe to share between threads."""

    def __init__(self, folder: Path, algorithm: str, *, keep_retired: float, clock: Callable[[], float] = time.time) -> None:
        if algorithm not in SIGNING_ALGORITHMS:
            raise ValueError(f"unsupported signing algorithm {algorithm!r}")
        self.folder = folder
        self.algorithm = algorithm
        self.keep_retired = keep_retired
        self._clock = clock
        self._lock = threading.Lock()
        self._stamp: int | None = None
        self._loaded_at = float("-inf")
        self._keys: dict[str, SigningKey] = {}

    # ------------------------------------------------------------------ reading

    def _load(self, *, force: bool = False) -> dict[str, SigningKey]:
        """The keys on disk, re-read when the folder changed (or when `force`d, or a while passed)."""
        try:
            stamp = self.folder.stat().st_mtime_ns
        except FileNotFoundError:
            stamp = None
        with self._lock:
            fresh = time.monotonic() - self._loaded_at < RELOAD_AFTER
            if stamp is not None and stamp == self._stamp and fresh and not force:
                return self._keys
            keys: dict[str, SigningKey] = {}
            for path in sorted(self.folder.glob("*.jwk.json")) if stamp is not None else []:
                key = self._read(path)
                if key is not None:
                    keys[key.kid] = key
            self._keys, self._stamp, self._loaded_at = keys, stamp, time.monotonic()
            return keys

    @staticmethod
    def _read(path: Path) -> SigningKey | None:
        try:
            if path.stat().st_mode & 0o077:
                log.error("token key %s is readable by others; run `chmod 600 %s` (key ignored)", path, path)
                return None
            data = json.loads(path.read_text(encoding="utf-8"))
            key = import_key(data["jwk"])
            return SigningKey(str(data["jwk"]["kid"]), str(data["alg"]), key, float(data["created"]),
                              None if data.get("retired") is None else float(data["retired"]))
        except (OSError, ValueError, KeyError, TypeError, JoseError) as exc:
            log.error("cannot read token key %s: %s (key ignored)", path, type(exc).__name__)
            return None

    def _usable(self, key: SigningKey, now: float) -> bool:
        return key.retired is None or now - key.retired < self.keep_retired

    def verification_key(self, kid: str) -> SigningKey | None:
        """The key named `kid` if it may still verify tokens (an unknown kid re-reads the folder once)."""
        key = self._load().get(kid) or self._load(force=True).get(kid)
        return key if key is not None and self._usable(key, self._clock()) else None

    def published(self) -> list[SigningKey]:
        now = self._clock()
        return sorted((k for k in self._load().values() if self._usable(k, now)), key=lambda k: k.created)

    def jwks(self) -> dict[str, Any]:
        """The public keys, as served at /.well-known/jwks.json."""
        keys = []
        for key in self.published():
            public = key.key.as_dict(private=False)
            keys.append({**public, "kid": key.kid, "alg": key.algorithm, "use": "sig"})
        return {"keys": keys}

    # ------------------------------------------------------------------ signing

    def active(self) -> SigningKey:
        """The key that signs now; the first one is made on first use."""
        candidates = [k for k in self._load().values() if k.retired is None and k.algorithm == self.algorithm]
        if candidates:
            return max(candidates, key=lambda k: (k.created, k.kid))
        return self._create()

    def rotate(self) -> SigningKey:
        """A new signing key; the old ones retire and keep verifying for a while."""
        now = self._clock()
        for key in list(self._load().values()):
            if key.retired is None:
                self._save(key, retired=now)
        fresh = self._create()
        self.prune()
        return fresh

    def prune(self) -> list[str]:
        """Delete retired keys past their last possible token; the kids removed."""
        now = self._clock()
        removed = []
        for key in list(self._load().values()):
            if not self._usable(key, now):
                (self.folder / f"{key.kid}.jwk.json").unlink(missing_ok=True)
                removed.append(key.kid)
        return removed

    def _create(self) -> SigningKey:
        _, crv = SIGNING_ALGORITHMS[self.algorithm]
        key: Key = OKPKey.generate_key(crv, auto_kid=True) if crv == "Ed25519" else ECKey.generate_key(crv, auto_kid=True)
        kid = str(key.kid)
        created = self._clock()
        data = {"alg": self.algorithm, "created": created, "retired": None, "jwk": key.as_dict(private=True)}
        _write_private(self.folder / f"{kid}.jwk.json", data, replace=False)
        log.info("made token signing key %s (%s)", kid, self.algorithm)
        self._stamp = None
        return SigningKey(kid, self.algorithm, key, created, None)

    def _save(self, key: SigningKey, *, retired: float | None) -> None:
        data = {"alg": key.algorithm, "created": key.created, "retired": retired, "jwk": key.key.as_dict(private=True)}
        _write_private(self.folder / f"{key.kid}.jwk.json", data, replace=True)
        self._stamp = None


# ---------------------------------------------------------------------- external


class RemoteKeySet:
    """One identity provider's JWKS: from a URL (cached for `ttl`) or from a file."""

    def __init__(
        self,
        *,
        url: str = "",
        file: Path | None = None,
        ttl: float = 3600.0,
        timeout: float = 5.0,
        min_refresh: float = MIN_REFRESH,
        clock: Callable[[], float] = time.monotonic,
        client: httpx.Client | None = None,
    ) -> None:
        if bool(url) == (file is not None):
            raise ValueError("a key set comes from a URL or from a file")
        self.url = url
        self.file = file
        self.ttl = ttl
        self.timeout = timeout
        self.min_refresh = min_refresh
        self._clock = clock
        self._client = client
        self._lock = threading.Lock()
        self._keys: KeySet | None = None
        self._fetched = float("-inf")
        self.fetches = 0

    def key(self, kid: str | None) -> Key | None:
        """The key for `kid`; fetch when stale, and once more when the kid is unknown.

        Raises KeysUnavailable when the keys cannot be had at all.
        """
        with self._lock:
            now = self._clock()
            if self._keys is None or now - self._fetched >= self.ttl:
                self._refresh(now, required=self._keys is None)
            found = self._find(kid)
            if found is None and now - self._fetched >= self.min_refresh:
                self._refresh(now, required=False)
                found = self._find(kid)
            return found

    def _find(self, kid: str | None) -> Key | None:
        if self._keys is None:
            return None
        keys = [k for k in self._keys if kid is None or k.kid == kid]
        if kid is None and len(keys) != 1:
            return None  # without a kid only a single-key set is unambiguous
        return keys[0] if keys else None

    def _refresh(self, now: float, *, required: bool) -> None:
        try:
            self._keys = KeySet.import_key_set(self._fetch())
            self._fetched = now
            self.fetches += 1
        except KeysUnavailable:
            if required or self._keys is None:
                raise
            log.warning("keeping the cached keys of %s: %s", self.url or self.file, "refresh failed")
            self._fetched = now  # try again after min_refresh / the TTL, not on every token
        except (JoseError, ValueError, KeyError, TypeError) as exc:
            raise KeysUnavailable(f"the key set of {self.url or self.file} is not a valid JWKS ({type(exc).__name__})") from None

    def _fetch(self) -> Any:
        if self.file is not None:
            try:
                return json.loads(self.file.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise KeysUnavailable(f"cannot read the JWKS file {self.file}: {type(exc).__name__}") from None
        import httpx

        try:
            if self._client is not None:
                response = self._client.get(self.url, timeout=self.timeout)
            else:
                response = httpx.get(self.url, timeout=self.timeout, follow_redirects=False)
            response.raise_for_status()
            return response.json()
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("cannot fetch the JWKS at %s: %s", self.url, type(exc).__name__)
            raise KeysUnavailable(f"cannot fetch the JWKS at {self.url}") from None
