"""What a doctor run found: one Check per line, rendered for people or as JSON.

A check carries its own explanation (cause and fix) so the text and JSON forms say the
same thing, and tests can assert the diagnosis rather than the formatting.
"""

from __future__ import annotations

import enum
import textwrap
from dataclasses import dataclass, field
from typing import Any

WRAP = 96  # columns for the cause and fix lines


class Status(str, enum.Enum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"  # not run: an earlier check failed, or nothing to test it with


@dataclass
class Check:
    id: str  # stable, for scripts: "dns", "tcp:587", "cert:465", "auth", "send"
    title: str  # short, for the line: "tcp 587"
    status: Status
    summary: str  # one line: what was seen
    cause: str = ""  # for warn and fail: the likely cause, in plain words
    fix: str = ""  # and what to do about it
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "status": self.status.value,
            "summary": self.summary,
            "cause": self.cause,
            "fix": self.fix,
            "data": self.data,
        }


@dataclass
class Report:
    target: str
    checks: list[Check] = field(default_factory=list)
    transcript: list[str] = field(default_factory=list)

    def add(self, check: Check) -> Check:
        self.checks.append(check)
        return check

    def get(self, check_id: str) -> Check:
        """The check with this id (tests and scripts); KeyError when it did not run."""
        for check in self.checks:
            if check.id == check_id:
                return check
        raise KeyError(check_id)

    @property
    def ok(self) -> bool:
        """True when no check failed (warnings and skips do not fail a run)."""
        return not any(c.status is Status.FAIL for c in self.checks)

    @property
    def unreachable(self) -> bool:
        """The server was never reached: its name did not resolve, or no port answered."""
        failed = {c.id.split(":")[0] for c in self.checks if c.status is Status.FAIL}
        reached = any(c.id.startswith("tcp:") and c.status is Status.PASS for c in self.checks)
        return not reached and bool(failed & {"dns", "tcp", "srv"})

    @property
    def exit_code(self) -> int:
        """The CLI's exit code: 0 all good, 1 problems found, 3 the server was not reached."""
        return 0 if self.ok else 3 if self.unreachable else 1

    def counts(self) -> dict[str, int]:
        return {s.value: sum(1 for c in self.checks if c.status is s) for s in Status}

    def to_json(self, *, transcript: bool = False) -> dict[str, Any]:
        value: dict[str, Any] = {
            "target": self.target,
            "ok": self.ok,
            "counts": self.counts(),
            "checks": [c.to_json() for c in self.checks],
        }
        if transcript:
            value["transcript"] = list(self.transcript)
        return value

    def render(self, *, transcript: bool = False) -> str:
        """The text form: one line per check, then cause and fix under each problem."""
        width = max((len(c.title) for c in self.checks), default=0)
        lines = [f"smtpgate doctor: {self.target}", ""]
        for check in self.checks:
            lines.append(f"  {check.status.value.upper():<4}  {check.title:<{width}}  {check.summary}")
            if check.status in (Status.WARN, Status.FAIL):
                for label, text in (("cause: ", check.cause), ("fix:   ", check.fix)):
                    if text:
                        lines += textwrap.wrap(text, width=WRAP, initial_indent=" " * 8 + label,
                                               subsequent_indent=" " * (8 + len(label)), break_on_hyphens=False)
        counts = self.counts()
        tally = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        verdict = "all good" if self.ok else "problems found"
        noun = "check" if len(self.checks) == 1 else "checks"
        lines += ["", f"{len(self.checks)} {noun} ({tally}): {verdict}"]
        if transcript and self.transcript:
            lines += ["", "Transcript (secrets redacted):", *(f"  {line}" for line in self.transcript)]
        return "\n".join(lines) + "\n"
