"""FLOPs, peak throughput and MFU: the one place these numbers come from.

Training logs, benchmarks and `goldmine cost` all call these functions, so a tokens/s figure
means the same thing everywhere. The rest of `goldmine cost` lives beside this file: hardware
(the catalog, hardware.yaml), training (GPU-hours, time, energy, money), scaling (Chinchilla),
memory (will it fit), serving ($ per 1M tokens) and command (what the CLI calls).

FLOPs per token follow the PaLM paper's appendix B: a matrix multiply costs 2 FLOPs per weight
per token forward and 4 backward, so training costs 6 N per token for N weights in matrices,
plus the attention scores and weighted sum, 12 * n_layer * T * n_embd per token for context T
(counted over the full T x T square, as PaLM and nanoGPT do, although causal kernels skip half).
Over D training tokens that is the familiar C = 6 N D, plus 12 L T C D.

The LSTM baseline (goldmine/lstm.py) is counted the same way and has no context term: every
token multiplies the embedding (or the previous layer's output) and the previous hidden state
by each layer's gate matrices, 4H x (in + H), then the projection and the head, so training
costs 6 N per token for N weights in those matrices, at any context length.

The BERT-style encoder (goldmine/encoder.py) is a transformer like the GPT, attention term
included (bidirectional attention computes the full square that the formula already counts);
its MLM head (a dense layer and the tied vocabulary projection) runs only on the masked
positions, so it counts for that share of the tokens (15%).
"""

from __future__ import annotations

import time
from functools import cache

import torch


def matmul_weights(cfg) -> int:
    """Weights that take part in matrix multiplies: every Linear, the output head included.

    The input embedding is a table lookup, not a multiply, so it is left out (unless tied to
    the head, where the head's multiply counts it once).
    """
    C, L, V = cfg.n_embd, cfg.n_layer, cfg.vocab_size
    q_kv = (cfg.n_head + 2 * cfg.n_kv_head) * cfg.head_dim
    per_layer = C * q_kv + cfg.n_head * cfg.head_dim * C + 3 * C * cfg.intermediate_size
    return L * per_layer + C * V


def param_count(cfg) -> int:
    """All parameters of goldmine's GPT with config `cfg`, counted without building it (a 70B
    model's config is enough): the matmul weights, an untied input embedding, the RMSNorm
    weights (two per block and a final one) and any q/k/v biases. Equals GPT(cfg).num_params()."""
    embed = 0 if cfg.tie_embeddings else cfg.vocab_size * cfg.n_embd
    norms = (2 * cfg.n_layer + 1) * cfg.n_embd
    bias = cfg.n_layer * (cfg.n_head + 2 * cfg.n_kv_head) * cfg.head_dim if cfg.attn_bias else 0
    return matmul_weights(cfg) + embed + norms + bias


def lstm_matmul_weights(cfg) -> int:
    """Weights of goldmine's LSTM (an LSTMConfig) that take part in matrix multiplies: per layer
    the input and recurrent matrices of the four gates, 4H x (E + H) for the first layer (its
    input is the embedding) and 4H x 2H after; the projection H x E when H differs from E; the
    head E x V. The embedding is a lookup, as for the GPT."""
    E, H, L, V = cfg.n_embd, cfg.hidden, cfg.n_layer, cfg.vocab_size
    gates = 4 * H * (E + H) + (L - 1) * 4 * H * 2 * H
    return gates + (H * E if cfg.projected else 0) + E * V


def lstm_param_count(cfg) -> int:
    """All parameters of goldmine's LSTM with config `cfg`: the matmul weights, an untied input
    embedding and nn.LSTM's two bias vectors per layer (b_ih and b_hh, 4H each). Equals
    LSTM(cfg).num_params()."""
    embed = 0 if cfg.tie_embeddings else cfg.vocab_size * cfg.n_embd
    return lstm_matmul_weights(cfg) + embed + cfg.n_layer * 2 * 4 * cfg.hidden


def lstm_flops_per_token(cfg, training: bool = True) -> float:
    """FLOPs of goldmine's LSTM per token: 2 per matmul weight forward, the recurrent matrices
    included (h_t-1 is multiplied at every step), 3x that for training (backpropagation through
    time costs twice the forward). The gate nonlinearities and cell updates, about 10 H per
    layer, are left out, as the GPT's norms and activations are."""
    forward = 2 * lstm_matmul_weights(cfg)
    return 3 * forward if training else forward


def encoder_matmul_weights(cfg) -> tuple[int, int]:
    """(weights in the encoder's layers' matrices, weights in its MLM head's) for an
    EncoderConfig: per layer q, k, v and output C x C each and the feed-forward's 2 C F; the
    head's transform C x C and the decoder C x V (the word embeddings, tied)."""
    C, F = cfg.n_embd, cfg.intermediate_size
    return cfg.n_layer * (4 * C * C + 2 * C * F), C * C + C * cfg.vocab_size


def encoder_flops_per_token(cfg, seq_len: int | None = None, training: bool = True,
                            predicted: float = 0.15) -> float:
    """FLOPs of the encoder per token: its layers and attention like the GPT's, and the MLM
    head on the `predicted` share of the positions (1.0: logits everywhere)."""
    layers, head = encoder_matmul_weights(cfg)
    T = seq_len or cfg.block_size
    forward = 2 * (layers + predicted * head) + attention_flops_per_token(
        cfg.n_layer, cfg.n_embd, T, training=False)
    return 3 * forward if training else forward


def attention_flops_per_token(n_layer: int, n_embd: int, seq_len: int,
                              training: bool = True) -> float:
    """The attention term: scores (Q K^T) and weighted sum (A V) cost 2 * 2 * T * C FLOPs per
    token per layer forward; training triples it (backward is twice forward)."""
    forward = 4 * n_layer * seq_len * n_embd
    return 3 * forward if training else forward


def flops_per_token(cfg, seq_len: int | None = None, training: bool = True) -> float:
    """FLOPs to process one token at context `seq_len` (default: block_size); an LSTM's
    (`cfg.arch == "lstm"`) do not depend on the context (`lstm_flops_per_token`)."""
    if getattr(cfg, "arch", "gpt") == "lstm":
        return lstm_flops_per_token(cfg, training)
    if getattr(cfg, "arch", "gpt") == "bert":
        return encoder_flops_per_token(cfg, seq_len, training)
    T = seq_len or cfg.block_size
    forward = 2 * matmul_weights(cfg) + attention_flops_per_token(cfg.n_layer, cfg.n_embd, T,
                                                                  training=False)
    return 3 * forward if training else forward


def training_flops(params: float, tokens: float, n_layer: int | None = None,
                   n_embd: int | None = None, seq_len: int | None = None) -> dict[str, float]:
    """FLOPs to train `params` weights on `tokens` tokens: {"flops_6nd": 6 N D,
    "flops_attention": 12 L T C D (0 when the shape L, C, T is not known), "flops": the sum}.

    N should count the weights in matrix multiplies (`matmul_weights`); published figures use
    the total parameter count, which differs from it by the input embedding."""
    dense = 6.0 * params * tokens
    attention = 0.0
    if n_layer and n_embd and seq_len:
        attention = attention_flops_per_token(n_layer, n_embd, seq_len) * tokens
    return {"flops_6nd": dense, "flops_attention": attention, "flops": dense + attention}


def flops_formula(params: float, tokens: float, n_layer: int | None = None,
                  n_embd: int | None = None, seq_len: int | None = None) -> list[str]:
    """`training_flops` as lines of text, the formula first and then the numbers in it (what
    `goldmine cost train --explain` prints)."""
    f = training_flops(params, tokens, n_layer, n_embd, seq_len)
    if not f["flops_attention"]:
        return ["training FLOPs C = 6·N·D  (a matmul weight costs 2 FLOPs per token forward and "
                "4 backward; no model shape given, so no attention term)",
                f"  = 6 × {params:.4g} × {tokens:.4g} = {f['flops']:.4g}"]
    return ["training FLOPs C = 6·N·D + 12·L·T·C·D  (PaLM, appendix B: 6 FLOPs per matmul "
            "weight per token, plus attention scores and weighted sum over context T)",
            f"  = 6 × {params:.4g} × {tokens:.4g} + 12 × {n_layer} × {seq_len} × {n_embd} × "
            f"{tokens:.4g}",
            f"  = {f['flops_6nd']:.4g} + {f['flops_attention']:.4g} = {f['flops']:.4g}"]


@cache
def measure_matmul_flops(n: int = 2048, seconds: float = 0.3, dtype: torch.dtype = torch.float32) -> float:
    """FLOP/s of a large square matmul on this CPU, measured now (the CPU's practical peak)."""
    gen = torch.Generator().manual_seed(0)  # leaves the global RNG (dropout, resume) untouched
    a = torch.randn(n, n, dtype=dtype, generator=gen)
    b = torch.randn(n, n, dtype=dtype, generator=gen)
    for _ in range(2):
        a @ b
    reps, start = 0, time.perf_counter()
    best = 0.0
    while time.perf_counter() - start < seconds or reps < 3:
        t = time.perf_counter()
        a @ b
        best = max(best, 2 * n**3 / (time.perf_counter() - t))
        reps += 1
    return best


def peak_flops(device: torch.device | str, dtype: str = "fp32") -> float | None:
    """Peak dense FLOP/s of `device` for `dtype` ('fp32' or 'bf16'); None if unknown.

    CPUs are measured now; CUDA devices are looked up by name in the hardware catalog
    (goldmine/cost/hardware.yaml), the same figures `goldmine cost` uses."""
    from goldmine.cost.hardware import match_device

    device = torch.device(device)
    if device.type == "cpu":
        return measure_matmul_flops(dtype=torch.float32 if dtype == "fp32" else torch.bfloat16)
    if device.type == "cuda":
        hw = match_device(torch.cuda.get_device_name(device))
        if hw is not None and dtype in hw.peak_tflops:
            return hw.peak_tflops[dtype] * 1e12
    return None


def mfu(tokens_per_s: float, flops_per_tok: float, peak: float | None) -> float | None:
    """Model FLOPs utilization: achieved FLOP/s over the hardware's peak."""
    if not peak:
        return None
    return tokens_per_s * flops_per_tok / peak
