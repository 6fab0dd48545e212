"""Train the iris example classifier and write an MLServer model folder.

Writes model.joblib and model-settings.json for the mlserver_sklearn runtime; offline (load_iris is bundled).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import joblib
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

DEFAULT_OUT = Path(__file__).resolve().parent / "model"

MODEL_SETTINGS = {
    "name": "iris",
    "implementation": "mlserver_sklearn.SKLearnModel",
    "parameters": {"uri": "./model.joblib", "version": "v1"},
}


def train(out_dir: Path) -> float:
    """Fit the classifier, save it into out_dir, and return its training accuracy."""
    features, labels = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500, random_state=0)
    model.fit(features, labels)
    out_dir.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, out_dir / "model.joblib")
    settings = json.dumps(MODEL_SETTINGS, indent=2) + "\n"
    (out_dir / "model-settings.json").write_text(settings, encoding="utf-8")
    return float(model.score(features, labels))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="model folder to write")
    args = parser.parse_args()
    accuracy = train(args.out)
    print(f"trained iris LogisticRegression: train accuracy {accuracy:.3f} -> {args.out}")


if __name__ == "__main__":
    main()
