"""FLOPs, peak throughput and MFU: the one place these numbers come from.

Training logs, benchmarks and (later) `goldmine cost` all call these functions, so a tokens/s
figure means the same thing everywhere.

FLOPs per token follow the PaLM paper's appendix B: a matrix multiply costs 2 FLOPs per weight
per token forward and 4 backward, so training costs 6 N per token for N weights in matrices,
plus the attention scores and weighted sum, 12 * n_layer * T * n_embd per token for context T
(counted over the full T x T square, as PaLM and nanoGPT do, although causal kernels skip half).
"""

from __future__ import annotations

import time
from functools import cache

import torch

# Peak dense matmul throughput, FLOP/s, from vendor data sheets (no sparsity).
GPU_PEAK_FLOPS = {
    # name fragment: {dtype: peak}
    "H200": {"bf16": 989e12, "fp32": 67e12},
    "H100": {"bf16": 989e12, "fp32": 67e12},
    "A100": {"bf16": 312e12, "fp32": 19.5e12},
    "L40S": {"bf16": 362e12, "fp32": 91.6e12},
    "L4": {"bf16": 121e12, "fp32": 30.3e12},
    "A10": {"bf16": 125e12, "fp32": 31.2e12},
    "4090": {"bf16": 165e12, "fp32": 82.6e12},
    "3090": {"bf16": 71e12, "fp32": 35.6e12},
    "V100": {"bf16": 125e12, "fp32": 15.7e12},  # fp16 tensor cores; V100 has no bf16
    "T4": {"bf16": 65e12, "fp32": 8.1e12},
}


def matmul_weights(cfg) -> int:
    """Weights that take part in matrix multiplies: every Linear, the output head included.

    The input embedding is a table lookup, not a multiply, so it is left out (unless tied to
    the head, where the head's multiply counts it once).
    """
    C, L, V = cfg.n_embd, cfg.n_layer, cfg.vocab_size
    q_kv = (cfg.n_head + 2 * cfg.n_kv_head) * cfg.head_dim
    per_layer = C * q_kv + cfg.n_head * cfg.head_dim * C + 3 * C * cfg.intermediate_size
    return L * per_layer + C * V


def flops_per_token(cfg, seq_len: int | None = None, training: bool = True) -> float:
    """FLOPs to process one token at context `seq_len` (default: block_size)."""
    T = seq_len or cfg.block_size
    forward = 2 * matmul_weights(cfg) + 4 * cfg.n_layer * T * cfg.n_embd
    return 3 * forward if training else forward


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
    """Peak dense FLOP/s of `device` for `dtype` ('fp32' or 'bf16'); None if unknown."""
    device = torch.device(device)
    if device.type == "cpu":
        return measure_matmul_flops(dtype=torch.float32 if dtype == "fp32" else torch.bfloat16)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, peaks in GPU_PEAK_FLOPS.items():
            if key in name:
                return peaks.get(dtype)
    return None


def mfu(tokens_per_s: float, flops_per_tok: float, peak: float | None) -> float | None:
    """Model FLOPs utilization: achieved FLOP/s over the hardware's peak."""
    if not peak:
        return None
    return tokens_per_s * flops_per_tok / peak
