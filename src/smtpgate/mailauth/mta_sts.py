"""MTA-STS (RFC 8461) policy text and TXT record: parsed the same way by delivery and the doctor."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MAX_POLICY_BYTES", "MtaStsPolicy", "PolicyError", "parse_policy", "parse_txt"]

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
