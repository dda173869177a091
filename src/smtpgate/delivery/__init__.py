"""Where accepted mail goes: a spool that makes it durable before the server says 250.

`Spool` is what the SMTP session writes to. The capture store (the embedded default)
implements it; so does the delivery queue.
"""

from __future__ import annotations

from typing import Protocol

from smtpgate.delivery.capture import CapturedMessage, Envelope, SpoolWriter


class Spool(Protocol):
    def begin(self, envelope: Envelope) -> SpoolWriter:
        """Start a message; the writer's commit() makes it durable (fsync) and visible."""
        ...


__all__ = ["CapturedMessage", "Envelope", "Spool", "SpoolWriter"]
