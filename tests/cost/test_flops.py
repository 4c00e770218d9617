"""FLOPs and parameter counts: published figures from published inputs, and one formula for
training logs and `goldmine cost` alike."""

import pytest
import torch

from goldmine import cost
from goldmine.cost import (
    flops_formula,
    flops_per_token,
    matmul_weights,
    param_count,
    peak_flops,
    training_flops,
)
from goldmine.cost.command import cost_train
from goldmine.model import GPT, GPTConfig


def test_gpt3_175b_on_300b_tokens_is_3_14e23_flops():
    # Brown et al. 2020, table D.1: 3.14e23 training FLOPs for 175B parameters on 300B tokens
    f = training_flops(175e9, 300e9)
    assert f["flops"] == pytest.approx(3.14e23, rel=0.1)
    assert f["flops_attention"] == 0 and f["flops"] == 6 * 175e9 * 300e9
    # with GPT-3's shape (96 layers, 12288 wide, context 2048) the attention term adds ~3%
    shaped = training_flops(175e9, 300e9, n_layer=96, n_embd=12288, seq_len=2048)
    assert shaped["flops_attention"] == 12 * 96 * 2048 * 12288 * 300e9
    assert shaped["flops"] == pytest.approx(3.14e23, rel=0.1)
    assert cost_train(params=175_000_000_000, tokens=300_000_000_000)["flops"] == f["flops"]


def test_training_flops_agree_with_what_pretrain_logs_per_token():
    cfg = GPTConfig(vocab_size=1000, n_layer=3, n_head=4, n_kv_head=2, n_embd=64, block_size=128)
    tokens = 1_000_000
    f = training_flops(matmul_weights(cfg), tokens, cfg.n_layer, cfg.n_embd, cfg.block_size)
    assert f["flops"] == pytest.approx(flops_per_token(cfg) * tokens)
    assert flops_per_token(cfg, training=False) * 3 == flops_per_token(cfg)
    # and cost train with --model counts the same N and attention term
    r = cost_train(model="small", vocab_size=1000, tokens=tokens)
    small = GPTConfig.from_preset("small", vocab_size=1000)
    assert r["flops"] == pytest.approx(flops_per_token(small) * tokens)
    assert r["params"] == matmul_weights(small) and r["seq_len"] == 256


@pytest.mark.parametrize("cfg", [
    GPTConfig(vocab_size=97, n_layer=2, n_head=4, n_embd=32, block_size=16),
    GPTConfig(vocab_size=97, n_layer=2, n_head=4, n_kv_head=2, n_embd=32, block_size=16,
              tie_embeddings=True),
    GPTConfig(vocab_size=97, n_layer=1, n_head=2, n_kv_head=1, n_embd=16, block_size=8,
              attn_bias=True, intermediate_size=40),
])
def test_param_count_matches_the_model_without_building_it(cfg):
    assert param_count(cfg) == GPT(cfg).num_params()


def test_gpt2_124m_preset_has_124m_parameters():
    r = cost_train(model="gpt2-124m", tokens=10_000_000_000)
    assert r["params_total"] == pytest.approx(124e6, rel=0.01)  # GPT-2 vocab 50257, tied head


def test_formula_text_substitutes_the_numbers():
    lines = flops_formula(124e6, 1e10, n_layer=12, n_embd=768, seq_len=1024)
    assert "6·N·D + 12·L·T·C·D" in lines[0]
    assert "6 × 1.24e+08 × 1e+10 + 12 × 12 × 1024 × 768 × 1e+10" in lines[1]
    assert lines[2].endswith(f"= {training_flops(124e6, 1e10, 12, 768, 1024)['flops']:.4g}")
    assert "no attention term" in flops_formula(1e9, 1e9)[0]


@pytest.mark.parametrize("name,dtype,peak", [
    ("NVIDIA A100-SXM4-80GB", "bf16", 312e12),
    ("NVIDIA A100-SXM4-40GB", "fp32", 19.5e12),
    ("NVIDIA H100 80GB HBM3", "bf16", 989.4e12),
    ("NVIDIA H100 PCIe", "bf16", 756e12),
    ("NVIDIA H200", "bf16", 989.4e12),
    ("NVIDIA L4", "bf16", 121e12),
    ("NVIDIA L40S", "bf16", 362.05e12),
    ("NVIDIA A10G", "bf16", 70e12),
    ("NVIDIA A10", "bf16", 125e12),
    ("NVIDIA GeForce RTX 4090", "bf16", 165.2e12),
    ("Tesla V100-SXM2-16GB", "fp32", 15.7e12),
    ("Tesla V100-SXM2-16GB", "bf16", None),          # Volta has no bf16 tensor cores
    ("Tesla T4", "fp32", 8.1e12),
    ("Some Future GPU", "bf16", None),
])
def test_training_logs_read_gpu_peaks_from_the_catalog(monkeypatch, name, dtype, peak):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    assert peak_flops(torch.device("cuda", 0), dtype) == peak
    assert not hasattr(cost, "GPU_PEAK_FLOPS")  # one source of truth: hardware.yaml


def test_mfu_is_achieved_over_peak():
    assert cost.mfu(1000.0, 6e9, 1.2e13) == pytest.approx(0.5)
    assert cost.mfu(1000.0, 6e9, None) is None
