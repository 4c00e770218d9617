"""The `goldmine` command as a user runs it: JSON results, clear one-line errors, exit codes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from goldmine.cli import main


def run_cli(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_sample_tokenizer_tokenize_pretrain_generate_chain_with_json(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "data", "sample", "--out", str(tmp_path / "s"), "--preset",
                           "tiny", "--json")
    assert code == 0
    corpus = json.loads(out)["files"]["corpus.txt"]["path"]
    code, out, _ = run_cli(capsys, "tokenizer", "train", corpus, "--vocab-size", "400", "--json")
    tok = json.loads(out)
    assert code == 0 and tok["vocab_size"] == 400 and tok["kind"] == "bpe"
    code, out, _ = run_cli(capsys, "data", "tokenize", corpus, "--tokenizer", tok["run_id"], "--json")
    shards = json.loads(out)
    assert code == 0 and shards["train_tokens"] > shards["val_tokens"] > 0
    code, out, err = run_cli(capsys, "pretrain", "--data", shards["out"], "--preset", "test",
                             "--max-steps", "6", "--json")
    res = json.loads(out)
    assert code == 0 and res["step"] == 6 and "pretrain" in err   # progress went to stderr
    code, out, _ = run_cli(capsys, "generate", "--model", res["run_id"], "--prompt", "The",
                           "--max-new-tokens", "8", "--preset", "greedy", "--json")
    gen = json.loads(out)
    assert code == 0 and len(gen["samples"]) == 1 and gen["new_tokens"] <= 8
    # streamed (non-JSON) output prints the prompt and the same greedy continuation
    code, out, _ = run_cli(capsys, "generate", "--model", res["run_id"], "--prompt", "The",
                           "--max-new-tokens", "8", "--preset", "greedy")
    assert code == 0 and out == "The" + gen["samples"][0] + "\n"
    code, out, _ = run_cli(capsys, "runs", "list", "--json")
    commands = [r["command"] for r in json.loads(out)["runs"]]
    assert commands == ["generate", "generate", "pretrain", "data tokenize", "tokenizer train"]


@pytest.fixture
def files(tmp_path):
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "latin1.txt").write_bytes("hello\nwor\xb0ld\n".encode("latin-1"))
    (tmp_path / "ok.txt").write_text("hello world\n" * 3)
    (tmp_path / "bad.jsonl").write_text('{"text": "fine"}\n{"text": 1}\n')
    (tmp_path / "model.pt").write_bytes(b"\x80\x02pickle")
    ck = tmp_path / "corrupt"
    ck.mkdir()
    (ck / "config.json").write_text('{"format": "goldmine-gpt/1", "model": {}}')
    (ck / "model.safetensors").write_bytes(b"garbage" * 10)
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text('{"model_type": "llama"}')
    (hf / "model.safetensors").write_bytes(b"x")
    return tmp_path


@pytest.mark.parametrize("args, message", [
    (["tokenizer", "train", "{d}/missing.txt"], "missing.txt: not found"),
    (["tokenizer", "train", "{d}/empty.txt"], "empty.txt: file is empty"),
    (["tokenizer", "train", "{d}/latin1.txt"], "latin1.txt line 2: not valid UTF-8 (byte 0xb0 at column 4)"),
    (["tokenizer", "train", "{d}/bad.jsonl"], "bad.jsonl line 2: field 'text' is int, expected a string"),
    (["tokenizer", "train", "{d}/ok.txt", "--vocab-size", "100"], "vocab_size 100 is too small"),
    (["generate", "--model", "{d}/model.pt"], "model.pt: a pickle file; goldmine loads only safetensors"),
    (["generate", "--model", "{d}/corrupt"], "corrupt/model.safetensors: corrupt or not a safetensors file"),
    (["generate", "--model", "{d}/hf"], "hf: no tokenizer.json"),
    (["generate", "--model", "no-such-run"], "no-such-run: no such checkpoint directory or run id"),
    (["generate"], "model: give --model"),
    (["pretrain"], "data: give --data"),
    (["pretrain", "--resume", "latest"], "--resume latest: no unfinished pretrain run"),
    (["pretrain", "--resume", "{d}/hf"], "nothing to resume"),
    (["pretrain", "--data", "{d}/ok.txt"], "ok.txt: raw text needs a tokenizer"),
    (["pretrain", "--data", "{d}/ok.txt", "--batch-size", "x"], "command line: batch_size: expected int, got 'x'"),
    (["pretrain", "--config", "{d}/nope.yaml"], "nope.yaml: config file not found"),
    (["data", "prepare", "{d}/missing.csv"], "missing.csv: not found"),
    (["data", "prepare", "{d}/model.pt"], "model.pt: unsupported file type '.pt'"),
    (["data", "prepare", "--kind", "classify", "{d}/bad.jsonl"],
     "bad.jsonl:1: no column 'label' (columns: 'text'); choose one with --label-column"),
    (["data", "prepare", "--kind", "chat", "{d}/ok.txt"], "ok.txt:1: no conversation found"),
    (["data", "prepare", "{d}/ok.txt", "--balance", "over"], "balance: only for --kind classify"),
    (["data", "prepare", "{d}/ok.txt", "--encoding", "klingon"], "klingon"),
    (["data", "prepare", "{d}/ok.txt", "--dedup", "fuzzy"], "dedup: 'fuzzy' is not one of none, exact, near"),
])
def test_bad_input_gives_one_line_error_and_nonzero_exit(capsys, files, args, message):
    code, out, err = run_cli(capsys, *[a.format(d=files) for a in args])
    assert code == 2
    assert message in err
    assert "Traceback" not in err and err.count("error:") == 1


def test_block_size_longer_than_data(capsys, files):
    code, _, err = run_cli(capsys, "tokenizer", "train", str(files / "ok.txt"), "--vocab-size",
                           "300", "--out", str(files / "tok"))
    assert code == 0
    code, _, err = run_cli(capsys, "pretrain", "--data", str(files / "ok.txt"), "--tokenizer",
                           str(files / "tok"), "--block-size", "64")
    assert code == 2 and "block_size + 1 = 65; use a smaller --block-size or more data" in err


def test_debug_shows_the_traceback(files):
    env = {**os.environ}
    p = subprocess.run([sys.executable, "-m", "goldmine", "generate", "--model",
                        str(files / "model.pt"), "--debug"], capture_output=True, text=True, env=env)
    assert p.returncode != 0 and "Traceback" in p.stderr and "GoldmineError" in p.stderr
    p = subprocess.run([sys.executable, "-m", "goldmine", "generate", "--model",
                        str(files / "model.pt")], capture_output=True, text=True, env=env)
    assert p.returncode == 2 and "Traceback" not in p.stderr


def test_quickstart_smoke_preset(capsys, tmp_path):
    code, out, err = run_cli(capsys, "quickstart", "--preset", "smoke", "--out", str(tmp_path / "qs"),
                             "--json")
    assert code == 0
    res = json.loads(out)
    assert Path(res["plot"]).is_file() and Path(res["checkpoint"]).is_dir()
    assert set(res["samples"]) == {"The wool scarf", "User: Where is my order"}
    assert "10/10" in err and "try next" in err
    # the cost step: the example plan run with what this GPT cost to train and to serve here
    cost = res["cost"]
    assert cost["training_usd"] > 0 and cost["serving_usd_per_1m"] > 0
    assert cost["verdict"] in {"gold mine", "marginal", "bubble"}
    assert Path(cost["report"]).is_file() and all(Path(c).is_file() for c in cost["charts"])
    from goldmine.cost.plan import EXAMPLE_PLAN, run_plan
    again = run_plan(EXAMPLE_PLAN, serving_cost_per_1m_tokens=cost["serving_usd_per_1m"],
                     training_cost=cost["training_usd"], charts=False)
    assert again["verdict"] == cost["verdict"]
    assert again["break_even_month"] == cost["break_even_month"]
    assert f"cost plan --serving-cost-per-1m {cost['serving_usd_per_1m']:.4g}" in err
    # the last step served both models over HTTP and called each endpoint once
    served = res["served"]
    assert served["completion"] and served["classify"] in {"positive", "neutral", "negative"}
    assert served["embedding_dims"] == 384
    assert "curl http://127.0.0.1:" in err and "OpenAI(base_url=" in err
    # the classification part: MiniLM fine-tuned on review sentiment, evaluated on test
    clf = res["classifier"]
    assert 0.0 <= clf["metrics"]["accuracy"] <= 1.0 and Path(clf["report"]).is_file()
    assert f"predict --model {clf['run_id']}" in err
    # ... and compared with a logistic-regression baseline on the same test rows
    compared = json.loads(run_cli(capsys, "runs", "show", clf["comparison"], "--json")[1])
    assert compared["command"] == "compare" and Path(clf["comparison_report"]).is_file()
    assert clf["verdict"] and "vs a logistic-regression baseline" in err
    evaluated = json.loads(run_cli(capsys, "runs", "show", clf["evaluation"], "--json")[1])
    assert evaluated["command"] == "evaluate"
    assert evaluated["metrics"]["accuracy"] == clf["metrics"]["accuracy"]
    # lineage: model <- shards <- (tokenizer, prepared corpus)
    code, out, _ = run_cli(capsys, "runs", "show", res["pretrain_run"], "--json")
    shown = json.loads(out)
    assert len(shown["parents"]) == 1                            # the shards run
    code, out, _ = run_cli(capsys, "runs", "show", shown["parents"][0], "--json")
    shards = json.loads(out)
    assert shards["command"] == "data tokenize"
    commands = {json.loads(run_cli(capsys, "runs", "show", p, "--json")[1])["command"]
                for p in shards["parents"]}
    assert commands == {"tokenizer train", "data prepare"}


def test_data_prepare_prints_a_summary_and_json(capsys, tmp_path):
    src = tmp_path / "reviews.csv"
    src.write_text("text,label\n" + "".join(f"review number {i} of the lamp,{'pos' if i % 2 else 'neg'}\n"
                                             for i in range(40)) + "broken,row,extra\n")
    code, out, err = run_cli(capsys, "data", "prepare", "--kind", "classify", str(src),
                             "--out", str(tmp_path / "ds"))
    assert code == 0, err
    assert "dataset prepared" in out and "wrong number of fields" in out
    code, out, err = run_cli(capsys, "data", "prepare", "--kind", "classify", str(src),
                             "--out", str(tmp_path / "ds2"), "--json", "--no-pii")
    res = json.loads(out)
    assert res["counts"]["read"] == 41 and res["counts"]["rejected"] == 1
    assert res["options"]["pii"] is False and res["labels"] == ["neg", "pos"]
