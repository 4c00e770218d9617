"""finetune sft: the loss on answers only, EOS learned, packing, LoRA, exact resume, HF import."""

import json
import os
import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from goldmine import chat
from goldmine.checkpoint import load_model
from goldmine.cli import main
from goldmine.config import FinetuneSFTConfig
from goldmine.errors import GoldmineError
from goldmine.generate import SamplingParams, answer
from goldmine.registry import Registry
from goldmine.train.finetune_sft import Encoded, collate, encode_conversations, finetune_sft, pack

FAST = dict(batch_size=4, learning_rate=3e-3, device="cpu")


def write_jsonl(path: Path, rows) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                    encoding="utf-8")
    return str(path)


def convo(q: str, a: str) -> dict:
    return {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}


def test_sft_trains_on_a_prepared_dataset_and_saves_a_chat_checkpoint(gpt_run):
    res = finetune_sft(model=gpt_run["run_dir"], data=gpt_run["chats"], epochs=1, **FAST)
    assert res["stop_reason"] == "epochs" and res["best_step"] == res["steps"]
    assert res["val"]["loss"] > 0 and res["val_from_train"] is False
    assert res["device"] == "cpu" and res["precision"] == "fp32"
    assert res["truncated"]["train"] > 0  # sample conversations longer than the 256-token context
    model_dir = Path(res["model_dir"])
    meta = json.loads((model_dir / "config.json").read_text())
    assert meta["chat"]["name"] == chat.NAME and meta["chat"]["jinja"] == chat.JINJA
    model, tok, _ = load_model(res["run_id"])  # a run id resolves to its best model
    assert tok.chat["name"] == chat.NAME
    run = Registry().get(res["run_id"])
    assert run["command"] == "finetune sft" and run["status"] == "completed"
    assert run["metrics"]["val_loss"] == pytest.approx(res["val"]["loss"])
    assert (Path(res["run_dir"]) / "training.png").stat().st_size > 0


def test_hf_tokenizer_renders_the_ids_training_used(gpt_run):
    """The checkpoint's tokenizer_config.json carries the template: transformers'
    apply_chat_template gives exactly goldmine's ids, for training and for generation."""
    from transformers import AutoTokenizer

    res = finetune_sft(model=gpt_run["run_dir"], data=gpt_run["chats"], max_steps=1, **FAST)
    hf = AutoTokenizer.from_pretrained(res["model_dir"])
    _, tok, _ = load_model(res["model_dir"])
    msgs = [{"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Where is order #A1234? 我的订单在哪里？"},
            {"role": "assistant", "content": "It ships  today."}]

    def ids(out):
        return list(out["input_ids"] if hasattr(out, "keys") else out)

    assert ids(hf.apply_chat_template(msgs, tokenize=True)) == chat.render(tok, msgs)[0]
    assert ids(hf.apply_chat_template(msgs[:2], tokenize=True, add_generation_prompt=True)) \
        == chat.prompt_ids(tok, msgs[:2])


def test_targets_are_the_next_answer_tokens_only(workspace):
    from goldmine.tokenizer import Tokenizer

    tok = Tokenizer.load(workspace["tokenizer"])
    convs = [convo("hi", "hello there"), convo("bye", "see you")]
    enc = encode_conversations(tok, [c["messages"] for c in convs], 64)
    x, y, seg = collate(enc, [[0], [1]], tok.pad_id, torch.device("cpu"), packed=False)
    for b in range(2):
        ids, mask = enc.ids[b], enc.masks[b]
        want = [ids[t + 1] if mask[t + 1] else -100 for t in range(len(ids) - 1)] + [-100]
        assert y[b, :len(ids)].tolist() == want
        assert (y[b, len(ids):] == -100).all() and (x[b, len(ids):] == tok.pad_id).all()
        assert tok.decode([t for t in want if t >= 0]) == \
            convs[b]["messages"][1]["content"] + "<|end|><|eos|>"
    assert seg is None
    x, y, seg = collate(enc, [[0, 1]], tok.pad_id, torch.device("cpu"), packed=True)
    n0 = len(enc.ids[0])
    assert seg[0].tolist() == [0] * n0 + [1] * len(enc.ids[1])
    assert x[0].tolist() == enc.ids[0] + enc.ids[1]
    assert y[0, n0 - 1] == -100  # no target across the boundary between packed conversations


def test_packed_loss_equals_the_unpacked_loss(gpt_run):
    model, tok, _ = load_model(gpt_run["run_dir"])
    convs = [convo("Where is my order?", "It shipped."), convo("Refund?", "Yes, in 5 days."),
             convo("Hello", "Hi! How can I help?")]
    enc = encode_conversations(tok, [c["messages"] for c in convs], 128)
    dev = torch.device("cpu")
    with torch.no_grad():
        x, y, s = collate(enc, [[0, 1, 2]], tok.pad_id, dev, packed=True)
        packed = model(x, targets=y, segments=s)
        x, y, _ = collate(enc, [[0], [1], [2]], tok.pad_id, dev, packed=False)
        padded = model(x, targets=y)
    torch.testing.assert_close(packed, padded, rtol=1e-5, atol=1e-5)


def test_pack_fills_sequences_without_splitting_conversations():
    lengths = [60, 50, 40, 30, 20, 10, 64]
    packs = pack(lengths, 64)
    assert sorted(i for p in packs for i in p) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in p) <= 64 for p in packs)
    assert len(packs) == 5 and pack(lengths, 64) == packs


def test_the_model_learns_to_answer_and_to_stop(gpt_run, tmp_path):
    pairs = [("hi", "hello there"), ("bye", "see you soon"), ("thanks", "you are welcome")]
    data = write_jsonl(tmp_path / "c.jsonl", [convo(q, a) for q, a in pairs] * 8)
    res = finetune_sft(model=gpt_run["run_dir"], data=data, max_steps=120, eval_every=0,
                       batch_size=8, learning_rate=1e-2, warmup_ratio=0.05, device="cpu")
    model, tok, _ = load_model(res["model_dir"])
    greedy = SamplingParams(max_new_tokens=40, temperature=0.0, top_k=None, top_p=None)
    for q, a in pairs:
        stats = {}
        out = answer(model, tok, [{"role": "user", "content": q}], greedy, stats=stats)
        assert out == a
        assert stats["new_tokens"] == len(tok.encode(a)) + 1  # stopped at its end-of-turn


@pytest.mark.parametrize("lora", [False, True])
def test_resume_after_sigint_reaches_the_same_weights_bit_for_bit(gpt_run, lora):
    cfg = FinetuneSFTConfig(model=gpt_run["run_dir"], data=gpt_run["chats"], max_steps=8,
                            eval_every=3, lora=lora, packing=True, **FAST)
    a = finetune_sft(cfg)

    def interrupt(step, model):  # Ctrl-C between evaluations
        if step == 4:
            os.kill(os.getpid(), signal.SIGINT)

    b = finetune_sft(cfg, callback=interrupt)
    assert b["stop_reason"] == "interrupted" and b["steps"] == 4
    assert Registry().get(b["run_id"])["status"] == "interrupted"
    b2 = finetune_sft(resume="latest" if lora else b["run_id"])
    assert b2["run_id"] == b["run_id"] and b2["resumed_from_step"] == 4 and b2["steps"] == 8
    assert b2["val"] == a["val"] and b2["best_step"] == a["best_step"]
    for name in ("trainable.safetensors", "optimizer.safetensors", "rng.safetensors"):
        ta = load_file(Path(a["run_dir"]) / "checkpoint" / name)
        tb = load_file(Path(b["run_dir"]) / "checkpoint" / name)
        assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta), name
    ma = load_file(Path(a["model_dir"]) / "model.safetensors")
    mb = load_file(Path(b2["model_dir"]) / "model.safetensors")
    assert all(torch.equal(ma[k], mb[k]) for k in ma)


def test_lora_trains_adapters_only_and_the_merged_model_matches(gpt_run):
    from peft import get_peft_model_state_dict

    base, tok, _ = load_model(gpt_run["run_dir"])
    before = {k: v.clone() for k, v in base.state_dict().items()}
    seen = {}

    def grab(step, model):
        seen["model"] = model

    res = finetune_sft(model=gpt_run["run_dir"], data=gpt_run["chats"], max_steps=4,
                       eval_every=0, lora=True, lora_r=4, callback=grab, **FAST)
    assert res["trainable_params"] < res["total_params"] / 3
    adapter = Path(res["adapter_dir"])
    assert (adapter / "adapter_config.json").is_file()
    saved = load_file(adapter / "adapter_model.safetensors")
    peft_model = seen["model"]
    assert saved.keys() == get_peft_model_state_dict(peft_model).keys()
    assert all(".lora_" in k for k in saved)
    # the frozen base weights did not move
    for k, v in peft_model.get_base_model().state_dict().items():
        if "lora_" not in k:
            assert torch.equal(v, before[k.replace(".base_layer", "")]), k
    merged, _, _ = load_model(res["model_dir"])
    x = torch.tensor([chat.prompt_ids(tok, [{"role": "user", "content": "Where is my order?"}])])
    peft_model.eval()
    with torch.no_grad():
        torch.testing.assert_close(merged(x), peft_model(x), rtol=1e-4, atol=1e-4)


def test_bad_input_is_named(gpt_run, tmp_path, workspace):
    run = gpt_run["run_dir"]
    with pytest.raises(GoldmineError, match="no `messages` field"):
        finetune_sft(model=run, data=write_jsonl(tmp_path / "t.jsonl", [{"text": "hi"}]))
    with pytest.raises(GoldmineError, match="no conversations with an assistant message"):
        finetune_sft(model=run, data=write_jsonl(tmp_path / "u.jsonl", [
            {"messages": [{"role": "user", "content": "hi"}]},
            {"messages": [{"role": "robot", "content": "hi"}]}]))
    with pytest.raises(GoldmineError, match="SFT reads conversations"):
        finetune_sft(model=run, data=workspace["corpus"])
    with pytest.raises(GoldmineError, match="more than the model's context"):
        finetune_sft(model=run, data=gpt_run["chats"], max_length=4096)
    with pytest.raises(GoldmineError, match="lora_targets"):
        finetune_sft(model=run, data=gpt_run["chats"], lora=True, lora_targets=["q_proj"])
    with pytest.raises(GoldmineError, match="model: give --model"):
        finetune_sft(data=gpt_run["chats"])
    with pytest.raises(GoldmineError, match="no such checkpoint directory or run id"):
        finetune_sft(model=str(tmp_path / "nope"), data=gpt_run["chats"])


def test_skipped_rows_and_held_out_validation_are_reported(gpt_run, tmp_path, capsys):
    rows = [convo(f"question {i}", f"answer {i}") for i in range(20)]
    rows += [{"messages": [{"role": "user", "content": "no answer"}]}, {"messages": "oops"}]
    data = write_jsonl(tmp_path / "c.jsonl", rows)
    res = finetune_sft(model=gpt_run["run_dir"], data=data, max_steps=1, **FAST)
    assert res["val_from_train"] and res["val_conversations"] == 2
    assert res["train_conversations"] == 18
    assert sum(res["skipped"].values()) == 2
    err = capsys.readouterr().err
    assert "held out 10% of train" in err and "skipped 2 rows" in err and "c.jsonl:21" in err


def test_a_hugging_face_llama_directory_is_a_backbone(tmp_path, gpt_run, tiny_hf_llama):
    from transformers import LlamaForCausalLM

    texts = ["where is my order", "your order shipped", "refunds take five days"] * 20
    hf_dir = tiny_hf_llama(tmp_path / "llama", texts)
    ref = LlamaForCausalLM.from_pretrained(hf_dir).eval()
    n = ref.config.vocab_size
    model, tok, _ = load_model(hf_dir)
    assert tok.vocab_size == n + 7 and model.config.vocab_size == tok.vocab_size
    ids = torch.tensor([tok.encode("where is my order")])
    with torch.no_grad():
        ours, theirs = model(ids), ref(ids).logits
    torch.testing.assert_close(ours[..., :n], theirs, rtol=1e-4, atol=1e-4)
    # the added rows start as the mean embedding
    emb = model.embed.weight.detach()
    torch.testing.assert_close(emb[n:], emb[:n].mean(0).expand(7, -1))
    data = write_jsonl(tmp_path / "c.jsonl", [convo("where is my order", "your order shipped")] * 6)
    res = finetune_sft(model=str(hf_dir), data=data, max_steps=2, max_length=64, **FAST)
    tuned, tuned_tok, _ = load_model(res["model_dir"])
    assert tuned_tok.vocab_size == n + 7 and tuned_tok.chat["name"] == chat.NAME


def test_unsupported_hf_architecture_is_refused(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=50)).save_pretrained(
        tmp_path / "gpt2")
    with pytest.raises(GoldmineError, match="model_type 'gpt2' is not supported.*llama"):
        load_model(tmp_path / "gpt2")


def test_cli_finetune_sft_and_chat_generation(gpt_run, capsys):
    code = main(["finetune", "sft", "--model", gpt_run["run_dir"], "--data", gpt_run["chats"],
                 "--max-steps", "2", "--batch-size", "4", "--device", "cpu", "--json"])
    assert code == 0
    res = json.loads(capsys.readouterr().out)
    assert res["steps"] == 2 and res["model_dir"]
    code = main(["generate", "--model", res["run_id"], "--prompt", "Where is my order?",
                 "--max-new-tokens", "5", "--seed", "1", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["chat"] is True and len(out["samples"]) == 1
    code = main(["finetune", "sft", "--data", gpt_run["chats"]])
    assert code == 2 and "give --model" in capsys.readouterr().err


def test_encode_counts_cut_and_dropped_conversations(workspace):
    from goldmine.tokenizer import Tokenizer

    tok = Tokenizer.load(workspace["tokenizer"])
    long_question = convo("word " * 200, "short answer")["messages"]
    long_answer = convo("hi", "word " * 200)["messages"]
    enc = encode_conversations(tok, [long_question, long_answer], 32)
    assert isinstance(enc, Encoded)
    assert enc.truncated == 2 and enc.dropped == 1 and len(enc.ids) == 1
    assert len(enc.ids[0]) == 32 and any(enc.masks[0])
