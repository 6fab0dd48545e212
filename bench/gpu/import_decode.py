"""Turn decode measurements (rows of batch size, TTFT, TPOT, tokens/s; the format of
../shared/fixtures/gpu-decode-h200/decode_h200.json and bench/gpu/decode_numpy.py) into
costwarden bench results files, one per model, priced by a hardware profile, for
`costwarden hardware recommend`.

    python bench/gpu/import_decode.py DECODE.json OUT_DIR --profile NAME [--config costwarden.yaml]

Each batch size becomes one run: `batch` sequences of prompt + new tokens served together in
`total_s`, so requests/s = batch / total_s, latency = total_s, TTFT and TPOT as measured.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from costwarden.bench.results import HardwareInfo, Percentiles, Results, Run, TargetInfo, save  # noqa: E402
from costwarden.config import load_config  # noqa: E402
from costwarden.config.hardware import resolve_profile  # noqa: E402


def flat(ms: float) -> Percentiles:
    return Percentiles(p50=ms, p90=ms, p95=ms, p99=ms, max=ms, mean=ms)


def run_of(row: dict[str, float]) -> Run:
    batch, total = int(row["batch"]), float(row["total_s"])
    return Run(
        label=f"batch {batch}", mode="closed", concurrency=batch, duration_s=total, requests=batch, ok=batch,
        errors={}, error_rate=0.0, throughput_rps=round(batch / total, 6),
        tokens_per_s=round(batch * (row["prompt_tokens"] + row["new_tokens"]) / total, 3),
        input_tokens=int(batch * row["prompt_tokens"]), output_tokens=int(batch * row["new_tokens"]), items=0,
        latency_ms=flat(total * 1000), ttft_ms=flat(row["ttft_s"] * 1000), tpot_ms=flat(row["tpot_s"] * 1000),
        raw_percentiles_ms={},
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("decode", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--profile", required=True, help="hardware profile (config or catalogue)")
    parser.add_argument("--config", type=Path, help="costwarden.yaml declaring the profile")
    parser.add_argument("--suffix", default="", help="added to each file name")
    args = parser.parse_args()
    declared = load_config(args.config).hardware if args.config else ()
    profile = resolve_profile(args.profile, declared)
    if profile is None:
        raise SystemExit(f"unknown hardware profile {args.profile!r}")
    data = json.loads(args.decode.read_text())
    machine = {k: v for k, v in data.get("meta", {}).items() if isinstance(v, str | int | float)}
    models = sorted({row["model"] for row in data["rows"]})
    for model in models:
        rows = [r for r in data["rows"] if r["model"] == model]
        target = TargetInfo(url=str(args.decode), protocol="openai", deployment=model, stream=True, via_gateway=False)
        shape = {"prompt_tokens": rows[0]["prompt_tokens"], "new_tokens": rows[0]["new_tokens"]}
        results = Results(
            costwarden_version="import",
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            target=target,
            parameters={"source": str(args.decode), **shape},
            machine=machine,
            hardware=HardwareInfo.of(profile),
            runs=[run_of(r) for r in sorted(rows, key=lambda r: r["batch"])],
        )
        path = args.out / f"{args.profile}-{model}{args.suffix}.json"
        save(results, path)
        print(f"{path}: {len(rows)} batch sizes, {profile.name} at ${profile.hourly_usd}/h ({profile.price_source})")


if __name__ == "__main__":
    main()
