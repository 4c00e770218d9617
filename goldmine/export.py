"""goldmine <-> Hugging Face Llama: configs and weight names.

goldmine's GPT is Llama weight for weight, with two layout differences made for speed (see
model.py): fused q/k/v and gate/up matrices, and rotary pairs of adjacent features (Meta's
layout) where Hugging Face pairs feature i with i + D/2 ("rotate half"). The functions here undo
both, so `transformers.LlamaForCausalLM` computes the same logits from the converted weights.
"""

from __future__ import annotations

import torch

from goldmine.model import GPTConfig


def to_hf_config(cfg: GPTConfig, **extra):
    """A `transformers.LlamaConfig` with goldmine's dimensions."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.n_embd,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.n_layer,
        num_attention_heads=cfg.n_head,
        num_key_value_heads=cfg.n_kv_head,
        head_dim=cfg.head_dim,
        max_position_embeddings=cfg.block_size,
        rms_norm_eps=cfg.norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
        tie_word_embeddings=cfg.tie_embeddings,
        attention_bias=cfg.attn_bias,
        hidden_act="silu",
        **extra,
    )


def from_hf_config(hf) -> GPTConfig:
    """GPTConfig from a `LlamaConfig`-like object (Llama, Mistral and Qwen2 share these names)."""
    rope = getattr(hf, "rope_parameters", None) or {}
    theta = rope.get("rope_theta", getattr(hf, "rope_theta", 10000.0))
    return GPTConfig(
        vocab_size=hf.vocab_size,
        block_size=hf.max_position_embeddings,
        n_layer=hf.num_hidden_layers,
        n_head=hf.num_attention_heads,
        n_kv_head=getattr(hf, "num_key_value_heads", None) or hf.num_attention_heads,
        n_embd=hf.hidden_size,
        intermediate_size=hf.intermediate_size,
        rope_theta=float(theta),
        norm_eps=hf.rms_norm_eps,
        tie_embeddings=bool(getattr(hf, "tie_word_embeddings", False)),
        attn_bias=bool(getattr(hf, "attention_bias", False)),
    )


def _interleaved_to_half(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Rows of a q or k projection, per head: (x0, x1, x2, x3, ...) pairs -> (x0, x2, ..., x1, x3, ...)."""
    rows = w.shape[0]
    d = rows // n_heads
    return w.reshape(n_heads, d // 2, 2, *w.shape[1:]).transpose(1, 2).reshape(rows, *w.shape[1:])


def _half_to_interleaved(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    rows = w.shape[0]
    d = rows // n_heads
    return w.reshape(n_heads, 2, d // 2, *w.shape[1:]).transpose(1, 2).reshape(rows, *w.shape[1:])


def to_hf_state_dict(sd: dict[str, torch.Tensor], cfg: GPTConfig) -> dict[str, torch.Tensor]:
    H, K, D, n_inter = cfg.n_head, cfg.n_kv_head, cfg.head_dim, cfg.intermediate_size
    out = {"model.embed_tokens.weight": sd["embed.weight"], "model.norm.weight": sd["norm.weight"]}
    if not cfg.tie_embeddings:
        out["lm_head.weight"] = sd["head.weight"]
    for i in range(cfg.n_layer):
        g, h = f"blocks.{i}.", f"model.layers.{i}."
        out[h + "input_layernorm.weight"] = sd[g + "attn_norm.weight"]
        out[h + "post_attention_layernorm.weight"] = sd[g + "mlp_norm.weight"]
        for kind in ("weight", "bias") if cfg.attn_bias else ("weight",):
            q, k, v = sd[g + f"attn.wqkv.{kind}"].split([H * D, K * D, K * D], dim=0)
            out[h + f"self_attn.q_proj.{kind}"] = _interleaved_to_half(q, H)
            out[h + f"self_attn.k_proj.{kind}"] = _interleaved_to_half(k, K)
            out[h + f"self_attn.v_proj.{kind}"] = v
        out[h + "self_attn.o_proj.weight"] = sd[g + "attn.wo.weight"]
        if cfg.attn_bias:  # Llama's attention_bias also gives o_proj a bias; ours is zero
            out[h + "self_attn.o_proj.bias"] = sd[g + "attn.wo.weight"].new_zeros(cfg.n_embd)
        gate, up = sd[g + "mlp.w13.weight"].split([n_inter, n_inter], dim=0)
        out[h + "mlp.gate_proj.weight"] = gate
        out[h + "mlp.up_proj.weight"] = up
        out[h + "mlp.down_proj.weight"] = sd[g + "mlp.w2.weight"]
    return {k: v.contiguous() for k, v in out.items()}


def from_hf_state_dict(hf: dict[str, torch.Tensor], cfg: GPTConfig) -> dict[str, torch.Tensor]:
    H, K = cfg.n_head, cfg.n_kv_head
    sd = {"embed.weight": hf["model.embed_tokens.weight"], "norm.weight": hf["model.norm.weight"]}
    sd["head.weight"] = hf["model.embed_tokens.weight"] if cfg.tie_embeddings else hf["lm_head.weight"]
    for i in range(cfg.n_layer):
        g, h = f"blocks.{i}.", f"model.layers.{i}."
        sd[g + "attn_norm.weight"] = hf[h + "input_layernorm.weight"]
        sd[g + "mlp_norm.weight"] = hf[h + "post_attention_layernorm.weight"]
        for kind in ("weight", "bias") if cfg.attn_bias else ("weight",):
            sd[g + f"attn.wqkv.{kind}"] = torch.cat([
                _half_to_interleaved(hf[h + f"self_attn.q_proj.{kind}"], H),
                _half_to_interleaved(hf[h + f"self_attn.k_proj.{kind}"], K),
                hf[h + f"self_attn.v_proj.{kind}"],
            ], dim=0)
        sd[g + "attn.wo.weight"] = hf[h + "self_attn.o_proj.weight"]
        sd[g + "mlp.w13.weight"] = torch.cat([hf[h + "mlp.gate_proj.weight"],
                                              hf[h + "mlp.up_proj.weight"]], dim=0)
        sd[g + "mlp.w2.weight"] = hf[h + "mlp.down_proj.weight"]
    return sd
