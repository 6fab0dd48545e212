"""Seldon MLServer serving a scikit-learn model, behind the gateway, over Open Inference Protocol V2."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest

from costwarden.domain.record import Outcome
from tests.integration import ledger
from tests.integration.conftest import GatewayFactory
from tests.integration.procs import MLServer
from tests.integration.setup_config import IRIS_PRICES, KEYS

HEADERS = {"X-Api-Key": KEYS["research"]}
FLOWERS = [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [7.7, 3.0, 6.1, 2.3], [5.0, 3.4, 1.5, 0.2], [6.9, 3.1, 5.4, 2.1]]


@pytest.fixture(params=["asgi", "fast"])
def engine(request: pytest.FixtureRequest) -> dict[str, str]:
    """Each test on both server engines."""
    return {"engine": request.param}


def infer_body(rows: list[list[float]]) -> dict[str, object]:
    flat = [v for row in rows for v in row]
    return {"inputs": [{"name": "predict", "shape": [len(rows), 4], "datatype": "FP32", "data": flat}]}


def test_infer_through_the_gateway_meters_items(
    make_gateway: GatewayFactory, mlserver: MLServer, engine: dict[str, str]
) -> None:
    gateway = make_gateway(iris=mlserver.url, **engine)
    direct = httpx.post(mlserver.url + "/v2/models/iris/infer", json=infer_body(FLOWERS)).json()
    via = httpx.post(gateway.url + "/v2/models/iris/infer", json=infer_body(FLOWERS), headers=HEADERS, timeout=30)
    assert via.status_code == 200, via.text
    assert via.json()["outputs"][0]["data"] == direct["outputs"][0]["data"] == [0, 1, 2, 0, 2]
    assert Decimal(via.headers["x-costwarden-cost-usd"]) == IRIS_PRICES["per_item"] * 5

    versioned = httpx.post(
        gateway.url + "/v2/models/iris/versions/v1/infer", json=infer_body(FLOWERS[:2]), headers=HEADERS, timeout=30
    )
    assert versioned.status_code == 200, versioned.text
    metadata = httpx.get(gateway.url + "/v2/models/iris", headers=HEADERS)
    assert metadata.status_code == 200 and metadata.json()["name"] == "iris"
    ready = httpx.get(gateway.url + "/v2/models/iris/ready", headers=HEADERS)
    assert ready.status_code == 200
    assert httpx.get(gateway.url + "/v2/health/ready").status_code == 200

    found = ledger.wait_for(gateway.ledger, 4)
    infers = sorted((r for r in found if r.endpoint == "/v2/infer"), key=lambda r: r.started_at)
    assert [r.items for r in infers] == [5, 2]
    assert all(r.outcome is Outcome.SERVED and r.team == "research" and r.protocol == "v2" for r in found)
    assert sum((r.cost_usd for r in found), Decimal(0)) == IRIS_PRICES["per_item"] * 7
    assert all(r.pricing_basis == "item" for r in found)


def test_v2_bad_input_is_refused_in_v2_shape(
    make_gateway: GatewayFactory, mlserver: MLServer, engine: dict[str, str]
) -> None:
    gateway = make_gateway(iris=mlserver.url, **engine)
    cases = [
        (b"{nope", 400),
        (b'{"inputs": []}', 400),
        (b'{"inputs": [{"name": "predict", "datatype": "FP32", "data": [1]}]}', 400),
    ]
    for body, status in cases:
        response = httpx.post(gateway.url + "/v2/models/iris/infer", content=body, headers=HEADERS)
        assert response.status_code == status
        assert isinstance(response.json()["error"], str)
    unknown = httpx.post(gateway.url + "/v2/models/unknown/infer", json=infer_body(FLOWERS), headers=HEADERS)
    assert unknown.status_code == 404 and isinstance(unknown.json()["error"], str)
    # MLServer rejects a shape that does not match its data: the gateway relays its 4xx/5xx, metered.
    mismatch = infer_body(FLOWERS)
    mismatch["inputs"][0]["shape"] = [3, 4]  # type: ignore[index]
    relayed = httpx.post(gateway.url + "/v2/models/iris/infer", json=mismatch, headers=HEADERS, timeout=30)
    assert relayed.status_code in (400, 422, 502)
    assert "error" in relayed.json() or "detail" in relayed.json()
    found = ledger.wait_for(gateway.ledger, 5)
    assert len(found) == 5 and all(r.cost_usd == 0 for r in found)
