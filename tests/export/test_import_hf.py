"""Importing local Hugging Face checkpoints of the Llama family into goldmine's GPT: tiny random
models written by transformers itself (Llama, Mistral, Qwen2; GQA, rope theta, tied and untied
embeddings, q/k/v biases), the same logits; what cannot be computed exactly is refused."""

import json
from pathlib import Path

import pytest
import torch

from goldmine.checkpoint import load_model
from goldmine.errors import GoldmineError
from goldmine.export.llama import load_hf_causal_lm

DIMS = dict(vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=128)


def write(path, tokenizer_dir, family: str, **overrides):
    """A random checkpoint of `family` saved by transformers, with a BPE tokenizer."""
    import shutil

    from transformers import (
        LlamaConfig,
        LlamaForCausalLM,
        MistralConfig,
        MistralForCausalLM,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

    cls = {"llama": (LlamaConfig, LlamaForCausalLM), "mistral": (MistralConfig, MistralForCausalLM),
           "qwen2": (Qwen2Config, Qwen2ForCausalLM)}[family]
    torch.manual_seed(0)
    model = cls[1](cls[0](**{**DIMS, **overrides}))
    with torch.no_grad():  # biases are zero at init: make them count
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.5)
    model.save_pretrained(path)
    shutil.copyfile(tokenizer_dir / "tokenizer.json", path / "tokenizer.json")
    return path, model.eval()


@pytest.fixture(scope="module")
def tok_dir(foreign_bpe, tmp_path_factory):
    tk = foreign_bpe(["the quick brown fox jumps over the lazy dog"] * 50)
    d = tmp_path_factory.mktemp("tok")
    tk.save(str(d / "tokenizer.json"))
    return d


CASES = {
    "llama-gqa-theta": ("llama", dict(num_key_value_heads=2, rope_theta=500000.0)),
    "llama-tied": ("llama", dict(num_key_value_heads=4, tie_word_embeddings=True)),
    "llama-attention-bias": ("llama", dict(num_key_value_heads=2, attention_bias=True)),
    "mistral-gqa": ("mistral", dict(num_key_value_heads=1, sliding_window=None,
                                    rope_theta=1e6)),
    "qwen2-biases-tied": ("qwen2", dict(num_key_value_heads=2, tie_word_embeddings=True)),
    "qwen2-untied": ("qwen2", dict(num_key_value_heads=1, tie_word_embeddings=False)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_llama_family_checkpoints_load_with_the_same_logits(case, tok_dir, tmp_path):
    family, overrides = CASES[case]
    if case == "llama-attention-bias":  # Llama's attention_bias includes o_proj: keep it zero
        path, ref = write(tmp_path / case, tok_dir, family, **overrides)
        from safetensors.torch import load_file, save_file

        sd = load_file(path / "model.safetensors")
        for k in sd:
            if k.endswith("o_proj.bias"):
                sd[k] = torch.zeros_like(sd[k])
        save_file(sd, path / "model.safetensors", metadata={"format": "pt"})
        ref.load_state_dict(sd, strict=False)
    else:
        path, ref = write(tmp_path / case, tok_dir, family, **overrides)
    model, tok, added = load_hf_causal_lm(path)
    cfg = model.config
    assert cfg.n_kv_head == ref.config.num_key_value_heads
    assert cfg.tie_embeddings == bool(overrides.get("tie_word_embeddings", False))
    assert cfg.attn_bias == (family == "qwen2" or overrides.get("attention_bias", False))
    x = torch.randint(0, DIMS["vocab_size"], (2, 24), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = model(x)[..., :DIMS["vocab_size"]]  # goldmine's special tokens were appended
        diff = (ours - ref(x).logits).abs().max().item()
    assert diff <= 1e-4, diff
    import tokenizers

    base = tokenizers.Tokenizer.from_file(str(tok_dir / "tokenizer.json")).get_vocab_size()
    assert len(added) == 7 and tok.vocab_size == base + 7


def test_every_command_that_takes_a_model_takes_the_directory(tok_dir, tmp_path):
    """generate and evaluate go through load_model (classify: the next test)."""
    from goldmine.eval import evaluate
    from goldmine.generate import generate_text

    path, _ = write(tmp_path / "qwen", tok_dir, "qwen2", num_key_value_heads=2)
    out = generate_text(model=str(path), prompt="the quick", max_new_tokens=5, temperature=0.0,
                        device="cpu")
    assert out["samples"] and isinstance(out["samples"][0], str)
    text = tmp_path / "corpus.txt"
    text.write_text("the quick brown fox jumps over the lazy dog\n" * 40)
    res = evaluate(model=str(path), data=str(text), device="cpu")
    assert res["metrics"]["ppl"] > 1


def test_classify_fine_tunes_an_hf_llama_directory(tok_dir, tmp_path):
    from goldmine.classifier import Classifier
    from goldmine.train.finetune_classify import finetune_classify

    path, _ = write(tmp_path / "llama", tok_dir, "llama", num_key_value_heads=2)
    csv = tmp_path / "d.csv"
    csv.write_text("text,label\n" + "".join(
        f"the quick fox {'jumps' if i % 2 else 'sleeps'},{'a' if i % 2 else 'b'}\n"
        for i in range(24)))
    res = finetune_classify(data=str(csv), model=str(path), max_steps=2, batch_size=8,
                            device="cpu", eval_every=0)
    clf = Classifier.load(res["run_id"], device="cpu")
    assert clf.predict(["the quick fox jumps"])[0] in ("a", "b")
    saved = json.loads((Path(res["model_dir"]) / "config.json").read_text())
    assert saved["architectures"] == ["LlamaForSequenceClassification"]
    assert saved["num_key_value_heads"] == 2


def test_a_sliding_window_becomes_the_context(tok_dir, tmp_path, capsys):
    path, _ = write(tmp_path / "mistral", tok_dir, "mistral", num_key_value_heads=2,
                    sliding_window=64)
    model, _, _ = load_hf_causal_lm(path)
    assert model.config.block_size == 64
    assert "sliding attention window of 64 tokens" in capsys.readouterr().err


@pytest.mark.parametrize("overrides, message", [
    (dict(rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}),
     "rope_type 'linear'"),
    (dict(head_dim=32), "head_dim 32 differs"),
    (dict(mlp_bias=True), "mlp_bias is true"),
])
def test_what_goldmine_cannot_compute_is_refused(overrides, message, tok_dir, tmp_path):
    path, _ = write(tmp_path / "m", tok_dir, "llama", **overrides)
    with pytest.raises(GoldmineError, match=message):
        load_model(path)


def test_missing_extra_and_misshapen_weights_are_named(tok_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    path, _ = write(tmp_path / "m", tok_dir, "llama", num_key_value_heads=2)
    weights = path / "model.safetensors"
    sd = load_file(weights)

    def broken(change):
        d = dict(sd)
        change(d)
        save_file(d, weights, metadata={"format": "pt"})

    broken(lambda d: d.pop("model.layers.1.mlp.up_proj.weight"))
    with pytest.raises(GoldmineError, match=r"missing 'model.layers.1.mlp.up_proj.weight'"):
        load_model(path)
    broken(lambda d: d.update({"model.layers.0.self_attn.q_norm.weight": torch.ones(16)}))
    with pytest.raises(GoldmineError, match="no place for: model.layers.0.self_attn.q_norm"):
        load_model(path)
    broken(lambda d: d.update({"model.norm.weight": torch.ones(32)}))
    with pytest.raises(GoldmineError, match=r"norm.weight has shape \(32,\)"):
        load_model(path)
    weights.unlink()
    with pytest.raises(GoldmineError, match="no model.safetensors"):
        load_model(path)


def test_unsupported_architectures_list_what_is_supported(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(GPT2Config(vocab_size=64, n_positions=32, n_embd=16, n_layer=1,
                               n_head=2)).save_pretrained(tmp_path / "gpt2")
    with pytest.raises(GoldmineError, match="'gpt2' is not supported.*llama, mistral, qwen2"):
        load_model(tmp_path / "gpt2")
