"""The shared guard backend: a worker's side of its channel to the guard host (`guard.host`).

Every call is one request frame and one answer on a Unix socketpair the parent made
before forking this worker: one round trip, no lock, no database. The host is the only
holder of the state, so what one worker counts every other sees at once; each request is
applied whole before the next, which makes every operation atomic across workers.

If the channel is gone (the parent died), calls raise `GuardUnavailable`, as Redis does
when it is down: bans fail open, limited quotas fail closed.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence
from typing import Any

from smtpgate.guard.backend import Ban, GuardUnavailable, QuotaCounter, QuotaMode, SlotRefusal
from smtpgate.guard.channel import (
    OK,
    ChannelError,
    FrameDecoder,
    ban_from_wire,
    ban_to_wire,
    counter_to_wire,
    encode,
)

CALL_TIMEOUT = 5.0


class _Client(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.decoder = FrameDecoder()
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.lost: str = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            messages = self.decoder.feed(data)
        except ChannelError as exc:
            self._fail(f"the guard host sent garbage: {exc}")
            if self.transport is not None:
                self.transport.close()
            return
        for request_id, status, value in messages:
            future = self.pending.pop(request_id, None)
            if future is None or future.done():
                continue
            if status == OK:
                future.set_result(value)
            else:
                future.set_exception(GuardUnavailable(f"the guard host refused a request: {value}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail("the guard host (the parent process) closed the channel")

    def _fail(self, why: str) -> None:
        self.lost = why
        for future in self.pending.values():
            if not future.done():
                future.set_exception(GuardUnavailable(why))
        self.pending.clear()


class SharedBackend:
    """Talks to the parent over `sock`; the transport belongs to the loop of the first call."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock: socket.socket | None = sock
        self._client: _Client | None = None
        self._opening: asyncio.Future[None] | None = None
        self._next_id = 0

    async def _open(self) -> _Client:
        if self._client is not None:
            return self._client
        loop = asyncio.get_running_loop()
        if self._opening is None:
            if self._sock is None:
                raise GuardUnavailable("the guard channel is closed")
            self._opening = loop.create_future()
            sock, self._sock = self._sock, None
            sock.setblocking(False)
            try:
                _, client = await loop.create_unix_connection(_Client, sock=sock)
            except OSError as exc:
                self._opening.set_exception(GuardUnavailable(f"the guard channel: {exc}"))
                raise GuardUnavailable(f"the guard channel: {exc}") from None
            self._client = client
            self._opening.set_result(None)
            return client
        await asyncio.shield(self._opening)
        assert self._client is not None
        return self._client

    async def _call(self, op: str, *args: Any) -> Any:
        client = self._client or await self._open()
        if client.lost or client.transport is None or client.transport.is_closing():
            raise GuardUnavailable(client.lost or "the guard channel is closed")
        self._next_id += 1
        request_id = self._next_id
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        client.pending[request_id] = future
        client.transport.write(encode([request_id, op, *args]))
        try:
            async with asyncio.timeout(CALL_TIMEOUT):
                return await future
        except TimeoutError:
            client.pending.pop(request_id, None)
            raise GuardUnavailable(f"the guard host did not answer within {CALL_TIMEOUT:g} s") from None

    # ---------------------------------------------------------------- failures

    async def record_failures(self, keys: Sequence[str], caps: Sequence[int], *, window: float, now: float) -> list[int]:
        return [int(n) for n in await self._call("failures", list(keys), list(caps), window, now)]

    async def reset_failures(self, keys: Sequence[str]) -> None:
        await self._call("reset", list(keys))

    # -------------------------------------------------------------------- bans

    async def ban(self, network: str, *, base: float, cap: float, strike_memory: float, reason: str, now: float) -> Ban:
        return ban_from_wire(await self._call("ban", network, base, cap, strike_memory, reason, now))

    async def set_ban(self, ban: Ban) -> None:
        await self._call("set_ban", ban_to_wire(ban))

    async def unban(self, network: str, *, placed_before: float | None = None) -> bool:
        return bool(await self._call("unban", network, placed_before))

    def ban_prefixes(self, version: int) -> Sequence[int]:
        """Only the address itself: the host widens it to the prefixes that hold bans right now."""
        return (32,) if version == 4 else (128,)

    async def lookup(self, networks: Sequence[str], login: str | None, *, now: float) -> tuple[list[Ban], bool]:
        bans, protected = await self._call("lookup", list(networks), login, now)
        return [ban_from_wire(b) for b in bans], bool(protected)

    async def protect(self, login: str, *, until: float, now: float) -> None:
        await self._call("protect", login, until, now)

    async def active_bans(self, *, now: float) -> list[Ban]:
        return [ban_from_wire(b) for b in await self._call("bans", now)]

    # ------------------------------------------------------------------ quotas

    async def quota(self, counters: Sequence[QuotaCounter], amounts: Sequence[int], *, mode: QuotaMode, now: float) -> int | None:
        index = await self._call("quota", [counter_to_wire(c) for c in counters], list(amounts), mode, now)
        return None if index is None else int(index)

    # ------------------------------------------------------------ connections

    async def acquire_slot(self, ip: str, *, max_total: int, max_per_ip: int, now: float) -> SlotRefusal | None:
        refusal = await self._call("acquire", ip, max_total, max_per_ip, now)
        return "total" if refusal == "total" else "address" if refusal == "address" else None

    async def release_slot(self, ip: str, *, now: float) -> None:
        await self._call("release", ip, now)

    async def heartbeat(self, *, now: float) -> None:
        return None  # the channel itself is the lease: the host sees it close when this process dies

    # ------------------------------------------------------------ housekeeping

    async def sweep(self, *, now: float) -> None:
        return None  # the host sweeps its own state

    async def close(self) -> None:
        if self._client is not None and self._client.transport is not None:
            self._client.transport.close()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
