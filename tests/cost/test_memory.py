"""Will it fit? Training (weights, gradients, AdamW, activations; DDP or sharded) and serving
(weights, KV cache), term by term."""

import pytest

from goldmine.cost.command import cost_memory
from goldmine.cost.memory import (
    activation_bytes_per_sequence,
    kv_cache_bytes_per_sequence,
    training_memory,
)
from goldmine.cost.training import resolve_model
from goldmine.errors import GoldmineError


def test_7b_adam_mixed_precision_needs_112_gb_unsharded_and_fits_sharded_over_8():
    one = training_memory(7_000_000_000, 80, reserve_gb=0)
    t = one["terms_gb"]
    assert t["weights"] == pytest.approx(14)                       # bf16: 2 bytes/param
    assert t["weights"] + t["gradients"] + t["optimizer"] == pytest.approx(112)   # 16 bytes
    assert one["bytes_per_param"] == 16 and not one["fits"]
    eight = training_memory(7_000_000_000, 80, gpus=8, sharded=True, reserve_gb=0)
    assert eight["total_gb"] == pytest.approx(112 / 8) and eight["fits"]
    ddp = training_memory(7_000_000_000, 80, gpus=8, sharded=False, reserve_gb=0)
    assert ddp["total_gb"] == pytest.approx(112) and not ddp["fits"]   # DDP copies everything
    assert training_memory(7_000_000_000, 80, precision="fp32")["bytes_per_param"] == 16


def test_llama_7b_with_activations_on_a100s():
    r = cost_memory(model="llama-7b", hardware="a100-80gb")
    assert r["terms_gb"]["weights"] == pytest.approx(13.5, rel=0.01)   # 6.74B in bf16
    assert not r["fits"] and r["max_batch_size"] == 0 and r["headroom_gb"] < 0
    s = cost_memory(model="llama-7b", hardware="a100-80gb", gpus=8, sharded=True, batch_size=2)
    assert s["fits"] and s["max_batch_size"] >= 2
    assert s["total_gb"] == pytest.approx(sum(s["terms_gb"].values()))
    assert s["headroom_gb"] == pytest.approx(80 - s["total_gb"])


def test_activation_formula_for_a_llama_block():
    m = resolve_model("llama-7b")
    per_layer = 6 * 4096 + 2 * 4096 + 3 * 11008                  # elements per token
    logits = 32000 * 2 + 32000 * 4                                # bf16 logits + fp32 copy
    assert activation_bytes_per_sequence(m, 1) == 32 * per_layer * 2 + logits
    assert activation_bytes_per_sequence(m, 4096) == 4096 * activation_bytes_per_sequence(m, 1)
    ckpt = activation_bytes_per_sequence(m, 1, checkpointing=True)
    assert ckpt == (32 * 4096 + per_layer) * 2 + logits           # block inputs + one block
    assert activation_bytes_per_sequence(m, 1, "fp32") > activation_bytes_per_sequence(m, 1)
    gqa = resolve_model("llama-1b")   # 8 of 32 heads hold K and V: a smaller 2·h_kv term
    assert activation_bytes_per_sequence(gqa, 1) == 16 * (6 * 2048 + 2 * 512 + 3 * 8192) * 2 \
        + 128256 * 6


def test_max_batch_size_is_the_largest_that_fits():
    kw = dict(model="llama-1b", hardware="l4", checkpointing=True, seq_len=2048)
    best = cost_memory(**kw)["max_batch_size"]
    assert best >= 1
    assert cost_memory(**kw, batch_size=best)["fits"]
    assert not cost_memory(**kw, batch_size=best + 1)["fits"]
    without = cost_memory(**{**kw, "checkpointing": False})["max_batch_size"]
    assert without < best


def test_params_alone_count_the_states_and_say_activations_are_missing():
    r = cost_memory(params=1_000_000_000, hardware="l4")
    assert "activations" not in r["terms_gb"] and r["max_batch_size"] is None
    assert "activations are not counted" in r["notes"][0]


def test_kv_cache_of_llama2_7b_is_half_a_megabyte_per_token():
    m = resolve_model("llama-7b")
    assert kv_cache_bytes_per_sequence(m, 1) == 2 * 32 * 32 * 128 * 2 == 524_288
    assert kv_cache_bytes_per_sequence(resolve_model("llama-1b"), 1) == 2 * 16 * 8 * 64 * 2


def test_serving_weights_plus_kv_cache_and_max_concurrency():
    r = cost_memory(model="llama-7b", mode="serve", hardware="l4", concurrency=4, context=4096)
    t = r["terms_gb"]
    assert t["weights"] == pytest.approx(13.48, rel=0.01)
    assert t["kv_cache"] == pytest.approx(4 * 4096 * 524_288 / 1e9)
    assert r["fits"] and r["capacity_gb"] == 24
    most = r["max_concurrency"]
    assert most == int((24 - 1 - t["weights"]) * 1e9 // (4096 * 524_288))
    assert cost_memory(model="llama-7b", mode="serve", hardware="l4", concurrency=most,
                       context=4096)["fits"]
    assert not cost_memory(model="llama-7b", mode="serve", hardware="l4",
                           concurrency=most + 1, context=4096)["fits"]
    int4 = cost_memory(model="llama-7b", mode="serve", hardware="t4", precision="int4")
    assert int4["terms_gb"]["weights"] == pytest.approx(t["weights"] / 4)
    assert int4["kv_precision"] == "bf16"
    split = cost_memory(model="llama-7b", mode="serve", hardware="l4", gpus=2, sharded=True,
                        concurrency=4, context=4096)
    assert split["terms_gb"]["weights"] == pytest.approx(t["weights"] / 2)
    assert split["terms_gb"]["kv_cache"] == pytest.approx(t["kv_cache"] / 2)


@pytest.mark.parametrize("options,message", [
    ({"hardware": "l4"}, "model: give --model"),
    ({"model": "tiny"}, "hardware: name the device"),
    ({"params": 10, "mode": "serve", "hardware": "l4"}, "model: --mode serve needs"),
    ({"model": "tiny", "hardware": "l4", "precision": "int8"}, "precision: training runs in"),
    ({"model": "tiny", "hardware": "l4", "batch_size": 0}, "batch_size: must be > 0"),
    ({"model": "tiny", "hardware": "l4", "reserve_gb": -1}, "reserve_gb: must be >= 0"),
    ({"model": "tiny", "hardware": "b300"}, "hardware: unknown 'b300'"),
    ({"model": "tiny", "params": 5, "hardware": "l4"}, "model, params: give only one"),
])
def test_invalid_memory_questions_name_the_option(options, message):
    with pytest.raises(GoldmineError) as e:
        cost_memory(**options)
    assert message in str(e.value)
