"""The gateway's request ids are time-ordered (issue 14): the header and the ledger carry a 32-hex
id whose first 48 bits are the request's Unix milliseconds, so later requests sort later."""

from __future__ import annotations

import re
import time

import httpx

from tests.integration import ledger
from tests.integration.procs import Gateway
from tests.integration.setup_config import KEYS


def test_request_ids_carry_the_time_and_sort_in_request_order(gateway: Gateway) -> None:
    issued: list[tuple[int, str, int]] = []
    for _ in range(6):
        before = time.time_ns() // 1_000_000
        response = httpx.post(
            gateway.url + "/v1/chat/completions",
            json={"model": "chat", "messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": f"Bearer {KEYS['search']}", "X-Costwarden-Tags": "no-equals-sign"},
        )
        after = time.time_ns() // 1_000_000
        assert response.status_code == 400  # refused before any upstream, recorded all the same
        issued.append((before, response.headers["x-costwarden-request-id"], after))
        time.sleep(0.002)  # a later millisecond: ids of the same one order by their random part
    for before, rid, after in issued:
        assert re.fullmatch(r"[0-9a-f]{32}", rid)
        assert before <= int(rid[:12], 16) <= after
    ids = [rid for _, rid, _ in issued]
    assert ids == sorted(ids)
    assert set(ids) <= set(ledger.by_id(ledger.wait_for(gateway.ledger, len(ids))))
