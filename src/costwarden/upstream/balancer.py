"""Which upstream serves a request: each deployment's upstreams by health, then its fallbacks.

A request's plan lists the upstreams to try in order: the requested deployment's upstreams in
service (round-robin, a half-open probe first), then each fallback deployment's, depth first.
The forwarder moves to the next one only when nothing of the request was sent (see forwarder).
When every upstream of every deployment in the plan is out of service, the requested
deployment's upstreams are tried anyway: ejection reorders traffic, it never turns a request
that might succeed into a certain failure.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from costwarden.chain.target import Route, RouteTable
from costwarden.upstream.health import Transition, UpstreamPool

log = logging.getLogger(__name__)
# At most one WARNING per upstream this often for failures that change no state (the rest: DEBUG).
_WARN_EVERY_S = 10.0


@dataclass(frozen=True, slots=True)
class Target:
    """One upstream of one deployment."""

    route: Route
    index: int

    @property
    def url(self) -> str:
        return self.route.urls[self.index]


class Balancer:
    """Health-aware pools of every deployment, built once from the route table."""

    def __init__(self, table: RouteTable) -> None:
        self._table = table
        self._warned: dict[str, float] = {}  # upstream URL -> when a failure was last logged at WARNING
        # For the metrics (read when scraped): attempts by (deployment, result), and requests a
        # fallback served, by (requested, served).
        self.attempts: dict[tuple[str, str], int] = {}
        self.fallbacks: dict[tuple[str, str], int] = {}
        self._pools: dict[str, UpstreamPool] = {}
        for route in table.every_route():
            health = route.deployment.health
            self._pools[route.pool] = UpstreamPool(len(route.urls), health.eject_after, health.cooldown_seconds)
        # A deployment with one upstream and no fallback has one plan while that upstream is in
        # service: made once, so such a request costs a lookup here (planned: ~3 µs).
        self._solo: dict[str, tuple[Route, UpstreamPool, tuple[Target]]] = {
            route.deployment.name: (route, self._pools[route.pool], (Target(route, 0),))
            for route in table.routes()
            if len(route.urls) == 1 and not route.deployment.fallbacks
        }

    def plan(self, route: Route, now: float) -> Sequence[Target]:
        """The upstreams to try for one request to `route`, in order; never empty."""
        solo = self._solo.get(route.deployment.name)
        if solo is not None and solo[0] is route and solo[1].in_service(0):
            return solo[2]
        targets = [Target(r, i) for r in self._chain(route) for i in self._pools[r.pool].order(now)]
        if not targets:
            targets = [Target(route, i) for i in range(len(route.urls))]
        return targets

    def _chain(self, route: Route) -> Iterator[Route]:
        """The route, then its fallbacks depth first, each deployment once. A variant falls back to
        its original deployment first (a variant whose upstream is down never fails a request)."""
        seen: set[str] = set()
        stack = [route]
        while stack:
            current = stack.pop()
            if current.pool in seen:
                continue
            seen.add(current.pool)
            yield current
            if current.variant is not None:
                original = self._table.get(current.deployment.name)
                if original is not None:
                    stack.append(original)
                continue
            for name in reversed(current.deployment.fallbacks):
                fallback = self._table.get(name)
                if fallback is not None:
                    stack.append(fallback)

    def report(self, target: Target, healthy: bool | None, now: float, cause: str, sent: bool = True) -> None:
        """The verdict of one attempt: True (answered), False (failed: `cause`), None (no verdict);
        `sent` is False when the request never left the gateway (it may go to the next upstream)."""
        name = target.route.pool
        pool = self._pools[name]
        result = "answered" if healthy else "no_verdict" if healthy is None else "failed" if sent else "not_sent"
        self.attempts[name, result] = self.attempts.get((name, result), 0) + 1
        if healthy is None:
            pool.released(target.index)
            return
        transition = pool.succeeded(target.index, now) if healthy else pool.failed(target.index, now)
        if transition is Transition.EJECTED:
            log.warning("upstream %s of %r is out of service: %s", target.url, name, cause)
        elif transition is Transition.READMITTED:
            log.warning("upstream %s of %r is back in service", target.url, name)
        elif not healthy:
            if now - self._warned.get(target.url, -_WARN_EVERY_S) >= _WARN_EVERY_S:
                self._warned[target.url] = now
                log.warning("upstream %s of %r failed: %s", target.url, name, cause)
            else:
                log.debug("upstream %s of %r failed: %s", target.url, name, cause)

    def served_by_fallback(self, requested: Route, served: Route) -> None:
        key = (requested.pool, served.pool)
        self.fallbacks[key] = self.fallbacks.get(key, 0) + 1

    def ejected(self) -> dict[str, list[str]]:
        """The upstreams out of service now, by deployment (a variant's as `deployment~variant`)."""
        out: dict[str, list[str]] = {}
        for route in self._table.every_route():
            down = self._pools[route.pool].ejected()
            if down:
                out[route.pool] = [route.urls[i] for i in down]
        return out

    def in_service(self) -> list[tuple[str, int, bool]]:
        """(deployment, upstream index, in service) for every upstream."""
        rows: list[tuple[str, int, bool]] = []
        for route in self._table.every_route():
            down = set(self._pools[route.pool].ejected())
            rows.extend((route.pool, i, i not in down) for i in range(len(route.urls)))
        return rows
