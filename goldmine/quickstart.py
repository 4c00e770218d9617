"""`goldmine quickstart`: the whole path on data goldmine generates itself.

    sample data -> prepared corpus -> tokenizer -> token shards -> pretraining -> samples

Each step is the same function its own command runs, and each records its own run, so
`goldmine runs list` afterwards shows the lineage: shards came from the tokenizer, the model
from the shards.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from goldmine.config import (
    GenerateConfig,
    PrepareConfig,
    PretrainConfig,
    QuickstartConfig,
    TokenizeConfig,
    TokenizerConfig,
)
from goldmine.progress import console
from goldmine.registry import home, start_run


def _step(n: int, total: int, text: str) -> None:
    console.rule(f"[bold]{n}/{total}[/bold] {text}", align="left", style="dim")


def quickstart(cfg: QuickstartConfig | None = None, **overrides) -> dict[str, Any]:
    from goldmine.data.prepare import prepare_dataset
    from goldmine.data.sample import generate_sample_data
    from goldmine.data.shards import tokenize_corpus
    from goldmine.generate import generate_text
    from goldmine.tokenizer import train_tokenizer
    from goldmine.train.pretrain import pretrain

    cfg = (cfg or QuickstartConfig()).update(overrides)
    cfg.validate()
    # with --out, every step writes inside it (out/tokenizer, out/shards, out/model) and a
    # re-run replaces the previous quickstart's files there; without, runs get their own dirs
    work = Path(cfg.out) if cfg.out else home() / "quickstart"
    sub = {name: str(work / name) if cfg.out else None
           for name in ("corpus", "tokenizer", "shards", "model")}
    if cfg.out and (work / "model").exists():
        shutil.rmtree(work / "model")
    total = 6
    with start_run("quickstart", cfg.to_dict()) as run:
        _step(1, total, "sample data: an imaginary online shop (products, reviews, support chats, FAQ)")
        sample = generate_sample_data(work / "sample-data", seed=cfg.seed, scale=cfg.scale)
        console.print(f"wrote {len(sample['files'])} files to {sample['out_dir']} "
                      f"({sample['files']['corpus.txt']['bytes']:,} bytes of text, "
                      f"{sample['languages'].get('zh', 0):,} Chinese documents)")

        _step(2, total, "data prepare: clean, deduplicate, scrub personal data")
        ds = prepare_dataset(PrepareConfig(kind="text", out=sub["corpus"],
                                           inputs=[sample["files"]["corpus.jsonl"]["path"]]))
        c = ds["counts"]
        console.print(f"{ds['out']}: kept {c['kept']:,} of {c['read']:,} documents "
                      f"({c['exact_duplicates'] + c['near_duplicates']:,} duplicates, "
                      f"{c['rejected']:,} rejected; PII replaced: "
                      f"{', '.join(f'{k} {v}' for k, v in c['pii'].items()) or 'none'})")
        corpus = ds["out"]

        _step(3, total, f"tokenizer: byte-level BPE, {cfg.vocab_size:,} tokens")
        tok = train_tokenizer(TokenizerConfig(inputs=[corpus], vocab_size=cfg.vocab_size,
                                              out=sub["tokenizer"]))
        console.print(f"{tok['tokenizer']} ({tok['bytes_per_token']:.2f} bytes per token)")

        _step(4, total, "token shards: train/val split, memory-mapped")
        shards = tokenize_corpus(TokenizeConfig(inputs=[corpus], tokenizer=tok["tokenizer"],
                                                out=sub["shards"]))
        console.print(f"{shards['out']}: {shards['train_tokens']:,} train + "
                      f"{shards['val_tokens']:,} val tokens")

        _step(5, total, f"pretraining a {cfg.model} GPT on {'the GPU' if cfg.device.startswith('cuda') else 'this machine'} "
                        f"(at most {cfg.max_steps} steps or {cfg.max_time})")
        pcfg = PretrainConfig.from_preset("tiny").update(
            {"data": shards["out"], "out": sub["model"], "model": cfg.model, "max_steps": cfg.max_steps,
             "max_time": cfg.max_time, "seed": cfg.seed, "device": cfg.device,
             "warmup_steps": max(1, min(50, cfg.max_steps // 10)),
             "eval_every": max(1, cfg.max_steps // 4), "ckpt_every": cfg.max_steps})
        trained = pretrain(pcfg)

        _step(6, total, "samples from the model")
        samples = {}
        for i, prompt in enumerate(cfg.prompt):
            g = generate_text(GenerateConfig(model=trained["run_id"], prompt=prompt,
                                             max_new_tokens=60, seed=cfg.seed + i,
                                             device=cfg.device, temperature=0.7))
            samples[prompt] = g["samples"][0]
            console.print(f"[bold]{prompt}[/bold]{g['samples'][0]}\n")

        result = {
            "run_id": run.id, "sample_data": sample["out_dir"], "dataset": ds["out"],
            "tokenizer": tok["tokenizer"],
            "shards": shards["out"], "pretrain_run": trained["run_id"],
            "pretrain_dir": trained["run_dir"], "val_loss": trained["val_loss"],
            "val_ppl": trained["val_ppl"], "tokens_per_s": trained["tokens_per_s"],
            "mfu": trained["mfu"], "steps": trained["step"], "plot": trained["plot"],
            "checkpoint": trained["checkpoint"], "samples": samples,
        }
        run.log_metrics({k: result[k] for k in ("val_loss", "val_ppl", "tokens_per_s", "mfu", "steps")})
        for name in ("tokenizer", "shards", "plot", "checkpoint"):
            run.add_artifact(name, result[name])
        run.add_parent_from_path(trained["run_dir"])

    console.rule("[bold green]done", style="green")
    console.print(
        f"model run   {trained['run_id']}  (val loss {trained['val_loss']:.3f}, "
        f"perplexity {trained['val_ppl']:.1f}, {trained['tokens_per_s']:,.0f} tokens/s)\n"
        f"directory   {trained['run_dir']}\n"
        f"loss curve  {trained['plot']}\n\n"
        f"try next:\n"
        f"  goldmine generate --model {trained['run_id']} --prompt 'User: my order'\n"
        f"  goldmine runs list\n"
        f"  goldmine runs show {trained['run_id']}")
    return result
