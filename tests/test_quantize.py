"""`goldmine quantize`: int8 modules against fp32, the saved formats, and the command on a tiny
GPT run and a tiny BERT classifier run, loaded back by evaluate, generate, predict and serve."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from goldmine.errors import GoldmineError
from goldmine.quantize import (
    Int8Embedding,
    Int8Linear,
    dequantize_rows,
    quantize,
    quantize_model,
    quantize_rows,
)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


# ------------------------------------------------------------------------------ the modules
def test_quantize_rows_is_symmetric_per_row_and_round_trips():
    torch.manual_seed(0)
    w = torch.randn(16, 40) * torch.logspace(-3, 1, 16)[:, None]   # rows of very different size
    w[3] = 0.0
    q, scale = quantize_rows(w)
    assert q.dtype == torch.int8 and scale.dtype == torch.float32 and scale.shape == (16,)
    amax = w.abs().amax(1)
    assert torch.allclose(scale[amax > 0], amax[amax > 0] / 127)
    assert scale[3] == 1.0 and not q[3].any()                      # an all-zero row
    assert int(q.abs().max()) == 127 and int(q.min()) >= -127
    # every weight within half a step of its row's scale
    err = (dequantize_rows(q, scale) - w).abs()
    assert bool((err <= scale[:, None] / 2 + 1e-7).all())
    # and the int8 values are exactly recovered from the dequantized weights
    q2, scale2 = quantize_rows(dequantize_rows(q, scale))
    assert torch.equal(q2, q) and torch.allclose(scale2, scale)


@pytest.mark.parametrize("method,bound", [("int8-dynamic", 0.05), ("int8-weight-only", 0.02)])
def test_int8_linear_is_close_to_fp32(method, bound):
    torch.manual_seed(0)
    lin = nn.Linear(64, 96)
    x = torch.randn(3, 7, 64)
    q = Int8Linear.from_linear(lin, method)
    with torch.no_grad():
        ref, got = lin(x), q(x)
    assert got.shape == (3, 7, 96) and got.dtype == torch.float32
    assert rel_err(got, ref) < bound
    # exactly F.linear with the dequantized weight when activations stay fp32
    if method == "int8-weight-only":
        exact = nn.functional.linear(x, dequantize_rows(q.weight, q.weight_scale), lin.bias)
        assert torch.allclose(got, exact, atol=1e-6)
    # under inference mode and for a single row (decode) too
    with torch.inference_mode():
        assert rel_err(q(x[:1, :1]), lin(x[:1, :1])) < 2 * bound


def test_int8_modules_round_trip_through_safetensors(tmp_path):
    from safetensors.torch import load_file, save_file

    torch.manual_seed(0)
    lin, emb = nn.Linear(32, 48, bias=False), nn.Embedding(50, 32)
    q, e = Int8Linear.from_linear(lin, "int8-dynamic"), Int8Embedding.from_embedding(emb)
    x, idx = torch.randn(5, 32), torch.tensor([[0, 7, 49]])
    with torch.no_grad():
        y, z = q(x), e(idx)                       # packs the weight
    save_file({**{f"l.{k}": v for k, v in q.state_dict().items()},
               **{f"e.{k}": v for k, v in e.state_dict().items()}}, tmp_path / "m.safetensors")
    sd = load_file(tmp_path / "m.safetensors")
    assert set(sd) == {"l.weight", "l.weight_scale", "e.weight", "e.weight_scale"}
    assert sd["l.weight"].dtype == torch.int8 and sd["e.weight_scale"].dtype == torch.float32
    q2, e2 = Int8Linear(32, 48, bias=False), Int8Embedding(50, 32)
    q2.load_state_dict({k[2:]: v for k, v in sd.items() if k.startswith("l.")})
    e2.load_state_dict({k[2:]: v for k, v in sd.items() if k.startswith("e.")})
    with torch.no_grad():
        assert torch.equal(q2(x), y) and torch.equal(e2(idx), z)
    assert rel_err(z, emb(idx).detach()) < 0.01


def test_loading_new_weights_repacks():
    torch.manual_seed(0)
    a, b = nn.Linear(16, 16), nn.Linear(16, 16)
    q = Int8Linear.from_linear(a, "int8-dynamic")
    x = torch.randn(4, 16)
    with torch.no_grad():
        q(x)
        q.load_state_dict(Int8Linear.from_linear(b, "int8-dynamic").state_dict())
        assert rel_err(q(x), b(x)) < 0.05


# ------------------------------------------------------------------------------ the GPT
@pytest.mark.parametrize("tie", [False, True])
def test_quantized_gpt_logits_close_and_greedy_generation(tie):
    from goldmine.generate import SamplingParams, sample_tokens
    from goldmine.model import GPT, GPTConfig

    cfg = GPTConfig(vocab_size=300, block_size=64, n_layer=2, n_head=4, n_kv_head=2, n_embd=64,
                    tie_embeddings=tie)
    fp32 = GPT(cfg, seed=0).eval()
    q = quantize_model(GPT(cfg, seed=0), "int8-dynamic")
    kinds = {type(m).__name__ for m in q.modules()}
    assert "Linear" not in kinds and "Embedding" not in kinds
    assert isinstance(q.embed, Int8Embedding) and isinstance(q.head, Int8Linear)
    if tie:
        assert q.head.weight is q.embed.weight
    assert q.num_params() == fp32.num_params()
    idx = torch.randint(0, 300, (2, 20), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref, got = fp32(idx), q(idx)
    assert rel_err(got, ref) < 0.05
    # greedy decoding with the KV cache (float, whatever the embedding stores)
    assert q.new_cache(1, 8).k[0].dtype == torch.float32
    p = SamplingParams(max_new_tokens=8, temperature=0.0, top_k=None, top_p=None)
    toks = [int(t[0]) for t in sample_tokens(q, [1, 2, 3], p)]
    assert len(toks) == 8 and all(0 <= t < 300 for t in toks)
    no_cache = [int(t[0]) for t in sample_tokens(q, [1, 2, 3], p, use_cache=False)]
    assert toks == no_cache


# ------------------------------------------------------------------------------ runs
@pytest.fixture(scope="module")
def gpt_world(workspace, tmp_path_factory):
    """A tiny pretrain run and its int8-dynamic quantization, in a registry of their own."""
    from goldmine.train.pretrain import pretrain

    root = tmp_path_factory.mktemp("quantize-gpt")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GOLDMINE_HOME", str(root / "home"))
        src = pretrain(data=workspace["shards"], model="test", block_size=64, batch_size=4,
                       max_steps=20, eval_every=0, learning_rate=3e-3, warmup_steps=2,
                       out=str(root / "pretrain"))
        res = quantize(run=src["run_id"], batch_size=4, max_batches=2, threads=1)
    return {"home": root / "home", "source": src, "res": res, "root": root}


@pytest.fixture(scope="module")
def clf_world(tiny_bert, tmp_path_factory):
    """A tiny BERT classifier (finetune classify run) and its quantization."""
    from goldmine.train.finetune_classify import finetune_classify

    root = tmp_path_factory.mktemp("quantize-clf")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GOLDMINE_HOME", str(root / "home"))
        src = finetune_classify(data=tiny_bert["reviews"], model=tiny_bert["bert"], max_steps=4,
                                batch_size=8, learning_rate=1e-3, device="cpu")
        res = quantize(run=src["run_id"], batch_size=8, max_batches=2, threads=1)
    return {"home": root / "home", "source": src, "res": res, "data": tiny_bert["reviews"],
            "root": root}


@pytest.mark.slow
def test_gpt_quantize_run_is_recorded_and_loads_everywhere(gpt_world, monkeypatch):
    from goldmine.checkpoint import load_model
    from goldmine.generate import generate_text
    from goldmine.registry import Registry

    monkeypatch.setenv("GOLDMINE_HOME", str(gpt_world["home"]))
    res, src = gpt_world["res"], gpt_world["source"]
    run_dir, model_dir = Path(res["run_dir"]), Path(res["model_dir"])
    assert model_dir == run_dir / "model" and res["method"] == "int8-dynamic"
    row = Registry().get(res["run_id"])
    assert row["command"] == "quantize" and row["status"] == "completed"
    assert row["parents"] == [src["run_id"]]
    assert {"model", "report", "quantize", "card"} <= set(row["artifacts"])
    for name in ("report.md", "quantize.json", "README.md"):
        assert (run_dir / name).is_file()
    assert "## Lineage" in (run_dir / "README.md").read_text()
    assert src["run_id"] in (run_dir / "README.md").read_text()
    meta = json.loads((model_dir / "config.json").read_text())
    assert meta["format"] == "goldmine-gpt/1" and meta["quantization"]["method"] == "int8-dynamic"
    # the table: identical keys in every row, the file really is smaller
    table = res["table"]
    assert [r["model"] for r in table] == ["fp32", "int8"]
    assert list(table[0]) == list(table[1]) == ["model", "size_mb", "latency_ms", "loss", "ppl"]
    assert table[1]["size_mb"] < 0.5 * table[0]["size_mb"]
    assert abs(table[1]["ppl"] / table[0]["ppl"] - 1) < 0.05
    assert res["metrics"]["ppl_increase"] == pytest.approx(table[1]["ppl"] / table[0]["ppl"] - 1)

    # saved -> load_model gives the same logits as quantizing in memory; run id or dir alike
    fp32, _, _ = load_model(src["run_dir"])
    mem = quantize_model(fp32, "int8-dynamic")
    for ref in (res["run_id"], res["run_dir"], res["model_dir"]):
        loaded, tok, path = load_model(ref)
        assert path == model_dir and isinstance(loaded.head, Int8Linear)
        idx = torch.tensor([tok.encode("the order arrived", bos=True)])
        with torch.no_grad():
            assert torch.equal(loaded(idx), mem(idx))

    out = generate_text(model=res["run_id"], prompt="the", max_new_tokens=6, temperature=0.0,
                        device="cpu")
    assert out["new_tokens"] >= 1 and isinstance(out["samples"][0], str)


@pytest.mark.slow
def test_gpt_quantize_run_evaluates_and_serves(gpt_world, workspace, tmp_path, monkeypatch):
    from goldmine.eval import evaluate
    from goldmine.serve.engine import EngineConfig
    from goldmine.serve.models import load_served

    monkeypatch.setenv("GOLDMINE_HOME", str(gpt_world["home"]))
    res = gpt_world["res"]
    text = tmp_path / "held-out.txt"
    text.write_text(Path(workspace["corpus"]).read_text(encoding="utf-8")[:3000], encoding="utf-8")
    ev = evaluate(model=res["run_id"], data=str(text), batch_size=4, device="cpu")
    assert ev["kind"] == "lm" and ev["metrics"]["ppl"] > 1
    served = load_served("tiny", res["run_dir"], torch.device("cpu"), EngineConfig())
    assert served.kind == "completion" and served.path == Path(res["model_dir"])


@pytest.mark.slow
def test_an_int8_gpt_is_not_trained_or_exported(gpt_world, tmp_path, monkeypatch):
    from goldmine.errors import GoldmineError
    from goldmine.export.command import export
    from goldmine.train.finetune_sft import finetune_sft

    monkeypatch.setenv("GOLDMINE_HOME", str(gpt_world["home"]))
    res = gpt_world["res"]
    for ref in (res["run_id"], res["model_dir"]):
        with pytest.raises(GoldmineError, match="int8"):
            export(run=ref, format="hf", out=str(tmp_path / "x"))
    with pytest.raises(GoldmineError, match="an int8 model .* cannot be fine-tuned"):
        finetune_sft(model=res["model_dir"], data=str(tmp_path / "none.jsonl"), device="cpu")
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_classifier_quantize_run_loads_in_predict_evaluate_and_serve(clf_world, tmp_path,
                                                                       monkeypatch):
    from goldmine.classifier import Classifier
    from goldmine.eval import evaluate
    from goldmine.predict import predict
    from goldmine.registry import Registry
    from goldmine.serve.engine import EngineConfig
    from goldmine.serve.models import load_served

    monkeypatch.setenv("GOLDMINE_HOME", str(clf_world["home"]))
    res, src = clf_world["res"], clf_world["source"]
    run_dir, model_dir = Path(res["run_dir"]), Path(res["model_dir"])
    row = Registry().get(res["run_id"])
    assert row["command"] == "quantize" and row["parents"] == [src["run_id"]]
    assert (run_dir / "README.md").is_file() and (run_dir / "report.md").is_file()
    assert "(int8)" in (run_dir / "README.md").read_text()
    table = res["table"]
    assert list(table[0]) == list(table[1]) == ["model", "size_mb", "latency_ms", "accuracy",
                                                "f1_macro"]
    assert table[1]["size_mb"] < 0.35 * table[0]["size_mb"]
    meta = json.loads((model_dir / "goldmine.json").read_text())
    assert meta["quantization"]["method"] == "int8-dynamic" and meta["labels"]

    fp32 = Classifier.load(src["run_dir"], device="cpu")
    for ref in (res["run_id"], res["run_dir"], res["model_dir"]):
        clf = Classifier.load(ref, device="cpu")
        assert clf.path == model_dir and clf.labels == fp32.labels
        assert clf.max_length == fp32.max_length
    texts = ["great scarf, love it", "never arrived, want a refund", "ok", "x " * 40]
    p32, p8 = fp32.predict_proba(texts), clf.predict_proba(texts)
    assert abs(p32 - p8).max() < 0.05
    # the classifier head stays fp32; encoder linears and word embeddings are int8
    kinds = {n: type(m).__name__ for n, m in clf.model.named_modules()}
    assert kinds["classifier"] == "Linear" and kinds["bert.embeddings.word_embeddings"] == \
        "Int8Embedding"
    assert kinds["bert.encoder.layer.0.attention.self.query"] == "Int8Linear"

    ev = evaluate(model=res["run_id"], data=clf_world["data"], device="cpu")
    assert ev["kind"] == "classify" and 0 <= ev["metrics"]["accuracy"] <= 1
    inp = tmp_path / "in.csv"
    inp.write_text("text\n" + "\n".join(f'"{t}"' for t in texts) + "\n")
    pr = predict(model=res["run_dir"], inputs=[str(inp)], device="cpu")
    assert pr["rows"] == 4 and pr["errors"] == 0
    served = load_served("sentiment", res["run_id"], torch.device("cpu"), EngineConfig())
    rows, tokens = served.classify(texts[:2])
    assert served.kind == "classify" and tokens > 0
    assert [r["label"] for r in rows] == clf.predict(texts[:2])


@pytest.mark.slow
def test_refusals_leave_things_as_they_were(clf_world, tmp_path, monkeypatch):
    monkeypatch.setenv("GOLDMINE_HOME", str(clf_world["home"]))
    res, src = clf_world["res"], clf_world["source"]
    with pytest.raises(GoldmineError, match="already quantized"):
        quantize(run=res["run_id"])
    with pytest.raises(GoldmineError, match="already quantized"):
        quantize(run=res["model_dir"])
    with pytest.raises(GoldmineError, match="no such directory and no run"):
        quantize(run="nope-20990101-000000-0000")
    with pytest.raises(GoldmineError, match="not found"):
        quantize(run=str(tmp_path / "missing"))
    with pytest.raises(GoldmineError, match="holds no model"):
        quantize(run=str(tmp_path))
    with pytest.raises(GoldmineError, match="holds the model being quantized"):
        quantize(run=src["run_id"], out=src["run_dir"], overwrite=True)
    copied = tmp_path / "copied-model"  # out of its run: no registry row, so no default data
    shutil.copytree(Path(src["run_dir"]) / "model", copied)
    with pytest.raises(GoldmineError, match="give --data"):
        quantize(run=str(copied))

    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    before = {p.name for p in Path(clf_world["home"]).iterdir()}
    with pytest.raises(GoldmineError, match="already exists"):
        quantize(run=src["run_id"], out=str(out))
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert {p.name for p in Path(clf_world["home"]).iterdir()} == before   # no stray temp dirs

    # a failure while measuring leaves --out as it was, even with --overwrite
    with pytest.raises(GoldmineError):
        quantize(run=src["run_id"], out=str(out), overwrite=True,
                 data=str(tmp_path / "no-such.csv"))
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    # with --overwrite it is replaced by a complete run
    done = quantize(run=src["run_id"], out=str(out), overwrite=True, batch_size=8,
                    max_batches=1, method="int8-weight-only")
    assert Path(done["run_dir"]) == out.resolve() and not (out / "keep.txt").exists()
    assert (out / "model" / "model.safetensors").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []



@pytest.mark.slow
def test_cli_prints_the_table_and_json_and_one_line_errors(gpt_world, capsys, monkeypatch):
    from goldmine.cli import main

    monkeypatch.setenv("GOLDMINE_HOME", str(gpt_world["home"]))
    src = gpt_world["source"]["run_id"]
    assert main(["quantize", src, "--method", "int8-weight-only", "--batch-size", "2",
                 "--max-batches", "1"]) == 0
    out = capsys.readouterr().out
    assert "int8-weight-only" in out and "latency ms" in out and "quantized model:" in out
    assert main(["quantize", src, "--max-batches", "1", "--batch-size", "2", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["method"] == "int8-dynamic" and [r["model"] for r in res["table"]] == ["fp32",
                                                                                      "int8"]
    assert main(["quantize", res["run_id"]]) != 0
    err = capsys.readouterr().err
    assert "already quantized" in err and "Traceback" not in err
