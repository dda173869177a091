"""The guard host: the parent process keeps the one guard state of the machine's workers.

`GuardHost` is the state machine: requests in, answers out, over an in-memory backend,
plus which connection slots each worker's channel holds, so that when a channel closes
(the worker exited, or was killed) its slots are given back at once. No sockets here.

`HostLoop` is the parent's I/O: one Unix socketpair per worker, made before the fork,
served from a `selectors` loop in the supervisor's one thread (no threads: the parent
forks again when a worker dies, and a fork must not happen while another thread holds a
lock). Every request is answered in the order it came, tens of microseconds each.
"""

from __future__ import annotations

import logging
import selectors
import socket
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from smtpgate.guard.channel import (
    ERROR,
    OK,
    ChannelError,
    FrameDecoder,
    ban_from_wire,
    ban_to_wire,
    counter_from_wire,
    encode,
)
from smtpgate.guard.memory import MemoryBackend
from smtpgate.guard.networks import parse_source

log = logging.getLogger("smtpgate.guard")
T = TypeVar("T")


def _done(coro: Coroutine[Any, Any, T]) -> T:
    """The result of a coroutine that never awaits (every in-memory backend method)."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    coro.close()
    raise RuntimeError("the in-memory guard backend awaited something")


class GuardHost:
    def __init__(self, backend: MemoryBackend | None = None) -> None:
        self.backend = backend or MemoryBackend()
        self._held: dict[int, Counter[str]] = {}
        self._ops: dict[str, Callable[..., Any]] = {
            "failures": self._failures, "reset": self._reset, "ban": self._ban, "set_ban": self._set_ban,
            "unban": self._unban, "lookup": self._lookup, "protect": self._protect, "quota": self._quota,
            "bans": self._bans, "acquire": self._acquire, "release": self._release,
        }

    def handle(self, channel: int, message: list[Any]) -> list[Any]:
        """One request of `channel`, answered; a bad one gets an error answer, never an exception."""
        request_id = message[0]
        try:
            op = self._ops[str(message[1])]
            return [request_id, OK, op(channel, *message[2:])]
        except Exception as exc:  # noqa: BLE001 - one bad request must not take the host down
            return [request_id, ERROR, f"{type(exc).__name__}: {str(exc)[:200]}"]

    def open(self, channel: int) -> None:
        self._held[channel] = Counter()

    def closed(self, channel: int, *, now: float) -> int:
        """A worker's channel is gone: give back every slot it held; how many."""
        held = self._held.pop(channel, Counter())
        for ip, count in held.items():
            for _ in range(count):
                _done(self.backend.release_slot(ip, now=now))
        return sum(held.values())

    def sweep(self, *, now: float) -> None:
        _done(self.backend.sweep(now=now))

    # ------------------------------------------------------------------- ops

    def _failures(self, _ch: int, keys: list[str], caps: list[int], window: float, now: float) -> list[int]:
        return _done(self.backend.record_failures(keys, caps, window=window, now=now))

    def _reset(self, _ch: int, keys: list[str]) -> None:
        _done(self.backend.reset_failures(keys))

    def _ban(self, _ch: int, network: str, base: float, cap: float, memory: float, reason: str, now: float) -> list[Any]:
        ban = _done(self.backend.ban(network, base=base, cap=cap, strike_memory=memory, reason=reason, now=now))
        return ban_to_wire(ban)

    def _set_ban(self, _ch: int, ban: list[Any]) -> None:
        _done(self.backend.set_ban(ban_from_wire(ban)))

    def _unban(self, _ch: int, network: str, placed_before: float | None) -> bool:
        return _done(self.backend.unban(network, placed_before=placed_before))

    def _lookup(self, _ch: int, networks: list[str], login: str | None, now: float) -> list[Any]:
        """Workers send the address (as a /32 or /128); the host knows which prefixes hold bans."""
        wanted: list[str] = []
        for network in networks:
            address, _, prefix = network.rpartition("/")
            source = parse_source(address)
            if source is not None and prefix == str(source.bits):
                wanted += source.networks(self.backend.ban_prefixes(source.version))
            else:
                wanted.append(network)
        bans, protected = _done(self.backend.lookup(list(dict.fromkeys(wanted)), login, now=now))
        return [[ban_to_wire(b) for b in bans], protected]

    def _protect(self, _ch: int, login: str, until: float, now: float) -> None:
        _done(self.backend.protect(login, until=until, now=now))

    def _quota(self, _ch: int, counters: list[list[Any]], amounts: list[int], mode: str, now: float) -> int | None:
        if mode not in ("peek", "take", "add"):
            raise ValueError(f"unknown quota mode {mode!r}")
        parsed = [counter_from_wire(c) for c in counters]
        return _done(self.backend.quota(parsed, [int(a) for a in amounts], mode=mode, now=now))  # type: ignore[arg-type]

    def _bans(self, _ch: int, now: float) -> list[Any]:
        return [ban_to_wire(b) for b in _done(self.backend.active_bans(now=now))]

    def _acquire(self, channel: int, ip: str, max_total: int, max_per_ip: int, now: float) -> str | None:
        refusal = _done(self.backend.acquire_slot(str(ip), max_total=int(max_total), max_per_ip=int(max_per_ip), now=now))
        if refusal is None:
            self._held.setdefault(channel, Counter())[str(ip)] += 1
        return refusal

    def _release(self, channel: int, ip: str, now: float) -> None:
        held = self._held.get(channel)
        if held is None or held[ip] <= 0:
            return  # not this channel's slot: never give back another worker's
        held[ip] -= 1
        if not held[ip]:
            del held[ip]
        _done(self.backend.release_slot(ip, now=now))


class _Channel:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.decoder = FrameDecoder()
        self.outbox = bytearray()
        self.waiting_to_write = False


class HostLoop:
    """The parent's side of every worker's channel; `poll()` serves them for a while."""

    def __init__(self, host: GuardHost | None, clock: Callable[[], float]) -> None:
        self.host = host
        self._clock = clock
        self._selector = selectors.DefaultSelector()
        self._channels: dict[int, _Channel] = {}
        self.wakeup_read, self.wakeup_write = socket.socketpair()
        for end in (self.wakeup_read, self.wakeup_write):
            end.setblocking(False)
        self._selector.register(self.wakeup_read, selectors.EVENT_READ, None)

    def open_channel(self) -> socket.socket | None:
        """A new worker's channel: the parent keeps one end, the worker gets the other."""
        if self.host is None:
            return None
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        mine.setblocking(False)
        channel = _Channel(mine)
        self._channels[mine.fileno()] = channel
        self.host.open(mine.fileno())
        self._selector.register(mine, selectors.EVENT_READ, channel)
        return theirs

    def in_child(self) -> None:
        """After fork, in the worker: the parent's ends of every channel are not the worker's."""
        for channel in self._channels.values():
            channel.sock.close()
        self._channels.clear()
        self._selector.close()
        self.wakeup_read.close()
        self.wakeup_write.close()

    def poll(self, timeout: float) -> None:
        for key, events in self._selector.select(timeout):
            channel = key.data
            if channel is None:
                try:
                    while self.wakeup_read.recv(4096):
                        pass
                except BlockingIOError:
                    pass
                continue
            if events & selectors.EVENT_READ:
                self._read(channel)
            if events & selectors.EVENT_WRITE and channel.sock.fileno() in self._channels:
                self._write(channel)

    def _read(self, channel: _Channel) -> None:
        assert self.host is not None
        try:
            data = channel.sock.recv(256 * 1024)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._close(channel)
            return
        try:
            messages = channel.decoder.feed(data)
        except ChannelError as exc:
            log.error("guard channel of a worker sent garbage, closing it: %s", exc)
            self._close(channel)
            return
        fd = channel.sock.fileno()
        for message in messages:
            channel.outbox += encode(self.host.handle(fd, message))
        self._write(channel)

    def _write(self, channel: _Channel) -> None:
        if channel.outbox:
            try:
                sent = channel.sock.send(channel.outbox)
            except BlockingIOError:
                sent = 0
            except OSError:
                self._close(channel)
                return
            del channel.outbox[:sent]
        if bool(channel.outbox) != channel.waiting_to_write:  # a worker slow to read: wait until it can
            channel.waiting_to_write = bool(channel.outbox)
            wanted = selectors.EVENT_READ | (selectors.EVENT_WRITE if channel.outbox else 0)
            self._selector.modify(channel.sock, wanted, channel)

    def _close(self, channel: _Channel) -> None:
        fd = channel.sock.fileno()
        self._channels.pop(fd, None)
        self._selector.unregister(channel.sock)
        channel.sock.close()
        if self.host is not None:
            released = self.host.closed(fd, now=self._clock())
            if released:
                log.info("a worker's guard channel closed: %d connection slots given back", released)

    def close(self) -> None:
        for channel in list(self._channels.values()):
            self._close(channel)
        self._selector.close()
        self.wakeup_read.close()
        self.wakeup_write.close()
