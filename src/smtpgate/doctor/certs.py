"""Facts about a server's certificate, from its DER bytes and OpenSSL's verdict.

OpenSSL stops at the first problem it meets; a person fixing a server wants all of them
(expired *and* for another name), so the leaf is examined here as well.
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

EXPIRY_WARNING_DAYS = 14

# OpenSSL X509_V_ERR_* codes that ssl.SSLCertVerificationError.verify_code carries
_VERIFY_PROBLEMS = {
    9: "not-yet-valid",
    10: "expired",
    18: "self-signed",
    19: "untrusted",  # self-signed certificate in chain: a private CA
    20: "untrusted",  # unable to get local issuer certificate
    21: "untrusted",  # unable to verify the first certificate (missing intermediate)
    62: "hostname",
    64: "hostname",  # IP address mismatch
}


@dataclass
class CertFacts:
    subject: str
    issuer: str
    names: list[str]
    not_after: datetime
    days_left: int
    self_signed: bool
    problems: list[str] = field(default_factory=list)  # expired, hostname, self-signed, ...

    def to_json(self) -> dict[str, object]:
        return {
            "subject": self.subject,
            "issuer": self.issuer,
            "names": self.names,
            "not_after": self.not_after.isoformat(),
            "days_left": self.days_left,
            "self_signed": self.self_signed,
            "problems": self.problems,
        }


def verify_problem(error: ssl.SSLCertVerificationError) -> str:
    """What OpenSSL's verification refused, as one of the problem words above."""
    return _VERIFY_PROBLEMS.get(error.verify_code, "unverified")


def examine(der: bytes, host: str, now: datetime) -> CertFacts:
    """Everything wrong with the leaf certificate for this host at this time."""
    cert = x509.load_der_x509_certificate(der)
    names = _names(cert)
    not_after = cert.not_valid_after_utc
    days_left = (not_after - now).days
    self_signed = _self_signed(cert)
    problems: list[str] = []
    if now > not_after:
        problems.append("expired")
    elif now < cert.not_valid_before_utc:
        problems.append("not-yet-valid")
    if not matches_host(names, host):
        problems.append("hostname")
    if self_signed:
        problems.append("self-signed")
    return CertFacts(
        subject=_common_name(cert.subject) or cert.subject.rfc4514_string(),
        issuer=_common_name(cert.issuer) or cert.issuer.rfc4514_string(),
        names=names,
        not_after=not_after,
        days_left=days_left,
        self_signed=self_signed,
        problems=problems,
    )


def matches_host(names: list[str], host: str) -> bool:
    """RFC 6125 matching: exact, or one wildcard label on the left; IPs only against IP names."""
    host = host.lower().rstrip(".")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    for name in names:
        name = name.lower().rstrip(".")
        if ip is not None:
            try:
                if ipaddress.ip_address(name) == ip:
                    return True
            except ValueError:
                continue
            continue
        if name == host:
            return True
        if name.startswith("*.") and "." in host and host.split(".", 1)[1] == name[2:]:
            return True
    return False


def _names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        cn = _common_name(cert.subject)
        return [cn] if cn else []
    return [*san.get_values_for_type(x509.DNSName), *(str(i) for i in san.get_values_for_type(x509.IPAddress))]


def _common_name(name: x509.Name) -> str:
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else ""


def _self_signed(cert: x509.Certificate) -> bool:
    if cert.issuer != cert.subject:
        return False
    key = cert.public_key()
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))  # type: ignore[arg-type]
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), cert.signature_hash_algorithm)  # type: ignore[arg-type]
        else:
            return True  # issuer == subject is what counts for people; Ed25519 and co. rarely seen
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True
