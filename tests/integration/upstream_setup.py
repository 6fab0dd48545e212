"""Gateways with extra deployments for the upstream tests: faults, dead upstreams, fallbacks."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import gateway_launcher
from tests.integration.procs import Gateway, TextModel
from tests.integration.setup_config import CHAT_PRICES, IRIS_PRICES, Upstreams, config_dict

DEAD = "http://127.0.0.1:9"  # the discard port: nothing listens there
UpstreamGateway = Callable[..., Gateway]


def chat(name: str, model: str, *upstreams: str, **fields: Any) -> dict[str, Any]:
    prices = {k: str(v) for k, v in CHAT_PRICES.items()}
    return {
        "name": name,
        "protocol": "openai",
        "upstreams": list(upstreams),
        "model": model,
        "pricing": prices,
        **fields,
    }


def iris(name: str, *upstreams: str, **fields: Any) -> dict[str, Any]:
    prices = {k: str(v) for k, v in IRIS_PRICES.items()}
    return {"name": name, "protocol": "v2", "upstreams": list(upstreams), "model": "iris", "pricing": prices, **fields}


# On a test: run it on both server engines (`gateway_with` starts its gateways on each).
ON_BOTH_ENGINES = pytest.mark.parametrize("gateway_with", ["asgi", "fast"], indirect=True)


@contextlib.contextmanager
def upstream_gateways(tmp_path: Path, textmodel: TextModel, engine: str | None = None) -> Iterator[UpstreamGateway]:
    """The factory `gateway_with` gives, on `engine` (the default one when None); stops what it started."""
    with gateway_launcher() as launch:

        def make(deployments: list[dict[str, Any]], iris: str | None = None, **server: Any) -> Gateway:
            if engine is not None:
                server.setdefault("engine", engine)
            data = config_dict(Upstreams(text=textmodel.url, iris=iris), tmp_path, **server)
            data["deployments"].extend(deployments)
            return launch(data, tmp_path)

        yield make


@pytest.fixture
def gateway_with(request: pytest.FixtureRequest, tmp_path: Path, textmodel: TextModel) -> Iterator[UpstreamGateway]:
    """`gateway_with([deployment, ...], iris=url, **server)`: the usual test config plus these deployments
    (on the engine `ON_BOTH_ENGINES` gives, when a test is marked so)."""
    with upstream_gateways(tmp_path, textmodel, getattr(request, "param", None)) as make:
        yield make
