"""MTA-STS (RFC 8461): a domain's published promise that its MX hosts speak verified TLS.

Discovery is the TXT record `_mta-sts.<domain>` ("v=STSv1; id=..."); the policy is
fetched over verified HTTPS from `https://mta-sts.<domain>/.well-known/mta-sts.txt`
(no redirects, 200 only) and cached for its max_age, refetched when the id changes.
In `enforce` mode the MX route only uses MX hosts the policy names and only over
STARTTLS with a certificate valid for the MX host name; `testing` logs what enforce
would have refused; `none` is no policy.

`policy_host` replaces the HTTPS host for every domain (HOST:PORT, with the domain's
policy host sent as the Host header) so tests can serve policies on loopback. Not done:
TLSRPT reporting (RFC 8460), and the cache is per process, not persisted.
"""

from __future__ import annotations

import logging
import ssl
import time
from dataclasses import dataclass

import httpx

__all__ = ["MtaStsPolicy", "MtaStsResolver", "parse_policy"]

log = logging.getLogger("smtpgate.delivery.mta_sts")

MAX_POLICY_BYTES = 64 * 1024
MAX_AGE_LIMIT = 31_557_600  # one year, RFC 8461 3.2


@dataclass(frozen=True)
class MtaStsPolicy:
    mode: str                     # "enforce", "testing" or "none"
    mx: tuple[str, ...]
    max_age: int
    id: str = ""

    def allows(self, host: str) -> bool:
        """Is this MX host named by the policy ("*.example.com" matches one label)?"""
        host = host.lower().rstrip(".")
        for pattern in self.mx:
            pattern = pattern.lower().rstrip(".")
            if pattern.startswith("*."):
                head, _, tail = host.partition(".")
                if head and tail == pattern[2:]:
                    return True
            elif host == pattern:
                return True
        return False

    @property
    def enforced(self) -> bool:
        return self.mode == "enforce"


class PolicyError(ValueError):
    pass


def parse_policy(text: str, policy_id: str = "") -> MtaStsPolicy:
    fields: dict[str, list[str]] = {}
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep:
            raise PolicyError(f"policy line without a colon: {line[:60]!r}")
        fields.setdefault(key.strip().lower(), []).append(value.strip())
    if fields.get("version") != ["STSv1"]:
        raise PolicyError("policy version is not STSv1")
    mode = (fields.get("mode") or [""])[0]
    if mode not in ("enforce", "testing", "none"):
        raise PolicyError(f"unknown policy mode {mode!r}")
    try:
        max_age = min(int((fields.get("max_age") or [""])[0]), MAX_AGE_LIMIT)
    except ValueError:
        raise PolicyError("policy max_age is not a number") from None
    mx = tuple(fields.get("mx", []))
    if mode != "none" and not mx:
        raise PolicyError("policy names no mx")
    return MtaStsPolicy(mode, mx, max_age, policy_id)


def parse_txt(records: list[str]) -> str | None:
    """The id of the one STSv1 TXT record, or None when there is none (or several)."""
    found = [r for r in records if r.replace(" ", "").startswith("v=STSv1")]
    if len(found) != 1:
        return None
    for part in found[0].split(";"):
        key, _, value = part.strip().partition("=")
        if key == "id" and value:
            return value
    return None


class MtaStsResolver:
    """Policy lookup with a per-process cache; lookup failures never block delivery alone."""

    def __init__(self, txt_lookup, *, policy_host: str = "", ca_file: str = "", timeout: float = 10.0) -> None:
        self._txt_lookup = txt_lookup  # async (name) -> list[str]; [] when none
        self.policy_host = policy_host
        self.timeout = timeout
        self._tls = ssl.create_default_context(cafile=ca_file or None)
        self._cache: dict[str, tuple[MtaStsPolicy, float]] = {}

    def _cached(self, domain: str) -> MtaStsPolicy | None:
        hit = self._cache.get(domain)
        if hit and hit[1] > time.monotonic():
            return hit[0]
        return None

    async def policy(self, domain: str) -> MtaStsPolicy | None:
        domain = domain.lower().rstrip(".")
        cached = self._cached(domain)
        try:
            policy_id = parse_txt(await self._txt_lookup(f"_mta-sts.{domain}"))
        except Exception as exc:  # noqa: BLE001 - DNS trouble: use what we know
            log.info("MTA-STS TXT lookup for %s failed: %s", domain, exc)
            return cached
        if policy_id is None:
            return cached  # RFC 8461 3.3: a valid cached policy still applies
        if cached is not None and cached.id == policy_id:
            return cached
        try:
            policy = await self._fetch(domain, policy_id)
        except (httpx.HTTPError, PolicyError, ssl.SSLError, OSError) as exc:
            log.warning("MTA-STS policy for %s could not be fetched: %s", domain, exc)
            return cached
        self._cache[domain] = (policy, time.monotonic() + policy.max_age)
        return policy

    async def _fetch(self, domain: str, policy_id: str) -> MtaStsPolicy:
        host = f"mta-sts.{domain}"
        url = f"https://{self.policy_host or host}/.well-known/mta-sts.txt"
        headers = {"Host": host} if self.policy_host else {}
        async with httpx.AsyncClient(verify=self._tls, follow_redirects=False, timeout=self.timeout) as client:
            async with client.stream("GET", url, headers=headers) as response:
                if response.status_code != 200:
                    raise PolicyError(f"HTTP {response.status_code} from {url}")
                if not response.headers.get("content-type", "").lower().startswith("text/plain"):
                    raise PolicyError(f"{url} is not text/plain")
                body = b""
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_POLICY_BYTES:
                        raise PolicyError(f"{url} is larger than {MAX_POLICY_BYTES} bytes")
        return parse_policy(body.decode("utf-8", "replace"), policy_id)
