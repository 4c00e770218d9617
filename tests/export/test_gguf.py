"""GGUF export: metadata, tokenizer, tensor names/shapes/values and layout, read back with the
`gguf` package (llama.cpp's own reader)."""

import json
from collections import Counter

import gguf
import numpy as np
import pytest
import torch

from goldmine.chat import template_meta
from goldmine.errors import GoldmineError
from goldmine.export.gguf import export_gguf
from goldmine.export.llama import to_hf_state_dict
from goldmine.model import GPT, GPTConfig
from goldmine.tokenizer import SPECIAL_TOKENS, Tokenizer, build_bpe, build_char

WORDS = ("the quick brown fox jumps over the lazy dog while goldmine trains a tiny model on "
         "wool scarves, invoices and support tickets; 金矿 良品 羊毛 围巾 非常 暖和").split()


def _texts():
    rng = np.random.default_rng(0)
    for i in range(300):
        yield " ".join(rng.choice(WORDS, size=12)) + f". Order #{i}!\n"


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return build_bpe(_texts(), vocab_size=400)


def tiny(tok, **kw) -> GPT:
    base = dict(vocab_size=tok.vocab_size, n_layer=2, n_head=4, n_kv_head=2, n_embd=64,
                block_size=128)
    model = GPT(GPTConfig(**{**base, **kw}), seed=0).eval()
    if model.config.attn_bias:  # biases start at zero; make them matter
        with torch.no_grad():
            for block in model.blocks:
                block.attn.wqkv.bias.normal_(0.0, 0.1, generator=torch.Generator().manual_seed(1))
    return model


def export(tmp_path, model, tok, tensor_type="f16", meta=None, name="x"):
    meta = {"data": {"bos": True, "eos": True}} if meta is None else meta
    out = tmp_path / f"{name}-{tensor_type}.gguf"
    result = export_gguf(model, tok, meta, out, tensor_type=tensor_type)
    assert result["files"] == [out.name] and out.is_file()
    return gguf.GGUFReader(out), result


def field(reader, key):
    f = reader.get_field(key)
    return None if f is None else f.contents()


def tensors(reader) -> dict:
    return {t.name: t for t in reader.tensors}


def expected_tensors(model) -> dict[str, torch.Tensor]:
    """goldmine's weights under llama.cpp's names, split here independently of the exporter."""
    cfg, sd = model.config, model.state_dict()
    H, K, D, inter = cfg.n_head, cfg.n_kv_head, cfg.head_dim, cfg.intermediate_size
    out = {"token_embd.weight": sd["embed.weight"], "output_norm.weight": sd["norm.weight"]}
    if not cfg.tie_embeddings:
        out["output.weight"] = sd["head.weight"]
    for i in range(cfg.n_layer):
        g, b = f"blocks.{i}.", f"blk.{i}."
        out[b + "attn_norm.weight"] = sd[g + "attn_norm.weight"]
        out[b + "ffn_norm.weight"] = sd[g + "mlp_norm.weight"]
        kinds = ("weight", "bias") if cfg.attn_bias else ("weight",)
        for kind in kinds:
            w = sd[g + f"attn.wqkv.{kind}"]
            out[b + f"attn_q.{kind}"] = w[:H * D]
            out[b + f"attn_k.{kind}"] = w[H * D:(H + K) * D]
            out[b + f"attn_v.{kind}"] = w[(H + K) * D:]
        out[b + "attn_output.weight"] = sd[g + "attn.wo.weight"]
        out[b + "ffn_gate.weight"] = sd[g + "mlp.w13.weight"][:inter]
        out[b + "ffn_up.weight"] = sd[g + "mlp.w13.weight"][inter:]
        out[b + "ffn_down.weight"] = sd[g + "mlp.w2.weight"]
    return {k: v.detach().float().numpy() for k, v in out.items()}


# ------------------------------------------------------------------------------ metadata
def test_model_metadata(tmp_path, tok):
    model = tiny(tok, rope_theta=500000.0, norm_eps=1e-6)
    reader, result = export(tmp_path, model, tok, "f16")
    cfg = model.config
    assert field(reader, "general.architecture") == "llama"
    assert field(reader, "general.name") == "goldmine"
    assert field(reader, "llama.context_length") == 128
    assert field(reader, "llama.embedding_length") == 64
    assert field(reader, "llama.block_count") == 2
    assert field(reader, "llama.feed_forward_length") == cfg.intermediate_size
    assert field(reader, "llama.attention.head_count") == 4
    assert field(reader, "llama.attention.head_count_kv") == 2
    assert field(reader, "llama.rope.dimension_count") == cfg.head_dim == 16
    assert field(reader, "llama.rope.freq_base") == 500000.0
    assert field(reader, "llama.attention.layer_norm_rms_epsilon") == pytest.approx(1e-6)
    assert field(reader, "general.file_type") == gguf.LlamaFileType.MOSTLY_F16
    checks = result["checks"]
    assert checks["gguf_tensors"] == len(reader.tensors) == 2 + 2 * 9 + 1
    assert checks["gguf_type"] == "f16" and checks["gguf_f16_fallback"] == []


def test_tokenizer_metadata(tmp_path, tok):
    reader, _ = export(tmp_path, tiny(tok), tok, "f16",
                       meta={"data": {"bos": True, "eos": True}, "chat": template_meta()})
    assert field(reader, "tokenizer.ggml.model") == "gpt2"
    assert field(reader, "tokenizer.ggml.pre") == "gpt-2"
    tokens = field(reader, "tokenizer.ggml.tokens")
    assert tokens == [tok.id_to_token(i) for i in range(tok.vocab_size)]
    types = field(reader, "tokenizer.ggml.token_type")
    n_special = len(SPECIAL_TOKENS)
    assert types[:n_special] == [gguf.TokenType.CONTROL] * n_special
    assert set(types[n_special:]) == {gguf.TokenType.NORMAL}
    merges = json.loads(tok.to_json())["model"]["merges"]
    assert field(reader, "tokenizer.ggml.merges") == [" ".join(m) for m in merges]
    assert len(merges) > 50
    assert field(reader, "tokenizer.ggml.bos_token_id") == tok.bos_id
    assert field(reader, "tokenizer.ggml.eos_token_id") == tok.eos_id
    assert field(reader, "tokenizer.ggml.padding_token_id") == tok.pad_id
    assert field(reader, "tokenizer.ggml.eot_token_id") == tok.token_to_id("<|end|>")
    assert field(reader, "tokenizer.ggml.add_bos_token") is True
    assert field(reader, "tokenizer.ggml.add_eos_token") is False
    assert field(reader, "tokenizer.chat_template") == template_meta()["jinja"]


def test_plain_model_has_no_chat_template_and_keeps_bos_framing(tmp_path, tok):
    reader, result = export(tmp_path, tiny(tok), tok, "f16", meta={"data": {"bos": False}})
    assert field(reader, "tokenizer.chat_template") is None
    assert field(reader, "tokenizer.ggml.add_bos_token") is False
    assert result["checks"]["gguf_chat_template"] is False


# ------------------------------------------------------------------------------- tensors
@pytest.mark.parametrize("tensor_type", ["f32", "f16", "q8_0"])
def test_tensor_names_shapes_and_values(tmp_path, tok, tensor_type):
    model = tiny(tok)
    reader, result = export(tmp_path, model, tok, tensor_type)
    want, got = expected_tensors(model), tensors(reader)
    assert sorted(got) == sorted(want)
    assert "output.weight" in got
    q8 = gguf.GGMLQuantizationType.Q8_0
    for name, w in want.items():
        t = got[name]
        assert tuple(int(n) for n in t.shape) == tuple(reversed(w.shape)), name  # ne order
        if w.ndim == 1 or tensor_type == "f32":
            assert t.tensor_type == gguf.GGMLQuantizationType.F32, name
            np.testing.assert_array_equal(t.data, w, err_msg=name)
        elif tensor_type == "f16":
            assert t.tensor_type == gguf.GGMLQuantizationType.F16, name
            np.testing.assert_array_equal(t.data, w.astype(np.float16), err_msg=name)
            np.testing.assert_allclose(t.data.astype(np.float32), w, rtol=1e-3, atol=1e-7)
        else:
            assert t.tensor_type == q8, name
            deq = gguf.quants.dequantize(t.data, q8).reshape(w.shape)
            blocks = w.reshape(w.shape[0], -1, 32)
            step = np.abs(blocks).max(-1, keepdims=True) / 127      # one q8_0 level per block
            err = np.abs(deq.reshape(blocks.shape) - blocks)
            # half a level from rounding, plus the fp16-stored scale (2^-11 relative) x 127
            assert (err <= (0.5 + 127 * 2**-11 + 1e-3) * step + 1e-9).all(), name
    assert result["checks"]["gguf_tensors"] == len(want)


def test_qk_rows_are_goldmine_rows_as_llama_cpp_converter_would_write(tmp_path, tok):
    """GGUF keeps Meta's interleaved rotary layout, which is goldmine's: attn_q/attn_k are the
    wqkv row blocks unpermuted, and equal what llama.cpp's convert_hf_to_gguf.py makes of our
    Hugging Face export (it permutes HF's rotate-half rows back)."""
    model = tiny(tok, attn_bias=True)
    cfg = model.config
    H, K, D = cfg.n_head, cfg.n_kv_head, cfg.head_dim
    got = tensors(export(tmp_path, model, tok, "f32")[0])
    hf = to_hf_state_dict(model.state_dict(), cfg)

    def llama_cpp_permute(w, n_head):  # LlamaModel.permute in convert_hf_to_gguf.py
        w = w.numpy()
        return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
                .swapaxes(1, 2).reshape(w.shape))

    for i in range(cfg.n_layer):
        wqkv = model.blocks[i].attn.wqkv
        for kind, param in (("weight", wqkv.weight), ("bias", wqkv.bias)):
            q, k = got[f"blk.{i}.attn_q.{kind}"].data, got[f"blk.{i}.attn_k.{kind}"].data
            np.testing.assert_array_equal(q, param[:H * D].detach().numpy())
            np.testing.assert_array_equal(k, param[H * D:(H + K) * D].detach().numpy())
            h = f"model.layers.{i}.self_attn."
            np.testing.assert_array_equal(q, llama_cpp_permute(hf[h + f"q_proj.{kind}"], H))
            np.testing.assert_array_equal(k, llama_cpp_permute(hf[h + f"k_proj.{kind}"], K))


def test_tied_embeddings_omit_output_and_biases_are_written(tmp_path, tok):
    tied = tensors(export(tmp_path, tiny(tok, tie_embeddings=True), tok, "f16", name="t")[0])
    assert "output.weight" not in tied and "token_embd.weight" in tied
    assert not any(n.endswith(".bias") for n in tied)
    biased = tensors(export(tmp_path, tiny(tok, attn_bias=True), tok, "q8_0", name="b")[0])
    for i in range(2):
        for p, rows in (("q", 64), ("k", 32), ("v", 32)):
            t = biased[f"blk.{i}.attn_{p}.bias"]
            assert t.tensor_type == gguf.GGMLQuantizationType.F32
            assert tuple(int(n) for n in t.shape) == (rows,)
    assert "output.weight" in biased


def test_q8_0_falls_back_to_f16_where_rows_are_not_whole_blocks(tmp_path, tok):
    model = tiny(tok, n_embd=48, n_head=4, n_kv_head=2)   # rows of 48: not 32-divisible
    reader, result = export(tmp_path, model, tok, "q8_0")
    got = tensors(reader)
    f16, q8 = gguf.GGMLQuantizationType.F16, gguf.GGMLQuantizationType.Q8_0
    fallback = result["checks"]["gguf_f16_fallback"]
    for name, t in got.items():
        if len(t.shape) == 1:
            continue
        row = int(t.shape[0])
        assert t.tensor_type == (q8 if row % 32 == 0 else f16), name
        assert (name in fallback) == (row % 32 != 0)
    assert got["blk.0.ffn_down.weight"].tensor_type == q8   # rows of intermediate_size (128)
    assert "blk.0.attn_q.weight" in fallback


def test_f32_file_rebuilds_the_same_model(tmp_path, tok):
    """Map the f32 file's tensors back to goldmine names: the logits equal the original's, so
    names, splits and layouts are right end to end (and the GGUF shape order with them)."""
    for kw in ({}, {"attn_bias": True, "n_kv_head": 1, "tie_embeddings": True}):
        model = tiny(tok, **kw)
        cfg = model.config
        got = {n: torch.from_numpy(np.array(t.data)) for n, t in
               tensors(export(tmp_path, model, tok, "f32", name=str(len(kw)))[0]).items()}
        sd = {"embed.weight": got["token_embd.weight"], "norm.weight": got["output_norm.weight"],
              "head.weight": got.get("output.weight", got["token_embd.weight"])}
        for i in range(cfg.n_layer):
            g, b = f"blocks.{i}.", f"blk.{i}."
            sd[g + "attn_norm.weight"] = got[b + "attn_norm.weight"]
            sd[g + "mlp_norm.weight"] = got[b + "ffn_norm.weight"]
            for kind in ("weight", "bias") if cfg.attn_bias else ("weight",):
                sd[g + f"attn.wqkv.{kind}"] = torch.cat(
                    [got[b + f"attn_{p}.{kind}"] for p in "qkv"])
            sd[g + "attn.wo.weight"] = got[b + "attn_output.weight"]
            sd[g + "mlp.w13.weight"] = torch.cat([got[b + "ffn_gate.weight"],
                                                  got[b + "ffn_up.weight"]])
            sd[g + "mlp.w2.weight"] = got[b + "ffn_down.weight"]
        twin = GPT(cfg).eval()
        twin.load_state_dict(sd)
        idx = torch.tensor([tok.encode("the quick brown fox. 金矿 羊毛 围巾", bos=True)])
        with torch.no_grad():
            torch.testing.assert_close(twin(idx), model(idx), rtol=0, atol=0)


# ------------------------------------------------------------------------- vocab, errors
def test_embedding_rows_past_the_tokenizer_are_unused_placeholders(tmp_path, tok):
    model = tiny(tok, vocab_size=tok.vocab_size + 5)
    reader, _ = export(tmp_path, model, tok, "f16")
    tokens = field(reader, "tokenizer.ggml.tokens")
    types = field(reader, "tokenizer.ggml.token_type")
    assert len(tokens) == len(types) == tok.vocab_size + 5 == len(set(tokens))
    assert tokens[-5:] == [f"[PAD{i}]" for i in range(tok.vocab_size, tok.vocab_size + 5)]
    assert types[-5:] == [gguf.TokenType.UNUSED] * 5


def test_tokenizer_larger_than_the_embedding_is_refused(tmp_path, tok):
    with pytest.raises(GoldmineError, match="embedding has only"):
        export_gguf(tiny(tok, vocab_size=tok.vocab_size - 1), tok, {}, tmp_path / "m.gguf")
    assert not (tmp_path / "m.gguf").exists()


def test_char_tokenizer_is_refused(tmp_path):
    char = build_char(Counter("hello world"), vocab_size=300)
    with pytest.raises(GoldmineError, match="byte-level BPE"):
        export_gguf(tiny(char), char, {}, tmp_path / "m.gguf")
    assert not (tmp_path / "m.gguf").exists()


def test_other_pre_tokenizer_is_refused(tmp_path, tok):
    spec = json.loads(tok.to_json())
    spec["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True}, spec["pre_tokenizer"]]}
    other = Tokenizer.from_json(json.dumps(spec))
    with pytest.raises(GoldmineError, match="pre-tokenizer"):
        export_gguf(tiny(other), other, {}, tmp_path / "m.gguf")


def test_bad_tensor_type_and_unwritable_path(tmp_path, tok):
    model = tiny(tok)
    with pytest.raises(GoldmineError, match="q4_k"):
        export_gguf(model, tok, {}, tmp_path / "m.gguf", tensor_type="q4_k")
    with pytest.raises(GoldmineError, match="cannot write"):
        export_gguf(model, tok, {}, tmp_path / "missing-dir" / "m.gguf")
    assert not (tmp_path / "missing-dir").exists()
