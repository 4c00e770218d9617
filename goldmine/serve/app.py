"""The HTTP layer: OpenAI's API shapes over the engine, with keys, quotas, usage and metrics.

    GET  /                      the playground page (static/index.html)
    GET  /health, /metrics      liveness and Prometheus metrics
    GET  /v1/models
    POST /v1/chat/completions   (stream: server-sent events ending in `data: [DONE]`)
    POST /v1/completions
    POST /v1/embeddings
    POST /v1/classify           goldmine's extension: label and probabilities (texts in
                                `input`; base64 images in `image` / `images` for a cnn model)
    POST /v1/feedback           a rating (and correction) of a chat answer, by its response id
    GET  /v1/cost/plan/example  the example business plan (`goldmine cost plan`'s), as JSON
    POST /v1/cost/plan          run a business plan: monthly P&L, sensitivity and a verdict

Every error is OpenAI's error object with a 4xx status: malformed JSON, wrong types, unknown
model or parameter, empty messages, a prompt longer than the context, max_tokens out of range
(400/404), a missing or wrong key (401), a rate or quota exceeded (429) and a full queue (503),
the last two with Retry-After. The engine knows token ids; this layer knows JSON and text.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Body, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from goldmine.errors import GoldmineError
from goldmine.serve.engine import Overloaded, Sampling
from goldmine.serve.models import Served, ServedClassifier, ServedEncoder, ServedLM

STATIC = Path(__file__).parent / "static"
MAX_INPUTS = 256          # texts per embeddings / classify request
MAX_IMAGES = 64           # images per classify request
MAX_IMAGE_CHARS = 4_000_000   # base64 characters per image (about 3 MB of PNG/JPEG)
MAX_IMAGE_PIXELS = 4096 * 4096  # decoded size, checked before the pixels are decoded
MIN_TEMPERATURE = 1e-3   # below it sampling is greedy (dividing by ~0 makes the logits inf)


# -- errors ------------------------------------------------------------------------------------
class APIError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code
        self.headers = headers

    def response(self) -> JSONResponse:
        return error_response(self.status, self.message, self.type, self.param, self.code,
                              self.headers)


def error_response(status: int, message: str, type_: str = "invalid_request_error",
                   param: str | None = None, code: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    message, param = _printable(message), param if param is None else _printable(param)
    return JSONResponse({"error": {"message": message, "type": type_, "param": param,
                                   "code": code}}, status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    errors = exc.errors()
    if not errors:
        return "invalid request", None
    # of a union's alternatives (stop: str | list[str]) a broken constraint says more than
    # "not a string"
    e = next((e for e in errors if not str(e.get("type")).endswith("_type")), errors[0])
    loc = [x for x in e.get("loc", ()) if x != "body"]
    param = _param(loc, exc.body, e.get("type") == "missing")
    if e.get("type") == "json_invalid":
        return "request body is not valid JSON", None
    if e.get("type") == "extra_forbidden":
        return f"unsupported parameter: {param}", param
    if e.get("type") == "missing" and not loc:
        return "request body is missing (expected a JSON object)", None
    msg = e.get("msg", "invalid value")
    return (f"{param}: {msg}" if param else msg), param


def _param(loc: list, body: Any, missing: bool) -> str | None:
    """The request field an error's location names: 'stop', not 'stop.list[str]' (the names
    pydantic gives a union's alternatives are not places in the body; walk the body to tell)."""
    parts, value = [], body
    for i, x in enumerate(loc):
        if isinstance(value, dict) and isinstance(x, str) and (
                x in value or (missing and i == len(loc) - 1)):
            parts.append(x)
            value = value.get(x)
        elif isinstance(value, list) and isinstance(x, int) and 0 <= x < len(value):
            parts.append(str(x))
            value = value[x]
    return ".".join(parts) or None


# -- request bodies (their JSON schema is the OpenAPI schema schemathesis tests) ---------------
class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _utf8(cls, data: Any) -> Any:
        """JSON may escape lone surrogates ("\\ud800"): text no tokenizer or database takes."""
        if _has_surrogate(data):
            raise ValueError("text must be valid Unicode (it has a lone surrogate)")
        return data


class TextPart(Strict):
    type: Literal["text"]
    text: str


class Message(Strict):
    role: Literal["system", "user", "assistant", "developer"]
    content: str | list[TextPart]
    name: str | None = None


class StreamOptions(Strict):
    include_usage: bool = False


Stop = str | Annotated[list[str], Field(max_length=4)] | None
MaxTokens = Annotated[int, Field(ge=1)] | None


class Sampled(Strict):
    model: str
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: MaxTokens = None
    temperature: Annotated[float, Field(ge=0, le=2)] = 1.0
    top_p: Annotated[float, Field(gt=0, le=1)] = 1.0
    top_k: Annotated[int, Field(ge=1)] | None = None
    n: Annotated[int, Field(ge=1, le=1)] = 1
    stop: Stop = None
    seed: int | None = None
    user: str | None = None
    presence_penalty: Annotated[float, Field(ge=0, le=0)] = 0.0
    frequency_penalty: Annotated[float, Field(ge=0, le=0)] = 0.0


class ChatRequest(Sampled):
    messages: Annotated[list[Message], Field(min_length=1)]
    max_completion_tokens: MaxTokens = None


class CompletionRequest(Sampled):
    prompt: str | Annotated[list[int], Field(min_length=1)]
    echo: Literal[False] = False


class EmbeddingRequest(Strict):
    model: str
    input: str | Annotated[list[str], Field(min_length=1, max_length=MAX_INPUTS)]
    encoding_format: Literal["float", "base64"] = "float"  # openai's client asks for base64
    user: str | None = None


Base64Image = Annotated[str, Field(min_length=1, max_length=MAX_IMAGE_CHARS)]


class ClassifyRequest(Strict):
    """One of `input` (texts, for text classifiers) or `image` / `images` (base64-encoded
    PNG/JPEG/BMP/GIF/WebP files, optionally as data: URLs, for image classifiers)."""

    model: str
    input: str | Annotated[list[str], Field(min_length=1, max_length=MAX_INPUTS)] | None = None
    image: Base64Image | None = None
    images: Annotated[list[Base64Image], Field(min_length=1, max_length=MAX_IMAGES)] | None = None


class FeedbackRequest(Strict):
    response_id: Annotated[str, Field(min_length=1, max_length=200)]
    rating: Annotated[int, Field(ge=-1, le=1)]
    correction: str | None = None


# -- metrics -----------------------------------------------------------------------------------
class Metrics:
    def __init__(self, models: dict[str, Served]):
        disable_created_metrics()  # no *_created series: they double the output for nothing
        self.registry = r = CollectorRegistry()
        self.requests = Counter("goldmine_requests", "HTTP requests", ["path", "status"],
                                registry=r)
        self.latency = Histogram("goldmine_request_seconds", "HTTP request latency (to the last "
                                 "byte of the response)", ["path"], registry=r,
                                 buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60))
        self.tokens = Counter("goldmine_tokens", "tokens processed", ["model", "kind"], registry=r)
        self.ttft = Histogram("goldmine_time_to_first_token_seconds", "time from request to its "
                              "first generated token", ["model"], registry=r,
                              buckets=(.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
        self.batch = Histogram("goldmine_batch_size", "sequences per decode step", ["model"],
                               registry=r, buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
        self.prefill = Counter("goldmine_prefill_tokens", "prompt tokens prefilled", ["model"],
                               registry=r)
        queue = Gauge("goldmine_queue_depth", "requests waiting for a slot", ["model"], registry=r)
        running = Gauge("goldmine_running_requests", "requests holding a slot", ["model"],
                        registry=r)
        for name, m in models.items():
            if isinstance(m, ServedLM):
                queue.labels(name).set_function(lambda e=m.engine: e.queue_depth)
                running.labels(name).set_function(lambda e=m.engine: e.batch_size)

    def on_step(self, model: str):
        batch, prefill = self.batch.labels(model), self.prefill.labels(model)

        def hook(phase: str, rows: int, tokens: int) -> None:
            if phase == "decode":
                batch.observe(rows)
            else:
                prefill.inc(tokens)
        return hook


class MetricsMiddleware:
    """Counts every request by route and status, and times it to its last byte (pure ASGI, so
    streaming responses are timed to their end)."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"] if scope["path"] in KNOWN_PATHS else "other"
        t0, status = time.perf_counter(), [500]

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.requests.labels(path, str(status[0])).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - t0)


KNOWN_PATHS = {"/", "/health", "/metrics", "/v1/models", "/v1/chat/completions",
               "/v1/completions", "/v1/embeddings", "/v1/classify", "/v1/feedback",
               "/v1/cost/plan", "/v1/cost/plan/example"}


# -- tokens from the engine thread to the event loop --------------------------------------------
class Dispatcher:
    """Hands tokens from the engine thread to the event loop's queues with one wake-up of the
    loop per engine step, not one per token: the first token of a step schedules a flush, the
    others of that step join it."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop, self.pending, self.scheduled = loop, [], False
        self.lock = threading.Lock()

    def sender(self, q: asyncio.Queue) -> Callable[[int | None], None]:
        def send(tok: int | None) -> None:   # engine thread
            with self.lock:
                self.pending.append((q, tok))
                if self.scheduled:
                    return
                self.scheduled = True
            try:
                self.loop.call_soon_threadsafe(self.flush)
            except RuntimeError:  # the loop is closed: the server is shutting down
                pass
        return send

    def flush(self) -> None:   # event loop
        with self.lock:
            items, self.pending, self.scheduled = self.pending, [], False
        for q, tok in items:
            q.put_nowait(tok)


# -- text from tokens --------------------------------------------------------------------------
class TextStream:
    """Token ids -> text deltas: never half a UTF-8 character, never (part of) a stop string."""

    def __init__(self, model: ServedLM, stops: list[str]):
        self.model, self.stops = model, stops
        self.ids: list[int] = []
        self.emitted = 0
        self.text = ""
        self.stopped = False

    def feed(self, ids: list[int]) -> str:
        from goldmine.generate import _held_back

        self.ids.extend(ids)
        self.text = self.model.decode(self.ids)
        cut = min((self.text.find(s) for s in self.stops if s in self.text), default=-1)
        if cut >= 0:
            self.stopped = True
            self.text = self.text[:cut]
            return self._take(cut)
        return self._take(len(self.text) - _held_back(self.text, tuple(self.stops)))

    def flush(self) -> str:
        if not self.stopped:  # half a UTF-8 character at the end (max_tokens) is no text
            self.text = self.text.rstrip("\ufffd")
        return self._take(len(self.text))

    def _take(self, upto: int) -> str:
        if upto <= self.emitted:
            return ""
        delta = self.text[self.emitted:upto]
        self.emitted = upto
        return delta


# -- the app -----------------------------------------------------------------------------------
def create_app(models: dict[str, Served], store=None, auth: bool = True,
               default_max_tokens: int = 512, log_conversations: bool = True) -> FastAPI:
    """The FastAPI app over loaded models. `store` (goldmine.serve.store.ServeStore) holds keys,
    usage and feedback; with auth=False every request is served without a key."""
    if auth and store is None:
        raise GoldmineError("auth needs a key store")
    metrics = Metrics(models)
    for name, m in models.items():
        if isinstance(m, ServedLM):
            m.engine.on_step = metrics.on_step(name)

    @asynccontextmanager
    async def lifespan(app):
        for m in models.values():
            if isinstance(m, ServedLM):
                m.engine.start()
        try:
            yield
        finally:
            for m in models.values():
                if isinstance(m, ServedLM):
                    m.engine.stop()

    app = FastAPI(title="goldmine", version=_version(), lifespan=lifespan,
                  description="OpenAI-compatible API of goldmine models: chat, completions, "
                              "embeddings, classification, feedback.")
    app.state.models, app.state.store, app.state.metrics = models, store, metrics

    @app.exception_handler(APIError)
    async def _api_error(request, exc: APIError):
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, exc: RequestValidationError):
        message, param = _validation_message(exc)
        return error_response(400, message, param=param)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request, exc: StarletteHTTPException):
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return error_response(exc.status_code, str(exc.detail), kind)

    @app.exception_handler(Exception)
    async def _unexpected(request, exc: Exception):  # a bug: still an error object, logged
        import logging

        logging.getLogger("goldmine.serve").exception("unexpected error")
        return error_response(500, f"internal error: {type(exc).__name__}", "server_error")

    app.add_middleware(MetricsMiddleware, metrics=metrics)

    # -- helpers -------------------------------------------------------------------------------
    async def authorize(request: Request) -> dict | None:
        if not auth:
            return None
        header = request.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise APIError(401, "missing API key: send `Authorization: Bearer KEY` (create one "
                           "with `goldmine keys create --name NAME`)", "authentication_error",
                           code="invalid_api_key")
        row = await asyncio.to_thread(store.authenticate, key.strip())
        if row is None:
            raise APIError(401, "invalid API key", "authentication_error", code="invalid_api_key")
        _check_limits(row)
        return row

    # a dependency, so a request without a valid key gets 401 before its body is validated
    key_dep = Depends(authorize)

    def _check_limits(row: dict) -> None:
        from goldmine.serve.store import RateLimited

        try:
            store.check_limits(row)
        except RateLimited as e:
            raise APIError(429, str(e), "rate_limit_error", code="rate_limit_exceeded",
                           headers={"Retry-After": str(e.retry_after)}) from None

    def lookup(name: str, kinds: tuple[type, ...], what: str) -> Any:
        m = models.get(name)
        if m is None:
            raise APIError(404, f"model {name!r} does not exist; served: "
                           f"{', '.join(models) or 'none'}", "not_found_error", "model",
                           "model_not_found")
        if not isinstance(m, kinds):
            raise APIError(400, f"model {name!r} is a {m.kind} model; {what}", param="model",
                           code="model_not_supported")
        return m

    async def record(key: dict | None, model: str, prompt: int, completion: int) -> None:
        metrics.tokens.labels(model, "prompt").inc(prompt)
        metrics.tokens.labels(model, "completion").inc(completion)
        if store is not None:
            await asyncio.to_thread(store.record_usage, key, model, prompt, completion)

    def sampling(body: Sampled, m: ServedLM, prompt_len: int, stop_ids, max_tokens) -> Sampling:
        room = m.context - prompt_len
        if room < 1:
            raise APIError(400, f"the prompt is {prompt_len} tokens; this model's context is "
                           f"{m.context} tokens: shorten it", param="messages",
                           code="context_length_exceeded")
        if max_tokens is None:
            max_tokens = min(default_max_tokens, room)
        elif max_tokens > room:
            raise APIError(400, f"max_tokens is {max_tokens}, but the prompt ({prompt_len} "
                           f"tokens) leaves {room} of this model's {m.context}-token context",
                           param="max_tokens", code="context_length_exceeded")
        seed = body.seed if body.seed is None else body.seed % 2**63
        temperature = body.temperature if body.temperature >= MIN_TEMPERATURE else 0.0
        top_k = body.top_k if body.top_k is None else min(body.top_k, 2**31)  # an int64
        return Sampling(max_tokens=max_tokens, temperature=temperature, top_p=body.top_p,
                        top_k=top_k, seed=seed, stop_ids=tuple(stop_ids))

    def submit(m: ServedLM, prompt: list[int], params: Sampling, on_token):
        try:
            return m.engine.submit(prompt, params, on_token)
        except Overloaded as e:
            raise APIError(503, str(e), "server_overloaded", code="overloaded",
                           headers={"Retry-After": str(e.retry_after)}) from None
        except GoldmineError as e:
            if m.engine.error is not None:  # not the request's fault
                raise APIError(500, str(e), "server_error", code="engine_failed") from None
            raise APIError(400, str(e)) from None

    def run(m: ServedLM, prompt: list[int], params: Sampling, stops: list[str]):
        """Submit now (so a refusal is an HTTP error), then the engine's tokens as text:
        ('delta', text) ... ('done', (request, finish_reason, full text))."""
        q: asyncio.Queue = asyncio.Queue()
        req = submit(m, prompt, params, dispatcher().sender(q))

        async def events():
            text, done = TextStream(m, stops), False
            try:
                while not done:
                    batch = [await q.get()]
                    while not q.empty():
                        batch.append(q.get_nowait())
                    if batch[-1] is None:
                        done, batch = True, batch[:-1]
                    delta = text.feed(batch) if batch else ""
                    if text.stopped:
                        req.cancel()
                        done = True
                    if done:
                        delta += text.flush()
                    if delta:
                        yield "delta", delta
            finally:
                if not done:  # the client went away: free the slot
                    req.cancel()
            if req.finish_reason == "error":
                raise APIError(500, f"the engine stopped: {m.engine.error}", "server_error",
                               code="engine_failed")
            reason = "stop" if text.stopped or req.finish_reason == "stop" else "length"
            if req.first_token_at is not None:
                metrics.ttft.labels(m.name).observe(req.first_token_at - req.submitted)
            yield "done", (req, reason, text.text)
        return events()

    async def until_disconnect(request: Request) -> None:
        while not await request.is_disconnected():
            await asyncio.sleep(0.5)

    async def collect(gen: AsyncIterator, request: Request):
        """Run a generation to its end; cancel it when the client disconnects first."""
        async def drain():
            last = None
            async for kind, value in gen:
                if kind == "done":
                    last = value
            return last
        task = asyncio.ensure_future(drain())
        watch = asyncio.ensure_future(until_disconnect(request))
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            task.cancel()  # (not gen.aclose(): the task is still running the generator)
            await asyncio.wait({task})  # the generator's `finally` cancels the request
            raise APIError(499, "client disconnected")
        watch.cancel()
        return task.result()

    dispatchers: dict[asyncio.AbstractEventLoop, Dispatcher] = {}

    def dispatcher() -> Dispatcher:
        loop = asyncio.get_running_loop()
        if loop not in dispatchers:
            dispatchers[loop] = Dispatcher(loop)
        return dispatchers[loop]

    def sse(obj: dict) -> bytes:
        return b"data: " + json.dumps(obj, ensure_ascii=False).encode() + b"\n\n"

    def delta_event(base: dict, field: str) -> Callable[[str], bytes]:
        """SSE bytes of one content delta: the chunk's JSON is built once per stream, and only
        the text is encoded per token (the hot path of streaming)."""
        inner = {"content": "\0"} if field == "delta" else "\0"
        template = sse({**base, "choices": [{"index": 0, field: inner, "finish_reason": None,
                                             "logprobs": None}]})
        head, tail = template.split(b'"\\u0000"')
        return lambda text: head + json.dumps(text, ensure_ascii=False).encode() + tail

    # -- routes --------------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/health")
    async def health():
        failed = [name for name, m in models.items()
                  if isinstance(m, ServedLM) and m.engine.error is not None]
        if failed:  # a load balancer takes this server out of rotation
            return JSONResponse({"status": "error", "models": list(models), "failed": failed},
                                status_code=503)
        return {"status": "ok", "models": list(models)}

    @app.get("/metrics", include_in_schema=False)
    async def prometheus():
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    async def list_models(key: dict | None = key_dep):
        return {"object": "list", "data": [
            {"id": name, "object": "model", "created": m.created, "owned_by": "goldmine",
             **m.describe()} for name, m in models.items()]}

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatRequest, request: Request, key: dict | None = key_dep):
        m: ServedLM = lookup(body.model, (ServedLM,), "chat completions need a language model")
        messages = _messages(body.messages)
        if messages[-1]["role"] == "assistant":
            raise APIError(400, "the last message is the assistant's; end with a user message",
                           param="messages")
        try:
            prompt = m.chat_prompt(messages)
        except GoldmineError as e:
            raise APIError(400, str(e), param="messages") from None
        except Exception as e:  # a Hugging Face template that rejects the conversation
            raise APIError(400, f"the model's chat template rejected the messages: {e}",
                           param="messages") from None
        max_tokens = body.max_completion_tokens or body.max_tokens
        params = sampling(body, m, len(prompt), m.chat_stop_ids(), max_tokens)
        stops = _stops(body.stop)
        rid, created = "chatcmpl-" + secrets.token_hex(12), int(time.time())
        gen = run(m, prompt, params, stops)

        async def finish(req, answer: str) -> dict:
            usage = {"prompt_tokens": len(prompt), "completion_tokens": len(req.tokens),
                     "total_tokens": len(prompt) + len(req.tokens)}
            await record(key, m.name, len(prompt), len(req.tokens))
            if store is not None and log_conversations:
                await asyncio.to_thread(store.save_response, rid, m.name, key, messages, answer)
            return usage

        if not body.stream:
            req, reason, answer = await collect(gen, request)
            usage = await finish(req, answer)
            return {"id": rid, "object": "chat.completion", "created": created, "model": m.name,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": answer},
                                 "finish_reason": reason, "logprobs": None}],
                    "usage": usage}
        include_usage = bool(body.stream_options and body.stream_options.include_usage)

        async def events():
            base = {"id": rid, "object": "chat.completion.chunk", "created": created,
                    "model": m.name}
            delta = delta_event(base, "delta")
            yield sse({**base, "choices": [{"index": 0, "delta": {"role": "assistant",
                                                                  "content": ""},
                                            "finish_reason": None, "logprobs": None}]})
            async for kind, value in gen:
                if kind == "delta":
                    yield delta(value)
                else:
                    req, reason, answer = value
                    yield sse({**base, "choices": [{"index": 0, "delta": {},
                                                    "finish_reason": reason, "logprobs": None}]})
                    usage = await finish(req, answer)
                    if include_usage:
                        yield sse({**base, "choices": [], "usage": usage})
            yield b"data: [DONE]\n\n"
        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Request-Id": rid})

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request, key: dict | None = key_dep):
        m: ServedLM = lookup(body.model, (ServedLM,), "completions need a language model")
        if isinstance(body.prompt, list):
            vocab = min(m.tokenizer.vocab_size, m.engine.model.config.vocab_size)
            bad = [t for t in body.prompt if not 0 <= t < vocab]
            if bad:
                raise APIError(400, f"prompt: token id {bad[0]} is outside the vocabulary "
                               f"(0..{vocab - 1})", param="prompt")
            prompt = list(body.prompt)
        else:
            if not body.prompt:
                raise APIError(400, "prompt: must not be empty", param="prompt")
            prompt = m.completion_prompt(body.prompt)
        params = sampling(body, m, len(prompt), m.completion_stop_ids(), body.max_tokens)
        stops = _stops(body.stop)
        rid, created = "cmpl-" + secrets.token_hex(12), int(time.time())
        gen = run(m, prompt, params, stops)
        if not body.stream:
            req, reason, text = await collect(gen, request)
            await record(key, m.name, len(prompt), len(req.tokens))
            return {"id": rid, "object": "text_completion", "created": created, "model": m.name,
                    "choices": [{"index": 0, "text": text, "finish_reason": reason,
                                 "logprobs": None}],
                    "usage": {"prompt_tokens": len(prompt), "completion_tokens": len(req.tokens),
                              "total_tokens": len(prompt) + len(req.tokens)}}
        include_usage = bool(body.stream_options and body.stream_options.include_usage)

        async def events():
            base = {"id": rid, "object": "text_completion", "created": created, "model": m.name}
            delta = delta_event(base, "text")
            async for kind, value in gen:
                if kind == "delta":
                    yield delta(value)
                else:
                    req, reason, _ = value
                    yield sse({**base, "choices": [{"index": 0, "text": "",
                                                    "finish_reason": reason, "logprobs": None}]})
                    await record(key, m.name, len(prompt), len(req.tokens))
                    if include_usage:
                        yield sse({**base, "choices": [], "usage": {
                            "prompt_tokens": len(prompt), "completion_tokens": len(req.tokens),
                            "total_tokens": len(prompt) + len(req.tokens)}})
            yield b"data: [DONE]\n\n"
        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    @app.post("/v1/embeddings")
    async def embeddings(body: EmbeddingRequest, key: dict | None = key_dep):
        m: ServedEncoder = lookup(body.model, (ServedEncoder,), "embeddings need an encoder")
        texts = [body.input] if isinstance(body.input, str) else body.input
        vectors, tokens = await asyncio.to_thread(m.embed, texts)
        if body.encoding_format == "base64":
            vectors = [_base64_floats(v) for v in vectors]
        await record(key, m.name, tokens, 0)
        return {"object": "list", "model": m.name,
                "data": [{"object": "embedding", "index": i, "embedding": v}
                         for i, v in enumerate(vectors)],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    @app.post("/v1/classify")
    async def classify(body: ClassifyRequest, key: dict | None = key_dep):
        m: ServedClassifier = lookup(body.model, (ServedClassifier,),
                                     "/v1/classify needs a fine-tuned classifier")
        given = [f for f in ("input", "image", "images") if getattr(body, f) is not None]
        if len(given) != 1:
            raise APIError(400, "give one of input (texts), image or images (base64-encoded "
                           "images)" + (f", not {' and '.join(given)}" if given else ""),
                           param=given[1] if given else "input")
        if m.inputs == "image":
            if given[0] == "input":
                raise APIError(400, f"model {m.name!r} classifies images; send them "
                               "base64-encoded in `image` (or a list in `images`), not text "
                               "in `input`", param="input")
            encoded = [body.image] if body.image is not None else body.images
            pixels, seen = await asyncio.to_thread(_decode_images, m, encoded, given[0])
            rows, tokens = await asyncio.to_thread(m.classify, pixels)
            await record(key, m.name, tokens, 0)
            return {"object": "list", "model": m.name, "data": rows, "images": seen,
                    "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
        if given[0] != "input":
            raise APIError(400, f"model {m.name!r} classifies text; send it in `input`",
                           param=given[0])
        texts = [body.input] if isinstance(body.input, str) else body.input
        rows, tokens = await asyncio.to_thread(m.classify, texts)
        await record(key, m.name, tokens, 0)
        return {"object": "list", "model": m.name, "data": rows,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    @app.post("/v1/feedback")
    async def feedback(body: FeedbackRequest, key: dict | None = key_dep):
        if store is None:
            raise APIError(400, "this server keeps no feedback (started without a database)")
        from goldmine.serve.store import UnknownResponse

        try:
            row = await asyncio.to_thread(store.add_feedback, body.response_id, body.rating,
                                          body.correction)
        except UnknownResponse:
            raise APIError(404, f"no answer with id {body.response_id!r} was recorded (the "
                           "server logs conversations unless started with "
                           "--no-log-conversations)", "not_found_error", "response_id") from None
        except GoldmineError as e:
            raise APIError(400, str(e)) from None
        return {"object": "feedback", **row}

    # -- the business plan (the playground's plan page; `goldmine cost plan` in the CLI) ---------
    @app.get("/v1/cost/plan/example")
    async def plan_example(key: dict | None = key_dep):
        return _example_plan()

    @app.post("/v1/cost/plan")
    async def cost_plan(body: Annotated[dict[str, Any], Body(
            description="a business plan (the fields of `goldmine cost plan`'s YAML), optionally "
                        "with serving_cost_per_1m_tokens and training_cost beside it",
            examples=[_example_plan()])], key: dict | None = key_dep):
        # quick (milliseconds), but pure Python: a thread keeps the event loop serving
        return await asyncio.to_thread(_run_plan, body)

    return app


def _example_plan() -> dict:
    import yaml

    from goldmine.cost.plan import EXAMPLE_PLAN

    return yaml.safe_load(EXAMPLE_PLAN.read_text(encoding="utf-8"))


def _run_plan(body: dict) -> dict:
    """The same calculation as `goldmine cost plan`; a bad plan is a 400 naming the field."""
    from goldmine.cost.plan import plan_from_request

    try:
        if _has_surrogate(body):  # the plan's name comes back in the JSON answer
            raise APIError(400, "text must be valid Unicode (it has a lone surrogate)")
        return plan_from_request(body)
    except GoldmineError as e:  # PlanError: e.field is where in the plan ("pricing.per_seat")
        raise APIError(400, str(e), param=getattr(e, "field", None) or None) from None
    except OverflowError:  # an integer past a float's range (math.isfinite cannot take it)
        raise APIError(400, "request: a number is too large (the largest is about 1.8e308)"
                       ) from None
    except RecursionError:  # a value nested thousands deep, quoted in an error message
        raise APIError(400, "request: a value is nested too deeply") from None


def _messages(messages: list[Message]) -> list[dict[str, str]]:
    out = []
    for i, msg in enumerate(messages):
        content = msg.content if isinstance(msg.content, str) else "".join(
            p.text for p in msg.content)
        role = "system" if msg.role == "developer" else msg.role
        if not content.strip() and role != "assistant":
            raise APIError(400, f"messages[{i}].content: must not be empty",
                           param=f"messages.{i}.content")
        out.append({"role": role, "content": content})
    return out


def _has_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return not value.isascii() and any("\ud800" <= c <= "\udfff" for c in value)
    if isinstance(value, dict):
        return any(_has_surrogate(k) or _has_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_surrogate(v) for v in value)
    return False


def _decode_images(m: ServedClassifier, encoded: list[str], field: str
                   ) -> tuple[list, dict[str, Any]]:
    """Base64 images (or data: URLs) -> the model's (C, H, W) pixel arrays, and what was done to
    them ({"count", "resized", "converted", "size", "mode"}). A 400 naming the field (`image`,
    `images.3`) for bad base64 or a file Pillow cannot read."""
    import base64
    import binascii
    import re

    from goldmine.data.images import open_image, to_array

    clf = m.classifier
    out, resized, converted = [], 0, 0
    for i, text in enumerate(encoded):
        param = field if field == "image" else f"{field}.{i}"
        if text.startswith("data:"):
            head, comma, text = text.partition(",")
            url = r"data:[\w.+/-]*(;[\w.+-]+=[\w.+-]+)*;base64"
            if not comma or not re.fullmatch(url, head):
                raise APIError(400, f"{param}: a data: URL must be data:image/...;base64,DATA",
                               param=param)
        try:
            raw = base64.b64decode("".join(text.split()), validate=True)
        except (binascii.Error, ValueError):
            raise APIError(400, f"{param}: not valid base64", param=param) from None
        try:
            img = open_image(raw, param, max_pixels=MAX_IMAGE_PIXELS)
            pixels, r, c = to_array(img, clf.size, clf.mode)
        except GoldmineError as e:
            raise APIError(400, str(e), param=param) from None
        out.append(pixels)
        resized += r
        converted += c
    return out, {"count": len(out), "resized": resized, "converted": converted,
                 "size": f"{clf.size[1]}x{clf.size[0]}", "mode": clf.mode}


def _base64_floats(vector: list[float]) -> str:
    """An embedding as OpenAI sends it for encoding_format=base64: little-endian float32."""
    import base64
    import struct

    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def _printable(text: str) -> str:
    """Text that encodes as UTF-8 (an error message may quote a request's lone surrogate)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _stops(stop: str | list[str] | None) -> list[str]:
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    if any(not s for s in stops):
        raise APIError(400, "stop: stop strings must not be empty", param="stop")
    return stops


def _version() -> str:
    from goldmine import __version__

    return __version__
