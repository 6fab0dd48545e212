"""Stage 4, degrade: move an eligible request to one of its deployment's cheaper variants while a
`degrade` budget covering it is degraded (services/degrade.py decides that, shared by every replica).
A budget at level k moves it to the k-th variant of the deployment's ordered list (its last one if
it lists fewer); when several degraded budgets cover a request, the deepest level wins.

A key or team the budget exempts is never moved; `X-Costwarden-Variant: pin` keeps the original
for a key the budget lists in `pin_keys` (any other key sending it is refused, as for tags).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from costwarden.chain.exchange import Exchange
from costwarden.chain.route import retarget
from costwarden.chain.stage import PassStage, Reply
from costwarden.chain.target import RouteTable
from costwarden.domain.budget import BudgetScope, request_attributes
from costwarden.protocols.errors import GatewayError

PIN_HEADER = b"x-costwarden-variant"


@dataclass(frozen=True, slots=True)
class DegradeScope:
    """Whom one `degrade` budget moves: its scope, less the exempt keys and teams."""

    budget_id: str
    scope: BudgetScope
    exempt_keys: frozenset[str]
    exempt_teams: frozenset[str]
    pin_keys: frozenset[str]


class Degrade(PassStage):
    name = "degrade"

    def __init__(
        self, table: RouteTable, scopes: Sequence[DegradeScope], degraded: Callable[[], Mapping[str, int]]
    ) -> None:
        self._table = table
        self._scopes = tuple(scopes)
        self._degraded = degraded  # the budgets degraded now, and their levels (1: the first variant)

    async def enter(self, exchange: Exchange) -> Reply | None:
        route, identity = exchange.route, exchange.identity
        if route is None or identity is None or not route.deployment.variants or route.variant is not None:
            return None
        degraded = self._degraded()
        if not degraded:
            return None
        attributes = request_attributes(
            identity.key_id, identity.team, identity.project, identity.environment, route.deployment.name, exchange.tags
        )
        level = 0
        for scope in self._scopes:
            at = degraded.get(scope.budget_id, 0)
            if at <= 0 or not scope.scope.matches(attributes):
                continue
            if identity.key_id in scope.exempt_keys or identity.team in scope.exempt_teams:
                continue
            if exchange.header(PIN_HEADER) == b"pin":
                if identity.key_id in scope.pin_keys:
                    return None
                raise GatewayError(
                    403,
                    "variant_pin_not_allowed",
                    f"key {identity.key_id!r} may not pin the original with X-Costwarden-Variant",
                    kind="permission_error",
                )
            level = max(level, at)
        if level:
            variants = self._table.variants(route.deployment.name)
            exchange.variant_of = route
            retarget(exchange, variants[min(level, len(variants)) - 1])
        return None
