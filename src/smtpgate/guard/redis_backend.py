"""The Redis guard backend: counters and bans shared by every process and node.

Each operation is one Lua script, so it is one round trip and atomic: two workers that
record the tenth failure of a source at the same moment see 10 and 11, never 10 and 10,
and only one of them bans. Keys live under one prefix (`[guard] redis_prefix`):

    {p}:f:{key}        sorted set of failure times (ms) of an ip:, net: or login: key
    {p}:bans           sorted set: network -> banned until (ms)
    {p}:banmeta        hash: network -> JSON (since, strikes, reason, source)
    {p}:strikes:{net}  hash: n (bans so far), exp (when they are forgotten)
    {p}:prot:{login}   "protected until" (ms) of a login under attack
    {p}:q:{counter}    hash: bucket index -> amount, of one quota window
    {p}:c:ip           hash: address -> connections it holds on every server (the per-IP cap)
    {p}:c:node:{node}  connections held on one machine (`max_connections` is per machine)
    {p}:c:own:{owner}  hash: address -> connections one worker process holds, and its node
    {p}:c:owners       sorted set: worker process -> when its lease ends (ms)

A worker renews its lease every `sync_interval`; any worker's heartbeat gives back the
slots of a worker whose lease ran out (killed, or its machine gone), so a dead process
holds connection slots for one lease at most.

Scripts touch several keys, so a Redis Cluster would need hash tags; one Redis (with a
replica and Sentinel if it must survive a failure) is what this is built for.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Sequence
from typing import Any, cast

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from smtpgate.guard.backend import (
    QUOTA_BUCKETS,
    Ban,
    GuardUnavailable,
    QuotaCounter,
    QuotaMode,
    SlotRefusal,
)

_FAILURES = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local out = {}
for i, key in ipairs(KEYS) do
  local cap = tonumber(ARGV[3 + i])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  redis.call('ZADD', key, now, ARGV[3] .. ':' .. i)
  local n = redis.call('ZCARD', key)
  if n > cap then
    redis.call('ZREMRANGEBYRANK', key, 0, n - cap - 1)
    n = cap
  end
  redis.call('PEXPIRE', key, math.floor(window) + 1000)
  out[i] = n
end
return out
"""

_BAN = """
local net = ARGV[1]
local now = tonumber(ARGV[2])
local strikes = 1
local previous = redis.call('HMGET', KEYS[3], 'n', 'exp')
if previous[1] and previous[2] and tonumber(previous[2]) > now then strikes = tonumber(previous[1]) + 1 end
redis.call('HSET', KEYS[3], 'n', strikes, 'exp', now + tonumber(ARGV[5]))
redis.call('PEXPIRE', KEYS[3], ARGV[5])
local exponent = strikes - 1
if exponent > 64 then exponent = 64 end
local duration = tonumber(ARGV[3]) * (2 ^ exponent)
if duration > tonumber(ARGV[4]) then duration = tonumber(ARGV[4]) end
local untilms = now + duration
local current = redis.call('ZSCORE', KEYS[1], net)
if current and tonumber(current) > untilms then untilms = tonumber(current) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], untilms, net)
local meta = cjson.encode({since = now, strikes = strikes, reason = ARGV[6], source = 'auto'})
redis.call('HSET', KEYS[2], net, meta)
return {tostring(untilms), meta}
"""

_SET_BAN = """
local current = redis.call('ZSCORE', KEYS[1], ARGV[1])
if current and tonumber(current) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return 1
"""

_UNBAN = """
local meta = redis.call('HGET', KEYS[2], ARGV[1])
if redis.call('ZSCORE', KEYS[1], ARGV[1]) == false then return 0 end
if ARGV[2] ~= '' and meta then
  local since = cjson.decode(meta)['since']
  if since and tonumber(since) > tonumber(ARGV[2]) then return 0 end
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
"""

_LOOKUP = """
local now = tonumber(ARGV[1])
local out = {}
for i = 2, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) > now then
    table.insert(out, ARGV[i])
    table.insert(out, score)
    table.insert(out, redis.call('HGET', KEYS[2], ARGV[i]) or '{}')
  end
end
local protected = 0
if KEYS[3] then
  local value = redis.call('GET', KEYS[3])
  if value and tonumber(value) > now then protected = 1 end
end
table.insert(out, 1, protected)
return out
"""

_PROTECT = """
local value = redis.call('GET', KEYS[1])
if value == false or tonumber(value) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return 1
"""

_QUOTA = """
local now = tonumber(ARGV[1])
local mode = ARGV[2]
local buckets = tonumber(ARGV[3])
local plan = {}
for i, key in ipairs(KEYS) do
  local base = 3 + (i - 1) * 3
  local limit = tonumber(ARGV[base + 1])
  local window = tonumber(ARGV[base + 2])
  local amount = tonumber(ARGV[base + 3])
  local step = window / buckets
  local current = math.floor(now / step)
  local fields = redis.call('HGETALL', key)
  local total = 0
  for j = 1, #fields, 2 do
    if tonumber(fields[j]) < current - buckets then
      redis.call('HDEL', key, fields[j])
    else
      total = total + tonumber(fields[j + 1])
    end
  end
  if mode ~= 'add' and amount > 0 and total + amount > limit then return i end
  plan[i] = {current, amount, math.floor(window + step) + 1000}
end
if mode ~= 'peek' then
  for i, key in ipairs(KEYS) do
    if plan[i][2] ~= 0 then
      redis.call('HINCRBY', key, plan[i][1], plan[i][2])
      redis.call('PEXPIRE', key, plan[i][3])
    end
  end
end
return 0
"""


_ACQUIRE = """
local total = tonumber(redis.call('GET', KEYS[2]) or '0')
if total >= tonumber(ARGV[2]) then return 1 end
local n = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if n >= tonumber(ARGV[3]) then return 2 end
redis.call('INCR', KEYS[2])
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('HINCRBY', KEYS[3], ARGV[1], 1)
redis.call('HSET', KEYS[3], '#node', KEYS[2])
redis.call('ZADD', KEYS[4], tonumber(ARGV[4]) + tonumber(ARGV[5]), ARGV[6])
return 0
"""

_RELEASE = """
local mine = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0')
if mine <= 0 then return 0 end
if mine == 1 then redis.call('HDEL', KEYS[3], ARGV[1]) else redis.call('HINCRBY', KEYS[3], ARGV[1], -1) end
if redis.call('HINCRBY', KEYS[1], ARGV[1], -1) <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
if redis.call('DECR', KEYS[2]) <= 0 then redis.call('DEL', KEYS[2]) end
return 1
"""

_HEARTBEAT = """
local now = tonumber(ARGV[1])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
for _, owner in ipairs(dead) do
  local own = ARGV[4] .. ':c:own:' .. owner
  local node = redis.call('HGET', own, '#node')
  local fields = redis.call('HGETALL', own)
  for j = 1, #fields, 2 do
    if fields[j] ~= '#node' then
      local count = tonumber(fields[j + 1])
      if redis.call('HINCRBY', KEYS[2], fields[j], -count) <= 0 then redis.call('HDEL', KEYS[2], fields[j]) end
      if node and redis.call('DECRBY', node, count) <= 0 then redis.call('DEL', node) end
    end
  end
  redis.call('DEL', own)
  redis.call('ZREM', KEYS[1], owner)
end
return #dead
"""


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


class RedisBackend:
    """Talks to Redis with the asyncio client; the connection pool belongs to the running loop."""

    def __init__(self, url: str, *, prefix: str = "smtpgate", node: str = "", lease: float = 10.0) -> None:
        self.url = url
        self.prefix = prefix
        self.node = node or secrets.token_hex(6)
        self.owner = f"{self.node}/{os.getpid()}"  # built in the worker that uses it
        self.lease = lease
        self._client: aioredis.Redis | None = None
        self._scripts: dict[str, Any] = {}

    def _redis(self) -> aioredis.Redis:
        if self._client is None:
            self._client = aioredis.from_url(self.url, socket_timeout=5, socket_connect_timeout=5)
            for name, body in (("failures", _FAILURES), ("ban", _BAN), ("set_ban", _SET_BAN), ("unban", _UNBAN),
                               ("lookup", _LOOKUP), ("protect", _PROTECT), ("quota", _QUOTA),
                               ("acquire", _ACQUIRE), ("release", _RELEASE), ("heartbeat", _HEARTBEAT)):
                self._scripts[name] = self._client.register_script(body)
        return self._client

    async def _run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        client = self._redis()
        try:
            return await self._scripts[name](keys=list(keys), args=list(args), client=client)
        except (RedisError, OSError) as exc:
            raise GuardUnavailable(f"Redis at {_safe_url(self.url)}: {type(exc).__name__}: {_safe_text(exc, self.url)}") from None

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    # ---------------------------------------------------------------- failures

    async def record_failures(self, keys: Sequence[str], caps: Sequence[int], *, window: float, now: float) -> list[int]:
        result = await self._run(
            "failures", [self._key("f", k) for k in keys],
            [_ms(now), _ms(window), secrets.token_hex(6), *caps],
        )
        return [int(n) for n in result]

    async def reset_failures(self, keys: Sequence[str]) -> None:
        try:
            if keys:
                await self._redis().delete(*(self._key("f", k) for k in keys))
        except (RedisError, OSError) as exc:
            raise GuardUnavailable(f"Redis at {_safe_url(self.url)}: {type(exc).__name__}") from None

    # -------------------------------------------------------------------- bans

    async def ban(self, network: str, *, base: float, cap: float, strike_memory: float, reason: str, now: float) -> Ban:
        until_ms, meta = await self._run(
            "ban", [self._key("bans"), self._key("banmeta"), self._key("strikes", network)],
            [network, _ms(now), _ms(base), _ms(cap), _ms(strike_memory), reason],
        )
        return _ban(network, float(until_ms), meta)

    async def set_ban(self, ban: Ban) -> None:
        meta = json.dumps({"since": _ms(ban.since), "strikes": ban.strikes, "reason": ban.reason, "source": ban.source})
        await self._run("set_ban", [self._key("bans"), self._key("banmeta")], [ban.network, _ms(ban.until), meta])

    async def unban(self, network: str, *, placed_before: float | None = None) -> bool:
        before = "" if placed_before is None else str(_ms(placed_before))
        return bool(await self._run("unban", [self._key("bans"), self._key("banmeta")], [network, before]))

    def ban_prefixes(self, version: int) -> Sequence[int]:
        return range(33) if version == 4 else range(129)

    async def lookup(self, networks: Sequence[str], login: str | None, *, now: float) -> tuple[list[Ban], bool]:
        keys = [self._key("bans"), self._key("banmeta")]
        if login is not None:
            keys.append(self._key("prot", login))
        result = await self._run("lookup", keys, [_ms(now), *networks])
        protected = bool(int(result[0]))
        rest = result[1:]
        bans = [_ban(_text(rest[i]), float(rest[i + 1]), rest[i + 2]) for i in range(0, len(rest), 3)]
        return bans, protected

    async def protect(self, login: str, *, until: float, now: float) -> None:
        await self._run("protect", [self._key("prot", login)], [_ms(until), max(1000, _ms(until - now))])

    async def active_bans(self, *, now: float) -> list[Ban]:
        client = self._redis()
        try:
            rows = cast(list[tuple[Any, float]], await client.zrangebyscore(
                self._key("bans"), f"({_ms(now)}", "+inf", withscores=True))
            metas = await client.hmget(self._key("banmeta"), [net for net, _ in rows]) if rows else []
        except (RedisError, OSError) as exc:
            raise GuardUnavailable(f"Redis at {_safe_url(self.url)}: {type(exc).__name__}") from None
        return [_ban(_text(net), score, meta) for (net, score), meta in zip(rows, metas, strict=True)]

    # ------------------------------------------------------------------ quotas

    async def quota(self, counters: Sequence[QuotaCounter], amounts: Sequence[int], *, mode: QuotaMode, now: float) -> int | None:
        args: list[Any] = [_ms(now), mode, QUOTA_BUCKETS]
        for counter, amount in zip(counters, amounts, strict=True):
            args += [counter.limit, _ms(counter.window), amount]
        index = int(await self._run("quota", [self._key("q", c.key) for c in counters], args))
        return None if index == 0 else index - 1

    # ------------------------------------------------------------ connections

    def _slot_keys(self) -> list[str]:
        return [self._key("c", "ip"), self._key("c", "node", self.node), self._key("c", "own", self.owner)]

    async def acquire_slot(self, ip: str, *, max_total: int, max_per_ip: int, now: float) -> SlotRefusal | None:
        result = int(await self._run(
            "acquire", [*self._slot_keys(), self._key("c", "owners")],
            [ip, max_total, max_per_ip, _ms(now), _ms(self.lease), self.owner],
        ))
        return "total" if result == 1 else "address" if result == 2 else None

    async def release_slot(self, ip: str, *, now: float) -> None:
        await self._run("release", self._slot_keys(), [ip])

    async def heartbeat(self, *, now: float) -> None:
        await self._run("heartbeat", [self._key("c", "owners"), self._key("c", "ip")],
                        [_ms(now), _ms(self.lease), self.owner, self.prefix])

    # ------------------------------------------------------------ housekeeping

    async def sweep(self, *, now: float) -> None:
        try:
            client = self._redis()
            expired = await client.zrangebyscore(self._key("bans"), "-inf", _ms(now))
            if expired:
                await client.zrem(self._key("bans"), *expired)
                await client.hdel(self._key("banmeta"), *expired)
        except (RedisError, OSError) as exc:
            raise GuardUnavailable(f"Redis at {_safe_url(self.url)}: {type(exc).__name__}") from None

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    async def delete_all(self) -> int:
        """Remove every key under the prefix (tests, and `smtpgate ban` never)."""
        client = self._redis()
        keys = [key async for key in client.scan_iter(match=f"{self.prefix}:*", count=500)]
        if keys:
            await client.delete(*keys)
        return len(keys)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _ban(network: str, until_ms: float, meta: Any) -> Ban:
    data = json.loads(_text(meta)) if meta else {}
    return Ban(
        network=network,
        since=float(data.get("since", 0)) / 1000,
        until=until_ms / 1000,
        strikes=int(data.get("strikes", 1)),
        reason=str(data.get("reason", "")),
        source="manual" if data.get("source") == "manual" else "auto",
    )


def _safe_url(url: str) -> str:
    """The Redis URL without a password (redis://:secret@host -> redis://***@host)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    _userinfo, at, host = rest.rpartition("@")
    return f"{scheme}://***@{host}" if at else url


def _safe_text(exc: Exception, url: str) -> str:
    text = str(exc)
    _, _, rest = url.partition("://")
    userinfo, at, _ = rest.rpartition("@")
    if at and userinfo:
        text = text.replace(userinfo, "***")
    return text.splitlines()[0] if text else ""
