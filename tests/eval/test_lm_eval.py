"""goldmine evaluate for GPTs: perplexity and bits per byte on text; answers for chat models."""

import json
import math
from pathlib import Path

import pytest
import torch

from goldmine.checkpoint import load_model
from goldmine.cli import main
from goldmine.errors import GoldmineError
from goldmine.eval.classify import GateFailed
from goldmine.eval.lm import evaluate_lm, is_language_model, token_f1
from goldmine.train.finetune_sft import finetune_sft


@pytest.fixture(scope="module")
def sft(gpt_run, tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GOLDMINE_HOME", str(tmp_path_factory.mktemp("sft-home")))
        res = finetune_sft(model=gpt_run["run_dir"], data=gpt_run["chats"], max_steps=6,
                           batch_size=4, learning_rate=3e-3, device="cpu",
                           out=str(tmp_path_factory.mktemp("sft") / "run"))
    return res


def test_text_metrics_are_the_models_loss_on_the_token_stream(gpt_run, tmp_path):
    docs = ["The wool scarf is warm.", "Refunds take five days. 退款需要五天。"]
    data = tmp_path / "held.jsonl"
    data.write_text("".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs),
                    encoding="utf-8")
    res = evaluate_lm(model=gpt_run["run_dir"], data=str(data), device="cpu")
    assert res["task"] == "lm"
    model, tok, _ = load_model(gpt_run["run_dir"])
    stream = []
    for d in docs:  # documents framed as in pretraining
        stream += tok.encode(d, bos=tok.add_bos, eos=True)
    x, y = torch.tensor([stream[:-1]]), torch.tensor([stream[1:]])
    with torch.no_grad():
        expected = model(x, targets=y).item()
    m = res["metrics"]
    assert m["tokens"] == len(stream) - 1 and m["documents"] == 2
    assert m["loss"] == pytest.approx(expected, rel=1e-5)
    assert m["ppl"] == pytest.approx(math.exp(expected), rel=1e-5)
    n_bytes = sum(len(d.encode("utf-8")) for d in docs)
    assert m["bytes"] == n_bytes
    assert m["bits_per_byte"] == pytest.approx(expected * m["tokens"] / math.log(2) / n_bytes,
                                               rel=1e-5)
    run_dir = Path(res["run_dir"])
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["task"] == "lm" and saved["metrics"]["loss"] == m["loss"]
    assert "bits_per_byte" in (run_dir / "report.md").read_text()


def test_long_text_is_evaluated_in_context_sized_windows(gpt_run, workspace):
    res = evaluate_lm(model=gpt_run["run_dir"], data=workspace["corpus"], max_length=64,
                      device="cpu")
    m = res["metrics"]
    assert m["context"] == 64 and m["windows"] == math.ceil(m["tokens"] / 64)


def test_chat_evaluation_reports_answer_perplexity_and_samples(sft, gpt_run):
    res = evaluate_lm(model=sft["run_dir"], data=gpt_run["chats"], split="val", samples=3,
                      max_new_tokens=8, device="cpu")
    assert res["task"] == "sft"
    m = res["metrics"]
    # the same measure finetune sft selected its best checkpoint by
    assert m["answer_loss"] == pytest.approx(sft["val"]["loss"], rel=1e-6)
    assert m["answer_ppl"] == pytest.approx(math.exp(m["answer_loss"]), rel=1e-6)
    assert m["conversations"] == sft["val_conversations"]
    assert len(res["samples"]) == 3
    for s in res["samples"]:
        assert set(s) == {"prompt", "reference", "generated", "f1", "stopped"}
        assert 0.0 <= s["f1"] <= 1.0
    report = (Path(res["run_dir"]) / "report.md").read_text()
    assert "## Samples" in report and res["samples"][0]["reference"][:40] in report


def test_gate_fails_when_answer_loss_rises(sft, gpt_run):
    tuned = evaluate_lm(model=sft["run_dir"], data=gpt_run["chats"], samples=0, device="cpu")
    base = evaluate_lm(model=gpt_run["run_dir"], data=gpt_run["chats"], samples=0,
                       device="cpu", baseline=tuned["run_id"], max_drop=["answer_loss=10"])
    assert base["gate"]["passed"]
    worse_by = base["metrics"]["answer_loss"] - tuned["metrics"]["answer_loss"]
    assert worse_by > 0  # the untuned model answers worse
    with pytest.raises(GateFailed, match="answer_loss"):
        evaluate_lm(model=gpt_run["run_dir"], data=gpt_run["chats"], samples=0, device="cpu",
                    baseline=tuned["run_id"], max_drop=[f"answer_loss={worse_by / 2}"])
    with pytest.raises(GoldmineError, match="NAME among answer_loss, answer_ppl"):
        evaluate_lm(model=gpt_run["run_dir"], data=gpt_run["chats"], baseline=tuned["run_id"],
                    max_drop=["f1_macro=1"])


def test_token_f1():
    assert token_f1("It shipped today", "it shipped today.") == 1.0
    assert token_f1("shipped", "It shipped today") == pytest.approx(0.5)
    assert token_f1("退款五天", "退款需要五天") == pytest.approx(2 * 1 * (4 / 6) / (1 + 4 / 6))
    assert token_f1("", "anything") == 0.0


def test_model_kinds_and_bad_data(gpt_run, sft, workspace, tmp_path):
    assert is_language_model(gpt_run["run_dir"]) and is_language_model(sft["run_dir"])
    assert not is_language_model(str(tmp_path))
    from goldmine.data.prepare import prepare_dataset

    rows = [{"text": f"great product {i}", "label": "pos"} for i in range(6)]
    rows += [{"text": f"awful product {i}", "label": "neg"} for i in range(6)]
    f = tmp_path / "r.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    prepare_dataset(inputs=[str(f)], kind="classify", out=str(tmp_path / "cls"))
    with pytest.raises(GoldmineError, match="'classify' dataset; a language model"):
        evaluate_lm(model=gpt_run["run_dir"], data=str(tmp_path / "cls"))
    with pytest.raises(GoldmineError, match="--split test applies to a prepared dataset"):
        evaluate_lm(model=gpt_run["run_dir"], data=workspace["corpus"], split="test")


def test_cli_dispatches_gpt_runs_to_the_language_model_evaluation(gpt_run, workspace, capsys):
    code = main(["evaluate", "--model", gpt_run["run_dir"], "--data", workspace["corpus"],
                 "--max-length", "64", "--device", "cpu", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["task"] == "lm" and out["metrics"]["ppl"] > 1
