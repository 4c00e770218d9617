"""`goldmine quickstart`: the whole path on data goldmine generates itself.

    sample data -> prepared corpus -> tokenizer -> token shards -> pretraining -> samples
                -> prepared reviews -> MiniLM fine-tuned for sentiment -> its evaluation
                -> both served over the OpenAI-compatible API, called once per endpoint

Each step is the same function its own command runs, and each records its own run, so
`goldmine runs list` afterwards shows the lineage: shards came from the tokenizer, the model
from the shards.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from goldmine.config import (
    EvaluateConfig,
    FinetuneClassifyConfig,
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
    names = ("corpus", "tokenizer", "shards", "model", "reviews", "sentiment", "sentiment-eval",
             "baseline", "comparison")
    sub = {name: str(work / name) if cfg.out else None for name in names}
    # runs refuse to overwrite a run
    for name in ("model", "sentiment", "sentiment-eval", "baseline", "comparison"):
        if cfg.out and (work / name).exists():
            shutil.rmtree(work / name)
    total = (8 if cfg.classify_steps else 6) + 1 + (cfg.serve != "off")
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
        samples, samples_tps = {}, []
        for i, prompt in enumerate(cfg.prompt):
            g = generate_text(GenerateConfig(model=trained["run_id"], prompt=prompt,
                                             max_new_tokens=60, seed=cfg.seed + i,
                                             device=cfg.device, temperature=0.7))
            samples[prompt] = g["samples"][0]
            if g.get("tokens_per_s"):
                samples_tps.append(g["tokens_per_s"])
            console.print(f"[bold]{prompt}[/bold]{g['samples'][0]}\n")

        classified = _classify(cfg, sample, sub, total) if cfg.classify_steps else None
        step = (8 if cfg.classify_steps else 6) + 1
        costs = _cost(cfg, trained, samples_tps, work, step, total)

        result = {
            "run_id": run.id, "sample_data": sample["out_dir"], "dataset": ds["out"],
            "tokenizer": tok["tokenizer"],
            "shards": shards["out"], "pretrain_run": trained["run_id"],
            "pretrain_dir": trained["run_dir"], "val_loss": trained["val_loss"],
            "val_ppl": trained["val_ppl"], "tokens_per_s": trained["tokens_per_s"],
            "mfu": trained["mfu"], "steps": trained["step"], "plot": trained["plot"],
            "checkpoint": trained["checkpoint"], "samples": samples, "classifier": classified,
            "cost": costs,
        }
        run.log_metrics({k: result[k] for k in ("val_loss", "val_ppl", "tokens_per_s", "mfu", "steps")})
        if classified:
            run.log_metrics({f"sentiment_{k}": classified["metrics"][k]
                             for k in ("accuracy", "f1_macro")})
            run.add_parent_from_path(classified["run_dir"])
        for name in ("tokenizer", "shards", "plot", "checkpoint"):
            run.add_artifact(name, result[name])
        run.add_parent_from_path(trained["run_dir"])

    console.rule("[bold green]done", style="green")
    lines = [f"model run   {trained['run_id']}  (val loss {trained['val_loss']:.3f}, "
             f"perplexity {trained['val_ppl']:.1f}, {trained['tokens_per_s']:,.0f} tokens/s)",
             f"directory   {trained['run_dir']}", f"loss curve  {trained['plot']}"]
    if classified:
        m = classified["metrics"]
        lines.append(f"classifier  {classified['run_id']}  (test accuracy {m['accuracy']:.3f}, "
                     f"F1 macro {m['f1_macro']:.3f}; {classified['report']})")
    lines += ["", "try next:",
              f"  goldmine generate --model {trained['run_id']} --prompt 'User: my order'"]
    if classified:
        lines.append(f"  goldmine predict --model {classified['run_id']} "
                     f"{sample['files']['reviews.jsonl']['path']}")
    lines += [f"  goldmine cost plan --serving-cost-per-1m {costs['serving_usd_per_1m']:.4g} "
              f"--training-cost {costs['training_usd']:.4g}   # your own plan.yaml first",
              "  goldmine runs list", f"  goldmine runs show {trained['run_id']}"]
    console.print("\n".join(lines))
    if cfg.serve != "off":
        result["served"] = _serve(cfg, trained, classified, total)
    return result


def _cost(cfg: QuickstartConfig, trained: dict, tokens_per_s: list[float], work: Path,
          step: int, total: int) -> dict[str, Any]:
    """What the GPT just cost to train and costs to serve on this machine (measured, priced at
    the hardware catalog's hourly rate), and the example business plan run with those costs."""
    from goldmine.cost.command import cost_plan, cost_serve, cost_train
    from goldmine.cost.plan import EXAMPLE_PLAN, load_plan

    device = "gpu" if str(cfg.device).startswith("cuda") else "cpu"
    _step(step, total, "cost: what this model cost, what serving it costs, and whether the "
                       "example business pays")
    train = cost_train(from_run=trained["run_id"])
    # batch-1 sampling speed from step 6: a floor, the server batches many requests per step
    tps = sorted(tokens_per_s)[len(tokens_per_s) // 2] if tokens_per_s else None
    serve = cost_serve(tokens_per_s=tps, hardware=train["hardware"]) if tps else None
    plan, _ = load_plan(EXAMPLE_PLAN)
    if serve:  # one figure per 1M tokens, weighted by the plan's input/output mix
        tin, tout = plan["usage"]["input_tokens"], plan["usage"]["output_tokens"]
        per_1m = (tin * serve["usd_per_1m_input_tokens"]
                  + tout * serve["usd_per_1m_output_tokens"]) / (tin + tout)
    else:
        per_1m = None
    res = cost_plan(plan=str(EXAMPLE_PLAN), serving_cost_per_1m=per_1m,
                    training_cost=train["cost_usd"], out=str(work / "plan"))
    console.print(f"training: {train['flops']:.3g} FLOPs in {train['wall_s']:,.0f} s on "
                  f"{train['gpus']} × {train['hardware']} = ${train['cost_usd']:.4f} "
                  f"(at ${train['price_per_gpu_hour']}/hour); MFU {train['mfu']:.0%}")
    if serve:
        console.print(f"serving at {tps:,.0f} tokens/s (one request at a time) on {device}: "
                      f"${serve['usd_per_1m_output_tokens']:.3f} per 1M output tokens, "
                      f"${serve['usd_per_1m_input_tokens']:.3f} per 1M input tokens")
    s = res["summary"]
    color = {"gold mine": "green", "marginal": "yellow", "bubble": "red"}[res["verdict"]]
    be = res["break_even_month"]
    console.print(f"example plan ({EXAMPLE_PLAN.name}) with these costs: gross margin "
                  f"{s['gross_margin']:.0%}, break-even "
                  f"{f'month {be}' if be else 'not within the horizon'}, cash at month "
                  f"{s['horizon_months']} ${s['final_cash']:,.0f}", soft_wrap=True)
    console.print(f"verdict: [bold {color}]{res['verdict']}[/bold {color}]")
    for reason in res["reasons"]:
        console.print(f"  - {reason}", soft_wrap=True)
    console.print(f"charts and report: {work / 'plan'}")
    return {"training_usd": train["cost_usd"], "training_mfu": train["mfu"],
            "serving_tokens_per_s": tps, "serving_usd_per_1m": per_1m,
            "verdict": res["verdict"], "break_even_month": be, "report": res["report"],
            "charts": res["charts"]}


def _serve(cfg: QuickstartConfig, trained: dict, classified: dict | None,
           total: int) -> dict[str, Any]:
    """The last step: the models behind `goldmine serve`'s app, one real HTTP call per
    endpoint, and how to call it with curl and the openai client."""
    import sys
    import time

    import httpx

    from goldmine.config import ServeConfig
    from goldmine.errors import GoldmineError
    from goldmine.serve.server import build_app, running

    def raw(text: str) -> None:  # commands to copy: not wrapped, no markup
        console.print(text, soft_wrap=True, markup=False, highlight=False)

    _step(total, total, "serving: OpenAI-compatible API, web playground, API key")
    models = [f"gpt={trained['run_dir']}"]
    if classified:
        models.append(f"sentiment={classified['run_dir']}")
    app, _, store = build_app(ServeConfig(model=models, device=cfg.device, default_max_tokens=64))
    key, row = store.create_key(f"quickstart-{time.strftime('%Y%m%d-%H%M%S')}")
    try:
        server = running(app, "127.0.0.1", cfg.port)
        url = server.__enter__()
    except GoldmineError:  # the port is taken: any free one
        server = running(app, "127.0.0.1", 0)
        url = server.__enter__()
    try:
        auth = {"Authorization": f"Bearer {key}"}
        prompt = cfg.prompt[0] if cfg.prompt else "The wool scarf"
        calls = {}
        with httpx.Client(base_url=url, headers=auth, timeout=120) as client:
            r = client.post("/v1/completions", json={"model": "gpt", "prompt": prompt,
                                                     "max_tokens": 40, "temperature": 0.7,
                                                     "seed": cfg.seed}).json()
            calls["completion"] = r["choices"][0]["text"]
            console.print(f"POST /v1/completions  [bold]{prompt}[/bold]{calls['completion']}")
            if classified:
                text = "The scarf is soft and warm, I love it."
                r = client.post("/v1/classify", json={"model": "sentiment", "input": text}).json()
                calls["classify"] = r["data"][0]["label"]
                console.print(f"POST /v1/classify     {text!r} -> [bold]{calls['classify']}[/bold] "
                              f"({r['data'][0]['probabilities'][calls['classify']]:.2f})")
            r = client.post("/v1/embeddings", json={"model": "minilm", "input": prompt}).json()
            calls["embedding_dims"] = len(r["data"][0]["embedding"])
            console.print(f"POST /v1/embeddings   {prompt!r} -> {calls['embedding_dims']} numbers")
        console.print(f"\nAPI key {row['name']} (shown once, only its hash is stored):\n  {key}\n")
        console.print("call it with curl:", style="bold")
        raw(f"  curl {url}/v1/completions -H 'Authorization: Bearer {key}' \\\n"
              f"       -H 'Content-Type: application/json' \\\n"
              f"       -d '{{\"model\": \"gpt\", \"prompt\": \"{prompt}\", \"max_tokens\": 40}}'")
        console.print("or with the openai client (pip install openai):", style="bold")
        raw(f"  from openai import OpenAI\n"
              f"  client = OpenAI(base_url=\"{url}/v1\", api_key=\"{key}\")\n"
              f"  out = client.completions.create(model=\"gpt\", prompt=\"{prompt}\", max_tokens=40)\n"
              f"  print(out.choices[0].text)")
        keep = cfg.serve == "forever" or (cfg.serve == "auto" and sys.stdin.isatty()
                                           and sys.stdout.isatty())
        if keep:
            console.print(f"\n[bold green]serving[/bold green] at {url}/ (playground) and "
                          f"{url}/v1 — Ctrl-C to stop")
            try:
                while True:
                    time.sleep(1)
            except KeyboardInterrupt:
                console.print("stopped")
        else:
            console.print("\nthe server stops with the quickstart; start it again with")
            raw(f"  goldmine serve {' '.join('--model ' + m for m in models)}")
    finally:
        server.__exit__(None, None, None)
        store.close()
    return {"url": url, "key_name": row["name"], **calls}


def _classify(cfg: QuickstartConfig, sample: dict, sub: dict, total: int) -> dict[str, Any]:
    """Steps 7 and 8: the reviews as a classify dataset, the embedded MiniLM fine-tuned on
    their sentiment, its evaluation on the held-out test split, and whether it beats a
    logistic-regression baseline by enough to pay for itself."""
    from goldmine.config import CompareConfig
    from goldmine.data.prepare import prepare_dataset
    from goldmine.eval.classify import evaluate_classifier
    from goldmine.eval.compare import compare
    from goldmine.train.finetune_classify import finetune_classify

    _step(7, total, "fine-tuning the embedded MiniLM: review sentiment (positive / neutral / "
                    "negative)")
    reviews = prepare_dataset(PrepareConfig.from_preset("classify").update(
        {"inputs": [sample["files"]["reviews.jsonl"]["path"]], "label_column": "sentiment",
         "out": sub["reviews"], "seed": cfg.seed}))
    c = reviews["counts"]
    console.print(f"{reviews['out']}: {c['kept']:,} reviews kept of {c['read']:,}, split "
                  f"{', '.join(f'{k} {v:,}' for k, v in c['splits'].items())}")
    tuned = finetune_classify(FinetuneClassifyConfig(
        data=reviews["out"], model="minilm", out=sub["sentiment"], max_steps=cfg.classify_steps,
        batch_size=16, max_length=96, eval_every=0, patience=0, seed=cfg.seed,
        device=cfg.device, learning_rate=1e-4))
    console.print(f"{tuned['steps']:,} steps at {tuned['examples_per_s']:,.0f} examples/s; "
                  f"val accuracy {tuned['val']['accuracy']:.3f}")

    _step(8, total, "evaluating the classifier on the held-out test split")
    ev = evaluate_classifier(EvaluateConfig(model=tuned["run_dir"], data=reviews["out"],
                                            out=sub["sentiment-eval"], device=cfg.device))
    m = ev["metrics"]
    per_class = ", ".join(f"{lab} {r['f1']:.2f}" for lab, r in ev["per_class"].items())
    console.print(f"accuracy {m['accuracy']:.3f} · F1 macro {m['f1_macro']:.3f} · "
                  f"ECE {m['ece']:.3f} · per-class F1: {per_class}\n"
                  f"report: {ev['run_dir']}/report.md (confusion matrix, calibration)")

    # is the big model worth it? the textbook baseline on the same data, side by side
    base = finetune_classify(FinetuneClassifyConfig.from_preset("logreg").update(
        {"data": reviews["out"], "out": sub["baseline"], "seed": cfg.seed}))
    cmp = compare(CompareConfig(runs=[base["run_dir"], tuned["run_dir"]], data=reviews["out"],
                                out=sub["comparison"], reps=3, bootstrap=500, seed=cfg.seed))
    for line in cmp["sentences"]:
        console.print(f"vs a logistic-regression baseline ({base['run_id']}): {line}",
                      soft_wrap=True)
    console.print(f"comparison: {cmp['report']}")
    return {"run_id": tuned["run_id"], "run_dir": tuned["run_dir"], "dataset": reviews["out"],
            "evaluation": ev["run_id"], "report": f"{ev['run_dir']}/report.md",
            "metrics": {k: m[k] for k in ("accuracy", "f1_macro", "ece")},
            "baseline": base["run_id"], "comparison": cmp["run_id"],
            "comparison_report": cmp["report"], "verdict": cmp["sentences"]}
