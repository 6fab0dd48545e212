"""The aiohttp handlers of the OpenAI-compatible API: parse, apply faults, generate, answer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler
from api_error import ApiError, HtmlPage, injected
from catalog import Catalog
from embeddings import embed, to_base64
from faults import Fault, fault_for
from generation import Completion, generate, make_rng
from openai_objects import (
    ChunkFramer,
    JsonObject,
    ResponseMeta,
    chat_completion,
    embedding_list,
    model_list,
    model_object,
    text_completion,
    usage,
)
from openai_params import TextRequest, parse_body, parse_chat, parse_completion, parse_embedding
from streaming import Event, chat_events, send_events, text_events
from tokenizer import count_tokens


def json_response(obj: JsonObject, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(obj), status=status, content_type="application/json")


def error_response(error: ApiError) -> web.Response:
    return web.Response(body=error.body(), status=error.status, content_type="application/json")


@web.middleware
async def openai_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answers ApiError, and aiohttp's own 404/405/413, in OpenAI's error shape."""
    try:
        return await handler(request)
    except ApiError as error:
        return error_response(error)
    except HtmlPage as page:
        return web.Response(text=page.body(), status=page.status, content_type="text/html")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = f"Invalid URL ({request.method} {request.path})" if exc.status in (404, 405) else exc.reason
        return error_response(ApiError(exc.status, message))


class OpenAIApi:
    """Handlers bound to the trained models and the server's seed and pacing."""

    def __init__(self, catalog: Catalog, *, seed: int, token_delay_s: float) -> None:
        self._catalog = catalog
        self._seed = seed
        self._token_delay_s = token_delay_s
        self._created = int(time.time())

    @property
    def catalog(self) -> Catalog:
        return self._catalog

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/health", self.health),
            web.get("/v1/models", self.list_models),
            web.get("/v1/models/{name}", self.retrieve_model),
            web.post("/v1/chat/completions", self.chat_completions),
            web.post("/v1/completions", self.completions),
            web.post("/v1/embeddings", self.embeddings),
        ]

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def list_models(self, request: web.Request) -> web.Response:
        return json_response(model_list(self._catalog.names, self._created))

    async def retrieve_model(self, request: web.Request) -> web.Response:
        return json_response(model_object(request.match_info["name"], self._created))

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        params = parse_chat(parse_body(await request.read()))
        fault = await _suffer(fault_for(params.model))
        completions, fingerprint = self._generate(params, continue_prompt=False)
        meta = ResponseMeta.new("chatcmpl", params.model, fingerprint)
        prompt_tokens = fault.reported_prompt_tokens or params.prompt_tokens
        if not params.stream:
            await self._pace(completions)
            return json_response(chat_completion(meta, completions, prompt_tokens))
        framer = ChunkFramer(meta, "chat.completion.chunk", include_usage=params.include_usage)
        events = chat_events(framer, completions, self._usage(params, completions, prompt_tokens))
        return await self._send(request, events, fault)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        params = parse_completion(parse_body(await request.read()))
        fault = await _suffer(fault_for(params.model))
        completions, fingerprint = self._generate(params, continue_prompt=True)
        prefixes = [p if params.echo else "" for p in params.prompts for _ in range(params.n)]
        meta = ResponseMeta.new("cmpl", params.model, fingerprint)
        if not params.stream:
            await self._pace(completions)
            body = text_completion(meta, completions, prefixes, params.prompt_tokens)
            return json_response(body)
        framer = ChunkFramer(meta, "text_completion", include_usage=params.include_usage)
        events = text_events(framer, completions, prefixes, self._usage(params, completions))
        return await self._send(request, events, fault)

    async def embeddings(self, request: web.Request) -> web.Response:
        params = parse_embedding(parse_body(await request.read()))
        await _suffer(fault_for(params.model))
        vectors: list[list[float] | str] = []
        for text in params.inputs:
            vector = embed(text, params.dimensions)
            vectors.append(to_base64(vector) if params.base64 else vector)
        tokens = sum(count_tokens(text) for text in params.inputs)
        return json_response(embedding_list(params.model, vectors, tokens))

    def _generate(self, params: TextRequest, *, continue_prompt: bool) -> tuple[list[Completion], str]:
        """n completions per prompt, in OpenAI's choice order, and the model's fingerprint."""
        model = self._catalog.get(params.model)
        completions = [
            generate(
                model,
                prompt,
                continue_prompt=continue_prompt,
                sampling=params.sampling,
                rng=make_rng(self._seed, params.sampling, i, prompt),
            )
            for prompt in params.prompts
            for i in range(params.n)
        ]
        return completions, model.fingerprint

    def _usage(
        self, params: TextRequest, completions: list[Completion], prompt_tokens: int | None = None
    ) -> JsonObject | None:
        if not params.include_usage:
            return None
        return usage(prompt_tokens or params.prompt_tokens, sum(c.tokens for c in completions))

    async def _pace(self, completions: list[Completion]) -> None:
        """A non-streamed answer takes as long as streaming its tokens would."""
        if self._token_delay_s > 0.0:
            await asyncio.sleep(self._token_delay_s * sum(c.tokens for c in completions))

    async def _send(self, request: web.Request, events: Iterable[Event], fault: Fault) -> web.StreamResponse:
        return await send_events(
            request,
            events,
            token_delay_s=self._token_delay_s,
            drop_after=fault.drop_after,
            cut_cleanly=fault.cut_cleanly,
        )


async def _suffer(fault: Fault) -> Fault:
    """Apply a fault's delay or error before any answer is started."""
    if fault.delay_s > 0.0:
        await asyncio.sleep(fault.delay_s)
    if fault.error_status is not None:
        raise injected(fault.error_status)
    if fault.html_status is not None:
        raise HtmlPage(fault.html_status)
    return fault
