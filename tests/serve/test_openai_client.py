"""The official `openai` client against the live server: chat (streaming and not),
completions, embeddings, models, and the errors it raises for OpenAI-style error responses."""

from __future__ import annotations

import math

import openai
import pytest

HI = [{"role": "user", "content": "Where is my order?"}]


@pytest.fixture(scope="module")
def oai(live_server):
    with openai.OpenAI(base_url=live_server.url + "/v1", api_key=live_server.key,
                       max_retries=0, timeout=60) as client:
        yield client


def test_models(oai):
    models = {m.id: m for m in oai.models.list()}
    assert {"chat", "gpt", "sentiment", "minilm"} <= set(models)
    assert all(m.object == "model" and m.owned_by == "goldmine" for m in models.values())
    assert oai.models.list().data[0].created > 0


def test_chat(oai):
    r = oai.chat.completions.create(model="chat", messages=HI, max_tokens=8, temperature=0)
    assert r.id.startswith("chatcmpl-") and r.object == "chat.completion"
    assert r.model == "chat"
    choice = r.choices[0]
    assert choice.message.role == "assistant" and isinstance(choice.message.content, str)
    assert choice.finish_reason in ("stop", "length")
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert 0 <= r.usage.completion_tokens <= 8

    # streaming, greedy: the same text, then the usage chunk that was asked for
    chunks = list(oai.chat.completions.create(
        model="chat", messages=HI, max_tokens=8, temperature=0, stream=True,
        stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == choice.message.content
    finish = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finish[-1] == choice.finish_reason and not any(finish[:-1])
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == r.usage.total_tokens
    assert {c.id for c in chunks} == {chunks[0].id}


def test_chat_stream_with_stop_and_seed(oai):
    kw = dict(model="chat", messages=HI, max_tokens=12, temperature=1, seed=7)
    a = oai.chat.completions.create(**kw).choices[0].message.content
    b = "".join(c.choices[0].delta.content or "" for c in
                oai.chat.completions.create(**kw, stream=True) if c.choices)
    assert a == b


def test_completions(oai, live_server):
    r = oai.completions.create(model="gpt", prompt="The refund", max_tokens=8, temperature=0)
    assert r.id.startswith("cmpl-") and r.object == "text_completion" and r.model == "gpt"
    assert isinstance(r.choices[0].text, str)
    ids = live_server.models["gpt"].completion_prompt("The refund")
    assert r.usage.prompt_tokens == len(ids)
    by_ids = oai.completions.create(model="gpt", prompt=ids, max_tokens=8, temperature=0)
    assert by_ids.choices[0].text == r.choices[0].text
    streamed = "".join(c.choices[0].text for c in oai.completions.create(
        model="gpt", prompt="The refund", max_tokens=8, temperature=0, stream=True)
        if c.choices)
    assert streamed == r.choices[0].text


def test_embeddings(oai):
    r = oai.embeddings.create(model="minilm", input=["refund please", "refund please", "hi"])
    vecs = [d.embedding for d in r.data]
    assert len(vecs) == 3 and all(len(v) == 384 for v in vecs)
    assert all(math.isclose(math.sqrt(sum(x * x for x in v)), 1, abs_tol=1e-4) for v in vecs)
    assert vecs[0] == pytest.approx(vecs[1], abs=1e-5)
    assert r.usage.prompt_tokens > 0
    one = oai.embeddings.create(model="minilm", input="hi")
    assert one.data[0].embedding == pytest.approx(vecs[2], abs=1e-5)


def _error(exc: openai.APIStatusError) -> dict:
    body = exc.body
    # the client hands over the "error" object of the response body
    err = body.get("error", body) if isinstance(body, dict) else None
    assert isinstance(err, dict) and {"message", "type", "param", "code"} <= set(err), body
    return err


def test_bad_requests(oai):
    with pytest.raises(openai.BadRequestError) as e:
        oai.chat.completions.create(model="chat", messages=[], max_tokens=4)
    assert e.value.status_code == 400 and _error(e.value)["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as e:
        oai.chat.completions.create(model="chat", messages=HI, max_tokens=10_000)
    assert _error(e.value)["code"] == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as e:
        oai.chat.completions.create(model="chat", messages=HI, n=2)
    assert _error(e.value)["param"] == "n"
    with pytest.raises(openai.BadRequestError) as e:
        oai.chat.completions.create(model="chat", messages=HI, logprobs=True)
    assert _error(e.value)["param"] == "logprobs"
    with pytest.raises(openai.BadRequestError) as e:
        oai.embeddings.create(model="chat", input="hi")
    assert _error(e.value)["code"] == "model_not_supported"
    with pytest.raises(openai.BadRequestError):
        oai.chat.completions.create(model="chat", messages=HI, stream=True, max_tokens=10_000)


def test_unknown_model(oai):
    with pytest.raises(openai.NotFoundError) as e:
        oai.chat.completions.create(model="gpt-4o", messages=HI)
    assert e.value.status_code == 404
    err = _error(e.value)
    assert err["code"] == "model_not_found" and err["param"] == "model"
    with pytest.raises(openai.NotFoundError):
        oai.embeddings.create(model="text-embedding-3-small", input="hi")


def test_wrong_key(live_server):
    with openai.OpenAI(base_url=live_server.url + "/v1", api_key="gm-not-a-key",
                       max_retries=0) as bad:
        with pytest.raises(openai.AuthenticationError) as e:
            bad.models.list()
        assert e.value.status_code == 401
        assert _error(e.value)["type"] == "authentication_error"
        with pytest.raises(openai.AuthenticationError):
            bad.chat.completions.create(model="chat", messages=HI, max_tokens=2)


def test_rate_limited(live_server):
    key, _ = live_server.store.create_key("openai-rpm", rpm=1)
    with openai.OpenAI(base_url=live_server.url + "/v1", api_key=key, max_retries=0) as c:
        c.chat.completions.create(model="chat", messages=HI, max_tokens=2)
        with pytest.raises(openai.RateLimitError) as e:
            c.chat.completions.create(model="chat", messages=HI, max_tokens=2)
    assert e.value.status_code == 429
    assert int(e.value.response.headers["retry-after"]) >= 1
    assert _error(e.value)["type"] == "rate_limit_error"


def test_still_serving(oai):
    assert oai.chat.completions.create(model="chat", messages=HI, max_tokens=2).choices
