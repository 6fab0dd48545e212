"""`GET /admin/v1/export/focus`: the FOCUS export over HTTP, streamed an hour of rows at a time."""

from __future__ import annotations

import tempfile
import time
from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import FastAPI, HTTPException, Query
from fastapi.params import Depends
from fastapi.responses import StreamingResponse

from costwarden.app.admin_models import refusals
from costwarden.app.runtime import Runtime
from costwarden.domain.report import QueryError
from costwarden.services.focus import focus_rows, focus_window, issuer_of
from costwarden.services.focus_write import ParquetUnavailable, csv_stream, parquet_schema, write_parquet
from costwarden.services.reports import iso_time

CHUNK = 1 << 16
SPOOL_IN_MEMORY = 8 << 20  # a Parquet body past this goes to a temporary file until it is sent


def add_focus_routes(api: FastAPI, runtime: Runtime, guard: list[Depends]) -> None:
    @api.get(
        "/admin/v1/export/focus",
        dependencies=guard,
        summary="The ledger as FOCUS 1.0 billing rows (CSV or Parquet)",
        description="One row per hour, team, project, environment, deployment and charge over [since, until). "
        "`since`: ISO 8601 or a duration back from now (24h, 30d); `until`: ISO 8601, default now. CSV streams "
        "as it is read; Parquet is written whole, then sent. A window without records gives the header only.",
        response_class=StreamingResponse,
        responses=refusals(400, 501),
    )
    async def export_focus(
        since: str | None = None,
        until: str | None = None,
        output: Annotated[Literal["csv", "parquet"], Query(alias="format")] = "csv",
    ) -> StreamingResponse:
        try:
            window = focus_window(since, until, time.time())
            if output == "parquet":
                parquet_schema()
        except QueryError as exc:
            raise HTTPException(400, str(exc)) from exc
        except ParquetUnavailable as exc:
            raise HTTPException(501, str(exc)) from exc
        rows = focus_rows(runtime.store, window, issuer_of(runtime.config))
        name = f"focus-{iso_time(window.start)}-{iso_time(window.end)}".replace(":", "")
        if output == "csv":
            headers = {"content-disposition": f'attachment; filename="{name}.csv"'}
            return StreamingResponse(csv_stream(rows), media_type="text/csv; charset=utf-8", headers=headers)
        spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115 - closed by the stream
        try:
            await write_parquet(rows, spool)
        except BaseException:
            spool.close()
            raise
        headers = {"content-disposition": f'attachment; filename="{name}.parquet"'}
        return StreamingResponse(_send(spool), media_type="application/vnd.apache.parquet", headers=headers)


async def _send(spool: tempfile.SpooledTemporaryFile[bytes]) -> AsyncIterator[bytes]:
    with spool:
        spool.seek(0)
        while chunk := spool.read(CHUNK):
            yield chunk
