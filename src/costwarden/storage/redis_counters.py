"""The shared counter store in Redis, for many gateway replicas: one Lua script per operation, so
each `admit`/`settle` is atomic and one round trip. Times come from the caller, never Redis TIME.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from importlib import resources

import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from costwarden.domain.admission import AdmissionRequest, AdmissionResult, RateOutcome, Settlement
from costwarden.domain.budget import Amount, BudgetState
from costwarden.domain.money import from_nanos, to_nanos
from costwarden.ports import CounterStoreUnavailable

UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)
_KINDS = {ord("b"): "budget", ord("r"): "rate", ord("s"): "slot"}


def _script(name: str) -> bytes:
    folder = resources.files("costwarden.storage") / "redis_scripts"
    return (folder / "prelude.lua").read_bytes() + b"\n" + (folder / f"{name}.lua").read_bytes()


def _limit(value: Decimal | None, usd: bool = False) -> str:
    if value is None:
        return ""
    return str(to_nanos(value) if usd else int(value))


def _amount(values: Sequence[bytes | int]) -> Amount:
    return Amount(from_nanos(int(values[0])), int(values[1]), int(values[2]))


def _state(values: Sequence[bytes | int]) -> BudgetState:
    return BudgetState(_amount(values[0:3]), _amount(values[3:6]))


class _Script:
    """EVALSHA, loading the script once more when Redis answers NOSCRIPT (after a restart/flush)."""

    def __init__(self, name: str) -> None:
        self.source = _script(name)
        self.sha: str | None = None

    async def __call__(self, client: aioredis.Redis, keys: Sequence[str], args: Sequence[str | int]) -> list[bytes]:
        if self.sha is not None:
            try:
                return await self._run(client, self.sha, keys, args)
            except NoScriptError:
                pass
        self.sha = str(await client.script_load(self.source))
        return await self._run(client, self.sha, keys, args)

    @staticmethod
    async def _run(client: aioredis.Redis, sha: str, keys: Sequence[str], args: Sequence[str | int]) -> list[bytes]:
        reply: list[bytes] = await client.evalsha(sha, len(keys), *keys, *args)
        return reply


class RedisCounters:
    """`CounterStore` in Redis (see redis_scripts/prelude.lua for the layout). Keys, all under
    `namespace`: `c:<counter>` HASH and `h:<counter>` ZSET per budget counter, `r:<rate key>` HASH
    (GCRA TAT, interval, period), `s:<slot key>` ZSET of leases, `settled:<reservation>` marker.

    Lifetimes are relative TTLs computed from the caller's `now` (so a skewed replica or a test's
    fake clock cannot make a key vanish early); `restore` has no `now` and uses `clock`.
    Commands are never retried: a lost reply to `admit` must not hold twice.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        namespace: str = "costwarden:",
        timeout: float = 0.25,
        connect_timeout: float = 0.25,
        max_connections: int = 16,
        settled_ttl: float = 3600.0,
        orphan_ttl: float = 2 * 86400.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.namespace = namespace
        # A small pool that callers queue on (for at most `timeout`): Redis runs one command at a
        # time anyway, and a burst must not open hundreds of connections at 3-4 ms each.
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=timeout,
            socket_timeout=timeout,
            socket_connect_timeout=connect_timeout,
            retry=Retry(NoBackoff(), 0),
        )
        self._client = aioredis.Redis.from_pool(pool)  # closes the pool with the client
        self._settled_ms = math.ceil(settled_ttl * 1000)
        self._orphan_ms = math.ceil(orphan_ttl * 1000)
        self._clock = clock
        self._admit, self._settle = _Script("admit"), _Script("settle")
        self._state, self._restore = _Script("state"), _Script("restore")

    def _counter(self, counter: str) -> tuple[str, str]:
        return f"{self.namespace}c:{counter}", f"{self.namespace}h:{counter}"

    async def _call(self, script: _Script, keys: Sequence[str], args: Sequence[str | int]) -> list[bytes]:
        try:
            return await script(self._client, keys, args)
        except UNREACHABLE as exc:
            raise CounterStoreUnavailable(f"redis: {exc}") from exc

    async def admit(self, request: AdmissionRequest, now: float) -> AdmissionResult:
        estimate = request.estimate
        keys: list[str] = []
        args: list[str | int] = [
            repr(now),
            request.reservation_id,
            repr(request.expires_at),
            to_nanos(estimate.usd),
            estimate.tokens,
            estimate.requests,
            len(request.budgets),
            len(request.rates),
            len(request.slots),
        ]
        for check in request.budgets:
            for counter in check.read_keys:
                keys.extend(self._counter(counter))
            keys.extend(self._counter(check.write_key))
            args += (
                len(check.read_keys),
                _limit(check.limit_usd, usd=True),
                _limit(check.limit_tokens),
                _limit(check.limit_requests),
                1 if check.enforce else 0,
                repr(check.retain_until - now),
            )
        for rate in request.rates:
            keys.append(f"{self.namespace}r:{rate.key}")
            args += (rate.limit, repr(float(rate.period)), rate.cost)
        for slot in request.slots:
            keys.append(f"{self.namespace}s:{slot.key}")
            args.append(slot.max_active)
        reply = await self._call(self._admit, keys, args)
        return self._result(request, reply)

    @staticmethod
    def _result(request: AdmissionRequest, reply: list[bytes]) -> AdmissionResult:
        refused_by = None
        if reply[1]:
            code: bytes = reply[1]
            kind, index = _KINDS[code[0]], int(code[1:]) - 1
            if kind == "budget":
                name = request.budgets[index].budget_id
            else:
                name = (request.rates if kind == "rate" else request.slots)[index].key
            refused_by = f"{kind}:{name}"
        at = 2
        states = []
        for _ in request.budgets:
            states.append(_state(reply[at : at + 6]))
            at += 6
        rates = []
        for rate in request.rates:
            allowed, remaining, reset, retry = reply[at : at + 4]
            rates.append(RateOutcome(rate.key, int(allowed) == 1, int(remaining), float(reset), float(retry)))
            at += 4
        active = tuple(int(n) for n in reply[at:])
        return AdmissionResult(int(reply[0]) == 1, refused_by, tuple(states), tuple(rates), active)

    async def settle(self, settlement: Settlement, now: float) -> None:
        actual = settlement.actual
        keys = [f"{self.namespace}settled:{settlement.reservation_id}"]
        for counter in settlement.budget_write_keys:
            keys.extend(self._counter(counter))
        keys.extend(f"{self.namespace}s:{key}" for key in settlement.slot_keys)
        keys.extend(f"{self.namespace}r:{key}" for key, _ in settlement.token_corrections)
        args: list[str | int] = [
            repr(now),
            settlement.reservation_id,
            self._settled_ms,
            self._orphan_ms,
            to_nanos(actual.usd),
            actual.tokens,
            actual.requests,
            len(settlement.budget_write_keys),
            len(settlement.slot_keys),
            len(settlement.token_corrections),
        ]
        args.extend(delta for _, delta in settlement.token_corrections)
        await self._call(self._settle, keys, args)

    async def budget_state(self, read_keys: Sequence[str], now: float) -> BudgetState:
        keys = [key for counter in read_keys for key in self._counter(counter)]
        return _state(await self._call(self._state, keys, [repr(now)]))

    async def restore(self, spent: dict[str, Amount], retain_until: dict[str, float]) -> None:
        if not spent:
            return
        now = self._clock()
        keys: list[str] = []
        args: list[str | int] = []
        for counter, amount in spent.items():
            keys.extend(self._counter(counter))
            until = retain_until.get(counter)
            ttl = "" if until is None else str(math.ceil((until - now) * 1000))
            args += (to_nanos(amount.usd), amount.tokens, amount.requests, ttl)
        await self._call(self._restore, keys, args)

    async def ping(self) -> bool:
        try:
            return bool(await self._client.ping())
        except UNREACHABLE:
            return False

    async def close(self) -> None:
        await self._client.aclose()
