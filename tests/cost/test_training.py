"""Training cost: published runs reproduced from their published inputs, projection of a
goldmine pretrain run's measured MFU, model shapes from presets, files and runs."""

import json

import pytest

from goldmine.config import CostTrainConfig
from goldmine.cost import matmul_weights, param_count
from goldmine.cost.command import cost_train
from goldmine.cost.training import resolve_model, training_cost
from goldmine.errors import GoldmineError
from goldmine.registry import start_run

LLAMA2_7B = dict(params=6_740_000_000, tokens=2_000_000_000_000, hardware="a100-80gb")


def test_llama2_7b_gpu_hours_from_mfu_0_4():
    # Touvron et al. 2023, table 2: Llama 2 7B, 2T tokens, 184,320 A100-80GB GPU-hours
    r = cost_train(**LLAMA2_7B, mfu=0.4)
    assert r["gpu_hours"] == pytest.approx(184_320, rel=0.1)
    assert r["peak_flops_per_gpu"] == 312e12 and r["speed_from"] == "given MFU"


def test_llama2_7b_mfu_from_its_gpu_hours():
    r = cost_train(CostTrainConfig.from_preset("llama2-7b"))
    assert r["mfu"] == pytest.approx(0.4, rel=0.1)
    assert r["gpu_hours"] == 184_320 and r["hardware"] == "a100-80gb"
    # energy: 400 W boards for 184,320 hours
    assert r["energy_kwh"] == pytest.approx(400 * 184_320 / 1000)
    assert cost_train(**LLAMA2_7B, gpu_hours=184_320, pue=1.2)["energy_kwh"] == pytest.approx(
        1.2 * r["energy_kwh"])


def test_llmc_gpt2_124m_on_8_a100s():
    # llm.c (Karpathy 2024): GPT-2 124M on 10B tokens, 8×A100 80GB, ~300 ms per 524,288-token
    # step, "about 90 minutes" and "about $20" at ~$14/hour for the node
    r = cost_train(CostTrainConfig.from_preset("llmc-gpt2-124m"))
    assert r["wall_s"] / 60 == pytest.approx(94, rel=0.1)
    assert r["cost_usd"] == pytest.approx(14 * r["wall_hours"])      # $14/hour for the node
    assert r["cost_usd"] == pytest.approx(14 * 94 / 60, rel=0.1)
    # 0.3 s/step is rounded: 19,073 steps take 95.4 min, $22.25; llm.c's "$20" is ~86 min at
    # $14/h. Within 12% of the published $20, not 10%: the published inputs are themselves "about"
    assert r["cost_usd"] == pytest.approx(20, rel=0.12)
    # from the published 94 minutes on the node, the published $20 within 10%
    at_94 = cost_train(model="gpt2-124m", tokens=10_000_000_000, hardware="a100-80gb", gpus=8,
                       gpu_hours=8 * 94 / 60, price_per_gpu_hour=1.75)
    assert at_94["cost_usd"] == pytest.approx(20, rel=0.1)
    assert 0.4 < r["mfu"] < 0.8           # 1.75M tokens/s of a 124M model on 8 × 312 TFLOP/s
    same = cost_train(model="gpt2-124m", tokens=10_000_000_000, hardware="a100-80gb", gpus=8,
                      tokens_per_s=524_288 / 0.3, price_per_gpu_hour=1.75)
    assert same["wall_s"] == pytest.approx(r["wall_s"]) and same["mfu"] == pytest.approx(r["mfu"])


def test_time_money_and_explanation_follow_from_mfu():
    r = cost_train(params=1_000_000_000, tokens=20_000_000_000, hardware="h100-sxm", gpus=8,
                   mfu=0.5, price_per_gpu_hour=2.0)
    flops = 6e9 * 20e9
    assert r["wall_s"] == pytest.approx(flops / (8 * 989.4e12 * 0.5))
    assert r["gpu_hours"] == pytest.approx(8 * r["wall_s"] / 3600)
    assert r["cost_usd"] == pytest.approx(2.0 * r["gpu_hours"])
    assert r["tokens_per_s"] == pytest.approx(20e9 / r["wall_s"])
    text = "\n".join(r["explain"])
    assert "time = C / (gpus × peak × MFU)" in text and "$2" in text and "700 W" in text


def test_without_hardware_only_flops():
    r = cost_train(params=1_000_000, tokens=1_000_000)
    assert r["flops"] == 6e12 and r["wall_s"] is None and r["cost_usd"] is None
    assert "no --hardware" in r["notes"][0]


def test_catalog_price_and_hardware_file(tmp_path):
    r = cost_train(params=1_000_000_000, tokens=1_000_000_000, hardware="l4")
    assert r["price_per_gpu_hour"] == 0.71 and r["price_from"].startswith("catalog")
    f = tmp_path / "hw.yaml"
    f.write_text("l4: {price_per_gpu_hour: 0.5}\n")
    r2 = cost_train(params=1_000_000_000, tokens=1_000_000_000, hardware="l4",
                    hardware_file=str(f))
    assert r2["cost_usd"] == pytest.approx(r["cost_usd"] * 0.5 / 0.71)


def test_dtype_defaults_to_what_the_device_trains_in():
    assert cost_train(params=1e6, tokens=1e6, hardware="h100-sxm")["dtype"] == "bf16"
    t4 = cost_train(params=1e6, tokens=1e6, hardware="t4")        # Turing: no bf16
    assert t4["dtype"] == "fp16" and t4["peak_flops_per_gpu"] == 65e12
    assert training_cost(1e6, 1e6, "cpu", mfu=0.5)["dtype"] == "fp32"  # as pretrain on a CPU
    fp8 = cost_train(params=1e6, tokens=1e6, hardware="h100-sxm", dtype="fp8")
    assert fp8["peak_flops_per_gpu"] == pytest.approx(1978.9e12)


def test_gpu_hours_without_hardware_give_time_but_no_mfu():
    r = cost_train(params=1e6, tokens=1e6, gpu_hours=10, gpus=2)
    assert r["wall_s"] == 5 * 3600 and r["mfu"] is None and r["cost_usd"] is None
    assert "time = GPU-hours × 3600 / gpus" in "\n".join(r["explain"])


def test_a_throughput_faster_than_the_peak_is_flagged():
    r = training_cost(1e9, 1e9, "l4", tokens_per_s=1e9)
    assert r["mfu"] > 1 and "above 1" in r["notes"][0]


# ---------------------------------------------------------------------------------------------
# --from-run: a goldmine pretrain run's measured speed, projected
# ---------------------------------------------------------------------------------------------
def fake_pretrain_run(metrics: dict, model: str = "small", command: str = "pretrain") -> str:
    """A registry row as `goldmine pretrain` records it (see train/pretrain.py), no training."""
    from goldmine.model import GPTConfig

    shape = GPTConfig.from_preset(model, vocab_size=512).to_dict()
    with start_run(command, {"model": model}) as run:
        run.set_config({"model": model, "resolved_model": shape})
        run.log_metrics(metrics)
    return run.id


CPU_RUN = {"params": 0, "flops_per_token": 0, "tokens_per_step": 4096, "device": "cpu",
           "precision": "fp32", "world_size": 1, "tokens": 4_096_000, "tokens_per_s": 3500.0,
           "mfu": 0.5}


def test_from_run_projects_the_measured_mfu_to_another_size_and_hardware():
    run_id = fake_pretrain_run(CPU_RUN)
    r = cost_train(from_run=run_id, params=1_000_000_000, tokens=20_000_000_000,
                   hardware="h100-sxm", gpus=8)
    assert r["mfu"] == 0.5 and f"measured by run {run_id}" in r["speed_from"]
    small = resolve_model("small", 512)
    attention = 12 * small.n_layer * small.block_size * small.n_embd * 20e9
    assert r["flops"] == pytest.approx(6e9 * 20e9 + attention)  # the run's shape, N given
    assert r["wall_s"] == pytest.approx(r["flops"] / (8 * 989.4e12 * 0.5))
    assert r["from_run"]["tokens_per_s"] == 3500.0
    assert any("measured on a CPU" in n for n in r["notes"])
    # with nothing else given: the run's own model and tokens
    own = cost_train(from_run=run_id, hardware="a100-80gb")
    assert own["params"] == matmul_weights(small) and own["tokens"] == 4_096_000
    assert own["params_total"] == param_count(small)


def test_from_run_without_a_logged_mfu_uses_its_tokens_per_s_on_the_named_hardware():
    small = resolve_model("small", 512)
    fpt = 6 * matmul_weights(small) + 12 * small.n_layer * small.block_size * small.n_embd
    run_id = fake_pretrain_run({**CPU_RUN, "device": "cuda:0", "precision": "bf16",
                                "mfu": None, "world_size": 2, "flops_per_token": fpt,
                                "tokens_per_s": 200_000.0})
    r = cost_train(from_run=run_id, tokens=1_000_000_000, hardware="l4")
    assert r["mfu"] == pytest.approx(200_000 * fpt / (2 * 121e12))
    with pytest.raises(GoldmineError, match="hardware: run .* logged no MFU"):
        cost_train(from_run=run_id, tokens=1_000_000_000)


def test_from_run_refuses_other_commands_and_runs_without_speed():
    with pytest.raises(GoldmineError, match="is a `quantize` run; give a `goldmine pretrain` run"):
        cost_train(from_run=fake_pretrain_run(CPU_RUN, command="quantize"))
    with pytest.raises(GoldmineError, match="has no measured tokens/s"):
        cost_train(from_run=fake_pretrain_run({"params": 10}))
    with pytest.raises(GoldmineError, match="from_run: no run 'nope'"):
        cost_train(from_run="nope")


# ---------------------------------------------------------------------------------------------
# model shapes
# ---------------------------------------------------------------------------------------------
def test_model_shapes_from_presets_files_and_runs(tmp_path):
    assert resolve_model("llama-7b").vocab_size == 32000
    assert param_count(resolve_model("llama-7b")) == pytest.approx(6.74e9, rel=0.01)
    assert param_count(resolve_model("llama-1b")) == pytest.approx(1.24e9, rel=0.01)
    assert resolve_model("tiny", vocab_size=300).vocab_size == 300
    # a pretrain-style YAML: a preset and overrides
    y = tmp_path / "m.yaml"
    y.write_text("model: small\nn_layer: 8\nvocab_size: 1000\nbatch_size: 4\n")
    m = resolve_model(str(y))
    assert (m.n_layer, m.n_embd, m.vocab_size) == (8, 384, 1000)
    # a goldmine checkpoint / run config.json
    ck = tmp_path / "ckpt"
    ck.mkdir()
    (ck / "config.json").write_text(json.dumps({"format": "goldmine-gpt/1",
                                                "model": m.to_dict()}))
    assert resolve_model(str(ck)) == m
    # a Hugging Face config.json (Llama 2 7B's)
    hf = tmp_path / "hf.json"
    hf.write_text(json.dumps({"model_type": "llama", "hidden_size": 4096,
                              "intermediate_size": 11008, "num_hidden_layers": 32,
                              "num_attention_heads": 32, "num_key_value_heads": 32,
                              "vocab_size": 32000, "max_position_embeddings": 4096,
                              "rms_norm_eps": 1e-5}))
    assert param_count(resolve_model(str(hf))) == param_count(resolve_model("llama-7b"))
    # a pretrain run in the registry
    run_id = fake_pretrain_run(CPU_RUN, model="tiny")
    assert resolve_model(run_id) == resolve_model("tiny", 512)


def test_bad_model_references():
    with pytest.raises(GoldmineError, match="model: 'gpt5' is neither a model preset"):
        resolve_model("gpt5")
    with pytest.raises(GoldmineError, match="model: .*must be divisible"):
        resolve_model({"n_embd": 30, "n_head": 4})


@pytest.mark.parametrize("options,message", [
    ({"params": 1_000_000, "tokens": 1000, "mfu": 0}, "mfu: must be in (0, 1], got 0"),
    ({"params": 1_000_000, "tokens": 1000, "mfu": 1.2}, "mfu: must be in (0, 1], got 1.2"),
    ({"params": 1_000_000, "tokens": -5}, "tokens: must be > 0, got -5"),
    ({"params": 0, "tokens": 5}, "params: must be > 0, got 0"),
    ({"params": 1_000_000, "tokens": 5, "gpus": 0}, "gpus: must be > 0, got 0"),
    ({"tokens": 5}, "params: give --params N or --model"),
    ({"params": 5}, "tokens: give --tokens D"),
    ({"params": 5, "tokens": 5, "mfu": 0.5, "gpu_hours": 10}, "mfu, gpu_hours: give only one"),
    ({"params": 5, "tokens": 5, "step_time": 0.3}, "tokens_per_step: --step-time needs"),
    ({"params": 5, "tokens": 5, "hardware": "h900"}, "hardware: unknown 'h900'; known: h100-sxm"),
    ({"params": 5, "tokens": 5, "pue": 0.5}, "pue: must be >= 1"),
    ({"params": 5, "tokens": 5, "hardware": "t4", "dtype": "bf16"},
     "dtype: t4 has no published dense bf16 peak"),
])
def test_invalid_input_names_the_option(options, message):
    with pytest.raises(GoldmineError) as e:
        cost_train(**options)
    assert message in str(e.value)
