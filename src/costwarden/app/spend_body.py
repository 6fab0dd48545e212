"""The spend reports' bodies (`/admin/v1/spend`, a key holder's `/v1/costwarden/spend`): a module of its
own, light to import, because the ledger's report process (storage/report_process.py) imports it to
encode each report where it is computed."""

from __future__ import annotations

import orjson
from pydantic import TypeAdapter

from costwarden.app.admin_models import SpendReportModel, SpendRowModel
from costwarden.domain.report import SpendReport
from costwarden.services.reports import report_json

_ROWS = TypeAdapter(list[SpendRowModel])

# Rows per pydantic call. Each call is one stretch of Rust that holds the GIL throughout: 1,500 rows
# in one call held it 30 ms to validate and 17 ms to encode, and the event loop (probes) waited that
# long whatever the switch interval; 64 rows hold it about 1-2 ms (issue 14).
SPEND_ROWS_PER_CALL = 64


def spend_body(report: SpendReport) -> bytes:
    """The spend route's JSON: validated by its documented model, by alias (`from`); the rows a
    slice at a time, spliced into the rest (the same bytes as one call over the whole report)."""
    data = report_json(report)
    rows = data["rows"]
    head = SpendReportModel.model_validate({**data, "rows": []}).model_dump_json(by_alias=True).encode()
    parts = []
    for i in range(0, len(rows), SPEND_ROWS_PER_CALL):
        chunk = _ROWS.validate_python(rows[i : i + SPEND_ROWS_PER_CALL])
        parts.append(_ROWS.dump_json(chunk, by_alias=True)[1:-1])  # the objects, without the list's brackets
    # The first `"rows":[]` is the field: a string value's quotes are escaped, `where` maps to strings.
    return head.replace(b'"rows":[]', b'"rows":[' + b",".join(parts) + b"]", 1)


def own_spend_body(report: SpendReport) -> bytes:
    """`/v1/costwarden/spend`: a key holder's own team's report, named by the query's team filter (the
    route refuses any other team)."""
    team = next(value for name, value in report.query.where if name == "team")
    return orjson.dumps({"team": team, **report_json(report)})
