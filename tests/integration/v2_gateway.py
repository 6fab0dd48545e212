"""A gateway for the V2 client tests: MLServer's iris and the binary echo model as deployments."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.integration.procs import Gateway, TextModel, free_port
from tests.integration.setup_config import Upstreams, config_dict, write_config
from tests.integration.v2_binary_upstream import MODEL

ECHO_PRICE = Decimal("0.000125")  # per item, for the binary echo model
V2Gateway = Callable[..., Gateway]


@pytest.fixture
def v2_gateway(tmp_path: Path, textmodel: TextModel) -> Iterator[V2Gateway]:
    """`v2_gateway(iris_url, echo_url, iris_grpc="host:port", extra={...}, **server)`; stopped after the test."""
    started: list[Gateway] = []

    def start(
        iris: str | None,
        echo: str | None,
        iris_grpc: str | None = None,
        extra: dict[str, Any] | None = None,
        **server: Any,
    ) -> Gateway:
        data = config_dict(Upstreams(text=textmodel.url, iris=iris), tmp_path, extra=extra, **server)
        for deployment in data["deployments"]:
            if deployment["name"] == "iris" and iris_grpc is not None:
                deployment["grpc_upstream"] = iris_grpc
        if echo is not None:
            data["deployments"].append(
                {"name": MODEL, "protocol": "v2", "upstream": echo, "pricing": {"per_item": str(ECHO_PRICE)}}
            )
        path = write_config(tmp_path / f"costwarden-{len(started)}.yaml", data)
        gateway = Gateway(path, free_port(), tmp_path, data["storage"]["ledger"], server.get("admin_port"))
        started.append(gateway)
        gateway.start()
        return gateway

    yield start
    for gateway in started:
        gateway.stop()
