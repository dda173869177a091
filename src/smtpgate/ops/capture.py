"""Captured messages (the embedded default delivery): list, read one."""

from __future__ import annotations

import builtins
from typing import BinaryIO

from smtpgate.credentials.api_tokens import Role
from smtpgate.delivery.capture import CapturedMessage, MessageNotFound
from smtpgate.errors import NotFound
from smtpgate.ops.actor import Actor
from smtpgate.ops.base import Concern


class Capture(Concern):
    def list(self, actor: Actor, *, limit: int | None = None) -> builtins.list[CapturedMessage]:
        return self.rt.capture.list(limit=limit)

    def get(self, actor: Actor, message_id: str) -> CapturedMessage:
        try:
            return self.rt.capture.get(message_id)
        except MessageNotFound:
            raise _not_found(message_id) from None

    def open_raw(self, actor: Actor, message_id: str) -> BinaryIO:
        """The stored bytes (the caller closes the file); message content is an operator's to read."""
        self.journal.allow(actor, Role.OPERATOR, "capture.raw", message_id)
        try:
            return self.rt.capture.open_raw(message_id)
        except MessageNotFound:
            raise _not_found(message_id) from None


def _not_found(message_id: str) -> NotFound:
    return NotFound(f"no captured message {message_id}", code="captured-message-not-found", message_id=message_id)
