"""Schemathesis against the server's own OpenAPI schema: generated requests (valid and invalid)
to every operation never get a 5xx, and every 4xx is OpenAI's error object.

The server is the real app on a loopback port, built like the live server's but with
max_batch 4 and default_max_tokens 8, to bound the CPU time of generations. The schema's `model`
is any string; most requests get a served model's name instead of a random one (so that the
generation paths are exercised, not only the 404), and some feedback requests a real response
id."""

from __future__ import annotations

import zlib
from types import SimpleNamespace

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

pytestmark = pytest.mark.slow

MODEL_FOR = {"/v1/chat/completions": ("chat", "gpt"), "/v1/completions": ("gpt", "chat"),
             "/v1/embeddings": ("minilm",), "/v1/classify": ("sentiment",)}


@pytest.fixture(scope="module")
def fuzz_server(serve_models):
    with serve_models(max_batch=4, default_max_tokens=8) as server:
        url, key, models = server.url, server.key, server.models
        r = httpx.post(url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                       json={"model": "chat", "messages": [{"role": "user", "content": "hi"}],
                             "max_tokens": 2}, timeout=60)
        assert r.status_code == 200, r.text
        yield SimpleNamespace(url=url, key=key, models=models, response_id=r.json()["id"])
        for m in models.values():   # none of the generated requests broke an engine
            assert getattr(getattr(m, "engine", None), "error", None) is None


def _openapi() -> dict:
    """The app's OpenAPI schema: it depends on the routes and request bodies, not on the models
    served (test_schema_is_the_servers checks that the server serves this very schema). Built at
    import, as `schema.parametrize()` needs it then (schemathesis' lazy `from_fixture` does not
    work with this pytest)."""
    from goldmine.serve.app import create_app

    return create_app({}, auth=False).openapi()


OPENAPI = _openapi()
schema = schemathesis.openapi.from_dict(OPENAPI)


def test_schema_is_the_servers(fuzz_server):
    assert httpx.get(fuzz_server.url + "/openapi.json").json() == OPENAPI
    ops = {(m.upper(), p) for p, item in OPENAPI["paths"].items() for m in item}
    assert ops == {("GET", "/health"), ("GET", "/v1/models"),
                   ("POST", "/v1/chat/completions"), ("POST", "/v1/completions"),
                   ("POST", "/v1/embeddings"), ("POST", "/v1/classify"),
                   ("POST", "/v1/feedback"), ("GET", "/v1/cost/plan/example"),
                   ("POST", "/v1/cost/plan")}


def _with_served_names(case, fuzz_server) -> None:
    """Three requests in four name a served model of the right kind, two in three have text
    where the generated one is empty (chosen by a hash of the body, so that a failing example
    reproduces)."""
    body = case.body
    if not isinstance(body, dict):
        return
    pick = zlib.crc32(repr(sorted(body.items(), key=str)).encode())
    names = MODEL_FOR.get(case.path)
    if names and isinstance(body.get("model"), str) and pick % 4:
        body["model"] = names[pick % len(names)]
    if case.path == "/v1/feedback" and isinstance(body.get("response_id"), str) and pick % 2:
        body["response_id"] = fuzz_server.response_id
    if pick % 3:  # the schema allows empty text, which the server (rightly) refuses
        if body.get("prompt") == "":
            body["prompt"] = "Hello"
        for msg in body.get("messages") if isinstance(body.get("messages"), list) else ():
            if isinstance(msg, dict) and msg.get("content") == "":
                msg["content"] = "Hello"


@schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                 HealthCheck.data_too_large, HealthCheck.large_base_example])
def test_no_server_errors(case, fuzz_server):
    _with_served_names(case, fuzz_server)
    response = case.call(base_url=fuzz_server.url, timeout=120,
                         headers={"Authorization": f"Bearer {fuzz_server.key}"})
    case.validate_response(response, checks=[not_a_server_error])
    assert response.status_code < 500, response.text
    if 400 <= response.status_code < 500:
        body = response.json()
        assert set(body) == {"error"}, body
        assert set(body["error"]) == {"message", "type", "param", "code"}, body
        assert isinstance(body["error"]["message"], str) and body["error"]["message"]
        assert body["error"]["param"] is None or isinstance(body["error"]["param"], str)

