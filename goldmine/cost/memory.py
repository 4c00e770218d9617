"""Will it fit? Device memory for training and for serving, term by term (GB = 1e9 bytes).

Training, per GPU, with AdamW (bytes per parameter, as in the ZeRO paper, Rajbhandari et al.
2020):

    precision     weights  gradients  optimizer                       total
    fp32             4         4      8  (first and second moments)    16
    bf16 / fp16      2         2      12 (fp32 master weights, moments) 16

goldmine's own pretraining under bf16 autocast keeps fp32 weights and gradients: 4 + 4 + 8, also
16 bytes. With plain data parallelism (DDP) every GPU holds all of it; sharded (FSDP FULL_SHARD,
ZeRO-3) each of G GPUs holds 1/G of weights, gradients and optimizer state.

Activations kept for the backward pass, per token per layer, counted in elements of the
activation dtype for a Llama block (RMSNorm -> GQA attention with a fused kernel -> RMSNorm ->
SwiGLU), after Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large Transformer
Models"), whose GPT block keeps 34·h bytes per token in 16 bits plus 5·a·T bytes of attention
scores; a fused (flash) attention kernel keeps no scores, and dropout masks are absent:

    attention   norm input h, norm output h, Q h, K h_kv, V h_kv, attention output h
    MLP         norm input h, norm output h, gate I, up I, SwiGLU output I
    per layer   6·h + 2·h_kv + 3·I          (h = n_embd, h_kv = n_kv_head·head_dim,
                                              I = intermediate size)
    logits      V per token in the activation dtype, plus an fp32 copy for the loss

With activation checkpointing only each block's input (h per token per layer) is kept, and one
block's activations are rebuilt at a time in the backward pass. A sequence of T tokens keeps T
times the per-token figure; a micro-batch of B sequences B times that.

Serving: weights in their dtype, and the KV cache, 2 · n_layer · n_kv_head · head_dim · bytes per
token of every sequence in flight (K and V of every layer). Split over GPUs (tensor parallel)
both are divided by the GPU count. A fixed reserve stands for the CUDA context, kernel
workspaces and fragmentation.
"""

from __future__ import annotations

import math
from typing import Any

GB = 1e9
BYTES = {"fp32": 4, "tf32": 4, "bf16": 2, "fp16": 2, "fp8": 1, "int8": 1, "int4": 0.5}
# bytes per parameter: (weights, gradients, optimizer state) with AdamW
TRAIN_BYTES = {"fp32": (4, 4, 8), "bf16": (2, 2, 12), "fp16": (2, 2, 12)}


def activation_bytes_per_sequence(model, seq_len: int, precision: str = "bf16",
                                  checkpointing: bool = False) -> float:
    """Bytes of activations one sequence of `seq_len` tokens keeps for the backward pass."""
    h, L, V = model.n_embd, model.n_layer, model.vocab_size
    h_kv = model.n_kv_head * model.head_dim
    per_layer = 6 * h + 2 * h_kv + 3 * model.intermediate_size     # elements per token
    act = BYTES[precision]
    layers = L * h + per_layer if checkpointing else L * per_layer
    logits = V * act + V * 4
    return seq_len * (layers * act + logits)


def kv_cache_bytes_per_sequence(model, context: int, precision: str = "bf16") -> float:
    """K and V of every layer for `context` tokens: 2 · n_layer · n_kv_head · head_dim · bytes ·
    context."""
    return 2 * model.n_layer * model.n_kv_head * model.head_dim * BYTES[precision] * context


def training_memory(params: int, capacity_gb: float, model=None, *, precision: str = "bf16",
                    batch_size: int = 1, seq_len: int | None = None,
                    checkpointing: bool = False, gpus: int = 1, sharded: bool = False,
                    reserve_gb: float = 1.0) -> dict[str, Any]:
    """Memory per GPU to train `params` parameters (activations need `model`, a GPTConfig)."""
    w, g, o = (b * params for b in TRAIN_BYTES[precision])
    shards = gpus if sharded else 1
    terms = {"weights": w / shards / GB, "gradients": g / shards / GB,
             "optimizer": o / shards / GB}
    notes = []
    per_seq = None
    if model is not None:
        seq_len = seq_len or model.block_size
        per_seq = activation_bytes_per_sequence(model, seq_len, precision, checkpointing)
        terms["activations"] = batch_size * per_seq / GB
    else:
        notes.append("no --model: activations are not counted (they need the model's shape)")
    terms["reserve"] = reserve_gb
    result = _fit(terms, capacity_gb, per_seq, batch_size, "max_batch_size")
    bytes_per_param = sum(TRAIN_BYTES[precision])
    result.update({"mode": "train", "params": params, "precision": precision,
                   "batch_size": batch_size, "seq_len": seq_len, "checkpointing": checkpointing,
                   "gpus": gpus, "sharded": sharded, "bytes_per_param": bytes_per_param,
                   "notes": notes})
    result["formula"] = [
        f"weights + gradients + optimizer = {bytes_per_param} bytes × {params:.4g} params"
        + (f" / {gpus} GPUs (sharded)" if sharded and gpus > 1 else "")
        + f" = {terms['weights'] + terms['gradients'] + terms['optimizer']:.4g} GB"
        f"  ({'+'.join(str(b) for b in TRAIN_BYTES[precision])} bytes: AdamW, {precision})"]
    if per_seq is not None:
        result["formula"].append(
            f"activations = batch × T × (per-layer + logits) = {batch_size} × {seq_len} × "
            f"{per_seq / seq_len:,.0f} bytes = {terms['activations']:.4g} GB"
            + (" (checkpointing: block inputs + one block)" if checkpointing else ""))
    return result


def serving_memory(model, capacity_gb: float, *, precision: str = "bf16",
                   kv_precision: str | None = None, concurrency: int = 1,
                   context: int | None = None, gpus: int = 1, sharded: bool = False,
                   reserve_gb: float = 1.0) -> dict[str, Any]:
    """Memory per GPU to serve `model` to `concurrency` sequences of `context` tokens."""
    from goldmine.cost import param_count

    params = param_count(model)
    kv_precision = kv_precision or (precision if precision in ("fp32", "bf16", "fp16")
                                    else "bf16")
    context = context or model.block_size
    shards = gpus if sharded else 1
    per_seq = kv_cache_bytes_per_sequence(model, context, kv_precision) / shards
    terms = {"weights": params * BYTES[precision] / shards / GB,
             "kv_cache": concurrency * per_seq / GB, "reserve": reserve_gb}
    result = _fit(terms, capacity_gb, per_seq, concurrency, "max_concurrency")
    result.update({"mode": "serve", "params": params, "precision": precision,
                   "kv_precision": kv_precision, "concurrency": concurrency, "context": context,
                   "gpus": gpus, "sharded": sharded, "notes": []})
    result["formula"] = [
        f"weights = {params:.4g} params × {BYTES[precision]:g} bytes ({precision})"
        + (f" / {gpus} GPUs" if shards > 1 else "") + f" = {terms['weights']:.4g} GB",
        f"KV cache = 2 × n_layer × n_kv_head × head_dim × bytes × context × concurrency = "
        f"2 × {model.n_layer} × {model.n_kv_head} × {model.head_dim} × "
        f"{BYTES[kv_precision]:g} × {context} × {concurrency}"
        + (f" / {gpus} GPUs" if shards > 1 else "") + f" = {terms['kv_cache']:.4g} GB"]
    return result


def _fit(terms: dict[str, float], capacity_gb: float, per_unit: float | None, units: int,
         max_name: str) -> dict[str, Any]:
    """Total, fits, headroom, and the most units (sequences) that fit: every term but the
    per-unit one is fixed, so the answer is the free memory over the bytes per unit."""
    total = sum(terms.values())
    out = {"terms_gb": terms, "total_gb": total, "capacity_gb": capacity_gb,
           "fits": total <= capacity_gb, "headroom_gb": capacity_gb - total, max_name: None}
    if per_unit:
        fixed = total - units * per_unit / GB
        out[max_name] = max(0, math.floor((capacity_gb - fixed) * GB / per_unit))
    return out
