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
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from costwarden.domain.admission import (
    AdmissionRequest,
    AdmissionResult,
    BudgetCheck,
    BudgetSeed,
    RateOutcome,
    Settlement,
)
from costwarden.domain.budget import Amount, BudgetState
from costwarden.domain.money import from_nanos, to_nanos
from costwarden.ports import CounterStoreUnavailable, CounterStoreUnseeded

UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)
_KINDS = {ord("b"): "budget", ord("r"): "rate", ord("s"): "slot", ord("u"): "unseeded"}


def _script(name: str) -> bytes:
    folder = resources.files("costwarden.storage") / "redis_scripts"
    return (folder / "prelude.lua").read_bytes() + b"\n" + (folder / f"{name}.lua").read_bytes()


FIELD, RECORD = "\x1f", "\x1e"  # keys must not contain these two control characters


def _limit(value: Decimal | None, usd: bool = False) -> str:
    if value is None:
        return ""
    return str(to_nanos(value) if usd else int(value))


def _amount(values: Sequence[bytes]) -> Amount:
    return Amount(from_nanos(int(values[0])), int(values[1]), int(values[2]))


def _state(values: Sequence[bytes]) -> BudgetState:
    return BudgetState(_amount(values[0:3]), _amount(values[3:6]))


class _Script:
    """EVALSHA, loading the script once more when Redis answers NOSCRIPT (after a restart/flush)."""

    def __init__(self, name: str) -> None:
        self.source = _script(name)
        self.sha: str | None = None

    async def __call__(self, client: aioredis.Redis, *args: str | int) -> bytes:
        if self.sha is not None:
            try:
                reply: bytes = await client.evalsha(self.sha, 0, *args)
                return reply
            except NoScriptError:
                pass
        self.sha = str(await client.script_load(self.source))
        reply = await client.evalsha(self.sha, 0, *args)
        return reply


class RedisCounters:
    """`CounterStore` in Redis (layout in redis_scripts/prelude.lua and admit.lua). Keys, all under
    `namespace`: `c:<counter>` HASH per budget counter (spent, reserved, its holds), `seeded` HASH
    of the budgets a rebuild seeded (it has no TTL: Redis must not evict it, see docs), `r:<rate
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
        self._settled_ms = math.ceil(settled_ttl * 1000)
        self._orphan_ms = math.ceil(orphan_ttl * 1000)
        self._clock = clock
        self._admit, self._settle = _Script("admit"), _Script("settle")
        self._state, self._restore = _Script("state"), _Script("restore")

    async def _call(self, script: _Script, *args: str | int) -> bytes:
        try:
            return await script(self._client, self.namespace, *args)
        except UNREACHABLE as exc:
            raise CounterStoreUnavailable(f"redis: {exc}") from exc

    async def admit(self, request: AdmissionRequest, now: float) -> AdmissionResult:
        estimate = request.estimate
        budgets = RECORD.join(
            FIELD.join(
                (
                    _limit(check.limit_usd, usd=True),
                    _limit(check.limit_tokens),
                    _limit(check.limit_requests),
                    "1" if check.enforce else "0",
                    repr(check.retain_until - now),
                    check.seed_key,
                    check.write_key,
                    *check.read_keys,
                )
            )
            for check in request.budgets
        )
        rates = RECORD.join(f"{r.key}{FIELD}{r.limit}{FIELD}{float(r.period)!r}{FIELD}{r.cost}" for r in request.rates)
        slots = RECORD.join(f"{s.key}{FIELD}{s.max_active}" for s in request.slots)
        reply = await self._call(
            self._admit,
            repr(now),
            request.reservation_id,
            repr(request.expires_at),
            to_nanos(estimate.usd),
            estimate.tokens,
            estimate.requests,
            budgets,
            rates,
            slots,
        )
        return self._result(request, reply.split(b" "))

    @staticmethod
    def _result(request: AdmissionRequest, reply: list[bytes]) -> AdmissionResult:
        """Parse `admitted refused_by` (`-`, or b/r/s and the 1-based index of the check), six
        integers per budget, (allowed remaining reset retry) per rate, the active leases per slot."""
        refused_by = None
        code = reply[1]
        if code != b"-":
            kind, index = _KINDS[code[0]], int(code[1:]) - 1
            if kind in ("budget", "unseeded"):
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
            rates.append(RateOutcome(rate.key, allowed == b"1", int(remaining), float(reset), float(retry)))
            at += 4
        active = tuple(int(n) for n in reply[at:])
        return AdmissionResult(reply[0] == b"1", refused_by, tuple(states), tuple(rates), active)

    async def settle(self, settlement: Settlement, now: float) -> None:
        actual = settlement.actual
        corrections = RECORD.join(f"{key}{FIELD}{delta}" for key, delta in settlement.token_corrections)
        await self._call(
            self._settle,
            repr(now),
            settlement.reservation_id,
            self._settled_ms,
            self._orphan_ms,
            to_nanos(actual.usd),
            actual.tokens,
            actual.requests,
            FIELD.join(settlement.budget_write_keys),
            FIELD.join(settlement.slot_keys),
            corrections,
        )

    async def budget_state(self, check: BudgetCheck, now: float) -> BudgetState:
        reply = await self._call(self._state, repr(now), check.seed_key, FIELD.join(check.read_keys))
        if reply == b"u":
            raise CounterStoreUnseeded(f"budget {check.budget_id!r} is not seeded")
        return _state(reply.split(b" "))

    async def restore(self, seeds: Sequence[BudgetSeed]) -> None:
        now = self._clock()
        records = [
            FIELD.join(
                (
                    seed.seed_key,
                    part.key,
                    str(to_nanos(part.ledger.usd)),
                    str(part.ledger.tokens),
                    str(part.ledger.requests),
                    str(max(1000, math.ceil((part.retain_until - now) * 1000))),
                )
            )
            for seed in seeds
            for part in seed.counters
        ]
        records += [FIELD.join((seed.seed_key, "", "0", "0", "0", "0")) for seed in seeds if not seed.counters]
        if records:
            await self._call(self._restore, RECORD.join(records))

    async def ping(self) -> bool:
        try:
            return bool(await self._client.ping())
        except UNREACHABLE:
            return False

    async def close(self) -> None:
        await self._client.aclose()
