"""goldmine export --format hf: transformers loads what goldmine trained, with the same logits,
the same greedy tokens and the same chat ids; LoRA merge; model cards; bad input."""

import json
import os
from pathlib import Path

import pytest
import torch

from goldmine import chat
from goldmine.checkpoint import load_model
from goldmine.cli import main
from goldmine.errors import GoldmineError
from goldmine.export.command import export
from goldmine.generate import SamplingParams, sample_tokens
from goldmine.registry import Registry

SFT = dict(batch_size=4, learning_rate=3e-3, device="cpu", max_steps=3, eval_every=0)


@pytest.fixture(scope="module")
def sft_lora_run(gpt_run, tmp_path_factory):
    from goldmine.train.finetune_sft import finetune_sft

    root = tmp_path_factory.mktemp("sft-lora")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GOLDMINE_HOME", str(gpt_run["root"] / "home"))  # the pretrain run's registry
        res = finetune_sft(model=gpt_run["run_dir"], data=gpt_run["chats"], lora=True, lora_r=4,
                           out=str(root / "sft"), **SFT)
    return res


@pytest.fixture
def shared_home(gpt_run, monkeypatch):
    """The registry that holds the session's pretrain (and SFT) runs."""
    monkeypatch.setenv("GOLDMINE_HOME", str(gpt_run["root"] / "home"))
    return gpt_run["root"] / "home"


def hf_causal_lm(path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return (AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval(),
            AutoTokenizer.from_pretrained(path))


def test_pretrain_run_exports_to_transformers_with_equal_logits_and_greedy_tokens(
        gpt_run, shared_home, tmp_path):
    res = export(run=gpt_run["run_dir"], format="hf", out=str(tmp_path / "hf"))
    out = Path(res["out"])
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                 "generation_config.json", "README.md"):
        assert (out / name).is_file(), name
    assert json.loads((out / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    model, tok, _ = load_model(gpt_run["run_dir"])
    hf, hf_tok = hf_causal_lm(out)

    text = "The wool scarf arrived quickly and"
    ids = tok.encode(text, bos=tok.add_bos)
    assert hf_tok(text)["input_ids"] == ids  # the tokenizer frames a prompt as training did
    x = torch.tensor([ids, ids[::-1]])
    with torch.no_grad():
        assert (hf(x).logits - model(x)).abs().max().item() <= 1e-4
    p = SamplingParams(temperature=0.0, max_new_tokens=24)
    ours = [int(t[0]) for t in sample_tokens(model, ids, p)]
    theirs = hf.generate(torch.tensor([ids]), max_new_tokens=24, do_sample=False,
                         eos_token_id=None, min_new_tokens=24)[0, len(ids):].tolist()
    assert theirs == ours
    assert res["checks"]["hf_max_abs_diff"] <= 1e-4

    # recorded: an export run whose parent is the pretrain run; the card shows the lineage
    row = Registry().get(res["run_id"])
    pretrain_id = Registry().get(gpt_run["run_dir"])["id"]
    assert row["command"] == "export" and row["status"] == "completed"
    assert row["parents"] == [pretrain_id] and Path(row["run_dir"]) == out
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlicense: other\n") and pretrain_id in card
    assert "`goldmine pretrain`" in card and "data: `" in card and "val_loss" in card
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".export-")]


def test_chat_export_renders_the_training_ids_and_stops_at_end_of_turn(
        sft_lora_run, shared_home, tmp_path):
    res = export(run=sft_lora_run["run_id"], format="hf", out=str(tmp_path / "chat"),
                 license="apache-2.0")
    out = Path(res["out"])
    assert res["kind"] == "chat"
    _, tok, _ = load_model(sft_lora_run["run_id"])
    hf, hf_tok = hf_causal_lm(out)
    msgs = [{"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Where is order #A1234? 我的订单在哪里？"},
            {"role": "assistant", "content": "It ships today."}]

    def ids(o):
        return list(o["input_ids"] if hasattr(o, "keys") else o)

    assert ids(hf_tok.apply_chat_template(msgs, tokenize=True)) == chat.render(tok, msgs)[0]
    assert ids(hf_tok.apply_chat_template(msgs[:2], tokenize=True, add_generation_prompt=True)) \
        == chat.prompt_ids(tok, msgs[:2])
    assert "chat_template" in json.loads((out / "tokenizer_config.json").read_text())
    gen = json.loads((out / "generation_config.json").read_text())
    assert set(gen["eos_token_id"]) == {tok.eos_id, tok.special_ids["end"]}
    assert "license: apache-2.0" in (out / "README.md").read_text()


def test_merge_lora_folds_the_adapter_in_and_agrees_with_the_unmerged_model(
        sft_lora_run, shared_home, tmp_path):
    from peft import PeftModel

    res = export(run=sft_lora_run["run_id"], format="hf", merge_lora=True,
                 out=str(tmp_path / "merged"))
    hf, _ = hf_causal_lm(res["out"])
    base, tok, _ = load_model(Registry().get(sft_lora_run["run_id"])["config"]["model"])
    unmerged = PeftModel.from_pretrained(base, sft_lora_run["adapter_dir"]).eval()
    adapter_b = [p for n, p in unmerged.named_parameters() if "lora_B" in n]
    assert any(p.abs().max() > 0 for p in adapter_b)  # the adapter changes the model
    x = torch.tensor([chat.prompt_ids(tok, [{"role": "user", "content": "Where is my order?"}])])
    with torch.no_grad():
        merged = hf(x).logits
        torch.testing.assert_close(merged, unmerged(x), rtol=1e-4, atol=1e-4)
        with unmerged.disable_adapter():
            assert (merged - unmerged(x)).abs().max() > 1e-5  # not just the base model


def test_merge_lora_is_refused_for_a_run_without_adapters(gpt_run, shared_home, tmp_path):
    with pytest.raises(GoldmineError, match="no LoRA adapter"):
        export(run=gpt_run["run_dir"], merge_lora=True, out=str(tmp_path / "x"))
    assert not (tmp_path / "x").exists()


def test_an_existing_output_is_refused_unless_overwrite(gpt_run, shared_home, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["export", gpt_run["run_dir"], "--out", str(out)]) != 0
    assert (out / "keep.txt").read_text() == "mine"
    assert main(["export", gpt_run["run_dir"], "--out", str(out), "--overwrite"]) == 0
    assert not (out / "keep.txt").exists() and (out / "model.safetensors").is_file()


def test_a_failed_export_leaves_nothing_behind(gpt_run, shared_home, tmp_path, monkeypatch):
    import goldmine.export.command as command

    def broken(*a, **k):
        raise GoldmineError("disk full")

    monkeypatch.setattr(command, "check_hf_gpt", broken)
    with pytest.raises(GoldmineError, match="disk full"):
        export(run=gpt_run["run_dir"], out=str(tmp_path / "out"))
    assert os.listdir(tmp_path) == []
    failed = Registry().list(command="export", status="failed")
    assert failed and "disk full" in failed[0]["error"]


def test_bad_sources_and_formats_are_named(gpt_run, shared_home, tmp_path):
    with pytest.raises(GoldmineError, match="no such run"):
        export(run="pretrain-19990101-000000-zzzz")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(GoldmineError, match="nothing to export"):
        export(run=str(empty))
    with pytest.raises(GoldmineError, match="inside or around the source"):
        export(run=gpt_run["run_dir"], out=str(Path(gpt_run["run_dir"]) / "hf"))
    prepared = Registry().list(command="data prepare", limit=1)
    if prepared:
        with pytest.raises(GoldmineError, match="export takes a model"):
            export(run=prepared[0]["id"])


def test_a_pretrain_run_without_checkpoints_is_refused(shared_home, tmp_path):
    from goldmine.registry import start_run

    with start_run("pretrain", {"model": "test"}, out=tmp_path / "crashed"):
        pass
    with pytest.raises(GoldmineError, match="has no checkpoint to export"):
        export(run=str(tmp_path / "crashed"))


def test_hf_llama_directory_exports_back_with_the_same_logits(tiny_hf_llama, tmp_path):
    src = tiny_hf_llama(tmp_path / "llama", ["hello world, the quick brown fox"] * 20)
    res = export(run=str(src), out=str(tmp_path / "again"))
    hf, _ = hf_causal_lm(res["out"])
    orig, _ = hf_causal_lm(src)
    x = torch.tensor([[0, 5, 9, 17, 33, 2]])
    with torch.no_grad():  # goldmine's special tokens were appended; the old ids score alike
        diff = hf(x).logits[..., :orig.config.vocab_size] - orig(x).logits
    assert diff.abs().max() <= 1e-4
    assert "Not a goldmine run" in (Path(res["out"]) / "README.md").read_text()


def test_the_card_lineage_walks_every_ancestor_oldest_first(tmp_path):
    from goldmine.export.card import lineage, model_card
    from goldmine.registry import start_run

    ids = []
    previous = None
    for i, command in enumerate(["data prepare", "tokenizer train", "pretrain"]):
        with start_run(command, {"data": f"corpus-{i}"}, out=tmp_path / command) as run:
            run.add_parent_from_path(previous)
            run.log_metrics({"val_loss": 2.5} if command == "pretrain" else {})
            ids.append(run.id)
        previous = tmp_path / command
    assert [r["id"] for r in lineage(ids[-1])] == ids
    card = model_card(title="t", kind="gpt", fmt="gguf", source=Registry().get(ids[-1]),
                      metrics={"gguf_tensors": 9})
    rows = [line for line in card.splitlines() if line.startswith("| `goldmine")]
    assert [r.split("`")[1] for r in rows] == ["goldmine data prepare", "goldmine tokenizer train",
                                              "goldmine pretrain"]
    assert "data: `corpus-0`" in rows[0] and "| val_loss | 2.5 |" in card
    assert "| gguf_tensors | 9 |" in card and "library_name: gguf" in card


def test_an_exported_chat_model_reads_back_as_a_chat_model(sft_lora_run, shared_home, tmp_path):
    res = export(run=sft_lora_run["run_id"], format="hf", out=str(tmp_path / "chat"))
    model, tok, _ = load_model(res["out"])
    original, otok, _ = load_model(sft_lora_run["run_id"])
    assert tok.chat == otok.chat and tok.add_bos == otok.add_bos
    msgs = [{"role": "user", "content": "Where is my order?"}]
    assert chat.prompt_ids(tok, msgs) == chat.prompt_ids(otok, msgs)
    x = torch.tensor([chat.prompt_ids(tok, msgs)])
    with torch.no_grad():
        assert (model(x) - original(x)).abs().max() <= 1e-5
