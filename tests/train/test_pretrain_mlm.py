"""`goldmine pretrain --objective mlm`: a BERT-style encoder pretrained on a tiny English and
Chinese corpus, saved as a Hugging Face BERT directory, fine-tuned by `finetune classify`,
resumed bit for bit, and refused by the commands that need a language model."""

import csv
import json
import math
import random
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from goldmine import cost
from goldmine.checkpoint import load_model
from goldmine.cli import main
from goldmine.config import PretrainConfig
from goldmine.encoder import Encoder, EncoderConfig
from goldmine.errors import GoldmineError
from goldmine.registry import Registry
from goldmine.train import pretrain as pretrain_module
from goldmine.train.pretrain import pretrain

POSITIVE = "great love excellent wonderful superb amazing perfect delighted".split()
NEGATIVE = "awful hate broken terrible horrible useless disappointed refund".split()
FILLER = ("the a this product item box it was and arrived on time for my order really quite "
          "very today with some parts of colour size").split()
CHINESE = ["我很喜欢这个杯子，质量很好。", "后悔买了这个积木套装，颜色不对。", "物流很快，包装完好。"]
# a test-size encoder (2L/2H/32d), sequences of 32 tokens, a vocabulary of about 300
TINY = dict(objective="mlm", model="test", block_size=32, batch_size=8, warmup_steps=10,
            learning_rate=1e-3, eval_batches=4, log_every=1, device="cpu")


def sentence(rng: random.Random, label: str, n: int = 1) -> str:
    """Filler words with `n` sentiment words of one polarity put in at random."""
    words = rng.sample(FILLER, rng.randint(4, 8))
    for w in rng.sample(POSITIVE if label == "pos" else NEGATIVE, n):
        words.insert(rng.randrange(len(words) + 1), w)
    return " ".join(words)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Review-like English lines with two sentiment words that agree (what MLM can learn from:
    the one masked is predicted by the other), one Chinese line in four: about 10k tokens."""
    rng = random.Random(0)
    lines = [rng.choice(CHINESE) if i % 4 == 3 else sentence(rng, rng.choice(["pos", "neg"]), 2)
             for i in range(800)]
    path = tmp_path_factory.mktemp("mlm-corpus") / "reviews.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def mlm_run(corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("mlm-run")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GOLDMINE_HOME", str(root / "home"))
        res = pretrain(data=str(corpus), vocab_size=300, max_steps=80, eval_every=40,
                       ckpt_every=40, out=str(root / "run"), **TINY)
    return {**res, "home": root / "home"}


@pytest.fixture
def registry_of(mlm_run, monkeypatch):
    monkeypatch.setenv("GOLDMINE_HOME", str(mlm_run["home"]))


def test_it_learns_and_writes_a_hugging_face_bert_directory(mlm_run, registry_of):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    run_dir = Path(mlm_run["run_dir"])
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in rows if "val_loss" in r]
    assert [r["step"] for r in val] == [40, 80]
    vocab = EncoderConfig.from_dict(json.loads((run_dir / "config.json").read_text())["model"])
    # from chance (ln V) to far below: word frequencies first, the plateau every BERT starts on
    assert val[-1]["val_loss"] < val[0]["val_loss"] < math.log(vocab.vocab_size) - 0.5
    assert val[-1]["val_accuracy"] > 0 and mlm_run["val_accuracy"] == val[-1]["val_accuracy"]
    config = json.loads((run_dir / "config.json").read_text())
    assert config["pretrain"]["objective"] == "mlm" and config["model"]["arch"] == "bert"
    ckpt = run_dir / "checkpoints" / "best"
    assert json.loads((ckpt / "config.json").read_text())["data"]["objective"] == "mlm"

    hf_dir = Path(mlm_run["hf"])
    assert hf_dir == run_dir / "hf"
    run = Registry().get(mlm_run["run_id"])
    assert Path(run["artifacts"]["hf"]) == hf_dir
    assert run["metrics"]["val_accuracy"] == mlm_run["val_accuracy"]
    tok = AutoTokenizer.from_pretrained(hf_dir)
    hf = AutoModelForMaskedLM.from_pretrained(hf_dir).eval()
    ours = Encoder(vocab)
    ours.load_state_dict(load_file(ckpt / "model.safetensors"))
    ours.eval()
    batch = tok(["the item arrived on time and it was [MASK]", "物流很快，[MASK]装完好。"],
                padding=True, return_tensors="pt")
    assert batch["input_ids"][1].tolist().count(tok.mask_token_id) == 1
    with torch.no_grad():
        logits = hf(**batch).logits
        torch.testing.assert_close(ours(batch["input_ids"], attention_mask=batch["attention_mask"],
                                        token_type_ids=batch["token_type_ids"]), logits,
                                   atol=1e-5, rtol=1e-5)


def test_finetune_classify_fine_tunes_the_run(mlm_run, registry_of, tmp_path):
    from goldmine.hf import resolve_backbone
    from goldmine.train.finetune_classify import finetune_classify

    rng = random.Random(1)
    labels = ["pos", "neg"] * 80
    data = tmp_path / "sentiment.csv"
    with open(data, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, ["text", "label"])
        w.writeheader()
        w.writerows({"text": sentence(rng, y), "label": y} for y in labels)
    res = finetune_classify(data=str(data), model=mlm_run["run_id"], max_length=32,
                            max_steps=60, eval_every=0, batch_size=16, learning_rate=3e-3,
                            head_lr_scale=1.0, warmup_ratio=0.1, patience=0, device="cpu",
                            out=str(tmp_path / "clf"))
    assert res["labels"] == ["neg", "pos"] and res["val"]["accuracy"] >= 0.9
    assert mlm_run["run_id"] in Registry().get(res["run_id"])["parents"]
    # a checkpoint directory of the run is a backbone too, written out as BERT
    step = Path(mlm_run["run_dir"]) / "checkpoints" / "step-000040"
    backbone, source = resolve_backbone(str(step), tmp_path / "work")
    assert source == step and json.loads((backbone / "config.json").read_text())[
        "architectures"] == ["BertForMaskedLM"]
    assert (backbone / "vocab.txt").is_file()
    with pytest.raises(GoldmineError, match="max_length: 64 is more than"):
        finetune_classify(data=str(data), model=mlm_run["run_dir"], max_length=64,
                          max_steps=1, device="cpu", out=str(tmp_path / "clf2"))


def test_resume_after_a_crash_gives_bitwise_identical_weights(mlm_run, corpus, tmp_path,
                                                              monkeypatch):
    args = dict(data=str(corpus), tokenizer=mlm_run["run_dir"], max_steps=6, ckpt_every=3,
                eval_every=3, dropout=0.1, seed=5, **TINY)
    full = pretrain(out=str(tmp_path / "full"), **args)

    class Crash(Exception):
        pass

    real_save = pretrain_module.save_checkpoint

    def save_then_crash(path, *a, **kw):  # dies right after writing step 3, like a SIGKILL
        out = real_save(path, *a, **kw)
        if Path(path).name == "step-000003":
            raise Crash
        return out

    monkeypatch.setattr(pretrain_module, "save_checkpoint", save_then_crash)
    with pytest.raises(Crash):
        pretrain(out=str(tmp_path / "crashed"), **args)
    monkeypatch.setattr(pretrain_module, "save_checkpoint", real_save)
    torch.manual_seed(999)
    res = pretrain(resume=str(tmp_path / "crashed"))
    assert res["step"] == 6 and res["val_accuracy"] == full["val_accuracy"]
    for name in ("model.safetensors", "optimizer.safetensors"):
        a = load_file(Path(full["run_dir"]) / "checkpoints" / "step-000006" / name)
        b = load_file(tmp_path / "crashed" / "checkpoints" / "step-000006" / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    assert (tmp_path / "crashed" / "hf" / "model.safetensors").is_file()
    with pytest.raises(GoldmineError, match="cannot change: objective"):
        pretrain(resume=str(tmp_path / "crashed"), objective="clm", model="test")


def test_options_that_do_not_apply_are_refused(corpus, workspace, tmp_path):
    bad = [
        (dict(objective="mlm", arch="lstm"), "arch: --objective mlm trains a BERT-style encoder"),
        (dict(mask_prob=0.2), "mask_prob: only with --objective mlm"),
        (dict(whole_word=False), "whole_word: only with --objective mlm"),
        (dict(vocab_size=500), "vocab_size: only with --objective mlm"),
        (dict(objective="mlm", rope_theta=5e5), "rope_theta: only for the GPT"),
        (dict(objective="mlm", n_kv_head=1), "n_kv_head: only for the GPT"),
        (dict(objective="mlm", model="gpt2-124m"), "'gpt2-124m' is a GPT preset"),
        (dict(model="mini"), "'mini' is an encoder preset"),
        (dict(objective="mlm", mask_prob=1.5), "mask_prob: must be between 0 and 1"),
        (dict(objective="mlm", tokenizer="minilm", vocab_size=500), "vocab_size: sizes the"),
        (dict(objective="mlm", lstm_layers=2), "lstm_layers: only with --arch lstm"),
    ]
    for kw, message in bad:
        with pytest.raises(GoldmineError, match=message):
            PretrainConfig(**kw).validate()
    run = dict(max_steps=1, out=str(tmp_path / "r"), **TINY)
    with pytest.raises(GoldmineError, match="token shards hold a GPT tokenizer's ids"):
        pretrain(data=workspace["shards"], **run)
    with pytest.raises(GoldmineError, match=r"byte-level BPE tokenizer \(a GPT's\) without"):
        pretrain(data=str(corpus), tokenizer=workspace["tokenizer"], **run)
    with pytest.raises(GoldmineError, match="the val split has .* fewer than a sequence.s 998"):
        pretrain(data=str(corpus), vocab_size=300, **{**run, "block_size": 1000})
    with pytest.raises(GoldmineError, match="give --data"):
        pretrain(objective="mlm")


def test_commands_that_need_a_language_model_refuse_it(mlm_run, registry_of, tmp_path):
    from goldmine.cost.command import cost_train
    from goldmine.cost.training import resolve_model
    from goldmine.eval import evaluate
    from goldmine.export.command import export
    from goldmine.quantize import quantize
    from goldmine.serve.engine import EngineConfig
    from goldmine.serve.models import load_served
    from goldmine.train.finetune_sft import finetune_sft

    run = mlm_run["run_dir"]
    hint = f"BERT-style encoder .* {run}/hf loads with .* finetune classify --model {run}`"
    with pytest.raises(GoldmineError, match="is not a language model: it predicts masked tokens"):
        load_model(run)
    with pytest.raises(GoldmineError, match=r"BERT-style encoder \(`pretrain --objective mlm`\) "
                                            "cannot be exported"):
        export(run=run, format="hf", out=str(tmp_path / "hf"))
    with pytest.raises(GoldmineError, match="encoder .* cannot be quantized"):
        quantize(run=run, out=str(tmp_path / "int8"))
    with pytest.raises(GoldmineError, match=hint):
        load_served("bert", run, torch.device("cpu"), EngineConfig())
    with pytest.raises(GoldmineError, match=hint):
        finetune_sft(model=run, data=str(tmp_path / "chats.jsonl"))
    (tmp_path / "text.txt").write_text("the scarf arrived on time\n")
    with pytest.raises(GoldmineError, match=hint):
        evaluate(model=run, data=str(tmp_path / "text.txt"))
    # `goldmine cost` prices it as a transformer whose head sees the masked 15% only
    model = EncoderConfig.from_dict(json.loads((Path(run) / "config.json").read_text())["model"])
    layers, head = cost.encoder_matmul_weights(model)
    priced = cost_train(from_run=mlm_run["run_id"])
    tokens = mlm_run["tokens"]
    want = 6 * (layers + 0.15 * head) * tokens + 12 * 2 * 32 * 32 * tokens
    assert priced["flops"] == pytest.approx(want)
    with pytest.raises(GoldmineError, match="is a BERT-style encoder"):
        resolve_model(run)


def test_cli(capsys, corpus, tmp_path):
    out = str(tmp_path / "cli-mlm")
    code = main(["pretrain", "--objective", "mlm", "--data", str(corpus), "--preset", "test",
                 "--block-size", "32", "--vocab-size", "300", "--max-steps", "2", "--out", out])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "val masked accuracy" in text and "next: goldmine finetune classify --model" in text
    assert (Path(out) / "hf" / "model.safetensors").is_file()
    code = main(["pretrain", "--objective", "mlm", "--arch", "lstm", "--data", str(corpus)])
    assert code != 0 and "--arch lstm is a next-token" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["pretrain", "--help"])
    assert "--objective {clm,mlm}" in capsys.readouterr().out
