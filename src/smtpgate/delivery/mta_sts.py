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

import httpx

from smtpgate.mailauth.mta_sts import (  # parsed the same way by the doctor
    MAX_POLICY_BYTES,
    MtaStsPolicy,
    PolicyError,
    parse_policy,
    parse_txt,
)

__all__ = ["MtaStsPolicy", "MtaStsResolver", "PolicyError", "parse_policy", "parse_txt"]

log = logging.getLogger("smtpgate.delivery.mta_sts")


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
