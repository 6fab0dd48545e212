"""Fuzz the admin API from its own OpenAPI document (schemathesis), against a real gateway process.

Valid and invalid requests for every operation, with the admin token and (some) without: never a
5xx; every status is one the document declares (app/admin_models.py: response models and error
responses), and conforms to it (content type, headers, body schema).
COSTWARDEN_FUZZ_EXAMPLES raises the number of requests.
"""

from __future__ import annotations

import os
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.integration.conftest import GatewayFactory
from tests.integration.setup_config import ADMIN_TOKEN

EXAMPLES = int(os.environ.get("COSTWARDEN_FUZZ_EXAMPLES", "120"))
GOVERNANCE = {"governance": {"evaluate_every_seconds": 0.5, "spikes": {"enabled": False}}}
CHECKS = [
    schemathesis.checks.not_a_server_error,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
]
# The admin API's refusals: bad input, no or wrong token, unknown id, body limits (see app/admin.py).
REFUSALS = frozenset({400, 401, 403, 404, 405, 408, 413})
AUTH = st.sampled_from([f"Bearer {ADMIN_TOKEN}"] * 8 + ["Bearer wrong-token", "", f"Basic {ADMIN_TOKEN}"])


@pytest.mark.integration
def test_the_admin_api_against_its_openapi(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway(extra=GOVERNANCE)
    url = gateway.url + "/admin/openapi.json"
    schema = schemathesis.openapi.from_url(url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10)
    cases = schema.as_strategy(GenerationMode.POSITIVE) | schema.as_strategy(GenerationMode.NEGATIVE)
    seen: dict[str, int] = {}

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    @given(case=cases, auth=AUTH)
    def one(case: Any, auth: str) -> None:
        headers = {"Authorization": auth} if auth else {}
        response = case.call(base_url=gateway.url, headers=headers, timeout=10)
        key = f"{case.method} {case.path} {response.status_code}"
        seen[key] = seen.get(key, 0) + 1
        case.validate_response(response, checks=CHECKS, headers=headers)
        if str(response.status_code) not in case.operation.responses.status_codes:
            assert response.status_code in REFUSALS, f"{key}: {response.text[:300]}"
            detail = response.json().get("detail") if response.status_code != 413 else "-"
            assert detail, f"{key}: an undocumented refusal without `detail`: {response.text[:300]}"

    one()
    print("\n".join(f"{n:4d}  {k}" for k, n in sorted(seen.items())))
    assert httpx.get(gateway.url + "/readyz", timeout=10).status_code == 200
