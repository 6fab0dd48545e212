"""The routing target: a deployment ready to serve (prices, upstream model, URLs), and the table of them.

Its own module, outside the stages: the exchange holds a `Route`, the route stage picks one, the
balancer and forwarder serve it; none of them imports another for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from costwarden.config.models import Deployment
from costwarden.domain.pricing import PriceSheet


@dataclass(frozen=True, slots=True)
class Route:
    """A deployment ready to serve: its prices and its upstream URLs (chosen by upstream/balancer)."""

    deployment: Deployment
    sheet: PriceSheet
    upstream_model: str
    urls: tuple[str, ...]
    variant: str | None = None  # the cheaper variant of `deployment` this route serves, if one
    api_key: str | None = None  # sent upstream as a bearer token
    # Made once, not per request: the sheet's pricing bases (every ledger record) and the
    # `x-costwarden-deployment` response header, encoded.
    basis: str = field(init=False, repr=False, compare=False)
    header: tuple[bytes, bytes] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "basis", self.sheet.basis)
        object.__setattr__(self, "header", (b"x-costwarden-deployment", self.deployment.name.encode()))

    @property
    def pool(self) -> str:
        """The name its upstreams' health is kept under: the deployment, or `deployment~variant`."""
        return self.deployment.name if self.variant is None else f"{self.deployment.name}~{self.variant}"

    @classmethod
    def of(cls, deployment: Deployment) -> Route:
        return cls(
            deployment=deployment,
            sheet=deployment.pricing.sheet(),
            upstream_model=deployment.model or deployment.name,
            urls=deployment.upstream_urls,
            api_key=deployment.api_key,
        )

    def to_variant(self, index: int) -> Route:
        """The route of the deployment's variant at `index` (its own upstreams, model and prices)."""
        variant = self.deployment.variants[index]
        return Route(
            deployment=self.deployment,
            sheet=variant.pricing.sheet(),
            upstream_model=variant.model or variant.name,
            urls=variant.upstream_urls,
            variant=variant.name,
            api_key=variant.api_key,
        )


class RouteTable:
    """Deployments by name, built once from config."""

    def __init__(self, deployments: Sequence[Deployment]) -> None:
        self._routes = {d.name: Route.of(d) for d in deployments}
        self._variants = {
            name: tuple(route.to_variant(i) for i in range(len(route.deployment.variants)))
            for name, route in self._routes.items()
        }

    def get(self, name: str) -> Route | None:
        return self._routes.get(name)

    def names(self) -> list[str]:
        return list(self._routes)

    def routes(self) -> list[Route]:
        return list(self._routes.values())

    def variants(self, name: str) -> tuple[Route, ...]:
        """The deployment's variants in their configured order (cheapest last, by convention)."""
        return self._variants.get(name, ())

    def every_route(self) -> list[Route]:
        """Deployments and their variants: every pool of upstreams."""
        return [r for name, route in self._routes.items() for r in (route, *self._variants[name])]
