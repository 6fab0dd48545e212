"""Stage 4, route: pick the deployment the request is for and prepare the upstream request.

OpenAI requests are routed by the body's `model`, V2 by the model in the path, passthrough by
`/proxy/{deployment}/...`. The deployment must be one the key may use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from costwarden import __version__
from costwarden.chain.exchange import Exchange
from costwarden.chain.stage import JSON_CONTENT, PassStage, Reply
from costwarden.chain.target import Route, RouteTable
from costwarden.domain.record import Protocol
from costwarden.domain.usage import Usage
from costwarden.protocols import audio, images, openai, rerank, responses, v2
from costwarden.protocols.errors import GatewayError
from costwarden.protocols.request_path import raw_tail

DEPLOYMENT_HEADER = b"x-costwarden-deployment"


class RouteStage(PassStage):
    name = "route"

    def __init__(self, table: RouteTable, created: int) -> None:
        self._table = table
        self._created = created

    async def enter(self, exchange: Exchange) -> Reply | None:
        if exchange.protocol is Protocol.OPENAI:
            return self._openai(exchange)
        if exchange.protocol is Protocol.V2:
            return self._v2(exchange)
        self._http(exchange)
        return None

    def _lookup(self, exchange: Exchange, name: str, protocol: str, noun: str) -> Route:
        route = self._table.get(name)
        identity = exchange.identity
        if (
            route is None
            or route.deployment.protocol != protocol
            or (identity is not None and not identity.may_use(name))
        ):
            raise GatewayError(
                404, f"{noun}_not_found", f"the {noun} {name!r} does not exist or this key may not use it"
            )
        exchange.route = route
        return route

    def _openai(self, exchange: Exchange) -> Reply | None:
        if exchange.endpoint == "/v1/models" and exchange.path.startswith("/v1/models/"):
            name = exchange.path.removeprefix("/v1/models/")
            exchange.model = name
            self._lookup(exchange, name, "openai", "model")
            return Reply(200, openai.model_body(name, self._created), (JSON_CONTENT,))
        if exchange.endpoint == "/v1/models":
            identity = exchange.identity
            names = [
                r.deployment.name
                for r in self._table.routes()
                if r.deployment.protocol == "openai" and (identity is None or identity.may_use(r.deployment.name))
            ]
            return Reply(200, openai.models_body(names, self._created), (JSON_CONTENT,))
        if exchange.endpoint == responses.RETRIEVE:
            self._retrieve(exchange)
            return None
        if exchange.endpoint in audio.UPLOADS:
            self._upload(exchange)
            return None
        request = openai.parse_request(exchange.body, exchange.endpoint)
        exchange.model = request.model
        route = self._lookup(exchange, request.model, "openai", "model")
        exchange.stream = request.stream
        exchange.parsed_body = request.body
        exchange.strip_usage_chunk = request.stream and not request.client_wants_usage
        exchange.upstream_path = exchange.endpoint
        exchange.upstream_body = openai.upstream_body(request, exchange.body, route.upstream_model)
        if exchange.endpoint in _UNITS:
            _UNITS[exchange.endpoint](exchange, request.body, route)
        return None

    def _upload(self, exchange: Exchange) -> None:
        """A transcription or translation: a multipart upload, priced by its audio's duration."""
        content_type = exchange.header(b"content-type")
        stream = exchange.body_stream
        expected = None if stream is None else _content_length(exchange)
        upload = audio.upload(exchange.body, content_type, expected, complete=stream is None)
        exchange.model = upload.model
        route = self._lookup(exchange, upload.model, "openai", "model")
        exchange.audio = upload
        exchange.parsed_body = {}
        exchange.usage = Usage(audio_ms=upload.upfront_ms)
        exchange.upstream_path = exchange.endpoint
        exchange.upstream_body = (
            exchange.body
            if route.upstream_model == upload.model
            else audio.renamed(exchange.body, upload.model_part, route.upstream_model)
        )
        if stream is not None and upload.file_part is not None:
            seen = exchange.body[upload.file_part.start :]
            exchange.audio_end = audio.FileEnd(audio.boundary(content_type), seen)

    def _retrieve(self, exchange: Exchange) -> None:
        """`GET /v1/responses/{id}`: the id names no model, so the deployment is the one named in
        `x-costwarden-deployment`, or else the key's only OpenAI deployment. It costs one request."""
        named = exchange.header(DEPLOYMENT_HEADER)
        if named is not None:
            name = named.decode("latin-1")
        else:
            identity = exchange.identity
            usable = [
                r.deployment.name
                for r in self._table.routes()
                if r.deployment.protocol == "openai" and (identity is None or identity.may_use(r.deployment.name))
            ]
            if len(usable) != 1:
                raise GatewayError(
                    400,
                    "deployment_required",
                    "name the deployment that created this response in the `x-costwarden-deployment` header",
                )
            name = usable[0]
        exchange.model = name
        self._lookup(exchange, name, "openai", "model")
        exchange.parsed_body = {}
        exchange.upstream_path = exchange.sent_path
        exchange.upstream_body = b""

    def _v2(self, exchange: Exchange) -> Reply | None:
        if exchange.endpoint == "/v2":
            return self._v2_server(exchange)
        path = v2.parse_path(exchange.path)
        if path is None:
            raise GatewayError(404, "not_found", f"no V2 endpoint at {exchange.path}")
        exchange.model = path.model
        route = self._lookup(exchange, path.model, "v2", "model")
        if path.action == "infer":
            if exchange.method != "POST":
                raise GatewayError(405, "method_not_allowed", "infer takes POST")
            body = exchange.body if exchange.metered_body is None else exchange.metered_body
            exchange.usage = Usage(items=v2.count_items(body, exchange.header(b"inference-header-content-length")))
        exchange.upstream_path = v2.V2Path(route.upstream_model, path.version, path.action).upstream_path
        exchange.upstream_body = exchange.body
        return None

    def _v2_server(self, exchange: Exchange) -> Reply | None:
        """`GET /v2`: the upstream's server metadata when the key's V2 deployments share one server."""
        identity = exchange.identity
        usable = [
            r
            for r in self._table.routes()
            if r.deployment.protocol == "v2" and (identity is None or identity.may_use(r.deployment.name))
        ]
        if len({r.urls for r in usable}) == 1:
            exchange.route = usable[0]
            exchange.upstream_path = "/v2"
            exchange.upstream_body = exchange.body
            return None
        return Reply(200, v2.server_metadata_body("costwarden", __version__), (JSON_CONTENT,))

    def _http(self, exchange: Exchange) -> None:
        _, _, rest = exchange.path.partition("/proxy/")
        name = rest.partition("/")[0]
        self._lookup(exchange, name, "http", "deployment")
        exchange.model = None
        exchange.upstream_path = raw_tail(exchange.sent_path, 2) or "/"  # as sent: `%2F` stays in its segment
        exchange.upstream_body = exchange.body


def _images(exchange: Exchange, body: dict[str, Any], route: Route) -> None:
    n, kind = images.requested(body)
    images.check_priced(route.sheet, kind, route.deployment.name)
    exchange.image_kind = kind
    exchange.usage = Usage(images=n)


def _speech(exchange: Exchange, body: dict[str, Any], route: Route) -> None:
    exchange.usage = Usage(characters=audio.speech_characters(body))


def _rerank(exchange: Exchange, body: dict[str, Any], route: Route) -> None:
    exchange.usage = Usage(documents=rerank.documents(body))
    exchange.upstream_path = rerank.upstream_path(body)


# The units a request asks for, known before it is sent (admission holds them; see meter).
_UNITS: dict[str, Callable[[Exchange, dict[str, Any], Route], None]] = {
    images.ENDPOINT: _images,
    audio.SPEECH: _speech,
    rerank.ENDPOINT: _rerank,
}


def retarget(exchange: Exchange, route: Route) -> None:
    """Point a routed exchange at another deployment of the same protocol (a fallback, or back).

    The upstream request is rebuilt for that deployment's upstream model; the model the client
    asked for stays in `exchange.model`, so the ledger shows both what was asked and what served.
    """
    if exchange.route is route:
        return
    requested = exchange.route
    exchange.route = route
    if exchange.protocol is Protocol.OPENAI and exchange.endpoint == responses.RETRIEVE:
        return  # the same path on every upstream
    if exchange.protocol is Protocol.OPENAI and exchange.audio is not None:
        upload = exchange.audio
        body = exchange.body
        model = route.upstream_model
        exchange.upstream_body = body if model == upload.model else audio.renamed(body, upload.model_part, model)
    elif exchange.protocol is Protocol.OPENAI:
        request = openai.parse_request(exchange.body, exchange.endpoint)  # valid: route parsed it before
        exchange.upstream_body = openai.upstream_body(request, exchange.body, route.upstream_model)
    elif exchange.protocol is Protocol.V2:
        path = v2.parse_path(exchange.path)
        if path is None:  # `GET /v2`: the same path on every server
            return
        exchange.upstream_path = v2.V2Path(route.upstream_model, path.version, path.action).upstream_path
    elif exchange.model is None and requested is not None:
        exchange.model = requested.deployment.name  # passthrough: keep the name the client used


def _content_length(exchange: Exchange) -> int | None:
    value = exchange.header(b"content-length")
    return int(value) if value is not None and value.isdigit() else None  # checked: within the body limit
