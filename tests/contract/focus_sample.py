"""A ledger for the FOCUS export tests (three teams and unattributed requests, two protocols,
served, rejected and failed requests, zero-cost rows, spread over hours across a month's end), and
the FinOps Foundation's focus-validator run on a file."""

from __future__ import annotations

import os
import random
import subprocess
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from costwarden.domain.money import quantize
from costwarden.domain.record import Outcome, UsageRecord
from tests.conftest import need

# 2026-11-30 21:00 UTC: the sample runs past midnight into December (two billing periods).
START = datetime(2026, 11, 30, 21, tzinfo=UTC).timestamp()
TEAMS = ("search", "ads", "risk")
ROOT = Path(__file__).resolve().parents[2]
VALIDATOR = ROOT / ".venv-focus" / "bin" / "focus-validator"


def sample_records(count: int = 600, seed: int = 9, start: float = START) -> list[UsageRecord]:
    rng = random.Random(seed)
    records = []
    for i in range(count):
        team = rng.choice([*TEAMS, None]) if i % 17 else None
        v2 = rng.random() < 0.4
        outcome = rng.choices([Outcome.SERVED, Outcome.REJECTED, Outcome.FAILED], [8, 1, 1])[0]
        served = outcome is Outcome.SERVED
        input_tokens = 0 if v2 or not served else rng.randint(1, 3000)
        output_tokens = 0 if v2 or not served else rng.randint(0, 500)
        items = rng.randint(1, 64) if v2 and served else 0
        if v2:
            cost = quantize(Decimal("0.00001") * items)
        else:
            cost = quantize((input_tokens * Decimal("0.15") + output_tokens * Decimal("0.6")) / 1_000_000)
        # Some served OpenAI requests are the other modalities (no extra draws: the sample stays put).
        modal = "" if v2 or not served else {3: "image", 5: "audio"}.get(i % 13, "")
        at = start + i * 21.7 + rng.random()  # about six hours in all
        records.append(
            UsageRecord(
                request_id=f"focus-{i:05d}",
                started_at=at,
                ended_at=at + 0.3,
                key_id=None if team is None else f"k-{team}",
                team=team,
                project=None if team is None else rng.choice(["ranking", "qa"]),
                environment=None if team is None else rng.choice(["prod", "dev"]),
                tags={},
                deployment=("iris" if v2 else "chat") if team is not None or i % 2 else None,
                protocol="v2" if v2 else "openai",
                endpoint="/v2/models/iris/infer" if v2 else "/v1/chat/completions",
                method="POST",
                model="iris" if v2 else "chat",
                stream=False,
                status=200 if served else (401 if outcome is Outcome.REJECTED else 502),
                upstream_status=200 if served else None,
                outcome=outcome,
                error_code=None if served else "sample",
                latency_ms=round(rng.uniform(1, 400), 3),
                upstream_ms=round(rng.uniform(1, 300), 3) if served else None,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                items=items,
                cost_usd=cost if served else Decimal(0),
                pricing_basis=(modal or ("item" if v2 else "tokens")) if served else "free",
                reasoning_tokens=output_tokens // 3 if not modal else 0,
                images=1 + i % 4 if modal == "image" else 0,
                audio_ms=250 * i + 7 if modal == "audio" else 0,
            )
        )
    return records


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    need(VALIDATOR.is_file(), "focus-validator (scripts/setup-focus-validator)")
    # focus-validator 1.0.0 reads its currency list from a path relative to the working directory.
    site = next((ROOT / ".venv-focus" / "lib").glob("python3*/site-packages"))
    return subprocess.run(
        [str(VALIDATOR), "--data-file", str(path), "--validate-version", "1.0"],
        cwd=site,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        check=False,
    )
