"""Rerank (`POST /v1/rerank`), sans-I/O: the schema vLLM and Cohere serve (`query`, `documents`)
and Text Embeddings Inference's (`query`, `texts`). Priced per document and/or per search unit
(each started block of 100 documents, domain/pricing.py). Each schema goes to the path its servers
serve it at: `documents` to `/v1/rerank`, TEI's `texts` to `/rerank` (TEI has no `/v1/rerank`)."""

from __future__ import annotations

from typing import Any

from costwarden.protocols.errors import GatewayError

ENDPOINT = "/v1/rerank"
TEI_PATH = "/rerank"
MAX_DOCUMENTS = 10_000


def documents(body: dict[str, Any]) -> int:
    """How many documents a request reranks: 1 to MAX_DOCUMENTS, else a 400."""
    if not isinstance(body.get("query"), str):
        raise GatewayError(400, "missing_query", "a rerank request needs a `query` (a string)")
    listed = body.get("documents", body.get("texts"))
    if not isinstance(listed, list):
        raise GatewayError(400, "missing_documents", "a rerank request needs `documents` (or `texts`): a list")
    if not 1 <= len(listed) <= MAX_DOCUMENTS:
        raise GatewayError(
            400, "invalid_documents", f"a rerank request takes 1 to {MAX_DOCUMENTS} documents, not {len(listed)}"
        )
    return len(listed)


def upstream_path(body: dict[str, Any]) -> str:
    """Where the upstream serves a request's schema: TEI's `texts` at `/rerank`, else `/v1/rerank`."""
    return TEI_PATH if "documents" not in body and "texts" in body else ENDPOINT
