"""The guard host and its channel, without processes: frames, answers, slots tied to a channel."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtpgate.guard.backend import Ban, GuardUnavailable
from smtpgate.guard.channel import (
    ERROR,
    HEADER,
    MAX_FRAME,
    OK,
    ChannelError,
    FrameDecoder,
    ban_from_wire,
    ban_to_wire,
    encode,
)
from smtpgate.guard.host import GuardHost
from smtpgate.guard.shared import SharedBackend
from smtpgate.guard.slots import ConnectionSlots
from tests.guard.conftest import HostThread

messages = st.lists(
    st.lists(st.one_of(st.integers(), st.text(), st.floats(allow_nan=False), st.none(), st.booleans()), max_size=5)
    .map(lambda rest: [1, *rest]), max_size=8,
)


@given(messages, st.integers(min_value=1, max_value=64))
def test_frames_survive_any_split(batch: list[list[object]], cut: int) -> None:
    wire = b"".join(encode(m) for m in batch)
    decoder = FrameDecoder()
    out: list[list[object]] = []
    for start in range(0, len(wire), cut):
        out += decoder.feed(wire[start:start + cut])
    assert out == batch


@pytest.mark.parametrize("wire", [
    HEADER.pack(MAX_FRAME + 1),
    HEADER.pack(3) + b"{x}",
    HEADER.pack(2) + b"{}",
    HEADER.pack(6) + b'["id"]',
])
def test_what_is_not_a_frame_is_refused(wire: bytes) -> None:
    with pytest.raises(ChannelError):
        FrameDecoder().feed(wire)


def test_bans_travel_whole() -> None:
    ban = Ban("192.0.2.0/24", 1.5, 901.5, 3, "30 failed logins", "manual")
    assert ban_from_wire(json.loads(json.dumps(ban_to_wire(ban)))) == ban


def test_a_bad_request_gets_an_error_answer_not_an_exception() -> None:
    host = GuardHost()
    assert host.handle(1, [7, "no-such-op"])[:2] == [7, ERROR]
    assert host.handle(1, [8, "quota", [["k", 1, 60]], [1], "steal", 0.0])[:2] == [8, ERROR]
    assert host.handle(1, [9, "failures", ["ip:a"], [5], 60, 0.0]) == [9, OK, [1]]


def test_slots_are_counted_per_channel_and_given_back_when_it_closes() -> None:
    host = GuardHost()
    host.open(1)
    host.open(2)
    caps = [10, 2, 0.0]
    assert host.handle(1, [1, "acquire", "192.0.2.1", *caps])[2] is None
    assert host.handle(2, [2, "acquire", "192.0.2.1", *caps])[2] is None
    assert host.handle(2, [3, "acquire", "192.0.2.1", *caps])[2] == "address"
    host.handle(1, [4, "release", "192.0.2.9", 0.0])  # not its slot: nothing is given back
    assert host.handle(1, [5, "acquire", "192.0.2.1", *caps])[2] == "address"
    assert host.closed(2, now=0.0) == 1  # the worker behind channel 2 died
    assert host.handle(1, [6, "acquire", "192.0.2.1", *caps])[2] is None
    assert host.handle(1, [7, "acquire", "192.0.2.2", 2, 5, 0.0])[2] == "total"


def test_the_host_widens_an_address_to_the_prefixes_that_hold_bans() -> None:
    host = GuardHost()
    host.handle(1, [1, "set_ban", ban_to_wire(Ban("10.1.0.0/16", 0.0, 100.0, 1, "r", "manual"))])
    bans, protected = host.handle(1, [2, "lookup", ["10.1.2.3/32"], None, 1.0])[2]
    assert [b[0] for b in bans] == ["10.1.0.0/16"] and protected is False


def test_a_worker_sees_another_workers_counts_at_once(host: HostThread) -> None:
    first, second = host.channel(), host.channel()

    async def go() -> tuple[list[int], list[int], int | None]:
        try:
            a = await first.record_failures(["ip:x"], [10], window=600, now=1.0)
            b = await second.record_failures(["ip:x"], [10], window=600, now=1.0)
            await first.ban("192.0.2.5/32", base=60, cap=600, strike_memory=600, reason="r", now=1.0)
            bans, _ = await second.lookup(["192.0.2.5/32"], None, now=2.0)
            return a, b, len(bans)
        finally:
            await first.close()
            await second.close()

    assert asyncio.run(go()) == ([1], [2], 1)


def test_closing_a_workers_channel_gives_its_slots_back(host: HostThread) -> None:
    worker, other = host.channel(), host.channel()

    async def go() -> tuple[str | None, str | None, str | None]:
        try:
            slots = ConnectionSlots(worker, max_total=100, max_per_ip=1)
            assert await slots.acquire("192.0.2.7") is None
            before = await other.acquire_slot("192.0.2.7", max_total=100, max_per_ip=1, now=0.0)
            await worker.close()  # as when the worker is killed: the host sees the channel close
            for _ in range(100):
                after = await other.acquire_slot("192.0.2.7", max_total=100, max_per_ip=1, now=0.0)
                if after is None:
                    break
                await asyncio.sleep(0.02)
            return before, after, await other.acquire_slot("192.0.2.7", max_total=100, max_per_ip=1, now=0.0)
        finally:
            await other.close()

    assert asyncio.run(go()) == ("address", None, "address")


def test_a_channel_without_its_host_is_unavailable_and_slots_count_locally() -> None:
    mine, theirs = socket.socketpair()
    theirs.close()
    backend = SharedBackend(mine)

    async def go() -> tuple[str | None, str | None, str | None]:
        with pytest.raises(GuardUnavailable):
            await backend.record_failures(["ip:x"], [5], window=60, now=0.0)
        slots = ConnectionSlots(backend, max_total=10, max_per_ip=1)
        first = await slots.acquire("192.0.2.8")
        second = await slots.acquire("192.0.2.8")  # the cap still holds, in this process
        await slots.release("192.0.2.8")
        return first, second, await slots.acquire("192.0.2.8")

    assert asyncio.run(go()) == (None, "address", None)
