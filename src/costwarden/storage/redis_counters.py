"""The shared counter store in Redis, for many gateway replicas: one Lua script per operation, so
each `admit`/`settle` is atomic and one round trip. Times come from the caller, never Redis TIME.

`admit` and `settle` (the hot path) skip redis-py's generic command machinery: their EVALSHA is
packed here (a budget check's part once per window) and sent on a connection of the store's own
(`_Lane`); the rest goes through the redis-py client.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from importlib import resources

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from costwarden.aio import ReplyTimeout
from costwarden.domain.admission import (
    AdmissionRequest,
    AdmissionResult,
    BudgetCheck,
    BudgetSeed,
    RateOutcome,
    Refusal,
    Refused,
    Settlement,
)
from costwarden.domain.budget import Amount, BudgetState
from costwarden.domain.money import from_nanos, to_nanos
from costwarden.ports import CounterStoreUnavailable, CounterStoreUnseeded

UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)
RESTORE_COUNTERS = 1000  # counters per restore call (a rolling budget has 60)
_KINDS = {ord("b"): Refused.BUDGET, ord("r"): Refused.RATE, ord("s"): Refused.SLOT, ord("u"): Refused.UNSEEDED}


def _script(name: str) -> bytes:
    folder = resources.files("costwarden.storage") / "redis_scripts"
    return (folder / "prelude.lua").read_bytes() + b"\n" + (folder / f"{name}.lua").read_bytes()


FIELD, RECORD = "\x1f", "\x1e"  # keys must not contain these two control characters


def _amount(values: Sequence[bytes]) -> Amount:
    return Amount(from_nanos(int(values[0])), int(values[1]), int(values[2]))


def _arg(value: bytes) -> bytes:
    """One bulk string of the Redis protocol."""
    return b"$%d\r\n%b\r\n" % (len(value), value)


def _packed(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join([_arg(a) for a in args])


def _state(values: Sequence[bytes]) -> BudgetState:
    return BudgetState(_amount(values[0:3]), _amount(values[3:6]))


class _Lane:
    """At most `size` connections of the store's own (made with `pool`'s settings) for the packed
    hot-path commands: no per-call pool lock, retry object or command parsing.

    Commands issued in one event-loop turn go out together (auto-pipelining): the first yields once
    and gathers those issued meanwhile, then they are written in one system call and their replies
    read in order, so an admission and the settlement of an earlier response (or a burst of
    admissions) cost one write and one wake-up, not one each. A batch waits at most `wait` seconds
    for a free connection; connecting is bounded as redis-py bounds it, then each attempt's send and
    replies by `timeout` seconds as a whole (one timer, not the task per send of redis-py's socket
    timeout, and one that does not count a stalled loop's time: `ReplyTimeout`); it is retried once,
    on a broken connection only (e.g. pooled ones after Redis restarted): an admission may then hold
    twice, which is conservative (the extra hold expires)."""

    def __init__(self, pool: aioredis.ConnectionPool, size: int, wait: float, timeout: float) -> None:
        self._kwargs = pool.connection_kwargs
        self._class = pool.connection_class
        self._idle: deque[AbstractConnection] = deque()
        self._free = asyncio.Semaphore(size)
        self._wait = wait
        self._timeout = timeout
        self._gathering: list[tuple[bytes, asyncio.Future[bytes]]] | None = None
        self._batches: set[asyncio.Task[None]] = set()  # batches of several commands, in flight

    async def call(self, packed: bytes) -> bytes:
        joined = self._gathering
        if joined is not None:  # a batch is gathering in this turn: ride with it
            future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
            joined.append((packed, future))
            return await future
        joined = self._gathering = []
        mine: asyncio.Future[bytes] | None = None
        try:
            await asyncio.sleep(0)
        except BaseException:  # cancelled: the others still go out, this one does not
            mine = asyncio.get_running_loop().create_future()
            mine.cancel()
            raise
        finally:
            self._gathering = None
            if joined:  # in a task of its own, so that no caller's cancellation breaks it for the others
                if mine is None:
                    mine = asyncio.get_running_loop().create_future()
                    joined.insert(0, (packed, mine))
                task = asyncio.ensure_future(self._deliver(joined))
                self._batches.add(task)
                task.add_done_callback(self._batches.discard)
        if mine is not None:
            return await mine
        reply = (await self._round([packed]))[0]  # alone: no task, no future
        if isinstance(reply, ResponseError):
            raise reply
        return reply

    async def _deliver(self, batch: list[tuple[bytes, asyncio.Future[bytes]]]) -> None:
        try:
            replies = await self._round([packed for packed, _ in batch])
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), reply in zip(batch, replies, strict=True):
            if future.done():  # its caller left
                continue
            if isinstance(reply, ResponseError):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def _round(self, packed: list[bytes]) -> list[bytes | ResponseError]:
        """Send the commands and read their replies (an error reply is returned, not raised)."""
        free = self._free
        if free.locked():  # a burst: queue for a connection, for a bounded time
            try:
                async with asyncio.timeout(self._wait):
                    await free.acquire()
            except TimeoutError:
                raise RedisConnectionError("no connection available") from None
        else:
            await free.acquire()
        conn: AbstractConnection = self._idle.pop() if self._idle else self._class(**self._kwargs)
        try:
            return await self._roundtrip(conn, packed[0] if len(packed) == 1 else b"".join(packed), len(packed))
        finally:
            self._idle.append(conn)
            free.release()

    async def _roundtrip(self, conn: AbstractConnection, packed: bytes, count: int) -> list[bytes | ResponseError]:
        for attempt in (1, 2):
            try:
                if not conn.is_connected:  # bounded as redis-py bounds it: connect, then socket timeout
                    conn.socket_timeout = self._timeout
                    try:
                        await conn.connect()  # type: ignore[no-untyped-call]
                    finally:
                        conn.socket_timeout = None  # from here on, the one timer below
                # a stalled loop is not Redis's fault: its time is not counted (costwarden.aio)
                async with ReplyTimeout(asyncio.get_running_loop(), self._timeout):
                    await conn.send_packed_command(packed, check_health=False)
                    replies: list[bytes | ResponseError] = []
                    for _ in range(count):
                        try:
                            replies.append(await conn.read_response())
                        except ResponseError as exc:  # Redis answered (e.g. NOSCRIPT): read on
                            replies.append(exc)
                return replies
            except TimeoutError:
                await conn.disconnect(nowait=True)  # a reply may still be on its way
                raise RedisTimeoutError(f"no reply from Redis within {self._timeout} s") from None
            except RedisConnectionError:
                await conn.disconnect()
                if attempt == 2:
                    raise
            except BaseException:
                await conn.disconnect(nowait=True)  # a reply may still be on its way
                raise
        raise AssertionError("unreachable")

    async def close(self) -> None:
        if self._batches:
            await asyncio.wait(set(self._batches), timeout=self._timeout)
        while self._idle:
            await self._idle.pop().disconnect()


class _Script:
    """EVALSHA, loading the script once more when Redis answers NOSCRIPT (after a restart/flush).
    `send` packs the command itself (`nargs` arguments after the namespace) for a `_Lane`."""

    def __init__(self, name: str, namespace: str = "", nargs: int = 0) -> None:
        self.source = _script(name)
        self.sha: str | None = None
        self._namespace = namespace.encode()
        self._nargs = nargs
        self._head = b""

    async def _load(self, client: aioredis.Redis) -> str:
        sha = self.sha = str(await client.script_load(self.source))
        self._head = b"*%d\r\n" % (self._nargs + 4) + b"".join(
            [_arg(b"EVALSHA"), _arg(sha.encode()), _arg(b"0"), _arg(self._namespace)]
        )
        return sha

    async def __call__(self, client: aioredis.Redis, *args: str | int) -> bytes:
        if self.sha is not None:
            try:
                reply: bytes = await client.evalsha(self.sha, 0, *args)
                return reply
            except NoScriptError:
                pass
        reply = await client.evalsha(await self._load(client), 0, *args)
        return reply

    async def send(self, lane: _Lane, client: aioredis.Redis, args: Sequence[bytes]) -> bytes:
        assert len(args) == self._nargs
        body = b"".join([_arg(a) for a in args])
        if self.sha is not None:
            try:
                return await lane.call(self._head + body)
            except NoScriptError:
                pass
        await self._load(client)
        return await lane.call(self._head + body)


class RedisCounters:
    """`CounterStore` in Redis (layout in redis_scripts/prelude.lua and admit.lua). Keys, all under
    `namespace`: `c:<counter>` HASH per budget counter (spent, reserved, its holds), `seeded` HASH
    of the budgets a rebuild seeded and `defs`, the budget definitions' generation (neither has a
    TTL: Redis must not evict them, see docs), `r:<rate
    key>` HASH (GCRA TAT), `s:<slot key>` ZSET of leases, `settled:<reservation>` marker. Scripts build
    key names themselves (declaring none): standalone or Sentinel Redis, not Cluster.

    Lifetimes are relative TTLs computed from the caller's `now` (so a skewed replica or a test's
    fake clock cannot make a key vanish early); `restore` has no `now` and uses `clock`.
    Commands are retried once, and only on a broken connection (a double hold is conservative).
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        namespace: str = "costwarden:",
        timeout: float = 0.5,
        connect_timeout: float = 1.0,
        max_connections: int = 64,
        pool_timeout: float = 2.0,
        settled_ttl: float = 3600.0,
        orphan_ttl: float = 2 * 86400.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.namespace = namespace
        # A bounded pool that callers queue on: Redis runs one command at a time anyway, and a burst
        # must not open hundreds of connections at 3-4 ms each.
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            # Waiting for a free connection under a burst is not an outage: that wait has its own,
            # longer bound; the socket timeouts below are what detect an unreachable Redis.
            timeout=pool_timeout,
            socket_timeout=timeout,
            socket_connect_timeout=connect_timeout,
            # One immediate retry, on a broken connection only (e.g. pooled connections after Redis
            # restarted). If the first attempt did reach Redis, an admit holds twice: that is
            # conservative (the extra hold expires) and never lets spend pass a limit.
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        )
        self._client = aioredis.Redis.from_pool(pool)  # closes the pool with the client
        # admit and settle: connections of their own, as many again as the pool's
        self._lane = _Lane(pool, max_connections, pool_timeout, timeout)
        self._settled_ms = math.ceil(settled_ttl * 1000)
        self._orphan_ms = math.ceil(orphan_ttl * 1000)
        self._clock = clock
        self._admit, self._settle = _Script("admit", namespace, 10), _Script("settle", namespace, 11)
        self._settled_ttls = (str(self._settled_ms).encode(), str(self._orphan_ms).encode())
        self._wire: dict[int, tuple[BudgetCheck, bytes]] = {}  # id(check) -> (check, its packed part)
        self._state, self._restore = _Script("state"), _Script("restore")

    async def _call(self, script: _Script, *args: str | int) -> bytes:
        try:
            return await script(self._client, self.namespace, *args)
        except UNREACHABLE as exc:
            raise CounterStoreUnavailable(f"redis: {exc}") from exc

    async def _send(self, script: _Script, args: Sequence[bytes]) -> bytes:
        try:
            return await script.send(self._lane, self._client, args)
        except UNREACHABLE as exc:
            raise CounterStoreUnavailable(f"redis: {exc}") from exc

    def _budget_wire(self, check: BudgetCheck) -> bytes:
        """A budget check's record for admit.lua, built once per check (a check lasts a window)."""
        cached = self._wire.get(id(check))
        if cached is not None and cached[0] is check:
            return cached[1]
        usd, tokens, requests = check.limits
        wire = FIELD.join(
            (
                "" if usd is None else str(usd),
                "" if tokens is None else str(tokens),
                "" if requests is None else str(requests),
                "1" if check.enforce else "0",
                repr(check.retain_until),
                check.seed_key,
                check.write_key,
                *check.read_keys,
            )
        ).encode()
        if len(self._wire) >= 4096:  # checks of past windows or removed budgets
            self._wire.clear()
        self._wire[id(check)] = (check, wire)
        return wire

    async def admit(self, request: AdmissionRequest, now: float) -> AdmissionResult:
        usd, tokens, requests = request.units
        budgets = RECORD.encode().join([self._budget_wire(check) for check in request.budgets])
        rates = RECORD.join(f"{r.key}{FIELD}{r.limit}{FIELD}{float(r.period)!r}{FIELD}{r.cost}" for r in request.rates)
        slots = RECORD.join(f"{s.key}{FIELD}{s.max_active}" for s in request.slots)
        args = (
            repr(now).encode(),
            request.reservation_id.encode(),
            repr(request.expires_at).encode(),
            b"%d" % usd,
            b"%d" % tokens,
            b"%d" % requests,
            budgets,
            rates.encode(),
            slots.encode(),
            b"" if request.generation is None else b"%d" % request.generation,
        )
        reply = await self._send(self._admit, args)
        return self._result(request, reply.split(b" "))

    @staticmethod
    def _result(request: AdmissionRequest, reply: list[bytes]) -> AdmissionResult:
        """Parse `admitted refused_by` (`-`, or b/r/s and the 1-based index of the check), six
        integers per budget, (allowed remaining reset retry) per rate, the active leases per slot."""
        refused_by = None
        code = reply[1]
        if code[0] == 0x67:  # g: planned with stale budget definitions, nothing checked
            return AdmissionResult.stale(request, int(code[1:]))
        if code != b"-":
            refused_by = Refusal.of(request, _KINDS[code[0]], int(code[1:]) - 1)
        at = 2
        states = []
        for _ in request.budgets:
            states.append(_state(reply[at : at + 6]))
            at += 6
        rates = []
        for rate in request.rates:
            allowed, remaining, reset, retry = reply[at : at + 4]
            rates.append(RateOutcome(rate.key, allowed == b"1", int(remaining), float(reset), float(retry)))
            at += 4
        active = tuple(int(n) for n in reply[at:])
        return AdmissionResult(reply[0] == b"1", refused_by, tuple(states), tuple(rates), active)

    async def settle(self, settlement: Settlement, now: float) -> None:
        usd, tokens, requests = to_nanos(settlement.actual.usd), settlement.actual.tokens, settlement.actual.requests
        corrections = RECORD.join(f"{key}{FIELD}{delta}" for key, delta in settlement.token_corrections)
        settled_ms, orphan_ms = self._settled_ttls
        args = (
            repr(now).encode(),
            settlement.reservation_id.encode(),
            settled_ms,
            orphan_ms,
            b"%d" % usd,
            b"%d" % tokens,
            b"%d" % requests,
            FIELD.join(settlement.budget_write_keys).encode(),
            FIELD.join(settlement.slot_keys).encode(),
            corrections.encode(),
            FIELD.join(settlement.caught_up_keys).encode(),
        )
        await self._send(self._settle, args)

    async def budget_state(self, check: BudgetCheck, now: float) -> BudgetState:
        reply = await self._call(self._state, repr(now), check.seed_key, FIELD.join(check.read_keys))
        if reply == b"u":
            raise CounterStoreUnseeded(f"budget {check.budget_id!r} is not seeded")
        return _state(reply.split(b" "))

    async def restore(self, seeds: Sequence[BudgetSeed], announce_at: float | None = None) -> int:
        """In calls of about `RESTORE_COUNTERS` counters (a budget's all in one, with its seeded
        mark), so that no script holds Redis (every replica's admissions) for long, nor runs past the
        timeout: 500 budgets of 60 counters in one call took 0.5-1.4 s. The announcement goes with
        the last call, once every budget is seeded."""
        now = self._clock()
        calls: list[list[str]] = [[]]
        for seed in seeds:
            if len(calls[-1]) + len(seed.counters) > RESTORE_COUNTERS and calls[-1]:
                calls.append([])
            calls[-1] += self._records(seed, now)
        announce = "" if announce_at is None else repr(announce_at)
        for records in calls[:-1]:
            await self._call(self._restore, RECORD.join(records), "")
        return int(await self._call(self._restore, RECORD.join(calls[-1]), announce))

    @staticmethod
    def _records(seed: BudgetSeed, now: float) -> list[str]:
        """restore.lua's records of a seed: one per counter, or one marking the seed key only."""
        if not seed.counters:
            return [FIELD.join((seed.seed_key, "", "0", "0", "0", "0", ""))]
        mode = "c" if seed.catch_up else ""
        return [
            FIELD.join(
                (
                    seed.seed_key,
                    part.key,
                    str(to_nanos(part.ledger.usd)),
                    str(part.ledger.tokens),
                    str(part.ledger.requests),
                    str(max(1000, math.ceil((part.retain_until - now) * 1000))),
                    mode,
                )
            )
            for part in seed.counters
        ]

    async def ping(self) -> bool:
        try:
            return bool(await self._client.ping())
        except UNREACHABLE:
            return False

    async def close(self) -> None:
        await self._lane.close()
        await self._client.aclose()
