"""Two scikit-learn models of clearly different cost per request, served by one real MLServer:
`small` (a 5-tree random forest) and `large` (300 trees), both trained on iris in the fixture."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import joblib
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier

from tests.integration.procs import MLSERVER_BIN, Proc, free_port, wait_until

TREES = {"small": 5, "large": 300}


def train(folder: Path) -> None:
    """One MLServer model folder per ensemble under `folder`."""
    features, labels = load_iris(return_X_y=True)
    for name, trees in TREES.items():
        model = RandomForestClassifier(n_estimators=trees, random_state=0, n_jobs=1).fit(features, labels)
        out = folder / name
        out.mkdir(parents=True)
        joblib.dump(model, out / "model.joblib")
        settings = {
            "name": name,
            "implementation": "mlserver_sklearn.SKLearnModel",
            "parameters": {"uri": "./model.joblib", "version": "v1"},
        }
        (out / "model-settings.json").write_text(json.dumps(settings), encoding="utf-8")


class Ensembles(Proc):
    """MLServer serving every model folder under `models` (in-process inference, as examples/iris)."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.models = tmp / "models"
        train(self.models)
        env = {
            **os.environ,
            "MLSERVER_HOST": "127.0.0.1",
            "MLSERVER_HTTP_PORT": str(self.port),
            "MLSERVER_GRPC_PORT": str(free_port()),
            "MLSERVER_METRICS_PORT": str(free_port()),
            "MLSERVER_PARALLEL_WORKERS": "0",
            "MLSERVER_DEBUG": "false",
        }
        super().__init__([str(MLSERVER_BIN), "start", str(self.models)], tmp / "mlserver.log", cwd=tmp, env=env)
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        super().start()
        for name in TREES:
            ready = f"{self.url}/v2/models/{name}/ready"
            wait_until(lambda u=ready: httpx.get(u).status_code == 200, 120, "MLServer", self.proc)  # type: ignore[misc]
