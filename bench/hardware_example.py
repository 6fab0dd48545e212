"""The MLServer example of docs/hardware.md: two iris ensembles benched through the gateway, each
labelled with a hardware profile, then `hardware recommend` for a loose and a tight SLO.

    python bench/hardware_example.py [--out bench/results/hardware-mlserver]

The small ensemble (5 trees) runs as `cpu-fast` ($1.00/h), the large one (300 trees) as `cpu-slow`
($0.10/h): on one machine the two models stand in for a fast and a slow machine serving one
prediction task. Each is benched closed loop at 1 and 2 requests in flight, 200 requests each.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from tests.integration.bench_cli import costwarden, start_gateway  # noqa: E402
from tests.integration.ensembles import Ensembles  # noqa: E402
from tests.integration.setup_config import KEYS  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/hardware-mlserver")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="cw-hw-"))
    server = Ensembles(tmp)
    server.start()
    try:
        gateway = start_gateway(tmp, "http://127.0.0.1:9", server.url, "small", "gw")
        try:
            for name, profile in (("small", "cpu-fast"), ("large", "cpu-slow")):
                done = costwarden(
                    "bench", gateway.url, "-d", name, "--protocol", "v2", "--config", gateway.config_path,
                    "--api-key", KEYS["search"], "--hardware", profile, "--concurrency", "1", "--requests", "200",
                    "--duration", "300", "--repeat", "1", "-o", args.out / f"{name}.json",
                    "--markdown", args.out / f"{name}.md",
                )  # fmt: skip
                print(done.stdout[-2000:], done.stderr[-2000:])
            for slo in ("p99<=2s", "p50<=10ms"):
                for rate in ([], ["--rate", "100"]):
                    done = costwarden("hardware", "recommend", "--results", args.out, "--slo", slo,
                                      "--config", gateway.config_path, *rate,
                                      "--plot", args.out / f"plot-{slo.split('<')[0]}.svg")  # fmt: skip
                    print(f"$ costwarden hardware recommend --slo {slo!r} {' '.join(rate)}\n{done.stdout}{done.stderr}")
        finally:
            gateway.stop()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
