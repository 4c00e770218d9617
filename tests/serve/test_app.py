"""The HTTP API against a live server (httpx): OpenAI shapes, streaming, stop strings, seeds,
errors, keys and limits, usage, feedback, metrics, and cancellation of abandoned streams."""

from __future__ import annotations

import base64
import json
import math
import struct
import threading
import time

import httpx
import pytest

from goldmine.serve.engine import Sampling

HI = [{"role": "user", "content": "Hello, how do I reset my password?"}]


# -- helpers -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def client(live_server):
    with httpx.Client(base_url=live_server.url, timeout=60,
                      headers={"Authorization": f"Bearer {live_server.key}"}) as c:
        yield c


def error_of(r: httpx.Response, status: int, code: str | None = None,
             type_: str | None = None, param: str | None = None) -> dict:
    """The OpenAI error object of a response with this status (and code, type, param)."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"}, err
    assert isinstance(err["message"], str) and err["message"]
    assert isinstance(err["type"], str)
    if code is not None:
        assert err["code"] == code, err
    if type_ is not None:
        assert err["type"] == type_, err
    if param is not None:
        assert err["param"] == param, err
    return err


def events(r: httpx.Response) -> list:
    """The parsed `data:` events of a server-sent event stream; '[DONE]' as the string."""
    assert r.status_code == 200, r.read()
    assert r.headers["content-type"].startswith("text/event-stream")
    out = []
    for line in r.iter_lines():
        if not line:
            continue
        assert line.startswith("data: "), line
        data = line[len("data: "):]
        out.append(data if data == "[DONE]" else json.loads(data))
    return out


def stream(client, path: str, body: dict) -> list:
    with client.stream("POST", path, json={**body, "stream": True}) as r:
        return events(r)


def chat(client, messages=HI, **kw) -> dict:
    r = client.post("/v1/chat/completions", json={"model": "chat", "messages": messages, **kw})
    assert r.status_code == 200, r.text
    return r.json()


def complete(client, prompt="The order", **kw) -> dict:
    r = client.post("/v1/completions", json={"model": "gpt", "prompt": prompt, **kw})
    assert r.status_code == 200, r.text
    return r.json()


def wait_idle(engine, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if engine.batch_size == 0 and engine.queue_depth == 0:
            return True
        time.sleep(0.05)
    return False


# -- public endpoints and models ---------------------------------------------------------------
def test_health_and_page_need_no_key(live_server):
    r = httpx.get(live_server.url + "/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "models": list(live_server.models)}
    r = httpx.get(live_server.url + "/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")


def test_models_listing(client, live_server):
    r = client.get("/v1/models")
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "list"
    by_id = {m["id"]: m for m in body["data"]}
    assert set(by_id) == {"chat", "gpt", "sentiment", "minilm"}
    for m in body["data"]:
        assert m["object"] == "model" and m["owned_by"] == "goldmine"
        assert isinstance(m["created"], int) and m["created"] > 0
    assert by_id["chat"]["kind"] == "chat"
    assert by_id["gpt"]["kind"] == "completion"
    assert by_id["minilm"]["kind"] == "embedding"
    assert by_id["sentiment"]["kind"] == "classify"
    assert by_id["sentiment"]["labels"] == ["negative", "neutral", "positive"]
    assert by_id["chat"]["context_length"] == 256


# -- chat --------------------------------------------------------------------------------------
def test_chat_shape_and_usage(client, live_server):
    m = live_server.models["chat"]
    body = chat(client, max_tokens=12, temperature=0)
    assert body["id"].startswith("chatcmpl-")
    assert body["object"] == "chat.completion"
    assert body["model"] == "chat"
    assert isinstance(body["created"], int)
    [choice] = body["choices"]
    assert choice["index"] == 0
    assert choice["message"]["role"] == "assistant"
    assert isinstance(choice["message"]["content"], str)
    assert choice["finish_reason"] in ("stop", "length")
    # the same greedy generation straight from the engine: the usage counts its tokens
    prompt = m.chat_prompt([{"role": "user", "content": HI[0]["content"]}])
    ids = m.engine.generate(prompt, Sampling(max_tokens=12, temperature=0.0,
                                             stop_ids=m.chat_stop_ids()))
    assert choice["message"]["content"] == m.decode(ids).rstrip("\ufffd")
    assert body["usage"] == {"prompt_tokens": len(prompt), "completion_tokens": len(ids),
                             "total_tokens": len(prompt) + len(ids)}
    assert choice["finish_reason"] == ("length" if len(ids) == 12 else "stop")


def test_chat_streaming_matches_greedy(client):
    req = {"model": "chat", "messages": HI, "max_tokens": 24, "temperature": 0}
    whole = chat(client, **{k: v for k, v in req.items() if k not in ("model", "messages")})
    evs = stream(client, "/v1/chat/completions", req)
    assert evs[-1] == "[DONE]" and "[DONE]" not in evs[:-1]
    chunks = evs[:-1]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert all(c["model"] == "chat" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1 and chunks[0]["id"].startswith("chatcmpl-")
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert not any("usage" in c for c in chunks)          # not asked for
    *deltas, last = chunks
    assert last["choices"][0]["delta"] == {}
    assert last["choices"][0]["finish_reason"] == whole["choices"][0]["finish_reason"]
    assert all(c["choices"][0]["finish_reason"] is None for c in deltas)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in deltas)
    assert text == whole["choices"][0]["message"]["content"]

    # with include_usage: one more chunk, no choices, the usage of the non-streaming call
    evs = stream(client, "/v1/chat/completions",
                 {**req, "stream_options": {"include_usage": True}})
    assert evs[-1] == "[DONE]"
    usage_chunk = evs[-2]
    assert usage_chunk["choices"] == [] and usage_chunk["usage"] == whole["usage"]
    assert sum("usage" in c for c in evs[:-1]) == 1
    assert evs[-3]["choices"][0]["finish_reason"] == whole["choices"][0]["finish_reason"]


# -- completions -------------------------------------------------------------------------------
def test_completions_text_and_token_ids(client, live_server):
    m = live_server.models["gpt"]
    body = complete(client, "The order", max_tokens=10, temperature=0)
    assert body["id"].startswith("cmpl-")
    assert body["object"] == "text_completion" and body["model"] == "gpt"
    [choice] = body["choices"]
    assert isinstance(choice["text"], str) and choice["finish_reason"] in ("stop", "length")
    ids = m.completion_prompt("The order")
    assert body["usage"]["prompt_tokens"] == len(ids)
    assert body["usage"]["total_tokens"] == len(ids) + body["usage"]["completion_tokens"]
    assert 0 <= body["usage"]["completion_tokens"] <= 10

    by_ids = complete(client, ids, max_tokens=10, temperature=0)
    assert by_ids["choices"][0]["text"] == choice["text"]
    assert by_ids["usage"] == body["usage"]

    evs = stream(client, "/v1/completions", {"model": "gpt", "prompt": ids, "max_tokens": 10,
                                             "temperature": 0})
    assert evs[-1] == "[DONE]"
    assert "".join(c["choices"][0]["text"] for c in evs[:-1]) == choice["text"]
    assert evs[-2]["choices"][0]["finish_reason"] == choice["finish_reason"]

    r = client.post("/v1/completions", json={"model": "gpt", "prompt": [0, 10**6]})
    error_of(r, 400, param="prompt")
    r = client.post("/v1/completions", json={"model": "gpt", "prompt": ""})
    error_of(r, 400, param="prompt")


@pytest.mark.parametrize("prompt", ["The refund", "Where is my order?"])
def test_streamed_text_equals_whole_text_at_every_length(client, prompt):
    """Cut at any max_tokens (often inside a multi-byte character of the byte-level BPE), the
    streamed deltas add up to the non-streamed text."""
    for n in range(1, 13):
        req = {"model": "gpt", "prompt": prompt, "max_tokens": n, "temperature": 0}
        whole = complete(client, **{k: v for k, v in req.items() if k != "model"})
        evs = stream(client, "/v1/completions", req)
        assert "".join(c["choices"][0]["text"] for c in evs[:-1]) == \
            whole["choices"][0]["text"], n
        req = {"model": "chat", "messages": [{"role": "user", "content": prompt}],
               "max_tokens": n, "temperature": 0}
        whole = chat(client, req["messages"], max_tokens=n, temperature=0)
        evs = stream(client, "/v1/chat/completions", req)
        assert "".join(c["choices"][0]["delta"].get("content", "") for c in evs[1:-2]) == \
            whole["choices"][0]["message"]["content"], n


def _stop_substring(text: str) -> tuple[str, int] | None:
    """A 3-character piece of `text` (its first occurrence past the start), clean of
    replacement characters, to use as a stop string."""
    for i in range(2, len(text) - 3):
        s = text[i:i + 3]
        if s.strip() and "\ufffd" not in text[:i + 3] and text.find(s) == i:
            return s, i
    return None


@pytest.mark.parametrize("endpoint", ["chat", "completions"])
def test_stop_strings(client, endpoint):
    def ask(stream_: bool, **kw) -> tuple[str, str]:
        if endpoint == "chat":
            req = {"model": "chat", "messages": HI, "max_tokens": 48, "temperature": 0, **kw}
            if not stream_:
                c = chat(client, **{k: v for k, v in req.items() if k not in ("model",
                                                                              "messages")})
                return c["choices"][0]["message"]["content"], c["choices"][0]["finish_reason"]
            evs = stream(client, "/v1/chat/completions", req)[:-1]
            text = "".join(c["choices"][0]["delta"].get("content", "") for c in evs)
            return text, evs[-1]["choices"][0]["finish_reason"]
        req = {"model": "gpt", "prompt": "The order", "max_tokens": 48, "temperature": 0, **kw}
        if not stream_:
            c = complete(client, **{k: v for k, v in req.items() if k != "model"})
            return c["choices"][0]["text"], c["choices"][0]["finish_reason"]
        evs = stream(client, "/v1/completions", req)[:-1]
        return "".join(c["choices"][0]["text"] for c in evs), evs[-1]["choices"][0][
            "finish_reason"]

    full, _ = ask(False)
    found = _stop_substring(full)
    if found is None:
        pytest.skip(f"the greedy answer {full!r} is too short to cut")
    stop, at = found
    for stream_ in (False, True):
        text, reason = ask(stream_, stop=stop)
        assert (text, reason) == (full[:at], "stop"), (stop, full)
        text, reason = ask(stream_, stop=["\x00never", stop])
        assert (text, reason) == (full[:at], "stop")


def test_seed_reproducible_at_temperature_1(client):
    def sample(seed: int, stream_: bool = False) -> str:
        req = {"model": "gpt", "prompt": "The order", "max_tokens": 16, "temperature": 1,
               "seed": seed}
        if stream_:
            evs = stream(client, "/v1/completions", req)
            return "".join(c["choices"][0]["text"] for c in evs[:-1])
        return complete(client, **{k: v for k, v in req.items() if k != "model"})[
            "choices"][0]["text"]

    first = sample(1234)
    assert sample(1234) == first
    assert sample(1234, stream_=True) == first
    others = {sample(seed) for seed in range(1, 6)}
    assert others - {first}, "five other seeds all gave the same text"


# -- request errors ----------------------------------------------------------------------------
def test_max_tokens_out_of_range(client, live_server):
    prompt = live_server.models["gpt"].completion_prompt("The order")
    room = 256 - len(prompt)
    r = client.post("/v1/completions", json={"model": "gpt", "prompt": prompt,
                                             "max_tokens": room + 1})
    error_of(r, 400, code="context_length_exceeded", param="max_tokens")
    r = client.post("/v1/chat/completions", json={"model": "chat", "messages": HI,
                                                  "max_tokens": 10**6})
    error_of(r, 400, code="context_length_exceeded", param="max_tokens")
    r = client.post("/v1/chat/completions", json={"model": "chat", "messages": HI,
                                                  "max_completion_tokens": 300})
    error_of(r, 400, code="context_length_exceeded")
    for bad in (0, -3):
        r = client.post("/v1/chat/completions", json={"model": "chat", "messages": HI,
                                                      "max_tokens": bad})
        error_of(r, 400, param="max_tokens")
    # exactly the room left is fine
    body = complete(client, prompt, max_tokens=room, temperature=0)
    assert body["usage"]["completion_tokens"] <= room


def test_prompt_longer_than_context(client):
    long = "order refund password " * 200
    r = client.post("/v1/chat/completions", json={"model": "chat", "messages": [
        {"role": "user", "content": long}]})
    error_of(r, 400, code="context_length_exceeded")
    r = client.post("/v1/completions", json={"model": "gpt", "prompt": long})
    error_of(r, 400, code="context_length_exceeded")
    r = client.post("/v1/completions", json={"model": "gpt", "prompt": [5] * 256})
    error_of(r, 400, code="context_length_exceeded")
    r = client.post("/v1/chat/completions", json={"model": "chat", "messages": [
        {"role": "user", "content": long}], "stream": True})
    error_of(r, 400, code="context_length_exceeded")


@pytest.mark.parametrize("path,body", [
    ("/v1/chat/completions", {"messages": HI}),
    ("/v1/completions", {"prompt": "hi"}),
    ("/v1/embeddings", {"input": "hi"}),
    ("/v1/classify", {"input": "hi"}),
])
def test_unknown_model(client, path, body):
    r = client.post(path, json={"model": "no-such-model", **body})
    error_of(r, 404, code="model_not_found", type_="not_found_error", param="model")


@pytest.mark.parametrize("path,body", [
    ("/v1/embeddings", {"model": "chat", "input": "hi"}),
    ("/v1/classify", {"model": "chat", "input": "hi"}),
    ("/v1/chat/completions", {"model": "minilm", "messages": HI}),
    ("/v1/completions", {"model": "sentiment", "prompt": "hi"}),
    ("/v1/embeddings", {"model": "sentiment", "input": "hi"}),
])
def test_wrong_kind_of_model(client, path, body):
    error_of(client.post(path, json=body), 400, code="model_not_supported", param="model")


@pytest.mark.parametrize("messages", [
    [],
    [{"role": "user", "content": ""}],
    [{"role": "user", "content": "   \n"}],
    [{"role": "user", "content": []}],
    [{"role": "system", "content": "be brief"}, {"role": "user", "content": ""}],
    [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
])
def test_empty_messages_or_content(client, messages):
    r = client.post("/v1/chat/completions", json={"model": "chat", "messages": messages})
    error_of(r, 400, type_="invalid_request_error")


@pytest.mark.parametrize("raw", [b'{"model": "chat", "messages": [', b"not json", b"",
                                 b"[1, 2]", b'"chat"', b"null", b"\xff\xfe"])
def test_malformed_json(client, raw):
    r = client.post("/v1/chat/completions", content=raw,
                    headers={"Content-Type": "application/json"})
    error_of(r, 400, type_="invalid_request_error")


@pytest.mark.parametrize("path,body,param", [
    ("/v1/chat/completions", {"model": "chat", "messages": "hi"}, "messages"),
    ("/v1/chat/completions", {"model": 3, "messages": HI}, "model"),
    ("/v1/chat/completions", {"model": "chat", "messages": HI, "max_tokens": "many"},
     "max_tokens"),
    ("/v1/chat/completions", {"model": "chat", "messages": HI, "temperature": [1]},
     "temperature"),
    ("/v1/chat/completions", {"model": "chat", "messages": HI, "temperature": 3},
     "temperature"),
    ("/v1/chat/completions", {"model": "chat", "messages": HI, "top_p": 0}, "top_p"),
    ("/v1/chat/completions", {"model": "chat", "messages": [{"role": "robot",
                                                             "content": "hi"}]},
     "messages.0.role"),
    ("/v1/chat/completions", {"model": "chat", "messages": [{"role": "user", "content": 5}]},
     None),
    ("/v1/chat/completions", {"model": "chat", "messages": HI, "stop": ["a"] * 5}, "stop"),
    ("/v1/chat/completions", {"model": "chat", "messages": HI, "stop": ""}, "stop"),
    ("/v1/completions", {"model": "gpt", "prompt": {"text": "hi"}}, None),
    ("/v1/completions", {"model": "gpt", "prompt": []}, None),
    ("/v1/embeddings", {"model": "minilm", "input": 7}, None),
    ("/v1/embeddings", {"model": "minilm", "input": []}, None),
    ("/v1/classify", {"model": "sentiment", "input": [1, 2]}, None),
    ("/v1/feedback", {"response_id": "x", "rating": "good"}, "rating"),
])
def test_wrong_types(client, path, body, param):
    err = error_of(client.post(path, json=body), 400, type_="invalid_request_error")
    if param is not None:
        assert err["param"] == param, err


@pytest.mark.parametrize("extra,param", [
    ({"logprobs": True}, "logprobs"),
    ({"n": 2}, "n"),
    ({"presence_penalty": 0.5}, "presence_penalty"),
    ({"frequency_penalty": -1}, "frequency_penalty"),
    ({"tools": [{"type": "function"}]}, "tools"),
    ({"no_such_field": 1}, "no_such_field"),
])
def test_unsupported_parameters(client, extra, param):
    r = client.post("/v1/chat/completions", json={"model": "chat", "messages": HI, **extra})
    error_of(r, 400, param=param)


def test_unsupported_completion_parameters(client):
    r = client.post("/v1/completions", json={"model": "gpt", "prompt": "hi", "echo": True})
    error_of(r, 400, param="echo")
    r = client.post("/v1/completions", json={"model": "gpt", "prompt": "hi", "suffix": "x"})
    error_of(r, 400, param="suffix")
    r = client.post("/v1/embeddings", json={"model": "minilm", "input": "hi",
                                            "encoding_format": "int8"})
    error_of(r, 400, param="encoding_format")


def test_odd_but_valid_sampling_is_served(client):
    """Extreme values inside the schema's ranges are served (not a 500, not a dead engine)."""
    for extra in ({"temperature": 1e-300}, {"temperature": 2, "top_p": 1e-300},
                  {"top_k": 10**20, "temperature": 1}, {"seed": -(10**30), "temperature": 1},
                  {"seed": 10**30, "temperature": 0.5, "top_k": 1}):
        body = chat(client, max_tokens=4, **extra)
        assert body["choices"][0]["finish_reason"] in ("stop", "length"), extra
        assert 0 <= body["usage"]["completion_tokens"] <= 4
    body = chat(client, messages=[{"role": "user", "content": "\x00\x01 \u202e \U0001f600"}],
                max_tokens=4)
    assert body["choices"][0]["message"]["role"] == "assistant"
    r = client.post("/v1/chat/completions", json={"model": "chat", "messages": [
        {"role": "developer", "content": "be nice"},
        {"role": "user", "content": [{"type": "text", "text": "hi "},
                                     {"type": "text", "text": "there"}]}], "max_tokens": 4})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("path,raw", [
    ("/v1/chat/completions",
     '{"model": "chat", "messages": [{"role": "user", "content": "a\\ud800b"}]}'),
    ("/v1/completions", '{"model": "gpt", "prompt": "\\udfff"}'),
    ("/v1/embeddings", '{"model": "minilm", "input": ["ok", "\\ud83d"]}'),
    ("/v1/classify", '{"model": "sentiment", "input": "\\ud800"}'),
    ("/v1/feedback", '{"response_id": "\\ud800", "rating": 1}'),
    ("/v1/chat/completions", '{"model": "chat", "messages": [], "\\ud800": 1}'),
])
def test_lone_surrogates_are_rejected(client, path, raw):
    r = client.post(path, content=raw.encode(), headers={"Content-Type": "application/json"})
    error_of(r, 400)


# -- keys and limits ---------------------------------------------------------------------------
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer gm-wrong"},
                                     {"Authorization": "Basic abc"},
                                     {"Authorization": "Bearer"}])
def test_missing_or_wrong_key(live_server, headers):
    url = live_server.url
    for r in (httpx.get(url + "/v1/models", headers=headers),
              httpx.post(url + "/v1/chat/completions", headers=headers,
                         json={"model": "chat", "messages": HI, "max_tokens": 2}),
              httpx.post(url + "/v1/embeddings", headers=headers,
                         json={"model": "minilm", "input": "hi"}),
              httpx.post(url + "/v1/feedback", headers=headers,
                         json={"response_id": "x", "rating": 1})):
        error_of(r, 401, code="invalid_api_key", type_="authentication_error")


def test_revoked_key(live_server):
    key, _ = live_server.store.create_key("revoked-test")
    h = {"Authorization": f"Bearer {key}"}
    assert httpx.get(live_server.url + "/v1/models", headers=h).status_code == 200
    live_server.store.revoke_key("revoked-test")
    error_of(httpx.get(live_server.url + "/v1/models", headers=h), 401)


def test_rate_limit(live_server):
    key, _ = live_server.store.create_key("rpm-test", rpm=2)
    h = {"Authorization": f"Bearer {key}"}
    for _ in range(2):
        assert httpx.get(live_server.url + "/v1/models", headers=h).status_code == 200
    r = httpx.post(live_server.url + "/v1/chat/completions", headers=h,
                   json={"model": "chat", "messages": HI, "max_tokens": 2})
    error_of(r, 429, code="rate_limit_exceeded", type_="rate_limit_error")
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    # other keys are not limited
    r = httpx.get(live_server.url + "/v1/models",
                  headers={"Authorization": f"Bearer {live_server.key}"})
    assert r.status_code == 200


def test_tokens_per_day_quota(live_server):
    key, _ = live_server.store.create_key("quota-test", tokens_per_day=5)
    h = {"Authorization": f"Bearer {key}"}
    r = httpx.post(live_server.url + "/v1/chat/completions", headers=h,
                   json={"model": "chat", "messages": HI, "max_tokens": 16})
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["prompt_tokens"] >= 5
    r = httpx.post(live_server.url + "/v1/chat/completions", headers=h,
                   json={"model": "chat", "messages": HI, "max_tokens": 2})
    error_of(r, 429, type_="rate_limit_error")
    assert 1 <= int(r.headers["Retry-After"]) <= 86400
    error_of(httpx.post(live_server.url + "/v1/embeddings", headers=h,
                        json={"model": "minilm", "input": "hi"}), 429)


def test_usage_recorded_per_key(live_server):
    key, _ = live_server.store.create_key("usage-test")
    h = {"Authorization": f"Bearer {key}"}
    usages = []
    for stream_ in (False, True):
        req = {"model": "chat", "messages": HI, "max_tokens": 6, "stream": stream_}
        if stream_:
            req["stream_options"] = {"include_usage": True}
            with httpx.stream("POST", live_server.url + "/v1/chat/completions", headers=h,
                              json=req) as r:
                usages.append(events(r)[-2]["usage"])
        else:
            r = httpx.post(live_server.url + "/v1/chat/completions", headers=h, json=req)
            usages.append(r.json()["usage"])
    r = httpx.post(live_server.url + "/v1/embeddings", headers=h,
                   json={"model": "minilm", "input": ["one", "two"]})
    emb_tokens = r.json()["usage"]["prompt_tokens"]
    rows = {row["model"]: row for row in live_server.store.usage(key="usage-test")}
    assert set(rows) == {"chat", "minilm"}
    assert rows["chat"]["requests"] == 2
    assert rows["chat"]["prompt_tokens"] == sum(u["prompt_tokens"] for u in usages)
    assert rows["chat"]["completion_tokens"] == sum(u["completion_tokens"] for u in usages)
    assert rows["minilm"]["requests"] == 1
    assert rows["minilm"]["prompt_tokens"] == emb_tokens > 0
    assert rows["minilm"]["completion_tokens"] == 0
    assert all(row["day"] == time.strftime("%Y-%m-%d", time.gmtime()) for row in rows.values())


# -- classify, embeddings, feedback ------------------------------------------------------------
def test_classify(client):
    r = client.post("/v1/classify", json={"model": "sentiment",
                                          "input": ["great product", "awful, broke in a day"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list" and body["model"] == "sentiment"
    assert [row["index"] for row in body["data"]] == [0, 1]
    for row in body["data"]:
        probs = row["probabilities"]
        assert set(probs) == {"negative", "neutral", "positive"}
        assert math.isclose(sum(probs.values()), 1.0, abs_tol=1e-5)
        assert all(0 <= p <= 1 for p in probs.values())
        assert row["label"] == max(probs, key=probs.get)
    assert body["usage"]["prompt_tokens"] > 0
    one = client.post("/v1/classify", json={"model": "sentiment", "input": "great product"})
    assert one.json()["data"][0]["probabilities"] == pytest.approx(
        body["data"][0]["probabilities"], abs=1e-5)


def test_embeddings(client):
    texts = ["the refund arrived", "my password does not work", "the refund arrived"]
    r = client.post("/v1/embeddings", json={"model": "minilm", "input": texts})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list" and body["model"] == "minilm"
    vecs = [d["embedding"] for d in body["data"]]
    assert [d["index"] for d in body["data"]] == [0, 1, 2]
    assert all(d["object"] == "embedding" for d in body["data"])
    assert all(len(v) == 384 for v in vecs)
    for v in vecs:
        assert math.isclose(math.sqrt(sum(x * x for x in v)), 1.0, abs_tol=1e-4)
    assert vecs[0] == pytest.approx(vecs[2], abs=1e-5)
    assert vecs[0] != pytest.approx(vecs[1], abs=1e-3)
    again = client.post("/v1/embeddings", json={"model": "minilm", "input": texts[0]})
    assert again.json()["data"][0]["embedding"] == pytest.approx(vecs[0], abs=1e-5)
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 0
    # base64 (what the openai client asks for): the same vectors as little-endian float32
    r = client.post("/v1/embeddings", json={"model": "minilm", "input": texts,
                                            "encoding_format": "base64"})
    assert r.status_code == 200, r.text
    for d, v in zip(r.json()["data"], vecs):
        raw = base64.b64decode(d["embedding"])
        assert len(raw) == 4 * 384
        assert list(struct.unpack("<384f", raw)) == pytest.approx(v, abs=1e-6)


def test_feedback(client, live_server):
    answer = chat(client, max_tokens=4)
    r = client.post("/v1/feedback", json={"response_id": answer["id"], "rating": 1,
                                          "correction": "Click 'forgot password'."})
    assert r.status_code == 200, r.text
    assert r.json()["object"] == "feedback"
    assert r.json()["response_id"] == answer["id"] and r.json()["rating"] == 1
    stored = {f["response_id"]: f for f in live_server.store.feedback()}
    assert stored[answer["id"]]["rating"] == 1
    assert stored[answer["id"]]["correction"] == "Click 'forgot password'."
    assert stored[answer["id"]]["answer"] == answer["choices"][0]["message"]["content"]
    assert stored[answer["id"]]["messages"] == HI

    # a streamed answer's id works too
    rid = stream(client, "/v1/chat/completions", {"model": "chat", "messages": HI,
                                                  "max_tokens": 3})[0]["id"]
    r = client.post("/v1/feedback", json={"response_id": rid, "rating": -1})
    assert r.status_code == 200, r.text
    assert {f["response_id"]: f for f in live_server.store.feedback()}[rid]["rating"] == -1

    r = client.post("/v1/feedback", json={"response_id": "chatcmpl-nope", "rating": 1})
    error_of(r, 404, type_="not_found_error", param="response_id")
    for bad in (2, -2, 0.5, None):
        r = client.post("/v1/feedback", json={"response_id": answer["id"], "rating": bad})
        error_of(r, 400, param="rating")


# -- metrics -----------------------------------------------------------------------------------
def test_metrics(client, live_server):
    chat(client, max_tokens=4)
    text = httpx.get(live_server.url + "/metrics").text
    for name in ("goldmine_requests_total", "goldmine_tokens_total",
                 "goldmine_time_to_first_token_seconds", "goldmine_batch_size",
                 "goldmine_queue_depth"):
        assert f"# TYPE {name.removesuffix('_total')}" in text, name
        assert any(line.startswith(name) for line in text.splitlines()), name
    lines = text.splitlines()
    assert any(line.startswith('goldmine_requests_total{path="/v1/chat/completions",'
                               'status="200"}') for line in lines)
    assert any(line.startswith('goldmine_tokens_total{kind="completion",model="chat"}')
               for line in lines)
    assert any(line.startswith('goldmine_time_to_first_token_seconds_count{model="chat"}')
               for line in lines)
    assert any(line.startswith('goldmine_queue_depth{model="chat"}') for line in lines)

    def count(path: str, status: str) -> float:
        for line in httpx.get(live_server.url + "/metrics").text.splitlines():
            if line.startswith(f'goldmine_requests_total{{path="{path}",status="{status}"}}'):
                return float(line.split()[-1])
        return 0.0

    before = count("/v1/chat/completions", "404")
    client.post("/v1/chat/completions", json={"model": "nope", "messages": HI})
    assert count("/v1/chat/completions", "404") == before + 1


# -- disconnects and resilience ----------------------------------------------------------------
def test_abandoned_stream_is_cancelled(client, live_server):
    """A client that goes away mid-stream frees its engine slot: the generation stops early."""
    engine = live_server.models["chat"].engine
    assert wait_idle(engine)
    req = {"model": "chat", "max_tokens": 200, "temperature": 0}
    # a prompt whose greedy answer runs the full 200 tokens (the tiny model rarely stops)
    for content in ("Hello, how do I reset my password?", "Where is my order?", "a b c",
                    "Tell me a long story.", "The the the"):
        messages = [{"role": "user", "content": content}]
        if chat(client, messages, **req)["usage"]["completion_tokens"] == 200:
            break
    else:
        pytest.skip("no greedy answer ran to 200 tokens")
    assert wait_idle(engine)
    before = engine.generated_tokens
    with client.stream("POST", "/v1/chat/completions",
                       json={**req, "messages": messages, "stream": True}) as r:
        assert r.status_code == 200
        lines = r.iter_lines()
        seen = 0
        while seen < 2:
            if next(lines).startswith("data: "):
                seen += 1
    assert wait_idle(engine, 10), "the abandoned request still holds its slot"
    assert engine.generated_tokens - before < 200
    assert engine.batch_size == 0


def test_server_keeps_serving_during_and_after_errors(client, live_server):
    """Bad requests while a stream is running neither disturb it nor the server."""
    result: dict = {}

    def long_stream():
        try:
            result["events"] = stream(client, "/v1/chat/completions", {
                "model": "chat", "messages": HI, "max_tokens": 64, "temperature": 0})
        except Exception as e:  # reported by the assertion below
            result["error"] = e

    t = threading.Thread(target=long_stream)
    t.start()
    bad = [("/v1/chat/completions", b"{"), ("/v1/chat/completions", b'{"model": "x"}'),
           ("/v1/completions", b'{"model": "gpt", "prompt": "hi", "max_tokens": 100000}'),
           ("/v1/embeddings", b'{"model": "chat", "input": "hi"}'),
           ("/v1/classify", b'{"model": "sentiment", "input": []}'),
           ("/v1/feedback", b'{"response_id": "nope", "rating": 1}')]
    for path, raw in bad * 3:
        r = client.post(path, content=raw, headers={"Content-Type": "application/json"})
        assert 400 <= r.status_code < 500, r.text
    t.join(60)
    assert not t.is_alive() and "error" not in result, result.get("error")
    assert result["events"][-1] == "[DONE]"
    assert live_server.models["chat"].engine.error is None
    assert chat(client, max_tokens=4)["choices"][0]["message"]["role"] == "assistant"
    assert httpx.get(live_server.url + "/health").status_code == 200


def test_the_key_is_checked_before_the_body(live_server):
    # OpenAI's order: a request without a valid key learns nothing about its body
    for headers in ({}, {"Authorization": "Bearer gm-wrong"}):
        r = httpx.post(live_server.url + "/v1/chat/completions", headers=headers,
                       json={"model": "chat", "messages": "not a list", "n": 7})
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"


# -- the business plan (the playground's plan page) ---------------------------------------------
# The plan needs no model: the app over none, with keys required, in-process (no server to start).
@pytest.fixture(scope="module")
def plan_app(tmp_path_factory):
    from fastapi.testclient import TestClient

    from goldmine.serve.app import create_app
    from goldmine.serve.store import ServeStore

    store = ServeStore(tmp_path_factory.mktemp("plan-db") / "serve.db")
    key, _ = store.create_key("plan-tests")
    with TestClient(create_app({}, store, auth=True)) as c:
        c.headers["Authorization"] = f"Bearer {key}"
        yield c


def _same_as_cli(api: dict, cli: dict) -> None:
    """The page and `goldmine cost plan` share one calculation: every number is the same (after
    JSON); only where the plan came from differs."""
    cli = json.loads(json.dumps(cli))
    for key in ("inputs", "overrides", "months", "summary", "break_even_month", "payback_month",
                "sensitivity", "tornado", "verdict", "reasons"):
        assert api[key] == cli[key], key
    assert api["source"] == "request" and api["charts"] == [] and api["report"] is None


def test_plan_example_runs_as_the_cli_does(plan_app):
    import yaml

    from goldmine.cost.plan import EXAMPLE_PLAN, run_plan

    r = plan_app.get("/v1/cost/plan/example")
    assert r.status_code == 200, r.text
    example = r.json()
    assert example == yaml.safe_load(EXAMPLE_PLAN.read_text())
    r = plan_app.post("/v1/cost/plan", json=example)
    assert r.status_code == 200, r.text
    cli = run_plan(EXAMPLE_PLAN, charts=False)
    assert r.json()["verdict"] == cli["verdict"]
    _same_as_cli(r.json(), cli)


def test_plan_with_measured_costs_equals_run_plan(plan_app):
    from goldmine.cost.plan import run_plan

    plan = plan_app.get("/v1/cost/plan/example").json()
    plan["pricing"] = {"per_seat": 5, "per_1m_tokens": 2.0}
    plan["horizon_months"] = 12
    r = plan_app.post("/v1/cost/plan", json={**plan, "serving_cost_per_1m_tokens": 0.5,
                                             "training_cost": 25000})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["months"]) == 12
    assert body["overrides"] == {"serving_cost_per_1m_tokens": 0.5, "training_cost": 25000}
    _same_as_cli(body, run_plan(plan, serving_cost_per_1m_tokens=0.5, training_cost=25000,
                                charts=False))


@pytest.mark.parametrize("change,param", [
    ({"pricing": {"per_seat": -5}}, "pricing.per_seat"),
    ({"pricing": {"per_seat": 0}}, "pricing"),
    ({"users": {"start": 50, "growht": 0.1}}, "users.growht"),
    ({"horizon_months": 1000}, "horizon_months"),
    ({"horizon_months": 2.5}, "horizon_months"),
    ({"starting_cash": "lots"}, "starting_cash"),
    ({"starting_cash": True}, "starting_cash"),
    ({"usage": {"input_tokens": 1, "output_tokens": 1}}, "usage.requests_per_user"),
    ({"fixed": {"team": -1}}, "fixed.team"),
    ({"fixed": [1, 2]}, "fixed"),
    ({"serving": {"per_1m_tokens": 0.1, "per_1m_input_tokens": 0.1}},
     "serving.per_1m_input_tokens"),
    ({"training_cost": -1}, "training_cost"),
    ({"users": {"start": 1e300, "growth": 10}, "horizon_months": 120}, "users"),
    ({"colour": "gold"}, "colour"),
])
def test_plan_bad_field_names_it(plan_app, change, param):
    plan = {**plan_app.get("/v1/cost/plan/example").json(), **change}
    err = error_of(plan_app.post("/v1/cost/plan", json=plan), 400, type_="invalid_request_error",
                   param=param)
    assert param in err["message"], err


@pytest.mark.parametrize("raw", [
    b"", b"{", b"not json", b"null", b"[1, 2]", b'"plan"', b"\xff\xfe", b"{}",
    b'{"starting_cash": NaN}', b'{"starting_cash": -Infinity}',
    b'{"starting_cash": 1' + b"0" * 400 + b"}",  # an int no float can hold
    b'{"pricing": {"per_seat": ' + b"[" * 900 + b"]" * 900 + b"}}",
    b"[" * 5000 + b"]" * 5000,
    b'{"name": "a\\ud800b"}',
])
def test_plan_malformed_body(plan_app, raw):
    r = plan_app.post("/v1/cost/plan", content=raw, headers={"Content-Type": "application/json"})
    error_of(r, 400, type_="invalid_request_error")


def test_plan_needs_a_key(plan_app, tmp_path):
    from fastapi.testclient import TestClient

    from goldmine.serve.app import create_app

    plan = plan_app.get("/v1/cost/plan/example").json()
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer gm-wrong"}):
        for r in (plan_app.get("/v1/cost/plan/example", headers=headers),
                  plan_app.post("/v1/cost/plan", json=plan, headers=headers),
                  plan_app.post("/v1/cost/plan", content=b"{", headers=headers)):
            error_of(r, 401, code="invalid_api_key", type_="authentication_error")
    with TestClient(create_app({}, auth=False)) as open_app:  # `goldmine serve --no-auth`
        assert open_app.post("/v1/cost/plan", json=plan).status_code == 200
