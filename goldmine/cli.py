"""The `goldmine` command. Each subcommand is a thin layer over an importable function.

Options come from the command's dataclass config (goldmine/config.py): `--preset NAME`, then
`--config FILE.yaml`, then flags. `--json` prints one JSON object instead of tables; `--debug`
(anywhere on the line) shows full tracebacks.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import fields
from typing import Any

from goldmine.config import (
    ChatConfig,
    CompareConfig,
    Config,
    CostMemoryConfig,
    CostOptimalConfig,
    CostPlanConfig,
    CostServeConfig,
    CostTrainConfig,
    EvaluateConfig,
    ExportConfig,
    FinetuneClassifyConfig,
    FinetuneSFTConfig,
    FromFeedbackConfig,
    GenerateConfig,
    PredictConfig,
    PrepareConfig,
    PretrainConfig,
    QuantizeConfig,
    QuickstartConfig,
    SampleDataConfig,
    ServeConfig,
    TokenizeConfig,
    TokenizerConfig,
    _unwrap_optional,
    field_default,
    field_types,
)
from goldmine.errors import GoldmineError

EXAMPLES = {
    "quickstart": "example:\n  goldmine quickstart                 # about two minutes on a laptop CPU",
    "data prepare": "examples:\n"
                    "  goldmine data prepare --kind classify reviews.csv --label-column rating --out reviews\n"
                    "  goldmine data prepare --kind classify train.tsv --label-column label "
                    "--label-map labels.yaml --balance over\n"
                    "  goldmine data prepare --kind chat support.jsonl --out chats --folds 5\n"
                    "  goldmine data prepare --kind text scraped/ --unit paragraph --out corpus",
    "data sample": "example:\n  goldmine data sample --out sample-data --seed 0",
    "tokenizer train": "examples:\n  goldmine tokenizer train sample-data/corpus.txt --vocab-size 4096 --out tok\n"
                       "  goldmine tokenizer train input.txt --char --out tok-char",
    "data tokenize": "example:\n  goldmine data tokenize sample-data/corpus.txt --tokenizer tok --out shards",
    "pretrain": "examples:\n  goldmine pretrain --data shards --max-steps 500\n"
                "  goldmine pretrain --data input.txt --tokenizer tok --preset shakespeare-char\n"
                "  goldmine pretrain --resume latest                  # after a crash or Ctrl-C\n"
                "  goldmine pretrain --objective mlm --data corpus.txt --preset mlm  # a BERT encoder\n"
                "  torchrun --nproc-per-node 8 -m goldmine pretrain --data shards --preset gpt2-124m",
    "finetune classify": "examples:\n"
                         "  goldmine finetune classify --data reviews            # the embedded MiniLM\n"
                         "  goldmine finetune classify --data reviews --preset lora --class-weights auto\n"
                         "  goldmine finetune classify --data reviews --arch logreg   # the linear baseline\n"
                         "  goldmine finetune classify --arch cnn --data digits     # images: a small CNN\n"
                         "  goldmine finetune classify --arch cnn --data photos --image-size 32 "
                         "--augment shift-flip\n"
                         "  goldmine finetune classify --data tickets.csv --text-column body "
                         "--label-column intent --model path/to/hf-encoder",
    "finetune sft": "examples:\n"
                    "  goldmine finetune sft --model PRETRAIN_RUN --data chats          # full\n"
                    "  goldmine finetune sft --model path/to/hf-llama --data chats --preset lora "
                    "--packing\n"
                    "  goldmine finetune sft --resume latest              # after a crash or Ctrl-C",
    "evaluate": "examples:\n"
                "  goldmine evaluate --model RUN_ID --data reviews                 # test split\n"
                "  goldmine evaluate --model PRETRAIN_RUN --data corpus.txt        # perplexity\n"
                "  goldmine evaluate --model SFT_RUN --data chats                  # answers\n"
                "  goldmine evaluate --folds 5 --model minilm --data reviews-5fold "
                "--finetune recipe.yaml\n"
                "  goldmine evaluate --model RUN_ID --data reviews --baseline EVAL_RUN "
                "--max-drop f1_macro=0.5",
    "serve": "examples:\n"
             "  goldmine keys create --name acme            # prints a key once\n"
             "  goldmine serve --model chat=SFT_RUN --model sentiment=CLASSIFY_RUN\n"
             "  goldmine serve --model llama=./my-hf-llama-dir --no-auth --port 8080   # local dev\n"
             "  curl http://127.0.0.1:8000/v1/chat/completions -H 'Authorization: Bearer KEY' \\\n"
             "       -H 'Content-Type: application/json' \\\n"
             "       -d '{\"model\": \"chat\", \"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}]}'",
    "chat": "examples:\n  goldmine chat --model SFT_RUN\n"
            "  goldmine chat --url http://127.0.0.1:8000 --api-key KEY",
    "data from-feedback": "example:\n  goldmine data from-feedback --out liked.jsonl && "
                          "goldmine data prepare liked.jsonl --kind chat --out liked",
    "export": "examples:\n"
              "  goldmine export SFT_RUN --format hf --out my-model     # transformers, vLLM, TGI\n"
              "  goldmine export SFT_RUN --format gguf --gguf-type q8_0 --out my-model-gguf\n"
              "  goldmine export CLASSIFY_RUN --format onnx --out sentiment-onnx\n"
              "  goldmine export SFT_LORA_RUN --merge-lora --format hf --out merged",
    "quantize": "examples:\n"
                "  goldmine quantize CLASSIFY_RUN                          # int8-dynamic\n"
                "  goldmine quantize PRETRAIN_RUN --method int8-weight-only --data corpus.txt\n"
                "  goldmine evaluate --model QUANTIZE_RUN --data reviews   # loads like any run",
    "predict": "example:\n  goldmine predict --model RUN_ID new_reviews.csv --out labelled.csv",
    "compare": "examples:\n"
               "  goldmine compare LOGREG_RUN MINILM_RUN --data reviews     # first run: baseline\n"
               "  goldmine compare MINILM_RUN QUANTIZE_RUN --data held-out.csv --label-column stars\n"
               "  goldmine compare EVAL_RUN_A EVAL_RUN_B EVAL_RUN_C --baseline EVAL_RUN_B\n"
               "  goldmine compare A B --data reviews --price-per-hour 0.05 --utilization 0.3",
    "generate": "examples:\n  goldmine generate --model RUN_ID --prompt 'The wool scarf'\n"
                "  goldmine generate --model SFT_RUN --prompt 'Where is my order?'   # chat\n"
                "  goldmine generate --model runs/pretrain-.../checkpoints/best --preset greedy",
    "cost train": "examples:\n"
                  "  goldmine cost train --params 7e9 --tokens 2e12 --hardware h100-sxm --gpus 8 "
                  "--mfu 0.4 --explain\n"
                  "  goldmine cost train --preset gpt2-124m --tokens 10e9 --hardware a100-80gb "
                  "--gpus 8 --step-time 0.3 --tokens-per-step 524288\n"
                  "  goldmine cost train --preset llama2-7b          # 184,320 GPU-hours -> MFU\n"
                  "  goldmine cost train --from-run PRETRAIN_RUN --params 1e9 --tokens 20e9 "
                  "--hardware h100-sxm --gpus 8",
    "cost optimal": "examples:\n"
                    "  goldmine cost optimal --flops 5.76e23             # Chinchilla: 70B, 1.4T\n"
                    "  goldmine cost optimal --budget 50000 --hardware h100-sxm --gpus 64\n"
                    "  goldmine cost optimal --params 1e9 --hardware a100-80gb",
    "cost memory": "examples:\n"
                   "  goldmine cost memory --model llama-7b --hardware a100-80gb\n"
                   "  goldmine cost memory --model llama-7b --hardware a100-80gb --gpus 8 --sharded "
                   "--batch-size 4 --checkpointing\n"
                   "  goldmine cost memory --mode serve --model llama-7b --hardware l4 "
                   "--concurrency 16 --context 4096",
    "cost serve": "examples:\n"
                  "  python bench/serve.py --skip-hf > serve.json && goldmine cost serve "
                  "--from-bench serve.json\n"
                  "  goldmine cost serve --tokens-per-s 2500 --hardware l40s --utilization 0.3\n"
                  "  goldmine cost serve --tokens-per-s 2500 --hardware l40s --usage --days 30",
    "cost plan": "examples:\n"
                 "  goldmine cost plan                                  # the example plan\n"
                 "  goldmine cost plan --init my-plan.yaml              # a copy to edit\n"
                 "  goldmine cost plan my-plan.yaml --serving-cost-per-1m 0.8 --training-cost 500 "
                 "--out plan-report",
}


# ---------------------------------------------------------------------------------------------
# dataclass config -> argparse
# ---------------------------------------------------------------------------------------------
def _fmt_default(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list):
        return " ".join(map(repr, value)) if value else "none"
    return str(value)


def add_config_args(parser: argparse.ArgumentParser, cls: type[Config]) -> None:
    types_ = field_types(cls)
    if cls.presets:
        lines = "; ".join(f"{k}: {cls.preset_help.get(k, '')}".rstrip(": ") for k in cls.presets)
        lines = lines.replace("%", "%%")
        parser.add_argument("--preset", choices=list(cls.presets), metavar="NAME",
                            help=f"start from a named preset ({lines})")
    parser.add_argument("--config", metavar="FILE.yaml",
                        help="read options from a YAML file (flags given here override it)")
    for f in fields(cls):
        meta = f.metadata
        if not meta.get("cli", True):
            continue
        base, _ = _unwrap_optional(types_[f.name])
        help_ = meta["help"].replace("%", "%%")
        if meta.get("positional"):
            many = getattr(base, "__origin__", None) is list
            parser.add_argument(f.name, nargs="*" if many else "?",
                                metavar=meta.get("metavar") or f.name.upper(), help=help_)
            continue
        if "default" not in help_:
            help_ += f" (default: {_fmt_default(field_default(f))})"
        flag = "--" + f.name.replace("_", "-")
        if base is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_)
        elif getattr(base, "__origin__", None) is list:
            parser.add_argument(flag, action="append", metavar=meta.get("metavar") or "TEXT",
                                help=help_ + "; repeatable")
        else:
            metavar = meta.get("metavar") or {int: "N", float: "X"}.get(base, "TEXT")
            choices = meta.get("choices")
            parser.add_argument(flag, metavar="{" + ",".join(choices) + "}" if choices else metavar,
                                help=help_)
    parser.add_argument("--json", action="store_true", help="print one JSON object as the result")


def explicit_flags(args: argparse.Namespace, cls: type[Config]) -> dict[str, Any]:
    """The options the user typed (positional lists count when non-empty)."""
    out = {}
    for f in fields(cls):
        value = getattr(args, f.name, None)
        if value is None or (f.metadata.get("positional") and value == []):
            continue
        out[f.name] = value
    return out


def config_from_args(args: argparse.Namespace, cls: type[Config]):
    return cls.load(getattr(args, "preset", None), args.config, explicit_flags(args, cls))


# ---------------------------------------------------------------------------------------------
# output
# ---------------------------------------------------------------------------------------------
def emit(result: dict, as_json: bool, render) -> None:
    if as_json:
        print(json.dumps(result, ensure_ascii=False, default=str))
    else:
        render(result)


def _console():
    from rich.console import Console

    # piped output (logs, CI) gets wide lines instead of rich's 80-column default
    return Console(highlight=False, width=None if sys.stdout.isatty() else 200)


def _titled(title: str, table):
    """A bold title line above a table (rich would wrap a title to the table's width)."""
    from rich.console import Group
    from rich.text import Text

    return Group(Text(title, style="bold"), table)


def _kv_table(title: str, rows: list[tuple[str, Any]]):
    from rich.table import Table

    t = Table(show_header=False, box=None, pad_edge=False)
    t.add_column(style="bold")
    t.add_column()
    for k, v in rows:
        t.add_row(k, _fmt(v))
    return _titled(title, t)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    if isinstance(v, (dict, list)):
        return json.dumps(v, ensure_ascii=False, default=str)
    return str(v)


# ---------------------------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------------------------
def cmd_sample(args):
    from goldmine.data.sample import generate_sample_data

    cfg = config_from_args(args, SampleDataConfig)
    res = generate_sample_data(cfg.out, seed=cfg.seed, scale=cfg.scale)

    def render(r):
        from rich.table import Table

        t = Table()
        for col in ("file", "rows", "bytes"):
            t.add_column(col, justify="left" if col == "file" else "right")
        for name, f in r["files"].items():
            t.add_row(name, f"{f['rows']:,}", f"{f['bytes']:,}")
        _console().print(_titled(f"sample data in {r['out_dir']} (seed {r['seed']}, "
                                 f"scale {r['scale']})", t))

    emit(res, args.json, render)


def cmd_prepare(args):
    from goldmine.data.prepare import prepare_dataset

    res = prepare_dataset(config_from_args(args, PrepareConfig))

    def render(r):
        c = r["counts"]
        read = max(c["read"], 1)
        rows = [("directory", r["out"]), ("kind", r["kind"]),
                ("read", c["read"]),
                ("kept", f"{c['kept']:,} ({c['kept'] / read:.1%})"),
                ("exact duplicates", c["exact_duplicates"]),
                ("near duplicates", c["near_duplicates"]),
                ("rejected", c["rejected"])]
        rows += [(f"  {reason}", n) for reason, n in list(c["rejected_by_reason"].items())[:8]]
        rows += [("splits", ", ".join(f"{k} {v:,}" for k, v in c["splits"].items()))]
        if c["oversampled"] or c["augmented"]:
            rows.append(("added to train", f"{c['oversampled']:,} oversampled, "
                                           f"{c['augmented']:,} augmented"))
        if r.get("labels"):
            shown = ", ".join(r["labels"])
            shown = shown if len(shown) <= 80 else shown[:77].rsplit(", ", 1)[0] + ", ..."
            rows.append(("labels", f"{len(r['labels'])}: {shown}"))
            if c.get("label_conflicts"):
                rows.append(("label conflicts", f"{c['label_conflicts']:,} duplicates had "
                                                "another label (duplicates.jsonl)"))
        rows.append(("PII replaced", ", ".join(f"{k} {v:,}" for k, v in c["pii"].items())
                     or "none found"))
        rows += [("encodings", _encodings(r["inputs"])),
                 ("time", f"{r['seconds']:.1f} s ({r['mb_per_s']:.1f} MB/s)"),
                 ("report", f"{r['out']}/{r['report']}")]
        _console().print(_kv_table(f"dataset prepared (run {r['run_id']})", rows))

    emit(res, args.json, render)


def _encodings(inputs: list[dict]) -> str:
    """"utf-8 (3 files); gb18030: shop.csv (why)" - files not in UTF-8 are named."""
    from pathlib import Path

    parts = []
    for enc in sorted({i["encoding"] for i in inputs}, key=lambda e: e != "utf-8"):
        files = [i for i in inputs if i["encoding"] == enc]
        if enc == "utf-8" or len(files) > 3:
            parts.append(f"{enc} ({len(files)} file{'s' * (len(files) > 1)})")
        else:
            parts.append(f"{enc}: " + ", ".join(f"{Path(i['path']).name} ({i['encoding_reason']})"
                                                for i in files))
    return "; ".join(parts)


def cmd_tokenizer_train(args):
    from goldmine.tokenizer import train_tokenizer

    res = train_tokenizer(config_from_args(args, TokenizerConfig))
    emit(res, args.json, lambda r: _console().print(_kv_table(
        f"tokenizer trained (run {r['run_id']})",
        [("tokenizer", r["tokenizer"]), ("kind", r["kind"]), ("vocab size", r["vocab_size"]),
         ("documents", r["documents"]), ("bytes", r["bytes"]),
         ("bytes per token", r["bytes_per_token"]), ("seconds", r["seconds"])])))


def cmd_tokenize(args):
    from goldmine.data.shards import tokenize_corpus

    res = tokenize_corpus(config_from_args(args, TokenizeConfig))
    emit(res, args.json, lambda r: _console().print(_kv_table(
        f"token shards written (run {r['run_id']})",
        [("directory", r["out"]), ("train tokens", r["train_tokens"]),
         ("val tokens", r["val_tokens"]), ("documents", r["documents"]), ("dtype", r["dtype"]),
         ("seconds", r["seconds"])])))


def cmd_pretrain(args):
    from goldmine.train.pretrain import pretrain

    flags = explicit_flags(args, PretrainConfig)
    PretrainConfig.load(getattr(args, "preset", None), args.config, flags)  # checks the flags
    base = PretrainConfig.load(getattr(args, "preset", None), args.config)
    res = pretrain(base, **flags)  # flags stay explicit: they are what --resume may change
    if res.get("rank", 0) != 0:
        return

    def render(r):
        rows = [("run", r["run_id"]), ("steps", f"{r['step']:,} / {r['max_steps']:,} "
                                                 f"({r['stop_reason']})"),
                ("tokens", r["tokens"]), ("val loss", r["val_loss"]), ("val perplexity", r["val_ppl"]),
                ("tokens/s", r["tokens_per_s"]),
                ("MFU", f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"),
                ("time", f"{r['elapsed_s']:.0f} s"), ("checkpoint", r["checkpoint"]),
                ("loss curve", r["plot"])]
        if r.get("objective") == "mlm":  # masked-token figures, and the Hugging Face directory
            acc = r["val_accuracy"]
            rows[3:5] = [("val MLM loss", r["val_loss"]),
                         ("val masked accuracy", f"{100 * acc:.1f}%" if acc is not None else "n/a")]
            rows.append(("Hugging Face dir", r["hf"]))
        c = _console()
        c.print(_kv_table("pretraining done", rows))
        if r.get("objective") == "mlm":
            c.print(f"\nnext: goldmine finetune classify --model {r['run_id']} --data ...")
        else:
            c.print(f"\nnext: goldmine generate --model {r['run_id']} --prompt '...'")

    emit(res, args.json, render)


def cmd_generate(args):
    from goldmine.generate import generate_text

    cfg = config_from_args(args, GenerateConfig)
    if cfg.prompt == "-":
        cfg = cfg.update({"prompt": sys.stdin.read()})
    live = not args.json
    state = {"sample": -1, "chat": cfg.chat}

    def on_text(i, delta):
        if i != state["sample"]:
            if state["sample"] >= 0:
                sys.stdout.write("\n\n")
            if cfg.num_samples > 1:
                sys.stdout.write(f"--- sample {i + 1} ---\n")
            if not state["chat"]:  # a completion continues the prompt; a chat answer stands alone
                sys.stdout.write(cfg.prompt)
            state["sample"] = i
        sys.stdout.write(delta)
        sys.stdout.flush()

    res = generate_text(cfg, on_text=on_text if live else None, on_start=state.update)
    if args.json:
        emit(res, True, None)
    else:
        sys.stdout.write("\n")
        from goldmine.progress import info

        tps = res["tokens_per_s"]
        info(f"[dim]{res['new_tokens']} tokens in {res['seconds']:.2f} s"
             f"{f' ({tps:,.0f} tok/s)' if tps else ''} · run {res['run_id']}[/dim]")


def cmd_finetune_classify(args):
    from goldmine.train.finetune_classify import finetune_classify

    res = finetune_classify(config_from_args(args, FinetuneClassifyConfig))

    def render(r):
        val = r.get("val") or {}
        rows = [("run", r["run_id"]), ("model", r["model_dir"]),
                ("labels", f"{len(r['labels'])}: " + ", ".join(r["labels"][:10])
                 + (" ..." if len(r["labels"]) > 10 else "")),
                ("steps", f"{r['steps']:,} ({r['stop_reason']})"
                          + (f"; best at step {r['best_step']:,}" if r.get("best_step") else "")),
                *[(f"val {k}", v) for k, v in val.items()],
                ("examples/s", r["examples_per_s"]),
                ("trainable parameters", f"{r['trainable_params']:,} of {r['total_params']:,}")]
        if r.get("val_from_train"):
            rows.append(("validation", "held out from train (the data has no val split)"))
        if any(r.get("truncated", {}).values()):
            rows.append(("truncated", ", ".join(f"{k} {v:,}" for k, v in r["truncated"].items())))
        c = _console()
        if r["stop_reason"] == "interrupted":
            c.print(_kv_table("fine-tuning interrupted", rows))
            c.print(f"\ncontinue with: goldmine finetune classify --resume {r['run_id']}")
        else:
            c.print(_kv_table("fine-tuning done", rows))
            c.print(f"\nnext: goldmine evaluate --model {r['run_id']} --data ...")

    emit(res, args.json, render)
    if res["stop_reason"] == "interrupted":
        raise KeyboardInterrupt  # exit status 130, as for any interrupted command


def cmd_finetune_sft(args):
    from goldmine.train.finetune_sft import finetune_sft

    res = finetune_sft(config_from_args(args, FinetuneSFTConfig))

    def render(r):
        val = r.get("val") or {}
        rows = [("run", r["run_id"]), ("model", r["model_dir"]),
                ("steps", f"{r['steps']:,} ({r['stop_reason']})"
                          + (f"; best at step {r['best_step']:,}" if r.get("best_step") else "")),
                ("val answer loss", val.get("loss")), ("val answer perplexity", val.get("ppl")),
                ("conversations", f"{r['train_conversations']:,} train / "
                                  f"{r['val_conversations']:,} val"),
                ("tokens/s", r["tokens_per_s"]),
                ("trainable parameters", f"{r['trainable_params']:,} of {r['total_params']:,}")]
        if r.get("val_from_train"):
            rows.append(("validation", "held out from train (the data has no val split)"))
        if any(r["truncated"].values()) or any(r["dropped"].values()):
            rows.append(("cut / left out", ", ".join(
                f"{k} {r['truncated'][k]:,} / {r['dropped'][k]:,}" for k in r["truncated"])))
        c = _console()
        if r["stop_reason"] == "interrupted":
            c.print(_kv_table("fine-tuning interrupted", rows))
            c.print(f"\ncontinue with: goldmine finetune sft --resume {r['run_id']}")
        else:
            c.print(_kv_table("fine-tuning done", rows))
            c.print(f"\nnext: goldmine generate --model {r['run_id']} --prompt '...'  or  "
                    f"goldmine evaluate --model {r['run_id']} --data ...")

    emit(res, args.json, render)
    if res["stop_reason"] == "interrupted":
        raise KeyboardInterrupt  # exit status 130, as for any interrupted command


def cmd_evaluate(args):
    from goldmine.eval import evaluate

    res = evaluate(config_from_args(args, EvaluateConfig))
    render = {"crossval": _render_folds, "lm": _render_lm, "sft": _render_lm,
              "classify": _render_classify}[res["kind"]]
    emit(res, args.json, render)


def _render_folds(r):
    from rich.table import Table

    t = Table()
    names = list(r["mean"])
    for col in ("fold", "run", "val rows", *names):
        t.add_column(col, justify="left" if col == "run" else "right")
    for f in r["folds"]:
        t.add_row(str(f["fold"]), f["run_id"], f"{f['val_rows']:,}",
                  *[f"{f['metrics'][k]:.4f}" for k in names])
    t.add_row("[bold]mean ± std", "", "",
              *[f"[bold]{r['mean'][k]:.4f} ± {r['std'][k]:.4f}" for k in names])
    c = _console()
    c.print(_titled(f"{r['k']}-fold cross-validation (run {r['run_id']})", t))
    c.print(f"report: {r['report']}")


def _render_lm(r):
    c = _console()
    rows = [("run", r["run_id"]), ("model", r["model"]["path"]),
            ("data", ", ".join(r["data"]["files"])
             + (f" ({r['data']['split']})" if r["data"]["split"] else ""))]
    rows += list(r["metrics"].items())
    rows.append(("report", f"{r['run_dir']}/report.md"))
    c.print(_kv_table("chat evaluation" if r["task"] == "sft" else "evaluation", rows))
    if r["samples"]:
        from rich.table import Table

        t = Table(show_lines=True)
        for col in ("last user message", "reference", "generated", "F1"):
            t.add_column(col, justify="right" if col == "F1" else "left", overflow="fold")
        for s in r["samples"]:
            t.add_row(s["prompt"], s["reference"], s["generated"], f"{s['f1']:.2f}")
        c.print(_titled("samples (greedy)", t))


def _render_classify(r):
    m = r["metrics"]
    rows = [("run", r["run_id"]), ("data", f"{r['data']['path']} ({r['data'].get('split') or 'file'}, "
                                          f"{r['data']['n']:,} examples)")]
    rows += [(k, v) for k, v in m.items() if isinstance(v, (int, float))]
    rows.append(("report", f"{r['run_dir']}/report.md"))
    _console().print(_kv_table("evaluation", rows))


def cmd_predict(args):
    from goldmine.predict import predict

    res = predict(config_from_args(args, PredictConfig))
    emit(res, args.json, lambda r: _console().print(_kv_table(
        f"predictions written (run {r['run_id']})",
        [("files", ", ".join(map(str, r["outputs"]))), ("rows", r["rows"]),
         ("rows without text", r["errors"]), ("labels", r["labels_count"]),
         ("rows/s", r["rows_per_s"])])))


def cmd_export(args):
    from goldmine.export.command import export

    res = export(config_from_args(args, ExportConfig))
    emit(res, args.json, lambda r: _console().print(_kv_table(
        f"exported ({r['format']}, run {r['run_id']})",
        [("from", r["source"]), ("to", r["out"]), ("files", ", ".join(r["files"])),
         *[(k.replace("_", " "), v) for k, v in r.get("checks", {}).items()]])))


def cmd_quantize(args):
    from rich.table import Table

    from goldmine.quantize import quantize

    res = quantize(config_from_args(args, QuantizeConfig))

    def render(r):
        table = Table(title=f"{r['method']} (run {r['run_id']})")
        columns = list(r["table"][0])
        for c in columns:
            table.add_column(c.replace("_", " "), justify="left" if c == "model" else "right")
        for row in r["table"]:
            table.add_row(*[_fmt(row[c]) for c in columns])
        _console().print(table)
        _console().print(f"quantized model: {r['model_dir']}")

    emit(res, args.json, render)


def cmd_compare(args):
    from rich.table import Table

    from goldmine.eval.compare import compare, fmt_usd

    res = compare(config_from_args(args, CompareConfig))

    def pct(x, ci):
        return f"{100 * x:.1f} ({100 * ci[0]:.1f}–{100 * ci[1]:.1f})"

    def render(r):
        t = Table()
        for col in ("model", "parameters", "size MB", "accuracy % (95% CI)",
                    "macro F1 % (95% CI)", "ms/example", "examples/s", "$ per 1M"):
            t.add_column(col, justify="left" if col == "model" else "right")
        for m in r["models"]:
            name = m["name"] + (" [dim](baseline)[/]" if m["name"] == r["baseline"] else "")
            t.add_row(name, _fmt(m["parameters"]) if m["parameters"] is not None else "—",
                      f"{m['size_mb']:.1f}", pct(m["accuracy"], m["accuracy_ci"]),
                      pct(m["f1_macro"], m["f1_macro_ci"]), f"{m['latency_ms']:.2f}",
                      f"{m['examples_per_s']:,.1f}", fmt_usd(m["usd_per_1m"]))
        c = _console()
        d = r["data"]
        c.print(_titled(f"is it worth it? (run {r['run_id']}; {d['n']:,} rows of {d['path']})",
                        t))
        for s in r["sentences"]:
            c.print(f"\n{s}")
        c.print(f"\nreport: {r['report']}")

    emit(res, args.json, render)


def cmd_quickstart(args):
    from goldmine.quickstart import quickstart

    res = quickstart(config_from_args(args, QuickstartConfig))
    if args.json:
        emit(res, True, None)


def cmd_serve(args):
    from goldmine.serve.server import serve

    serve(config_from_args(args, ServeConfig))


def cmd_chat(args):
    from goldmine.serve.terminal import chat

    res = chat(config_from_args(args, ChatConfig))
    if args.json:
        emit(res, True, None)


def cmd_from_feedback(args):
    from goldmine.data.feedback import from_feedback

    cfg = config_from_args(args, FromFeedbackConfig)
    from goldmine.serve.store import ServeStore

    with ServeStore(cfg.db) as store:
        res = from_feedback(cfg.out, min_rating=cfg.min_rating, model=cfg.model,
                            use_corrections=cfg.corrections, store=store)
    emit(res, args.json, lambda r: _console().print(_kv_table(
        "chat dataset from feedback",
        [("file", r["path"]), ("conversations", r["conversations"]),
         ("with a correction", r["corrected"]), ("rated below --min-rating", r["skipped_by_rating"]),
         ("next", f"goldmine data prepare {r['path']} --kind chat --out feedback")])))


def cmd_keys_create(args):
    from goldmine.serve.commands import keys_create

    row = keys_create(args.name, rpm=args.rpm, tokens_per_day=args.tokens_per_day, db=args.db)
    if args.json:
        return emit(row, True, None)
    c = _console()
    c.print(f"API key [bold]{row['name']}[/bold] ({row['id']}) created. It is shown only now; "
            "only its hash is stored:")
    print(row["key"])
    limits = ", ".join(x for x in (f"{row['rpm']} requests/minute" if row.get("rpm") else "",
                                   f"{row['tokens_per_day']:,} tokens/day"
                                   if row.get("tokens_per_day") else "") if x) or "no limits"
    c.print(f"limits: {limits}. Send it as `Authorization: Bearer KEY` (the openai client's "
            "api_key).")


def _ts(t) -> str:
    import datetime

    return "-" if not t else datetime.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M")


def cmd_keys_list(args):
    from rich.table import Table

    from goldmine.serve.commands import keys_list

    rows = keys_list(db=args.db, include_revoked=args.all)
    if args.json:
        return emit({"keys": rows}, True, None)
    t = Table(box=None)
    for col in ("name", "id", "prefix", "requests/min", "tokens/day", "created", "revoked"):
        t.add_column(col)
    for r in rows:
        t.add_row(r["name"], r["id"], "gm-" + r["prefix"] + "…", _fmt(r.get("rpm") or "-"),
                  _fmt(r.get("tokens_per_day") or "-"), _ts(r["created"]), _ts(r.get("revoked")))
    _console().print(_titled(f"API keys ({len(rows)})", t))


def cmd_keys_revoke(args):
    from goldmine.serve.commands import keys_revoke

    row = keys_revoke(args.name, db=args.db)
    emit(row, args.json, lambda r: _console().print(
        f"revoked {r['name']} ({r['id']}); servers refuse it from their next request"))


def cmd_keys_usage(args):
    from rich.table import Table

    from goldmine.serve.commands import keys_usage

    rows = keys_usage(key=args.key, days=args.days, db=args.db)
    if args.json:
        return emit({"usage": rows}, True, None)
    t = Table(box=None)
    for col in ("day (UTC)", "key", "model", "requests", "prompt tokens", "completion tokens",
                "total tokens"):
        t.add_column(col, justify="left" if col in ("day (UTC)", "key", "model") else "right")
    for r in rows:
        t.add_row(r["day"], r["key"], r["model"], f"{r['requests']:,}", f"{r['prompt_tokens']:,}",
                  f"{r['completion_tokens']:,}", f"{r['total_tokens']:,}")
    _console().print(_titled("usage", t) if rows else "no usage recorded yet")


def cmd_runs_list(args):
    from goldmine.registry import Registry

    runs = Registry().list(limit=args.limit, command=args.command, status=args.status)
    if args.json:
        print(json.dumps({"runs": runs}, ensure_ascii=False, default=str))
        return
    from rich.table import Table

    t = Table()
    for col in ("id", "command", "status", "started", "time", "result"):
        t.add_column(col)
    for r in runs:
        dur = (r["ended"] or time.time()) - r["started"]
        t.add_row(r["id"], r["command"], _status(r["status"]),
                  time.strftime("%Y-%m-%d %H:%M", time.localtime(r["started"])),
                  f"{dur:,.0f} s", _headline(r))
    _console().print(_titled("runs (newest first)", t) if runs
                     else "no runs yet (try `goldmine quickstart`)")


def _status(s: str) -> str:
    color = {"completed": "green", "running": "yellow", "failed": "red", "killed": "red",
             "interrupted": "magenta"}.get(s, "white")
    return f"[{color}]{s}[/{color}]"


def _headline(run: dict) -> str:
    m = run["metrics"]
    if m.get("kept") is not None and m.get("read") is not None:
        return f"kept {m['kept']:,} of {m['read']:,} rows"
    if m.get("objective") == "mlm" and m.get("val_loss") is not None:  # not a classifier's accuracy
        acc = m.get("val_accuracy")
        return f"val MLM loss {_fmt(m['val_loss'])}" + (
            f", masked acc {_fmt(acc)}" if acc is not None else "")
    for key, label in (("val_accuracy", "val accuracy"), ("accuracy", "accuracy"),
                       ("answer_ppl", "answer ppl"), ("ppl", "perplexity"),
                       ("val_loss", "val loss"), ("vocab_size", "vocab"),
                       ("train_tokens", "train tokens"), ("tokens_per_s", "tok/s")):
        if m.get(key) is not None:
            return f"{label} {_fmt(m[key])}"
    return run.get("error") or ""


def cmd_runs_show(args):
    from goldmine.registry import Registry

    r = Registry().get(args.run)
    if args.json:
        print(json.dumps(r, ensure_ascii=False, default=str))
        return
    c = _console()
    c.print(_kv_table(f"run {r['id']}", [
        ("command", r["command"]), ("status", r["status"]),
        ("started", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["started"]))),
        ("ended", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["ended"])) if r["ended"] else "-"),
        ("directory", r["run_dir"]), ("git revision", r["git_rev"] or "-"),
        ("goldmine", r["version"]), ("parents", ", ".join(r["parents"]) or "-"),
        ("error", r["error"] or "-")]))
    c.print(_kv_table("\nmetrics", sorted(r["metrics"].items())))
    c.print(_kv_table("\nartifacts", sorted(r["artifacts"].items())))
    c.print(_kv_table("\nconfig", sorted(r["config"].items())))


def cmd_runs_compare(args):
    from goldmine.registry import Registry

    reg = Registry()
    runs = [reg.get(ref) for ref in args.runs]
    keys_cfg = sorted({k for r in runs for k in r["config"]})
    diff_cfg = [k for k in keys_cfg if len({json.dumps(r["config"].get(k), default=str) for r in runs}) > 1]
    keys_m = sorted({k for r in runs for k in r["metrics"]})
    result = {"runs": [r["id"] for r in runs],
              "config_differences": {k: [r["config"].get(k) for r in runs] for k in diff_cfg},
              "metrics": {k: [r["metrics"].get(k) for r in runs] for k in keys_m}}
    if args.json:
        print(json.dumps(result, ensure_ascii=False, default=str))
        return
    from rich.table import Table

    t = Table()
    t.add_column("")
    for r in runs:
        t.add_column(r["id"])
    t.add_row("[bold]command", *[r["command"] for r in runs])
    t.add_row("[bold]status", *[_status(r["status"]) for r in runs])
    for k in diff_cfg:
        t.add_row(f"config: {k}", *[_fmt(r["config"].get(k)) for r in runs])
    for k in keys_m:
        t.add_row(k, *[_fmt(r["metrics"].get(k)) if k in r["metrics"] else "-" for r in runs])
    _console().print(_titled("comparison", t))


# ---------------------------------------------------------------------------------------------
# goldmine cost
# ---------------------------------------------------------------------------------------------
def _usd(x: float | None) -> str:
    if x is None:
        return "n/a (no price)"
    sign = "-" if x < 0 else ""
    return f"{sign}${abs(x):,.2f}" if abs(x) < 1000 else f"{sign}${abs(x):,.0f}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "n/a (no hardware)"
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:,.1f} {unit}"
    return f"{seconds:.1f} s"


def _big(n: float) -> str:
    """69.3B, 1.39T: parameter and token counts as people say them."""
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:,.3g}{unit}"
    return f"{n:,.0f}"


def _notes(c, notes: list[str]) -> None:
    for note in notes:
        c.print(f"[yellow]note:[/yellow] {note}", soft_wrap=True)


def cmd_cost_train(args):
    from goldmine.cost.command import cost_train

    cfg = config_from_args(args, CostTrainConfig)
    res = cost_train(cfg)

    def render(r):
        hw = (f"{r['gpus']} × {r['hardware']}, {r['dtype']} peak "
              f"{r['peak_flops_per_gpu'] / 1e12:,.4g} TFLOP/s each" if r["hardware"] else "none")
        rows = [("model", r["model"] or "-"), ("parameters N", f"{r['params']:,.0f}"
                                                + (f" in matmuls ({r['params_total']:,} in all)"
                                                   if r["params_total"] else "")),
                ("tokens D", f"{r['tokens']:,.0f}"), ("hardware", hw),
                ("FLOPs", f"{r['flops']:.4g}  (6·N·D {r['flops_6nd']:.4g} + attention "
                          f"{r['flops_attention']:.4g})" if r["flops_attention"] else
                 f"{r['flops']:.4g}  (6·N·D; the attention term needs --model)"),
                ("MFU", f"{r['mfu']:.3f} ({r['speed_from']})" if r["mfu"] is not None
                 else f"n/a ({r['speed_from']})"),
                ("tokens/s", f"{r['tokens_per_s']:,.0f}" if r["tokens_per_s"] else "n/a"),
                ("wall time", _duration(r["wall_s"])),
                ("GPU-hours", f"{r['gpu_hours']:,.1f}" if r["gpu_hours"] is not None else "n/a"),
                ("energy", f"{r['energy_kwh']:,.1f} kWh (PUE {r['pue']:g})"
                 if r["energy_kwh"] is not None else "n/a"),
                ("cost", _usd(r["cost_usd"]) + (f" at ${r['price_per_gpu_hour']:g}/GPU-hour"
                                                 if r["price_per_gpu_hour"] else ""))]
        if r["from_run"]:
            rows.insert(0, ("from run", f"{r['from_run']['run_id']}: "
                                        f"{r['from_run']['tokens_per_s']:,.0f} tokens/s"))
        c = _console()
        c.print(_kv_table("training cost", rows))
        if cfg.explain:
            c.print("\n[bold]how[/bold]")
            for line in r["explain"]:
                c.print(line, soft_wrap=True)
        _notes(c, r["notes"])

    emit(res, args.json, render)


def cmd_cost_optimal(args):
    from rich.table import Table

    from goldmine.cost.command import cost_optimal

    res = cost_optimal(config_from_args(args, CostOptimalConfig))

    def render(r):
        names = {"rule": f"{r['tokens_per_param']:g} tokens per parameter",
                 "hoffmann": "Hoffmann et al. 2022 fit", "besiroglu": "Besiroglu et al. 2024 refit"}
        t = Table()
        for col in ("compute-optimal by", "parameters", "tokens", "tokens/param", "FLOPs",
                    "loss (Hoffmann)", "loss (Besiroglu)", "GPU-hours", "days", "cost"):
            t.add_column(col, justify="left" if col == "compute-optimal by" else "right")
        for name, p in r["points"].items():
            t.add_row(names[name], _big(p["params"]), _big(p["tokens"]),
                      f"{p['tokens_per_param']:.1f}", f"{p['flops']:.3g}",
                      f"{p['loss_hoffmann']:.3f}", f"{p['loss_besiroglu']:.3f}",
                      f"{p['gpu_hours']:,.0f}" if p["gpu_hours"] is not None else "-",
                      f"{p['wall_days']:,.1f}" if p["wall_days"] is not None else "-",
                      _usd(p["cost_usd"]) if p["cost_usd"] is not None else "-")
        b = r["budget"]
        title = f"budget {b['flops']:.3g} FLOPs (from {b['from']})"
        if b["from"] == "model size":
            title = f"a {_big(r['points']['rule']['params'])}-parameter model, trained compute-optimally"
        if r["hardware"]:
            title += f" on {r['gpus']} × {r['hardware']} at MFU {r['mfu']:g}"
        c = _console()
        c.print(_titled(title, t))
        _notes(c, r["notes"])

    emit(res, args.json, render)


def cmd_cost_memory(args):
    from goldmine.cost.command import cost_memory

    res = cost_memory(config_from_args(args, CostMemoryConfig))

    def render(r):
        rows = [(name.replace("_", " "), f"{gb:,.2f} GB") for name, gb in r["terms_gb"].items()]
        fits = "[green]yes[/green]" if r["fits"] else "[red]no[/red]"
        most = "max_batch_size" if r["mode"] == "train" else "max_concurrency"
        rows += [("total", f"{r['total_gb']:,.2f} GB of {r['capacity_gb']:,.0f} GB"),
                 ("fits", f"{fits} (headroom {r['headroom_gb']:,.2f} GB)"),
                 (most.replace("_", " "), "n/a" if r[most] is None else f"{r[most]:,}")]
        where = (f"{r['gpus']} × {r['hardware']}" + (" sharded" if r["sharded"] else "")
                 + f", {r['precision']}")
        c = _console()
        c.print(_kv_table(f"{r['mode']} memory per GPU: {r['model'] or r['params']} on {where}",
                          rows))
        for line in r["formula"]:
            c.print(f"[dim]{line}[/dim]", soft_wrap=True)
        _notes(c, r["notes"])

    emit(res, args.json, render)


def cmd_cost_serve(args):
    from rich.table import Table

    from goldmine.cost.command import cost_serve

    res = cost_serve(config_from_args(args, CostServeConfig))

    def render(r):
        rows = [("throughput", f"{r['tokens_per_s']:,.1f} output tokens/s ({r['throughput_from']})"),
                ("hardware", f"{r['gpus']} × {r['hardware']} at ${r['price_per_gpu_hour']:g}/hour"),
                ("utilization", f"{r['utilization']:.0%} of paid hours"),
                ("per 1M output tokens", f"${r['usd_per_1m_output_tokens']:,.4g}"),
                ("per 1M input tokens", f"${r['usd_per_1m_input_tokens']:,.4g} "
                                        f"({r['input_cost_ratio']:.3g} × output: "
                                        f"{r['input_cost_ratio_from']})"),
                ("per request", f"${r['usd_per_request']:,.4g} ({r['prompt_tokens']:,.0f} in, "
                                f"{r['output_tokens']:,.0f} out)"),
                ("requests per hour", f"{r['requests_per_hour']:,.0f}")]
        c = _console()
        c.print(_kv_table("serving cost", rows))
        if "usage" in r:
            if not r["usage"]:
                c.print("no usage recorded yet")
                return
            t = Table(box=None)
            for col in ("key", "days", "requests", "prompt tokens", "completion tokens", "cost",
                        "per request"):
                t.add_column(col, justify="left" if col == "key" else "right")
            for u in r["usage"]:
                t.add_row(u["key"], str(u["days"]), f"{u['requests']:,}",
                          f"{u['prompt_tokens']:,}", f"{u['completion_tokens']:,}",
                          f"${u['cost_usd']:,.4f}", f"${u['usd_per_request']:,.5f}")
            c.print(_titled("\ncost of recorded usage per API key", t))

    emit(res, args.json, render)


def cmd_cost_plan(args):
    from rich.table import Table

    from goldmine.cost.command import cost_plan

    res = cost_plan(config_from_args(args, CostPlanConfig))

    def render(r):
        c = _console()
        if "written" in r:
            c.print(f"wrote {r['written']} (the example plan): edit it, then run "
                    f"`goldmine cost plan {r['written']}`", soft_wrap=True)
            return
        t = Table()
        for col in ("month", "users", "revenue", "serving", "training", "fixed", "gross margin",
                    "op. profit", "cash"):
            t.add_column(col, justify="right")
        for m in r["months"]:
            t.add_row(str(m["month"]), f"{m['users']:,.0f}", _usd(m["revenue"]),
                      _usd(m["serving_cost"]), _usd(m["training_cost"]), _usd(m["fixed_costs"]),
                      f"{m['gross_margin']:.0%}" if m["revenue"] else "-",
                      _usd(m["operating_profit"]), _usd(m["cash"]))
        c.print(_titled(f"plan {r['source']}: profit and loss by month", t))
        sm = r["summary"]
        be, pb = r["break_even_month"], r["payback_month"]
        rows = [("revenue", _usd(sm["total_revenue"])), ("all costs", _usd(sm["total_costs"])),
                ("gross margin", f"{sm['gross_margin']:.1%}"),
                ("break-even", f"month {be}, at {sm['users_at_break_even']:,.0f} users" if be
                 else "not within the horizon"),
                ("payback", f"month {pb}" if pb else "not within the horizon"),
                ("cash at the end", f"{_usd(sm['final_cash'])} (lowest "
                                    f"{_usd(sm['lowest_cash'])}, month {sm['lowest_cash_month']})")]
        c.print()
        c.print(_kv_table(f"over {sm['horizon_months']} months", rows))
        st = Table()
        for col in ("input", "change", "cash at the end", "break-even", "payback", "verdict"):
            st.add_column(col, justify="left" if col in ("input", "verdict") else "right")
        for row in r["sensitivity"]:
            st.add_row(row["input"], f"{row['change']:+.0%}" if row["change"] else "",
                       _usd(row["final_cash"]), str(row["break_even_month"] or "never"),
                       str(row["payback_month"] or "never"), row["verdict"])
        c.print()
        c.print(_titled("sensitivity: one input moved at a time", st))
        color = {"gold mine": "green", "marginal": "yellow", "bubble": "red"}[r["verdict"]]
        c.print(f"\nverdict: [bold {color}]{r['verdict']}[/bold {color}]")
        for reason in r["reasons"]:
            c.print(f"  - {reason}", soft_wrap=True)
        for chart in r["charts"]:
            c.print(f"chart: {chart}")
        if r.get("report"):
            c.print(f"report: {r['report']}")

    emit(res, args.json, render)


# ---------------------------------------------------------------------------------------------
# parser
# ---------------------------------------------------------------------------------------------
class _Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog):
        super().__init__(prog, max_help_position=34, width=100)


def build_parser() -> argparse.ArgumentParser:
    from goldmine import __version__

    parser = argparse.ArgumentParser(
        prog="goldmine", formatter_class=_Formatter,
        description="goldmine: from raw data to a served large model, and whether it pays.\n\n"
                    "Runs are recorded under $GOLDMINE_HOME (default ./runs). Add --debug anywhere "
                    "for full tracebacks.")
    parser.add_argument("--version", action="version", version=f"goldmine {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(parent, name, cls, func, help_, full_name=None):
        key = full_name or name
        p = parent.add_parser(name, help=help_, description=f"{help_}\n\n{(cls.__doc__ or '').strip()}",
                              epilog=EXAMPLES.get(key), formatter_class=_Formatter)
        add_config_args(p, cls)
        p.set_defaults(func=func)
        return p

    command(sub, "quickstart", QuickstartConfig, cmd_quickstart,
            "the whole path on sample data: data -> tokenizer -> GPT -> samples")

    data = sub.add_parser("data", help="prepare datasets, sample data, token shards", formatter_class=_Formatter)
    dsub = data.add_subparsers(dest="data_command", metavar="COMMAND", required=True)
    command(dsub, "sample", SampleDataConfig, cmd_sample,
            "write the synthetic online-shop corpus (products, reviews, support chats, FAQ)",
            "data sample")
    command(dsub, "prepare", PrepareConfig, cmd_prepare,
            "clean, deduplicate, scrub PII, balance, augment and split raw files into a dataset",
            "data prepare")
    command(dsub, "from-feedback", FromFeedbackConfig, cmd_from_feedback,
            "rated answers from the server (/v1/feedback) as a chat dataset for `finetune sft`",
            "data from-feedback")
    command(dsub, "tokenize", TokenizeConfig, cmd_tokenize,
            "stream a corpus through a tokenizer into memory-mapped train/val token shards",
            "data tokenize")

    tok = sub.add_parser("tokenizer", help="train tokenizers", formatter_class=_Formatter)
    tsub = tok.add_subparsers(dest="tokenizer_command", metavar="COMMAND", required=True)
    command(tsub, "train", TokenizerConfig, cmd_tokenizer_train,
            "train a byte-level BPE (or character) tokenizer; writes tokenizer.json",
            "tokenizer train")

    command(sub, "pretrain", PretrainConfig, cmd_pretrain,
            "pretrain a Llama-style GPT (or, --objective mlm, a BERT-style encoder) from scratch "
            "(resumable; torchrun for many processes)")
    command(sub, "generate", GenerateConfig, cmd_generate, "sample text from a trained model")

    ft = sub.add_parser("finetune", help="adapt an existing model: text classification, chat",
                        formatter_class=_Formatter)
    fsub = ft.add_subparsers(dest="finetune_command", metavar="COMMAND", required=True)
    command(fsub, "classify", FinetuneClassifyConfig, cmd_finetune_classify,
            "fine-tune a BERT-family encoder (default: the embedded MiniLM) or a goldmine GPT "
            "for text classification; full or LoRA", "finetune classify")
    command(fsub, "sft", FinetuneSFTConfig, cmd_finetune_sft,
            "chat / instruction tuning of a GPT (goldmine run or local HF Llama-family dir): "
            "loss on answers only; full or LoRA", "finetune sft")
    command(sub, "evaluate", EvaluateConfig, cmd_evaluate,
            "metrics of a classifier, a GPT (perplexity) or a chat model on held-out data, "
            "k-fold cross-validation, a report, and a gate against a baseline")
    command(sub, "predict", PredictConfig, cmd_predict,
            "label files with a fine-tuned classifier (streamed)")
    command(sub, "export", ExportConfig, cmd_export,
            "a run as a Hugging Face directory, ONNX or GGUF (with a model card); "
            "--merge-lora folds adapters in")
    command(sub, "quantize", QuantizeConfig, cmd_quantize,
            "int8 for CPU inference, with size, latency and metric before and after")
    command(sub, "compare", CompareConfig, cmd_compare,
            "is the bigger classifier worth it? accuracy with confidence intervals, a paired "
            "significance test, latency, throughput and cost per million predictions")
    command(sub, "serve", ServeConfig, cmd_serve,
            "OpenAI-compatible HTTP API + web playground: continuous batching, API keys, "
            "quotas, usage, metrics, feedback")
    command(sub, "chat", ChatConfig, cmd_chat,
            "chat with a model in the terminal (a run, or a running server with --url)")

    keys = sub.add_parser("keys", help="API keys of `goldmine serve`: create, list, revoke, usage",
                          formatter_class=_Formatter)
    ksub = keys.add_subparsers(dest="keys_command", metavar="COMMAND", required=True)
    db_help = "the server's database (default: GOLDMINE_HOME/registry.db)"
    p = ksub.add_parser("create", help="create a key (printed once; only its hash is stored)",
                        formatter_class=_Formatter)
    p.add_argument("--name", required=True, help="who the key is for, e.g. a customer (unique "
                                                 "among active keys)")
    p.add_argument("--rpm", type=int, help="at most N requests per minute (default: no limit)")
    p.add_argument("--tokens-per-day", type=int, metavar="N",
                   help="at most N prompt + completion tokens per UTC day (default: no limit)")
    p.add_argument("--db", help=db_help)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_keys_create)
    p = ksub.add_parser("list", help="active keys and their limits", formatter_class=_Formatter)
    p.add_argument("--all", action="store_true", help="include revoked keys")
    p.add_argument("--db", help=db_help)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_keys_list)
    p = ksub.add_parser("revoke", help="revoke a key by name or id", formatter_class=_Formatter)
    p.add_argument("name", help="the key's name or id")
    p.add_argument("--db", help=db_help)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_keys_revoke)
    p = ksub.add_parser("usage", help="requests and tokens per UTC day, key and model",
                        formatter_class=_Formatter)
    p.add_argument("--key", help="only this key (name or id)")
    p.add_argument("--days", type=int, help="only the last N days")
    p.add_argument("--db", help=db_help)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_keys_usage)

    runs = sub.add_parser("runs", help="the run registry: list, show, compare",
                          formatter_class=_Formatter)
    rsub = runs.add_subparsers(dest="runs_command", metavar="COMMAND", required=True)
    p = rsub.add_parser("list", help="recent runs, newest first", formatter_class=_Formatter)
    p.add_argument("--limit", type=int, default=20, help="show at most N runs (default: 20)")
    p.add_argument("--command", help="only runs of this command, e.g. pretrain")
    p.add_argument("--status", help="only runs with this status (running, completed, failed, "
                                    "killed, interrupted)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_runs_list)
    p = rsub.add_parser("show", help="everything recorded about one run", formatter_class=_Formatter)
    p.add_argument("run", help="run id (a unique prefix is enough) or run directory")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_runs_show)
    p = rsub.add_parser("compare", help="runs side by side: differing config and all metrics",
                        formatter_class=_Formatter)
    p.add_argument("runs", nargs="+", metavar="RUN", help="two or more run ids or directories")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_runs_compare)

    cost = sub.add_parser("cost", help="what training and serving cost, and whether it pays: "
                                       "train, optimal, memory, serve, plan",
                          formatter_class=_Formatter)
    csub = cost.add_subparsers(dest="cost_command", metavar="COMMAND", required=True)
    command(csub, "train", CostTrainConfig, cmd_cost_train,
            "FLOPs, GPU-hours, wall time, energy and money of a training run", "cost train")
    command(csub, "optimal", CostOptimalConfig, cmd_cost_optimal,
            "compute-optimal model size and tokens for a budget (Chinchilla), predicted loss",
            "cost optimal")
    command(csub, "memory", CostMemoryConfig, cmd_cost_memory,
            "will it fit: training or serving memory per GPU, term by term", "cost memory")
    command(csub, "serve", CostServeConfig, cmd_cost_serve,
            "$ per 1M input and output tokens and per request, and per API key's usage",
            "cost serve")
    command(csub, "plan", CostPlanConfig, cmd_cost_plan,
            "a business plan month by month: break-even, sensitivity, charts and a verdict",
            "cost plan")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.func is cmd_runs_compare and len(args.runs) < 2:
        parser.error("runs compare: give at least two runs")
    from rich.markup import escape

    from goldmine.progress import console

    try:
        args.func(args)
    except GoldmineError as e:
        if debug:
            raise
        console.print(f"[bold red]error:[/bold red] {escape(str(e))}", soft_wrap=True)
        return e.exit_code
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/yellow]")
        return 130
    except Exception as e:  # an unexpected failure: one line, the traceback with --debug
        if debug:
            raise
        console.print(f"[bold red]error:[/bold red] {type(e).__name__}: {escape(str(e))} "
                      "(run again with --debug for the traceback)", soft_wrap=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
