"""Serving cost: $ per 1M input/output tokens and per request from a measured throughput, from
bench/serve.py's JSON, and per API key from the usage the server recorded."""

import json

import pytest

from goldmine.cost.command import cost_serve
from goldmine.cost.serving import read_bench, serving_cost, usage_cost
from goldmine.errors import GoldmineError


def test_cost_per_token_is_price_over_throughput():
    r = serving_cost(1000, price_per_gpu_hour=2.0, utilization=1.0, prompt_tokens=400,
                     output_tokens=100)
    out = 2.0 / (3600 * 1000)                                   # $ per output token
    assert r["usd_per_1m_output_tokens"] == pytest.approx(out * 1e6)
    assert r["usd_per_1m_input_tokens"] == pytest.approx(0.25 * out * 1e6)  # stated default
    assert r["usd_per_request"] == pytest.approx(400 * 0.25 * out + 100 * out)
    assert r["requests_per_hour"] == pytest.approx(3600 * 1000 / 100)
    assert "default 0.25" in r["input_cost_ratio_from"]
    half = serving_cost(1000, price_per_gpu_hour=2.0, utilization=0.5)
    assert half["usd_per_1m_output_tokens"] == pytest.approx(2 * r["usd_per_1m_output_tokens"])
    two = serving_cost(2000, price_per_gpu_hour=2.0, gpus=2, utilization=1.0)
    assert two["usd_per_1m_output_tokens"] == pytest.approx(r["usd_per_1m_output_tokens"])


def test_a_measured_prefill_rate_sets_the_input_ratio():
    r = serving_cost(1000, price_per_gpu_hour=2.0, prefill_tokens_per_s=20_000)
    assert r["input_cost_ratio"] == pytest.approx(0.05)
    assert r["usd_per_1m_input_tokens"] == pytest.approx(0.05 * r["usd_per_1m_output_tokens"])
    assert r["input_cost_ratio_from"].startswith("measured")


def bench_json(tmp_path, **changes):
    """The shape of what bench/serve.py prints (see its main())."""
    out = {"goldmine_tokens_per_s": 1471.0, "goldmine_p50_ttft_ms": 49.0, "errors": 0,
           "goldmine_mean_tokens_per_request": 64.0,
           "workload": {"clients": 16, "requests": 64, "rounds": 1, "max_tokens": 64,
                        "prompt_tokens": 32, "temperature": 0.0, "stream": True},
           "servers": {"goldmine": {"tokens_per_s": 1471.0, "mean_prompt_tokens": 33.0}},
           "cpus": 2, **changes}
    f = tmp_path / "serve.json"
    f.write_text(json.dumps(out))
    return f


def test_from_bench_reads_throughput_and_request_shape(tmp_path):
    f = bench_json(tmp_path)
    b = read_bench(f)
    assert (b["tokens_per_s"], b["prompt_tokens"], b["output_tokens"]) == (1471.0, 33.0, 64.0)
    r = cost_serve(from_bench=str(f))
    assert r["hardware"] == "cpu" and r["price_per_gpu_hour"] == 0.089  # where the bench runs
    assert r["prompt_tokens"] == 33.0 and r["output_tokens"] == 64.0
    assert r["usd_per_1m_output_tokens"] == pytest.approx(0.089 / (3600 * 1471 * 0.5) * 1e6)
    on_l4 = cost_serve(from_bench=str(f), hardware="l4", utilization=1.0, output_tokens=100)
    assert on_l4["usd_per_1m_output_tokens"] == pytest.approx(0.71 / (3600 * 1471) * 1e6)
    assert on_l4["output_tokens"] == 100 and on_l4["throughput_from"] == f"bench {f}"


@pytest.mark.parametrize("text,message", [
    ("[1, 2]", "expected a JSON object, got list"),
    ("{oops", "not one JSON object"),
    ('{"hf_tokens_per_s": 3}', "no positive 'goldmine_tokens_per_s'"),
])
def test_a_bad_bench_file_names_it(tmp_path, text, message):
    f = tmp_path / "b.json"
    f.write_text(text)
    with pytest.raises(GoldmineError) as e:
        cost_serve(from_bench=str(f))
    assert str(e.value).startswith(f"from_bench: {f}") and message in str(e.value)
    with pytest.raises(GoldmineError, match="from_bench: .*nope.json: file not found"):
        cost_serve(from_bench=str(tmp_path / "nope.json"))


def test_usage_per_api_key_is_priced(tmp_path):
    from goldmine.serve.store import ServeStore

    db = tmp_path / "serve.db"
    now = [1_750_000_000.0]
    with ServeStore(db, clock=lambda: now[0]) as store:
        _, acme = store.create_key("acme")
        _, bob = store.create_key("bob")
        store.record_usage(acme, "chat", 1000, 500)
        store.record_usage(bob, "chat", 10, 5)
        now[0] += 3 * 86400
        store.record_usage(acme, "chat", 3000, 1500)
    r = cost_serve(tokens_per_s=100, hardware="l4", usage=True, db=str(db))
    cin, cout = r["usd_per_1m_input_tokens"], r["usd_per_1m_output_tokens"]
    first, second = r["usage"]
    assert first["key"] == "acme" and first["days"] == 2 and first["requests"] == 2
    assert first["cost_usd"] == pytest.approx((4000 * cin + 2000 * cout) / 1e6)
    assert first["usd_per_request"] == pytest.approx(first["cost_usd"] / 2)
    assert second["key"] == "bob" and second["cost_usd"] < first["cost_usd"]
    assert usage_cost([], 1, 1) == []


@pytest.mark.parametrize("options,message", [
    ({"hardware": "l4"}, "tokens_per_s: give the measured throughput"),
    ({"tokens_per_s": 10}, "hardware: name the device"),
    ({"tokens_per_s": 0, "hardware": "l4"}, "tokens_per_s: must be > 0, got 0"),
    ({"tokens_per_s": 10, "hardware": "l4", "utilization": 0}, "utilization: must be in (0, 1]"),
    ({"tokens_per_s": 10, "hardware": "l4", "utilization": 1.5}, "utilization: must be in (0, 1]"),
    ({"tokens_per_s": 10, "hardware": "a800"}, "hardware: unknown 'a800'; known: h100-sxm"),
    ({"tokens_per_s": 10, "hardware": "l4", "price_per_gpu_hour": -1},
     "price_per_gpu_hour: must be > 0"),
    ({"tokens_per_s": 10, "from_bench": "x.json", "hardware": "l4"},
     "from_bench, tokens_per_s: give only one"),
])
def test_invalid_serving_questions_name_the_option(options, message):
    with pytest.raises(GoldmineError) as e:
        cost_serve(**options)
    assert message in str(e.value)
