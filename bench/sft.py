"""Chat fine-tuning of a small goldmine GPT on the Bitext customer-support pairs.

    python bench/sft.py                          # ../shared/datasets/bitext-customer-support
    python bench/sft.py --pretrain-minutes 1 --sft-epochs 1   # a quick look

1. `goldmine data prepare --config configs/prepare-support-chat.yaml`: instruction -> response
   pairs as conversations with a system prompt; deduplicated; train / val / test.
2. A byte-level BPE tokenizer and a small GPT pretrained for `--pretrain-minutes` on the text of
   the train conversations only (the base model: it has read such text, never the template).
3. `goldmine evaluate` of the base model on the test conversations: answer perplexity before.
4. `goldmine finetune sft` for `--sft-epochs` (with --packing), then the same evaluation: answer
   perplexity after, and a few greedy answers beside the references (word-overlap F1).
5. Throughput, same run: training steps on the same batches by goldmine's GPT and by
   `transformers.LlamaForCausalLM` holding the same weights (exported), same loss on answer
   tokens. `ratio` = goldmine tokens/s / transformers tokens/s.

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]


def throughput(model_dir: Path, chats: Path, steps: int, batch: int) -> tuple[float, float]:
    """(goldmine tokens/s, transformers tokens/s) over the same `steps` batches of full
    fine-tuning with AdamW, loss on answer tokens."""
    import torch
    import torch.nn.functional as F
    from transformers import LlamaForCausalLM

    from goldmine.checkpoint import load_model
    from goldmine.export.llama import to_hf_config, to_hf_state_dict
    from goldmine.train.finetune_sft import (
        Skipped,
        collate,
        encode_conversations,
        read_conversations,
    )

    model, tok, _ = load_model(model_dir)
    convs = read_conversations(chats / "train.jsonl", Skipped())
    enc = encode_conversations(tok, convs, model.config.block_size)
    batches = [[[i] for i in range(s * batch, (s + 1) * batch)] for s in range(steps)]
    data = [collate(enc, b, tok.pad_id, torch.device("cpu"), False) for b in batches]
    n_tokens = sum(int((x != tok.pad_id).sum()) for x, _, _ in data)

    hf = LlamaForCausalLM(to_hf_config(model.config, pad_token_id=tok.pad_id))
    hf.load_state_dict(to_hf_state_dict(model.state_dict(), model.config))

    def run(m, forward) -> float:
        m.train()
        opt = torch.optim.AdamW(m.parameters(), lr=1e-4)
        forward(m, *data[0][:2])  # warm-up step, not timed
        t0 = time.perf_counter()
        for x, y, _ in data:
            loss = forward(m, x, y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        return n_tokens / (time.perf_counter() - t0)

    def ours(m, x, y):
        return m(x, targets=y)

    def theirs(m, x, y):
        logits = m(input_ids=x, attention_mask=(x != tok.pad_id).long()).logits
        return F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.view(-1),
                               ignore_index=-100)

    return run(model, ours), run(hf, theirs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "datasets" / "bitext-customer-support"),
                    help="folder with Bitext_Sample_Customer_Support_Training_Dataset.csv")
    ap.add_argument("--model", default="tiny", help="GPT preset (default: tiny)")
    ap.add_argument("--block-size", type=int, default=512)
    ap.add_argument("--vocab-size", type=int, default=4096)
    ap.add_argument("--pretrain-minutes", type=float, default=4)
    ap.add_argument("--sft-epochs", type=float, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--compare-steps", type=int, default=10)
    ap.add_argument("--samples", type=int, default=5)
    ap.add_argument("--dir", help="working directory (default: a temporary one)")
    args = ap.parse_args()
    src = Path(args.data)
    csv_files = sorted(src.glob("*.csv"))
    if not csv_files:
        sys.exit(f"error: {src}: no Bitext CSV file")
    work = Path(args.dir or tempfile.mkdtemp(prefix="goldmine-bench-sft-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ["GOLDMINE_HOME"] = str(work / "home")

    from goldmine.config import PrepareConfig, TokenizerConfig
    from goldmine.data.prepare import prepare_dataset
    from goldmine.eval.lm import evaluate_lm
    from goldmine.tokenizer import train_tokenizer
    from goldmine.train.finetune_sft import finetune_sft
    from goldmine.train.pretrain import pretrain

    t_start = time.perf_counter()
    cfg = PrepareConfig.load(yaml_path=ROOT / "configs" / "prepare-support-chat.yaml")
    ds = prepare_dataset(cfg.update({"inputs": [str(f) for f in csv_files],
                                     "out": str(work / "chats")}))
    chats = Path(ds["out"])
    # the base model's corpus: the text of the train conversations, one document each
    corpus = work / "corpus.jsonl"
    with open(chats / "train.jsonl", encoding="utf-8") as f, \
            open(corpus, "w", encoding="utf-8") as out:
        for line in f:
            msgs = json.loads(line)["messages"]
            text = "\n".join(m["content"] for m in msgs if m["role"] != "system")
            out.write(json.dumps({"text": text}) + "\n")
    tok = train_tokenizer(TokenizerConfig(inputs=[str(corpus)], vocab_size=args.vocab_size,
                                          out=str(work / "tok")))
    base = pretrain(data=str(corpus), tokenizer=tok["tokenizer"], model=args.model,
                    block_size=args.block_size, batch_size=16, max_steps=100_000,
                    max_time=f"{args.pretrain_minutes}m", learning_rate=1e-3,
                    warmup_steps=50, eval_every=200, device="cpu", out=str(work / "base"))
    common = dict(data=str(chats), split="test", samples=args.samples, max_new_tokens=96,
                  device="cpu")
    before = evaluate_lm(model=base["run_dir"], out=str(work / "eval-before"), **common)
    t0 = time.perf_counter()
    tuned = finetune_sft(model=base["run_dir"], data=str(chats), epochs=args.sft_epochs,
                         batch_size=args.batch_size, learning_rate=5e-4, packing=True,
                         device="cpu", out=str(work / "sft"))
    sft_s = time.perf_counter() - t0
    after = evaluate_lm(model=tuned["run_dir"], out=str(work / "eval-after"), **common)
    ours, hf = throughput(Path(tuned["model_dir"]), chats, args.compare_steps, args.batch_size)
    b, a = before["metrics"], after["metrics"]
    result = {
        "dataset": "bitext customer support", "conversations": ds["counts"]["splits"],
        "model": f"{args.model} ({base['params']:,} parameters, context {args.block_size})",
        "pretrain_tokens": base["tokens"], "pretrain_val_ppl": round(base["val_ppl"], 2),
        "answer_ppl_before": round(b["answer_ppl"], 2),
        "answer_ppl_after": round(a["answer_ppl"], 2),
        "sample_f1_before": round(b.get("sample_f1", 0.0), 3),
        "sample_f1_after": round(a.get("sample_f1", 0.0), 3),
        "sample_stopped_after": a.get("sample_stopped"),
        "sft_steps": tuned["steps"], "sft_s": round(sft_s, 1),
        "sft_tokens_per_s": round(tuned["tokens_per_s"], 1),
        "goldmine_tokens_per_s": round(ours, 1), "hf_tokens_per_s": round(hf, 1),
        "ratio": round(ours / hf, 3), "truncated": tuned["truncated"],
        "example": after["samples"][0] if after["samples"] else None,
        "wall_s": round(time.perf_counter() - t_start, 1),
    }
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
