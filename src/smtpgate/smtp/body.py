"""The message content rules, checked as DATA or BDAT lines stream past: line length, bare CR
or LF, NUL, size; the worst violation decides the reply.
"""

from __future__ import annotations

from typing import Protocol

from .replies import _DATA_BARE_CR_LF, _DATA_LINE_TOO_LONG, _DATA_NUL, _MESSAGE_TOO_BIG, Reply


class ProtocolLimits(Protocol):
    """The two limits the content rules need (`protocol.ProtocolLimits` has them)."""

    @property
    def max_text_line(self) -> int: ...

    @property
    def max_message_size(self) -> int: ...

# --------------------------------------------------------------------------
# Message content checks
# --------------------------------------------------------------------------


class _BodyInspector:
    """Enforces size, line length, the bare CR/LF rule and no NUL on streamed content.

    Works on runs of complete CRLF lines (or the final fragment of a BDAT
    message) with C-level scans only: no per-byte Python loop.  After a
    violation nothing more is delivered, but later content is still checked
    for a more serious one (bare CR/LF > NUL > long line > size), so the reply never
    depends on how the peer's bytes happened to be split into reads.
    """

    __slots__ = ("_max_content", "_max_size", "size", "violation")

    def __init__(self, limits: ProtocolLimits) -> None:
        self._max_content = limits.max_text_line - 2
        self._max_size = limits.max_message_size
        self.size = 0
        self.violation: Reply | None = None

    def accept(self, lines: bytes) -> bool:
        """Account for ``lines``; True when they may be delivered."""
        if self.violation is None:
            self.size += len(lines)
            self._record(self._find_violation(lines))
            return self.violation is None
        self._record(self._find_worse_violation(lines, self.violation))
        return False

    def refuse_partial_line(self, partial: bytes) -> None:
        """An unterminated line outgrew the limit (a final CR may begin a CRLF)."""
        head = partial[:-1] if partial.endswith(b"\r") else partial
        self._record(_DATA_BARE_CR_LF if _has_cr_or_lf(head) else _DATA_LINE_TOO_LONG)
        if b"\x00" in head:
            self._record(_DATA_NUL)

    def inspect_skipped(self, data: bytes) -> None:
        """Octets inside a refused over-long line: any CR or LF there is bare."""
        if _has_cr_or_lf(data):
            self._record(_DATA_BARE_CR_LF)
        elif b"\x00" in data:
            self._record(_DATA_NUL)

    def _find_violation(self, lines: bytes) -> Reply | None:
        bare, longest = _scan_lines(lines)
        if bare:
            return _DATA_BARE_CR_LF
        if b"\x00" in lines:
            return _DATA_NUL
        if longest > self._max_content:
            return _DATA_LINE_TOO_LONG
        if self.size > self._max_size:
            return _MESSAGE_TOO_BIG
        return None

    def _find_worse_violation(self, lines: bytes, current: Reply) -> Reply | None:
        worse = self._find_violation(lines)
        if worse is not None and _VIOLATION_RANK[worse] > _VIOLATION_RANK[current]:
            return worse
        return None

    def _record(self, violation: Reply | None) -> None:
        if violation is None:
            return
        if self.violation is None or _VIOLATION_RANK[violation] > _VIOLATION_RANK[self.violation]:
            self.violation = violation


_VIOLATION_RANK: dict[Reply, int] = {
    _MESSAGE_TOO_BIG: 1,
    _DATA_LINE_TOO_LONG: 2,
    _DATA_NUL: 3,
    _DATA_BARE_CR_LF: 4,
}


def _scan_lines(data: bytes) -> tuple[bool, int]:
    """(has a bare CR or LF, longest line) in one C-level split.

    ``bytes.splitlines`` breaks at CRLF, CR and LF alike, so the octets it
    removes are two per line exactly when every break is a CRLF.
    """
    if not data:
        return False, 0
    lengths = list(map(len, data.splitlines()))
    breaks = len(lengths) - (0 if data.endswith((b"\r", b"\n")) else 1)
    bare = len(data) - sum(lengths) != 2 * breaks
    return bare, max(lengths)


def _has_cr_or_lf(data: bytes) -> bool:
    return b"\r" in data or b"\n" in data
