"""The routing target: a deployment ready to serve (prices, upstream model, URLs), and the table of them.

Its own module, outside the stages: the exchange holds a `Route`, the route stage picks one, the
balancer and forwarder serve it; none of them imports another for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from costwarden.config.models import Deployment
from costwarden.domain.pricing import PriceSheet


@dataclass(frozen=True, slots=True)
class Route:
    """A deployment ready to serve: its prices and its upstream URLs (chosen by upstream/balancer)."""

    deployment: Deployment
    sheet: PriceSheet
    upstream_model: str
    urls: tuple[str, ...]

    @classmethod
    def of(cls, deployment: Deployment) -> Route:
        return cls(
            deployment=deployment,
            sheet=deployment.pricing.sheet(),
            upstream_model=deployment.model or deployment.name,
            urls=deployment.upstream_urls,
        )


class RouteTable:
    """Deployments by name, built once from config."""

    def __init__(self, deployments: Sequence[Deployment]) -> None:
        self._routes = {d.name: Route.of(d) for d in deployments}

    def get(self, name: str) -> Route | None:
        return self._routes.get(name)

    def names(self) -> list[str]:
        return list(self._routes)

    def routes(self) -> list[Route]:
        return list(self._routes.values())
