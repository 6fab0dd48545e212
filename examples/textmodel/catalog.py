"""The models the example server offers, trained once from the bundled corpus at startup."""

from __future__ import annotations

from pathlib import Path

from markov import MarkovModel, load_paragraphs

CORPUS = Path(__file__).resolve().parent / "corpus.txt"
# markov-small is a trigram model; markov-large looks one word further back.
ORDERS = {"markov-small": 3, "markov-large": 4}
DEFAULT_MODEL = "markov-small"


class Catalog:
    """Model name to model. Any other name (fault-injection names included) gets markov-small."""

    def __init__(self, corpus: Path = CORPUS) -> None:
        paragraphs = load_paragraphs(corpus)
        self._models = {name: MarkovModel(paragraphs, order) for name, order in ORDERS.items()}

    @property
    def names(self) -> list[str]:
        return list(self._models)

    def get(self, name: str) -> MarkovModel:
        return self._models.get(name) or self._models[DEFAULT_MODEL]
