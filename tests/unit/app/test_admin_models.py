"""The admin API's record model is the ledger's (app/admin_models.py derives it from LEDGER_COLUMNS and
UsageRecord): a field for every ledger column, in order, and a record as the API writes it
(services/reports.record_json) valid against it with nothing left undeclared."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import ValidationError

from costwarden.app.admin_models import RecordModel, RecordsPage
from costwarden.domain.record import LEDGER_COLUMNS, Outcome, UsageRecord
from costwarden.services.reports import record_json


def record(**changes: object) -> UsageRecord:
    """A record with every column set to something other than its default."""
    fields: dict[str, object] = {
        "request_id": "r1", "started_at": 1_800_000_000.25, "ended_at": 1_800_000_000.5, "key_id": "k1",
        "team": "ads", "project": "p", "environment": "prod", "tags": {"a": "b"}, "deployment": "chat",
        "protocol": "openai", "endpoint": "/v1/chat/completions", "method": "POST", "model": "m", "stream": True,
        "status": 200, "upstream_status": 200, "outcome": Outcome.SERVED, "error_code": None, "latency_ms": 12.5,
        "upstream_ms": 10.0, "input_tokens": 7, "output_tokens": 3, "cached_tokens": 1, "items": 2,
        "request_bytes": 100, "response_bytes": 200, "cost_usd": Decimal("0.000120000"), "pricing_basis": "tokens",
        "client_request_id": "c1", "variant": "chat-mini", "original_cost_usd": Decimal("0.000240000"),
        "batch_id": "b1", "job_id": "j1", "cache": "exact", "cache_avoided_usd": Decimal("0.5"),
        "reasoning_tokens": 2, "images": 1, "audio_ms": 1500, "characters": 40, "documents": 3,
    }  # fmt: skip
    fields.update(changes)
    return UsageRecord(**fields)  # type: ignore[arg-type]


def test_every_ledger_column_is_a_field_of_the_record_model() -> None:
    missing = [c for c in LEDGER_COLUMNS if c not in RecordModel.model_fields]
    assert missing == [], f"ledger columns the admin API's RecordModel does not declare: {missing}"
    assert tuple(RecordModel.model_fields) == LEDGER_COLUMNS  # in the ledger's order (the OpenAPI document's)
    assert all(field.is_required() for field in RecordModel.model_fields.values())  # record_json writes all


@pytest.mark.parametrize(
    "changes",
    [{}, {"original_cost_usd": None, "cache_avoided_usd": None, "variant": None, "outcome": Outcome.QUEUED}],
)
def test_a_record_as_the_api_writes_it_is_valid_and_wholly_declared(changes: dict[str, object]) -> None:
    data = record_json(record(**changes))
    page = RecordsPage.model_validate({"records": [data], "next": None})
    model = RecordModel.model_validate(data)
    assert model.model_extra == {}
    assert model.model_dump(mode="json") == data
    assert page.model_dump(mode="json") == {"records": [data], "next": None}


@pytest.mark.parametrize(
    ("column", "value"),
    [("cost_usd", "0.5"), ("original_cost_usd", 0.5), ("cache_avoided_usd", "1e-9"), ("outcome", "lost"),
     ("started_at", 1_800_000_000.25), ("images", "many")],
)  # fmt: skip
def test_the_model_refuses_what_the_api_never_writes(column: str, value: object) -> None:
    data = record_json(record())
    data[column] = value
    with pytest.raises(ValidationError):
        RecordModel.model_validate(data)
