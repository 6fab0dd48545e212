"""The admin API's response bodies and error responses, as pydantic models: the OpenAPI document
(/admin/openapi.json, Swagger UI at /admin/docs) shows them, and FastAPI checks every reply against
them. Money is fixed-point text with nine decimals (never a float); times are ISO 8601 in UTC.
Models allow extra fields where other parts of the project add columns (ledger, budgets)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, create_model

from costwarden.domain.record import LEDGER_COLUMNS, Outcome, UsageRecord
from costwarden.services.reports import ISO_TIMES

USD = Field(pattern=r"^-?\d+\.\d{9}$", examples=["0.000120000"])


class Problem(BaseModel):
    """An admin API refusal: what was wrong, in words."""

    detail: str = Field(examples=["send the admin token as `Authorization: Bearer <token>`"])


class SpendRowModel(BaseModel):
    """One group's totals. The group's dimensions (e.g. `team`) come first, as extra fields."""

    model_config = ConfigDict(extra="allow")
    requests: int
    errors: int
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    items: int
    reasoning_tokens: int = Field(description="of output_tokens, the reasoning ones (docs/modalities.md)")
    images: int
    audio_ms: int = Field(description="input audio of transcriptions and translations, in milliseconds")
    characters: int = Field(description="input characters of speech")
    documents: int = Field(description="reranked documents")
    cost_usd: str = USD
    cost_per_1k_requests_usd: str = USD
    p50_latency_ms: float | None
    p95_latency_ms: float | None


class SpendReportModel(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    group_by: list[str]
    from_: str | None = Field(alias="from")
    to: str | None
    where: dict[str, str]
    rows: list[SpendRowModel]
    total: SpendRowModel
    percentile_relative_error: float = Field(description="relative error bound of p50/p95 (0: exact)")


def _record_field(name: str, hint: Any) -> tuple[Any, Any]:
    """A ledger column's type in the admin API's JSON (services/reports.py: record_json)."""
    if name in ISO_TIMES:
        return str, ...
    if hint is Decimal:
        return str, USD
    if hint == Decimal | None:
        return str | None, USD
    if hint is Outcome:
        return Literal.__getitem__(tuple(o.value for o in Outcome)), ...
    return hint, ...


# One ledger record (see docs/reports.md for each column): a field per column of LEDGER_COLUMNS, in its
# order, typed from UsageRecord, so that a new ledger column needs no edit here.
_HINTS = get_type_hints(UsageRecord)
_COLUMNS: dict[str, Any] = {name: _record_field(name, _HINTS[name]) for name in LEDGER_COLUMNS}
RecordModel: type[BaseModel] = create_model(
    "RecordModel",
    __config__=ConfigDict(extra="allow"),
    __doc__="One ledger record (see docs/reports.md for each column).",
    **_COLUMNS,
)
RecordsPage: type[BaseModel] = create_model(
    "RecordsPage",
    records=(list[RecordModel], ...),
    next=(str | None, Field(description="pass as `cursor` for the next page; null on the last page")),
)


class KeyModel(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    name: str
    team: str
    project: str
    environment: str
    tags: dict[str, str]
    created_at: str | None
    revoked_at: str | None


class KeyCreated(BaseModel):
    id: str
    key: str = Field(description="the secret key; shown only in this reply")


class BudgetModel(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    scope: dict[str, str]
    window: str
    window_start: float = Field(description="Unix seconds")
    window_end: float = Field(description="Unix seconds")
    action: str
    fail_mode: str
    limit_usd: str = USD
    limit_tokens: int | None
    limit_requests: int | None
    spent_usd: str = USD
    reserved_usd: str = USD
    remaining_usd: str = USD
    utilisation: str
    spent_tokens: int
    spent_requests: int
    forecast_usd: str | None
    forecast_exceeds_at: float | None


class AlertModel(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    fingerprint: str
    kind: str
    labels: dict[str, str]
    severity: str
    observed: str
    threshold: str
    summary: str
    started_at: str
    resolved_at: str | None
    status: Literal["firing", "resolved"]


def refusals(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The error responses of a guarded route: 401 and 403 always, plus `codes`."""
    said = {
        400: "bad input: the message names the parameter",
        401: "no admin token, or the wrong one",
        403: "the admin API is disabled (no server.admin_token)",
        404: "no such object",
        501: "this install lacks what the request needs (e.g. the `focus` extra for Parquet)",
        503: "the counter store cannot answer now",
    }
    return {code: {"model": Problem, "description": said[code]} for code in sorted({401, 403, *codes})}
