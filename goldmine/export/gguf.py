"""`goldmine export --format gguf`: one GGUF file that llama.cpp (and so Ollama, LM Studio, ...)
loads as architecture "llama".

goldmine's GPT is Llama weight for weight (see model.py), and GGUF keeps Meta's original layout,
so the mapping is only names and splits:

    embed.weight                 -> token_embd.weight
    blocks.N.attn_norm.weight    -> blk.N.attn_norm.weight
    blocks.N.attn.wqkv.{weight,bias} rows [q; k; v] -> blk.N.attn_{q,k,v}.{weight,bias}
    blocks.N.attn.wo.weight      -> blk.N.attn_output.weight
    blocks.N.mlp_norm.weight     -> blk.N.ffn_norm.weight
    blocks.N.mlp.w13.weight rows [gate; up] -> blk.N.ffn_gate.weight, blk.N.ffn_up.weight
    blocks.N.mlp.w2.weight       -> blk.N.ffn_down.weight
    norm.weight                  -> output_norm.weight
    head.weight                  -> output.weight (left out when tied: llama.cpp reuses token_embd)

Rotary embeddings: llama.cpp's "llama" architecture rotates adjacent pairs (x[2i], x[2i+1]) as
Meta's code does and as goldmine does. Hugging Face checkpoints use "rotate half" instead, which
is why llama.cpp's convert_hf_to_gguf.py permutes q/k rows back (`LlamaModel.permute`) and why
`goldmine.export.llama` permutes them the other way for transformers. Here no permutation is
needed: the q/k rows go out exactly as goldmine holds them.

The tokenizer goes in as llama.cpp's "gpt2" byte-level BPE (tokens in id order, merges by rank,
pre-tokenizer "gpt-2": the GPT-2 split regex that goldmine's ByteLevel pre-tokenizer uses).
A character tokenizer has no faithful "gpt2" form (its tokens are characters, not byte-level
symbols, and it has no merges), so it is refused with a clear error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from goldmine.errors import GoldmineError

TENSOR_TYPES = ("f32", "f16", "q8_0")
ARCH = "llama"
PRE_TOKENIZER = "gpt-2"   # llama.cpp: LLAMA_VOCAB_PRE_TYPE_GPT2, the GPT-2 split regex
Q8_BLOCK = 32             # q8_0 quantizes rows in blocks of this many values


def _gguf():
    try:
        import gguf
    except ImportError:  # a dependency, so only a broken install gets here
        raise GoldmineError("GGUF export needs the `gguf` package (pip install gguf)") from None
    return gguf


# ---------------------------------------------------------------------------------------------
# weights
# ---------------------------------------------------------------------------------------------
def gguf_tensors(model) -> dict[str, torch.Tensor]:
    """The model's weights under llama.cpp's names, fp32 on CPU, in file order."""
    cfg = model.config
    H, K, D, inter = cfg.n_head, cfg.n_kv_head, cfg.head_dim, cfg.intermediate_size
    sd = {k: v.detach().to("cpu", torch.float32) for k, v in model.state_dict().items()}
    out = {"token_embd.weight": sd["embed.weight"]}
    for i in range(cfg.n_layer):
        g, b = f"blocks.{i}.", f"blk.{i}."
        out[b + "attn_norm.weight"] = sd[g + "attn_norm.weight"]
        for kind in ("weight", "bias") if cfg.attn_bias else ("weight",):
            q, k, v = sd[g + f"attn.wqkv.{kind}"].split([H * D, K * D, K * D], dim=0)
            out[b + f"attn_q.{kind}"], out[b + f"attn_k.{kind}"] = q, k
            out[b + f"attn_v.{kind}"] = v
        out[b + "attn_output.weight"] = sd[g + "attn.wo.weight"]
        out[b + "ffn_norm.weight"] = sd[g + "mlp_norm.weight"]
        gate, up = sd[g + "mlp.w13.weight"].split([inter, inter], dim=0)
        out[b + "ffn_gate.weight"], out[b + "ffn_up.weight"] = gate, up
        out[b + "ffn_down.weight"] = sd[g + "mlp.w2.weight"]
    out["output_norm.weight"] = sd["norm.weight"]
    if not cfg.tie_embeddings:
        out["output.weight"] = sd["head.weight"]
    return {k: v.contiguous() for k, v in out.items()}


def _encode(gguf, t: torch.Tensor, tensor_type: str) -> tuple[np.ndarray, Any, str]:
    """(data, raw_dtype for the writer, type written) for one tensor. 1-D tensors (norm weights,
    biases) stay F32 as llama.cpp's converter keeps them; q8_0 needs rows in whole blocks."""
    a = t.numpy()
    if a.ndim < 2 or tensor_type == "f32":
        return a.astype(np.float32, copy=False), None, "f32"
    if tensor_type == "q8_0" and a.shape[-1] % Q8_BLOCK == 0:
        q8 = gguf.GGMLQuantizationType.Q8_0
        return gguf.quants.quantize(a, q8), q8, "q8_0"
    return a.astype(np.float16), None, "f16"


# ---------------------------------------------------------------------------------------------
# tokenizer
# ---------------------------------------------------------------------------------------------
def _bpe_vocab(tokenizer, n_vocab: int, gguf) -> dict[str, Any]:
    """tokens, token types and merges in llama.cpp's "gpt2" form, or a GoldmineError saying why
    this tokenizer cannot be written faithfully."""
    need = ("GGUF export needs a byte-level BPE tokenizer (what `goldmine tokenizer train` makes "
            "by default)")
    if getattr(tokenizer, "kind", "bpe") == "char":
        raise GoldmineError(f"{need}; this model uses a character tokenizer, which llama.cpp's "
                            "BPE tokenizer cannot reproduce (export --format hf instead)")
    spec = json.loads(tokenizer.to_json())
    model = spec.get("model") or {}
    pre = spec.get("pre_tokenizer") or {}
    decoder = spec.get("decoder") or {}
    why = None
    if model.get("type") != "BPE":
        why = f"its model is {model.get('type')!r}, not BPE"
    elif pre.get("type") != "ByteLevel" or not pre.get("use_regex", True) \
            or pre.get("add_prefix_space"):
        why = f"its pre-tokenizer ({pre.get('type')}) is not GPT-2's byte-level split"
    elif spec.get("normalizer"):
        why = f"it has a normalizer ({spec['normalizer'].get('type')})"
    elif decoder.get("type") != "ByteLevel":
        why = f"its decoder ({decoder.get('type')}) is not byte-level"
    elif model.get("byte_fallback") or model.get("ignore_merges") or model.get("dropout") \
            or model.get("continuing_subword_prefix") or model.get("end_of_word_suffix"):
        why = "its BPE options (byte fallback, ignore_merges, dropout or affixes) differ from GPT-2's"
    elif not model.get("merges"):
        why = "it has no merges"
    if why:
        raise GoldmineError(f"{need}; this model's tokenizer cannot be written as llama.cpp's "
                            f"'gpt2' tokenizer: {why} (export --format hf and use llama.cpp's "
                            "convert_hf_to_gguf.py instead)")

    merges = []
    for m in model["merges"]:  # tokenizers writes ["a", "b"] pairs (older files: "a b")
        pair = m.split(" ") if isinstance(m, str) else list(m)
        if len(pair) != 2 or not all(pair):
            raise GoldmineError(f"tokenizer merge {m!r}: expected two non-empty symbols")
        merges.append(f"{pair[0]} {pair[1]}")

    vocab = tokenizer.get_vocab()
    if len(vocab) > n_vocab or max(vocab.values()) >= n_vocab:
        raise GoldmineError(f"the tokenizer has ids up to {max(vocab.values())} but the model's "
                            f"embedding has only {n_vocab} rows")
    added = {a["content"]: bool(a.get("special")) for a in spec.get("added_tokens") or []}
    tt = gguf.TokenType
    tokens: list[str | None] = [None] * n_vocab
    types = [tt.UNUSED] * n_vocab
    for text, i in vocab.items():
        tokens[i] = text
        if text in added:
            types[i] = tt.CONTROL if added[text] else tt.USER_DEFINED
        else:
            types[i] = tt.NORMAL
    # rows of the embedding no token maps to (a vocabulary padded or grown): placeholders, as
    # llama.cpp's converter writes them, so that token list and embedding agree in length
    taken = set(vocab)
    for i, text in enumerate(tokens):
        if text is None:
            text = f"[PAD{i}]"
            while text in taken:
                text = "[" + text + "]"
            tokens[i] = text
            taken.add(text)
    return {"tokens": tokens, "types": [int(t) for t in types], "merges": merges}


# ---------------------------------------------------------------------------------------------
# the file
# ---------------------------------------------------------------------------------------------
def export_gguf(model, tokenizer, meta: dict, out_file: Path, tensor_type: str = "f16",
                name: str = "goldmine") -> dict:
    """goldmine GPT -> one GGUF file for llama.cpp (architecture "llama").

    model: goldmine.model.GPT (eval, fp32, CPU). tokenizer: goldmine.tokenizer.Tokenizer.
    meta: the checkpoint's config.json ("data": how text was framed, e.g. {"bos": true};
    "chat": the chat template of chat models, with "jinja").
    tensor_type: "f32" | "f16" | "q8_0" for the 2-D weight matrices; norm weights and biases stay
    F32; a matrix whose rows are not whole q8_0 blocks (32 values) is written f16 and listed in
    checks["gguf_f16_fallback"].
    Returns {"files": [out_file.name], "checks": {...}}.
    """
    gguf = _gguf()
    out_file = Path(out_file)
    tensor_type = str(tensor_type).lower()
    if tensor_type not in TENSOR_TYPES:
        raise GoldmineError(f"GGUF tensor type {tensor_type!r}: expected one of "
                            f"{', '.join(TENSOR_TYPES)}")
    cfg = model.config
    meta = meta or {}
    data = meta.get("data") or {}
    chat = meta.get("chat") or None
    vocab = _bpe_vocab(tokenizer, cfg.vocab_size, gguf)
    special = tokenizer.special_ids

    file_type = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                 "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[tensor_type]
    written: dict[str, str] = {}
    fallback: list[str] = []
    writer = None
    try:
        writer = gguf.GGUFWriter(out_file, ARCH)
        writer.add_type(gguf.GGUFType.MODEL)
        writer.add_name(name)
        writer.add_context_length(cfg.block_size)
        writer.add_embedding_length(cfg.n_embd)
        writer.add_block_count(cfg.n_layer)
        writer.add_feed_forward_length(cfg.intermediate_size)
        writer.add_head_count(cfg.n_head)
        writer.add_head_count_kv(cfg.n_kv_head)
        writer.add_key_length(cfg.head_dim)
        writer.add_value_length(cfg.head_dim)
        writer.add_rope_dimension_count(cfg.head_dim)
        writer.add_rope_freq_base(float(cfg.rope_theta))
        writer.add_layer_norm_rms_eps(float(cfg.norm_eps))
        writer.add_vocab_size(cfg.vocab_size)
        writer.add_file_type(file_type)
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)

        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(PRE_TOKENIZER)
        writer.add_token_list(vocab["tokens"])
        writer.add_token_types(vocab["types"])
        writer.add_token_merges(vocab["merges"])
        writer.add_bos_token_id(special["bos"])
        writer.add_eos_token_id(special["eos"])
        writer.add_pad_token_id(special["pad"])
        if special.get("end") is not None:  # <|end|> closes a chat turn: generation stops there
            writer.add_eot_token_id(special["end"])
        # prompts start the way training documents did; EOS closes documents, never prompts
        writer.add_add_bos_token(bool(data.get("bos", True)))
        writer.add_add_eos_token(False)
        if chat and chat.get("jinja"):
            writer.add_chat_template(chat["jinja"])

        for tname, t in gguf_tensors(model).items():
            arr, raw_dtype, kind = _encode(gguf, t, tensor_type)
            if tensor_type == "q8_0" and t.dim() >= 2 and kind != "q8_0":
                fallback.append(tname)
            writer.add_tensor(tname, arr, raw_dtype=raw_dtype)
            written[tname] = kind

        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file(progress=False)
        writer.close()
        writer = None
    except OSError as e:
        raise GoldmineError(f"{out_file}: cannot write the GGUF file "
                            f"({e.strerror or e})") from None
    except (ValueError, TypeError) as e:  # the writer's own checks (shapes, types, keys)
        raise GoldmineError(f"{out_file}: GGUF writer refused the model ({e})") from None
    finally:
        if writer is not None:  # failed half way: close and leave no partial file behind
            try:
                writer.close()
            except Exception:  # noqa: BLE001 - the first error is the one to report
                pass
            out_file.unlink(missing_ok=True)

    checks = _validate(gguf, out_file, written, len(vocab["tokens"]))
    counts: dict[str, int] = {}
    for kind in written.values():
        counts[kind] = counts.get(kind, 0) + 1
    checks.update({"gguf_type": tensor_type, "gguf_tensor_types": counts,
                   "gguf_f16_fallback": fallback, "gguf_tokenizer": f"gpt2/{PRE_TOKENIZER}",
                   "gguf_add_bos": bool(data.get("bos", True)),
                   "gguf_chat_template": bool(chat and chat.get("jinja"))})
    return {"files": [out_file.name], "checks": checks}


def _validate(gguf, path: Path, written: dict[str, str], n_vocab: int) -> dict:
    """Read the file back: every tensor present with the type written, and the vocabulary."""
    try:
        reader = gguf.GGUFReader(path)
    except (OSError, ValueError) as e:
        raise GoldmineError(f"{path}: the GGUF file just written cannot be read back ({e})") \
            from None
    found = {t.name: t.tensor_type.name.lower() for t in reader.tensors}
    if found != written:
        missing = sorted(set(written) - set(found)) or sorted(set(found) - set(written))
        raise GoldmineError(f"{path}: GGUF read back differs from what was written "
                            f"(tensor {missing[:3] or 'types'})")
    tokens = reader.get_field(gguf.Keys.Tokenizer.LIST)
    if tokens is None or len(tokens.data) != n_vocab:
        raise GoldmineError(f"{path}: GGUF read back has no {n_vocab}-token vocabulary")
    return {"gguf_tensors": len(found), "gguf_vocab": n_vocab,
            "gguf_bytes": path.stat().st_size}
