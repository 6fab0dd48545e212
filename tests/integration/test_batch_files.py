"""Batch files listed, deleted and aged out, driven by the official openai SDK against a real gateway."""

from __future__ import annotations

import sqlite3
import time

import httpx
import openai
import pytest

from costwarden.domain.record import Outcome
from tests.integration import ledger
from tests.integration.conftest import GatewayFactory
from tests.integration.setup_config import KEYS
from tests.integration.test_batch_api import BATCH, client, line, upload, wait_done

DAY = 86_400


@pytest.mark.parametrize("engine", ["asgi", "fast"])
def test_sdk_lists_and_deletes_only_its_teams_files(make_gateway: GatewayFactory, engine: str) -> None:
    gateway = make_gateway(engine=engine, extra=BATCH)
    with client(gateway) as sdk, client(gateway, "ads") as other:
        made = [upload(sdk, [line(f"f{i}")]) for i in range(3)]  # ids are time-ordered: they break a tie
        theirs = upload(other, [line("theirs")])
        newest_first = [f.id for f in reversed(made)]
        assert [f.id for f in sdk.files.list()] == newest_first
        assert [f.id for f in sdk.files.list(limit=2)] == newest_first  # the SDK follows `after` page by page
        page = sdk.files.list(limit=2)
        assert [f.id for f in page.data] == newest_first[:2] and page.has_more
        assert [f.id for f in sdk.files.list(order="asc")] == [f.id for f in made]
        assert [f.id for f in sdk.files.list(purpose="batch")] == newest_first
        assert list(sdk.files.list(purpose="batch_output")) == []
        assert [f.id for f in other.files.list()] == [theirs.id]
        listed = sdk.files.list(limit=1).data[0]
        assert listed.model_dump() == sdk.files.retrieve(made[-1].id).model_dump()

        deleted = sdk.files.delete(made[0].id)
        assert (deleted.id, deleted.object, deleted.deleted) == (made[0].id, "file", True)
        with pytest.raises(openai.NotFoundError):
            sdk.files.delete(made[0].id)
        with pytest.raises(openai.NotFoundError):
            sdk.files.retrieve(made[0].id)
        with pytest.raises(openai.NotFoundError):
            other.files.delete(made[1].id)  # another team's file: 404, and it stays
        assert [f.id for f in sdk.files.list()] == newest_first[:2]
    auth = {"Authorization": f"Bearer {KEYS['search']}"}
    wrong = httpx.delete(f"{gateway.url}/v1/files/{made[0].id}", headers=auth)
    assert wrong.status_code == 404 and wrong.json()["error"]["code"] == "not_found"
    for bad in ({"limit": "0"}, {"limit": "10001"}, {"order": "up"}):
        refused = httpx.get(gateway.url + "/v1/files", params=bad, headers=auth)
        assert refused.status_code == 400 and refused.json()["error"]["code"] in ("invalid_limit", "invalid_order")
    assert httpx.get(gateway.url + "/v1/files", headers={"Authorization": "Bearer cw_nope_x"}).status_code == 401


def test_deleting_a_running_batchs_input_file_leaves_the_batch_running(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway(extra={"batch": {**BATCH["batch"], "concurrency": 1, "rate_per_second": 4}})
    ids = [f"d{i}" for i in range(16)]  # about 4 s at 4 starts a second
    with client(gateway) as sdk:
        uploaded = upload(sdk, [line(i) for i in ids])
        batch = sdk.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
        assert sdk.files.delete(uploaded.id).deleted
        running = sdk.batches.retrieve(batch.id)
        assert running.status == "in_progress" and running.request_counts is not None
        assert running.request_counts.completed < len(ids)
        with pytest.raises(openai.NotFoundError):  # gone for a new batch ...
            sdk.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
        done = wait_done(sdk, batch.id)  # ... but the batch made from it runs every line
        assert done.status == "completed" and done.input_file_id == uploaded.id
        assert done.request_counts is not None and done.request_counts.completed == len(ids)
        assert done.output_file_id is not None
        output = sdk.files.content(done.output_file_id).text.splitlines()
        assert len(output) == len(ids)
        assert [f.id for f in sdk.files.list()] == [done.output_file_id]


def test_the_gateway_prunes_batches_past_retention_and_keeps_the_ledger(make_gateway: GatewayFactory) -> None:
    first = make_gateway(extra=BATCH)  # retention off: the default
    with client(first) as sdk:
        old = sdk.batches.create(
            input_file_id=upload(sdk, [line(f"o{i}") for i in range(4)]).id,
            endpoint="/v1/chat/completions", completion_window="24h",
        )  # fmt: skip
        old = wait_done(sdk, old.id)
        assert old.status == "completed" and old.output_file_id is not None
        unused = upload(sdk, [line("never")])
    served = [r for r in ledger.wait_for(first.ledger, 4) if r.batch_id == old.id]
    assert len(served) == 4 and all(r.outcome is Outcome.SERVED for r in served)
    first.stop()
    # Three days pass for what the first gateway made (the queue lives in the ledger's SQLite file).
    path = first.ledger.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        back = (3 * DAY, 3 * DAY)
        conn.execute("UPDATE batches SET finished_at = finished_at - ?, created_at = created_at - ?", back)
        conn.execute("UPDATE batch_files SET created_at = created_at - ?", (3 * DAY,))
    retention = {"retention_days": 2, "retention_every_seconds": 0.2}
    second = make_gateway(extra={"batch": {**BATCH["batch"], **retention}})
    with client(second) as sdk:
        recent = sdk.batches.create(
            input_file_id=upload(sdk, [line("r0")]).id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        recent = wait_done(sdk, recent.id)
        deadline = time.monotonic() + 20
        while any(b.id == old.id for b in sdk.batches.list()) and time.monotonic() < deadline:
            time.sleep(0.2)
        with pytest.raises(openai.NotFoundError):
            sdk.batches.retrieve(old.id)
        for gone in (old.input_file_id, old.output_file_id, unused.id):
            with pytest.raises(openai.NotFoundError):
                sdk.files.retrieve(gone)
        assert [b.id for b in sdk.batches.list()] == [recent.id]
        assert {f.id for f in sdk.files.list()} == {recent.input_file_id, recent.output_file_id}
    kept = [r for r in ledger.records(second.ledger) if r.batch_id == old.id]
    assert sorted(r.request_id for r in kept) == sorted(r.request_id for r in served)  # the ledger: untouched
