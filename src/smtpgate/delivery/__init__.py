"""Where accepted mail goes: a spool that makes it durable before the server says 250.

`Spool` is what the SMTP session writes to; `MessageQueue` is what the delivery worker
and the CLI need on top of it. The capture store (the embedded default) is a Spool; the
file queue (`delivery.queue.QueueStore`) is a MessageQueue, and a database-backed queue
implements the same protocol (docs/delivery.md says what each method must guarantee).
"""

from __future__ import annotations

from smtpgate.delivery.capture import CapturedMessage, Envelope, SpoolWriter
from smtpgate.delivery.spool import CaptureBox, Claim, MessageQueue, MessageWriter, Spool

__all__ = ["CaptureBox", "CapturedMessage", "Claim", "Envelope", "MessageQueue", "MessageWriter", "Spool", "SpoolWriter"]
