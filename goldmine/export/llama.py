"""goldmine <-> Hugging Face Llama: configs and weight names.

goldmine's GPT is Llama weight for weight, with two layout differences made for speed (see
model.py): fused q/k/v and gate/up matrices, and rotary pairs of adjacent features (Meta's
layout) where Hugging Face pairs feature i with i + D/2 ("rotate half"). The functions here undo
both, so `transformers.LlamaForCausalLM` computes the same logits from the converted weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from goldmine.errors import GoldmineError
from goldmine.model import GPTConfig

# Hugging Face model families whose weights are Llama's, name for name (Qwen2 adds q/k/v biases)
CAUSAL_LM_TYPES = ("llama", "mistral", "qwen2")


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


def sliding_window(hf) -> int | None:
    """The attention window of a Mistral/Qwen2 config, when one is in force."""
    window = getattr(hf, "sliding_window", None)
    if not window:
        return None
    if hf.model_type == "qwen2":
        types = getattr(hf, "layer_types", None) or []
        if not getattr(hf, "use_sliding_window", False) and "sliding_attention" not in types:
            return None
    return int(window)


def check_hf_config(hf, where: str) -> None:
    """Refuse what goldmine's GPT cannot compute exactly, naming the config.json field."""
    rope = getattr(hf, "rope_parameters", None) or getattr(hf, "rope_scaling", None) or {}
    kind = rope.get("rope_type", rope.get("type", "default")) or "default"
    if kind != "default":
        raise GoldmineError(f"{where}: rope_parameters.rope_type {kind!r} (RoPE scaling) is not "
                            "supported; goldmine's GPT computes plain RoPE (rope_type 'default')")
    head_dim = getattr(hf, "head_dim", None)
    if head_dim and head_dim != hf.hidden_size // hf.num_attention_heads:
        raise GoldmineError(f"{where}: head_dim {head_dim} differs from hidden_size / "
                            f"num_attention_heads ({hf.hidden_size // hf.num_attention_heads}); "
                            "goldmine's GPT needs them equal")
    if getattr(hf, "mlp_bias", False):
        raise GoldmineError(f"{where}: mlp_bias is true; goldmine's GPT has no MLP biases")
    if getattr(hf, "hidden_act", "silu") not in ("silu", "swish"):
        raise GoldmineError(f"{where}: hidden_act {hf.hidden_act!r}; goldmine's GPT uses SwiGLU "
                            "(silu)")
    if (getattr(hf, "partial_rotary_factor", None) or 1.0) != 1.0:
        raise GoldmineError(f"{where}: partial_rotary_factor is not supported")


def from_hf_config(hf) -> GPTConfig:
    """GPTConfig from a `LlamaConfig`-like object (Llama, Mistral and Qwen2 share these names).
    A sliding attention window becomes the context length: within it, windowed attention and
    full attention are the same computation."""
    rope = getattr(hf, "rope_parameters", None) or {}
    theta = rope.get("rope_theta", getattr(hf, "rope_theta", 10000.0))
    window = sliding_window(hf)
    return GPTConfig(
        vocab_size=hf.vocab_size,
        block_size=min(hf.max_position_embeddings, window or hf.max_position_embeddings),
        n_layer=hf.num_hidden_layers,
        n_head=hf.num_attention_heads,
        n_kv_head=getattr(hf, "num_key_value_heads", None) or hf.num_attention_heads,
        n_embd=hf.hidden_size,
        intermediate_size=hf.intermediate_size,
        rope_theta=float(theta),
        norm_eps=hf.rms_norm_eps,
        tie_embeddings=bool(getattr(hf, "tie_word_embeddings", False)),
        attn_bias=bool(getattr(hf, "attention_bias", False)) or hf.model_type == "qwen2",
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


# ---------------------------------------------------------------------------------------------
# importing a local Hugging Face causal LM
# ---------------------------------------------------------------------------------------------
def is_hf_model_dir(path: Path) -> bool:
    """A directory whose config.json is a Hugging Face one (it names a model_type)."""
    f = Path(path) / "config.json"
    if not f.is_file():
        return False
    try:
        config = json.loads(f.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(config, dict) and "model_type" in config and "format" not in config


def _hf_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    index = path / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        files = [path / name for name in shards]
    elif (path / "model.safetensors").is_file():
        files = [path / "model.safetensors"]
    elif (path / "pytorch_model.bin").is_file():
        raise GoldmineError(f"{path}: only pickle weights (pytorch_model.bin); goldmine loads "
                            "safetensors only (re-save the model with save_pretrained)")
    else:
        raise GoldmineError(f"{path}: no model.safetensors (or its index) in this directory")
    tensors: dict[str, torch.Tensor] = {}
    for f in files:
        try:
            tensors.update(load_file(f))
        except (SafetensorError, OSError, ValueError) as e:
            raise GoldmineError(f"{f}: corrupt or not a safetensors file ({e})") from None
    return tensors


def load_hf_causal_lm(path: str | Path, device: str | torch.device = "cpu"):
    """(GPT, Tokenizer, added special tokens) from a local Llama-family directory.

    The weights are mapped into goldmine's layout (same logits; tested against transformers).
    goldmine's special and chat tokens are appended to a tokenizer that lacks them, and the
    embedding (and output head) grow by as many rows, set to the mean of the existing rows: a
    neutral start that fine-tuning then teaches.
    """
    from transformers import AutoConfig

    from goldmine.checkpoint import load_weights_dict
    from goldmine.model import GPT
    from goldmine.tokenizer import with_special_tokens

    path = Path(path)
    try:
        hf = AutoConfig.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, KeyError) as e:
        raise GoldmineError(f"{path}: cannot read config.json ({str(e).splitlines()[0]})") from None
    if hf.model_type not in CAUSAL_LM_TYPES:
        raise GoldmineError(f"{path}: model_type {hf.model_type!r} is not supported; goldmine "
                            f"loads the Llama family: {', '.join(CAUSAL_LM_TYPES)}")
    if not (path / "tokenizer.json").is_file():
        raise GoldmineError(f"{path}: no tokenizer.json (goldmine reads fast tokenizers only)")
    check_hf_config(hf, f"{path / 'config.json'}")
    cfg = from_hf_config(hf)
    if cfg.block_size < hf.max_position_embeddings:
        from goldmine.progress import info

        info(f"{path}: sliding attention window of {cfg.block_size:,} tokens: the context is "
             f"{cfg.block_size:,} tokens (not max_position_embeddings "
             f"{hf.max_position_embeddings:,})")
    hf_sd = _hf_tensors(path)
    if getattr(hf, "attention_bias", False) and any(
            k.endswith("o_proj.bias") and v.abs().max() > 0 for k, v in hf_sd.items()):
        raise GoldmineError(f"{path}: the attention output projections have biases, which "
                            "goldmine's GPT does not")
    used = _Tracked(hf_sd)
    try:
        sd = from_hf_state_dict(used, cfg)
    except KeyError as e:
        raise GoldmineError(f"{path}: weights do not match config.json (missing {e})") from None
    ignorable = ("o_proj.bias", "rotary_emb.inv_freq", "lm_head.weight")  # zero, derived, tied
    unexpected = sorted(k for k in set(hf_sd) - used.read if not k.endswith(ignorable))
    if unexpected:
        raise GoldmineError(f"{path}: weights that goldmine's GPT has no place for: "
                            f"{', '.join(unexpected[:3])}{' ...' if len(unexpected) > 3 else ''} "
                            f"({len(unexpected)} tensors); is config.json the one these weights "
                            "were saved with?")
    tokenizer, added = with_special_tokens(path / "tokenizer.json")
    with torch.device("meta"):
        model = GPT(cfg)
    model = model.to_empty(device=device)
    load_weights_dict(model, sd, str(path))
    if added:
        model = grow_vocab(model, max(tokenizer.vocab_size, cfg.vocab_size))
    model.eval()
    return model, tokenizer, added


def hf_framing(path: Path) -> tuple[bool | None, dict | None]:
    """(whether the tokenizer starts a text with goldmine's BOS, goldmine's chat template) of
    a Hugging Face directory, as `goldmine export --format hf` wrote them; (None, None) for
    what goldmine cannot tell."""
    from goldmine import chat
    from goldmine.tokenizer import SPECIAL_TOKENS

    bos = None
    try:
        tok = json.loads((path / "tokenizer.json").read_text(encoding="utf-8"))
        single = (tok.get("post_processor") or {}).get("single") or []
        bos = any((x.get("SpecialToken") or {}).get("id") == SPECIAL_TOKENS[1] for x in single)
        config = json.loads((path / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, AttributeError):
        return bos, None
    template = config.get("chat_template") if isinstance(config, dict) else None
    return bos, (chat.template_meta() if template == chat.JINJA else None)


class _Tracked(dict):
    """A dict that remembers which keys were read."""

    def __init__(self, d):
        super().__init__(d)
        self.read: set[str] = set()

    def __getitem__(self, key):
        value = super().__getitem__(key)
        self.read.add(key)
        return value


def grow_vocab(model, vocab_size: int):
    """The model with `vocab_size` embedding (and head) rows; new rows = the mean of the old."""
    from goldmine.model import GPT

    old = model.config.vocab_size
    if vocab_size <= old:
        return model
    cfg = GPTConfig.from_dict({**model.config.to_dict(), "vocab_size": vocab_size})
    p = model.embed.weight
    with torch.device("meta"):
        grown = GPT(cfg)
    grown = grown.to_empty(device=p.device)
    sd = model.state_dict()
    with torch.no_grad():
        for name in ("embed.weight", "head.weight"):
            w = sd[name]
            sd[name] = torch.cat([w, w.mean(0, keepdim=True).expand(vocab_size - old, -1)])
    grown.load_state_dict(sd)
    if cfg.tie_embeddings:
        grown.head.weight = grown.embed.weight
    return grown
