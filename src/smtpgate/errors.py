"""The neutral error every operation raises: a stable code, its parameters, a kind.

The core says *what* is wrong in words that name no face (no command, no flag, no
URL); each face turns the code into its own words: the CLI names the command and the
option to use (`cli/errors.py`), the HTTP API answers RFC 9457 problem details
(`admin/api/problems.py`). Codes are part of the API: they are documented in
docs/api.md and never reused for another meaning.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class Kind(StrEnum):
    """What sort of refusal: decides the HTTP status and the CLI's exit code."""

    INVALID = "invalid"          # the request itself is wrong (422; CLI exit 2)
    NOT_FOUND = "not-found"      # what it names does not exist (404)
    CONFLICT = "conflict"        # it exists already, or its state forbids this (409)
    FORBIDDEN = "forbidden"      # the actor may not do this (403)
    UNAUTHORIZED = "unauthorized"  # no or a bad operator token (401)
    UNAVAILABLE = "unavailable"  # a dependency is down; try again later (503)
    FAILED = "failed"            # the operation was tried and did not work (500-free: 502)


class OpError(Exception):
    """Base of every refusal an operation reports to a face.

    `str(err)` is a sentence for humans that names no face; `hint` an optional neutral
    fix; `code` a stable identifier; `params` the values the message was made from
    (never a secret); `field` the input at fault, when one is.
    """

    code = "error"
    kind = Kind.FAILED

    def __init__(
        self, message: str, hint: str = "", *, code: str | None = None, kind: Kind | None = None,
        field: str | None = None, **params: Any,
    ) -> None:
        super().__init__(message)
        self.hint = hint
        if code is not None:
            self.code = code
        if kind is not None:
            self.kind = kind
        self.field = field
        self.params = params

    _malformed: bool | None = None

    @property
    def malformed(self) -> bool:
        """Input that is not well-formed (a usage error: CLI exit 2), rather than a well-formed request
        refused; a face that received the error from another one sets it as it was."""
        return self._default_malformed() if self._malformed is None else self._malformed

    @malformed.setter
    def malformed(self, value: bool) -> None:
        self._malformed = value

    def _default_malformed(self) -> bool:
        return self.kind is Kind.INVALID


class NotFound(OpError):
    code = "not-found"
    kind = Kind.NOT_FOUND


class Invalid(OpError):
    code = "invalid"
    kind = Kind.INVALID


class Conflict(OpError):
    code = "conflict"
    kind = Kind.CONFLICT


class Forbidden(OpError):
    code = "forbidden"
    kind = Kind.FORBIDDEN


class Unauthorized(OpError):
    code = "unauthorized"
    kind = Kind.UNAUTHORIZED


class Unavailable(OpError):
    code = "unavailable"
    kind = Kind.UNAVAILABLE
