"""The frames between a worker and the guard host in its parent process (sans-I/O).

A frame is a 4-byte big-endian length and a JSON array. A request is
`[id, op, args...]`; its answer is `[id, 0, result]`, or `[id, 1, message]` when the host
refused it. Ids let a worker have many requests in flight on one socket (its sessions
ask concurrently); the host answers each channel in order. JSON rather than pickle: the
host never runs what a worker sends. Bans and quota counters travel as plain lists.
"""

from __future__ import annotations

import json
import struct
from typing import Any

from smtpgate.guard.backend import Ban, QuotaCounter

HEADER = struct.Struct("!I")
MAX_FRAME = 1 << 20  # far above any real request (a quota call of 8 counters is ~600 bytes)
OK, ERROR = 0, 1


class ChannelError(Exception):
    """The other side sent something that is not a frame of this protocol."""


def encode(message: list[Any]) -> bytes:
    body = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
    return HEADER.pack(len(body)) + body


class FrameDecoder:
    """Bytes in, whole messages out; keeps the partial frame between calls."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[list[Any]]:
        self._buffer += data
        out: list[list[Any]] = []
        view = self._buffer
        start = 0
        while len(view) - start >= HEADER.size:
            (length,) = HEADER.unpack_from(view, start)
            if length > MAX_FRAME:
                raise ChannelError(f"frame of {length} bytes (at most {MAX_FRAME})")
            end = start + HEADER.size + length
            if len(view) < end:
                break
            try:
                message = json.loads(bytes(view[start + HEADER.size:end]))
            except ValueError as exc:
                raise ChannelError(f"not JSON: {exc}") from None
            if not isinstance(message, list) or not message or not isinstance(message[0], int):
                raise ChannelError("a frame must be a JSON array starting with an integer id")
            out.append(message)
            start = end
        if start:
            del self._buffer[:start]
        return out


def ban_to_wire(ban: Ban) -> list[Any]:
    return [ban.network, ban.since, ban.until, ban.strikes, ban.reason, ban.source]


def ban_from_wire(value: list[Any]) -> Ban:
    network, since, until, strikes, reason, source = value
    return Ban(str(network), float(since), float(until), int(strikes), str(reason),
               "manual" if source == "manual" else "auto")


def counter_to_wire(counter: QuotaCounter) -> list[Any]:
    return [counter.key, counter.limit, counter.window]


def counter_from_wire(value: list[Any]) -> QuotaCounter:
    key, limit, window = value
    return QuotaCounter(str(key), int(limit), float(window))
