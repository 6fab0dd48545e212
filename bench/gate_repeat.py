"""Run the CI gate many times on identical code, and on a slower model version.

    python bench/gate_repeat.py [--runs 20] [--repeat 5] [--requests 30] [--sequential]
                                [--out bench/results/gate_repeat.json]

Starts a real MLServer with the two iris ensembles of tests/integration/ensembles.py and a gateway
whose deployment `clf` is served by the small one. Each trial benches `clf` as "base" and as
"current" (identical code), `--repeat` runs a side, interleaved base, current, base, current...
(each run its own results file), then runs `costwarden check` with default thresholds on the two
sides. With `--sequential` the baseline is benched once, up front, and each trial benches only the
current side, all its repeats in a row (what the gate sees if CI benches base and PR one after the
other). Last, one trial against a gateway whose `clf` is served by the large ensemble (a slower
"version"). Prints and saves every exit code and the latency ratio the gate saw.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from tests.integration.bench_cli import costwarden, start_gateway  # noqa: E402
from tests.integration.ensembles import Ensembles  # noqa: E402
from tests.integration.setup_config import KEYS  # noqa: E402

from costwarden.bench import api  # noqa: E402
from costwarden.bench.results import save  # noqa: E402


def bench(url: str, out: Path, repeat: int, requests: int) -> Path:
    found = api.bench(url, "clf", "v2", concurrency=1, requests=requests, duration_s=300, repeats=repeat,
                      api_key=KEYS["search"])  # fmt: skip
    save(found, out)
    return out


def check(base: list[Path], current: list[Path], verdict: Path) -> dict[str, object]:
    sides = [a for p in base for a in ("--baseline", p)] + [a for p in current for a in ("--current", p)]
    done = costwarden("check", *sides, "--json", verdict)
    found = orjson.loads(verdict.read_bytes())
    latency = next(c for c in found["checks"] if c["name"] == "latency p99")
    return {"exit": done.returncode, "p99_change": latency["change"], "detail": latency["detail"]}


def trial(base_url: str, cur_url: str, tmp: Path, name: str, args: argparse.Namespace) -> dict[str, object]:
    """Interleaved: base, current, base, current, ... one run a file; then the gate."""
    base: list[Path] = []
    cur: list[Path] = []
    for k in range(args.repeat):
        base.append(bench(base_url, tmp / f"{name}-base{k}.json", 1, args.requests))
        cur.append(bench(cur_url, tmp / f"{name}-cur{k}.json", 1, args.requests))
    return check(base, cur, tmp / f"{name}-verdict.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--sequential", action="store_true", help="bench the baseline once, up front")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/gate_repeat.json")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="cw-gate-"))
    server = Ensembles(tmp)
    server.start()
    same: list[dict[str, object]] = []
    try:
        gateway = start_gateway(tmp, "http://127.0.0.1:9", server.url, "small", "base")
        try:
            if args.sequential:
                bench(gateway.url, tmp / "base.json", args.repeat, args.requests)
            for i in range(args.runs):
                started = time.monotonic()
                if args.sequential:
                    current = bench(gateway.url, tmp / f"run{i}.json", args.repeat, args.requests)
                    same.append(check([tmp / "base.json"], [current], tmp / f"v{i}.json"))
                else:
                    same.append(trial(gateway.url, gateway.url, tmp, f"t{i}", args))
                print(f"identical run {i + 1}/{args.runs}: exit {same[-1]['exit']}, p99 {same[-1]['p99_change']}"
                      f" ({time.monotonic() - started:.1f} s)", flush=True)  # fmt: skip
            slower = start_gateway(tmp, "http://127.0.0.1:9", server.url, "large", "pr")
            try:
                slow = trial(gateway.url, slower.url, tmp, "slow", args)
            finally:
                slower.stop()
        finally:
            gateway.stop()
        print(f"slower version: exit {slow['exit']}, p99 {slow['p99_change']}")
    finally:
        server.stop()
    passed = sum(1 for r in same if r["exit"] == 0)
    summary = {"identical_runs": args.runs, "passed": passed, "runs": same, "slower_version": slow,
               "repeat": args.repeat, "requests_per_repeat": args.requests,
               "mode": "sequential" if args.sequential else "interleaved", "loadavg": os.getloadavg()}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))
    print(f"{passed}/{args.runs} identical runs passed; the slower version exited {slow['exit']}")


if __name__ == "__main__":
    main()
