"""`goldmine evaluate` for language models: a GPT on text, a chat model on conversations.

    goldmine evaluate --model PRETRAIN_RUN --data held-out.txt     # loss, perplexity, bits/byte
    goldmine evaluate --model SFT_RUN --data chats                 # answers: perplexity, samples

Text (a .txt/.md/.jsonl/.parquet file or folder, or a prepared text dataset: its test split,
else val): every document is tokenized as in pretraining (BOS when the model was trained with
it, EOS after each) and the stream is cut into windows of the model's context; every token
after the first of a window is predicted once. Reported: mean cross-entropy per token (nats),
perplexity = exp(loss), and bits per byte = total nats / ln 2 / UTF-8 bytes of the text, which,
unlike perplexity, compares models with different tokenizers.

Conversations (a prepared chat dataset, or a .jsonl with `messages`): the answer loss and
perplexity on the assistant tokens only, rendered with the model's chat template exactly as
`finetune sft` trained; and, for the first --samples conversations, the model's greedy answer
to everything before the last assistant message, side by side with that message, with a
token-overlap F1 (words, and characters for Chinese). Conversations longer than the context are
cut (counted); those with no answer left are counted and left out.

Gate: `--baseline EVAL_RUN --max-drop loss=0.05` fails (exit 3) when a lower-is-better metric
rose by more than the allowance, in the metric's own units, against an earlier evaluation of
the same data.
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from goldmine.config import EvaluateConfig
from goldmine.errors import GoldmineError
from goldmine.eval.classify import FORMAT, GateFailed, _sha256

TEXT_SUFFIXES = (".txt", ".md", ".jsonl", ".parquet")
TEXT_METRICS = ("loss", "ppl", "bits_per_byte")
CHAT_METRICS = ("answer_loss", "answer_ppl")


def is_language_model(ref: str) -> bool:
    """Whether `ref` names a GPT: a goldmine checkpoint (run id, run or checkpoint directory)
    or a local Hugging Face Llama-family directory. Classifiers are not."""
    from goldmine.checkpoint import FORMAT as GPT_FORMAT
    from goldmine.checkpoint import resolve_checkpoint
    from goldmine.export.llama import CAUSAL_LM_TYPES, is_hf_model_dir
    from goldmine.files import read_json
    from goldmine.hf import model_type

    p = Path(ref)
    if p.is_dir() and is_hf_model_dir(p):
        return model_type(p) in CAUSAL_LM_TYPES
    try:
        ckpt = resolve_checkpoint(ref)
    except GoldmineError:
        return False
    meta = read_json(ckpt / "config.json", "config.json")
    return isinstance(meta, dict) and meta.get("format") == GPT_FORMAT


# ------------------------------------------------------------------------------------ data
def resolve_lm_data(data: str, split: str | None) -> dict[str, Any]:
    """--data -> {"kind": "text"|"chat", "files", "split", "dataset", "note"}."""
    from goldmine.data.prepare import evaluation_split, is_dataset_dir, read_manifest
    from goldmine.data.readers import collect_files

    p = Path(data).expanduser()
    if not p.exists():
        raise GoldmineError(f"data: {p} not found")
    if p.is_dir() and is_dataset_dir(p):
        manifest = read_manifest(p)
        kind = manifest.get("kind")
        if kind not in ("text", "chat"):
            raise GoldmineError(f"data: {p} is a {kind!r} dataset; a language model is evaluated "
                                "on text or chat data")
        chosen, note = evaluation_split(p, manifest, split)
        files = manifest["files"]
        return {"kind": kind, "files": [p / files[chosen]], "split": chosen, "dataset": p,
                "note": note}
    if split:
        raise GoldmineError(f"data: --split {split} applies to a prepared dataset folder, not to "
                            f"{p}")
    files = collect_files([p], TEXT_SUFFIXES)
    if not files:
        raise GoldmineError(f"data: no {'/'.join(TEXT_SUFFIXES)} files in {p}")
    return {"kind": "chat" if _has_messages(files[0]) else "text", "files": files,
            "split": None, "dataset": None, "note": None}


def _has_messages(path: Path) -> bool:
    """A .jsonl whose first row has a `messages` field holds conversations."""
    from goldmine.data.tables import detect_encoding, iter_rows

    if path.suffix.lower() != ".jsonl":
        return False
    for row in iter_rows(path, detect_encoding(path)):
        return row.fields is not None and "messages" in row.fields
    return False


def _data_sha(files: list[Path]) -> str:
    """One file's sha256; for several, the sha256 of their digests in order."""
    if len(files) == 1:
        return _sha256(files[0])
    import hashlib

    return hashlib.sha256("".join(_sha256(f) for f in files).encode()).hexdigest()


# ------------------------------------------------------------------------------- text eval
@torch.no_grad()
def text_metrics(model, tokenizer, files: list[Path], batch_size: int, context: int,
                 progress=None) -> dict[str, Any]:
    """Loss, perplexity and bits per byte of the model on the documents of `files`."""
    from goldmine.data.readers import iter_texts

    stream: list[int] = []
    n_bytes = docs = 0
    starting = True  # the next piece starts a document
    for piece in iter_texts(files):
        if starting and tokenizer.add_bos:
            stream.append(tokenizer.bos_id)
        stream += tokenizer.encode(piece.text)
        n_bytes += len(piece.text.encode("utf-8"))
        starting = piece.doc_end
        if piece.doc_end:
            stream.append(tokenizer.eos_id)
            docs += 1
    if len(stream) < 2:
        raise GoldmineError(f"data: {files[0]}: no text to evaluate on")
    device = next(model.parameters()).device
    starts = list(range(0, len(stream) - 1, context))
    nats, count = 0.0, 0
    model.eval()
    for b in range(0, len(starts), batch_size):
        rows = [stream[s:s + context + 1] for s in starts[b:b + batch_size]]
        T = max(len(r) for r in rows) - 1
        x = torch.full((len(rows), T), tokenizer.pad_id, dtype=torch.long)
        y = torch.full((len(rows), T), -100, dtype=torch.long)
        for i, r in enumerate(rows):
            x[i, :len(r) - 1], y[i, :len(r) - 1] = torch.tensor(r[:-1]), torch.tensor(r[1:])
        logits = model(x.to(device)).float()
        nats += F.cross_entropy(logits.view(-1, logits.size(-1)), y.to(device).view(-1),
                                ignore_index=-100, reduction="sum").item()
        count += int((y != -100).sum())
        if progress:
            progress(min(len(starts), b + batch_size), len(starts))
    loss = nats / count
    return {"loss": loss, "ppl": math.exp(min(loss, 50)),
            "bits_per_byte": nats / math.log(2) / max(n_bytes, 1), "tokens": count,
            "bytes": n_bytes, "documents": docs, "windows": len(starts), "context": context}


# ------------------------------------------------------------------------------- chat eval
_WORD = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]|[^\W_]+", re.UNICODE)


def token_f1(prediction: str, reference: str) -> float:
    """Overlap F1 of lower-cased words (each CJK character a word), as in SQuAD."""
    p, r = _WORD.findall(prediction.lower()), _WORD.findall(reference.lower())
    if not p or not r:
        return float(p == r)
    common = sum((Counter(p) & Counter(r)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(r)
    return 2 * precision * recall / (precision + recall)


def chat_metrics(model, tokenizer, conversations: list[list[dict[str, str]]], batch_size: int,
                 samples: int, max_new_tokens: int, progress=None) -> dict[str, Any]:
    from goldmine import chat
    from goldmine.generate import SamplingParams, answer
    from goldmine.train.finetune_sft import answer_loss, encode_conversations

    block = model.config.block_size
    enc = encode_conversations(tokenizer, conversations, block)
    if not enc.ids:
        raise GoldmineError(f"data: no conversation has an answer within the model's context "
                            f"({block} tokens)")
    device = next(model.parameters()).device
    loss = answer_loss(model, enc, tokenizer.pad_id, batch_size, device)
    greedy = SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0, top_k=None,
                            top_p=None)
    rows = []
    for i, messages in enumerate(conversations[:samples]):
        last = max(j for j, m in enumerate(messages) if m["role"] == "assistant")
        prompt, reference = messages[:last], messages[last]["content"]
        if not prompt or len(chat.prompt_ids(tokenizer, prompt)) >= block:
            continue  # nothing to answer, or no room left in the context to answer in
        stats: dict[str, int] = {}
        generated = answer(model, tokenizer, prompt, greedy, stats=stats)
        rows.append({"prompt": prompt[-1]["content"], "reference": reference,
                     "generated": generated, "f1": token_f1(generated, reference),
                     "stopped": stats["new_tokens"] < max_new_tokens})
        if progress:
            progress(i + 1, min(samples, len(conversations)))
    out = {"answer_loss": loss["loss"], "answer_ppl": loss["ppl"], "answer_tokens": loss["tokens"],
           "conversations": len(enc.ids), "truncated": enc.truncated, "dropped": enc.dropped}
    if rows:
        out["sample_f1"] = sum(r["f1"] for r in rows) / len(rows)
        out["sample_stopped"] = sum(r["stopped"] for r in rows) / len(rows)
    return {"metrics": out, "samples": rows}


# ------------------------------------------------------------------------------------ gate
def parse_lm_max_drop(specs: list[str], names: tuple[str, ...]) -> dict[str, float]:
    """["loss=0.05"] -> {"loss": 0.05}: allowances in the metric's own units (all of these
    metrics are lower-is-better)."""
    out: dict[str, float] = {}
    for spec in specs or []:
        name, sep, value = str(spec).partition("=")
        name = name.strip()
        if not sep or name not in names:
            raise GoldmineError(f"max_drop: expected NAME=AMOUNT with NAME among "
                                f"{', '.join(names)}, got {spec!r}")
        try:
            amount = float(value)
        except ValueError:
            raise GoldmineError(f"max_drop: {value.strip()!r} in {spec!r} is not a number") \
                from None
        if not math.isfinite(amount) or amount < 0:
            raise GoldmineError(f"max_drop: the allowance in {spec!r} must be a number >= 0")
        out[name] = amount
    return out


def lm_gate(baseline_ref: str, data: dict[str, Any], metrics: dict[str, Any],
            max_drop: dict[str, float]) -> dict[str, Any]:
    from goldmine.eval.classify import load_baseline

    baseline = load_baseline(baseline_ref)
    bdata = baseline["metrics"].get("data") or {}
    if bdata.get("sha256") != data["sha256"] or bdata.get("split") != data["split"]:
        raise GoldmineError(f"baseline: {baseline['id']} evaluated other data "
                            f"({bdata.get('path')}); compare on the same data")
    base = baseline["metrics"].get("metrics") or {}
    checks = []
    for name, allowed in max_drop.items():
        b, c = base.get(name), metrics.get(name)
        if not isinstance(b, (int, float)):
            raise GoldmineError(f"max_drop: the baseline {baseline['id']} has no {name}")
        checks.append({"metric": name, "baseline": b, "current": c, "allowed": allowed,
                       "worse_by": c - b, "passed": bool(c - b <= allowed + 1e-12)})
    deltas = {k: metrics[k] - base[k] for k in TEXT_METRICS + CHAT_METRICS
              if isinstance(base.get(k), (int, float)) and k in metrics}
    return {"baseline": baseline["id"], "baseline_dir": baseline["dir"],
            "passed": all(c["passed"] for c in checks), "checks": checks, "deltas": deltas}


# ---------------------------------------------------------------------------------- report
def write_report(path: Path, out: dict[str, Any]) -> Path:
    from goldmine.files import write_text

    m, data = out["metrics"], out["data"]
    title = "Chat model evaluation" if out["task"] == "sft" else "Language model evaluation"
    lines = [f"# {title}", "", f"- model: `{out['model']['path']}`",
             f"- data: {', '.join(f'`{f}`' for f in data['files'])}"
             + (f", split `{data['split']}`" if data["split"] else ""),
             f"- sha256: `{data['sha256']}`"]
    lines += [f"- note: {n}" for n in out["notes"]]
    lines += ["", "## Metrics", "", "| metric | value |", "|---|---|"]
    for k, v in m.items():
        lines.append(f"| {k} | {v:,.4f} |" if isinstance(v, float) else f"| {k} | {v:,} |")
    if out.get("samples"):
        lines += ["", "## Samples", "",
                  "Greedy answers to the conversation up to its last assistant message, beside "
                  "that message.", "", "| # | last user message | reference | generated | F1 |",
                  "|---|---|---|---|---|"]

        def cell(text: str) -> str:
            text = text.replace("|", "\\|").replace("\n", " ")
            return text if len(text) <= 300 else text[:297] + "..."

        for i, s in enumerate(out["samples"], 1):
            lines.append(f"| {i} | {cell(s['prompt'])} | {cell(s['reference'])} | "
                         f"{cell(s['generated'])} | {s['f1']:.2f} |")
    gate = out.get("gate")
    if gate:
        lines += ["", "## Gate", "", f"Baseline `{gate['baseline']}`: "
                  f"{'passed' if gate['passed'] else 'FAILED'}.", "",
                  "| metric | baseline | current | worse by | allowed | result |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {c['metric']} | {c['baseline']:.4f} | {c['current']:.4f} | "
                  f"{c['worse_by']:+.4f} | {c['allowed']:.4f} | "
                  f"{'ok' if c['passed'] else 'FAIL'} |" for c in gate["checks"]]
    return write_text(path, "\n".join(lines) + "\n")


# --------------------------------------------------------------------------------- command
def evaluate_lm(cfg: EvaluateConfig | None = None, **overrides: Any) -> dict[str, Any]:
    """`goldmine evaluate` for a GPT (see the module docstring). Returns {run_id, run_dir,
    task ("lm" or "sft"), metrics, samples, data, gate}; raises GateFailed (exit 3) after
    recording everything when a --max-drop check fails."""
    from goldmine.checkpoint import load_model
    from goldmine.files import write_json
    from goldmine.progress import info, progress_bar
    from goldmine.registry import start_run
    from goldmine.runtime import resolve_device
    from goldmine.train.finetune_sft import Skipped, read_conversations

    cfg = (cfg or EvaluateConfig()).update(overrides)
    cfg.validate()
    if not cfg.model or not cfg.data:
        raise GoldmineError("give --model (a GPT run) and --data (text or conversations)")
    if cfg.finetune:
        raise GoldmineError("finetune: only used with --folds (cross-validation of a classifier "
                            "recipe)")
    src = resolve_lm_data(cfg.data, cfg.split)
    task = "sft" if src["kind"] == "chat" else "lm"
    max_drop = parse_lm_max_drop(cfg.max_drop, CHAT_METRICS if task == "sft" else TEXT_METRICS)
    if max_drop and not cfg.baseline:
        raise GoldmineError("max_drop: needs --baseline (an earlier evaluate run to compare "
                            "with)")
    device = resolve_device(cfg.device)
    model, tokenizer, ckpt = load_model(cfg.model, "best", device)
    notes = [src["note"]] if src["note"] else []
    if task == "sft" and not getattr(tokenizer, "chat", None):
        notes.append(f"{ckpt} has no chat template (not tuned with `finetune sft`); "
                     "conversations are rendered with goldmine's template")
    for note in notes:
        info(f"[yellow]{note}[/]")
    data = {"files": [str(f.resolve()) for f in src["files"]], "split": src["split"],
            "sha256": _data_sha(src["files"]), "kind": src["kind"],
            "path": str(src["files"][0].resolve())}
    context = min(cfg.max_length or model.config.block_size, model.config.block_size)

    with start_run("evaluate", cfg.to_dict(), out=cfg.out) as run:
        run.add_parent_from_path(ckpt)
        run.add_parent_from_path(src["dataset"] or src["files"][0])
        t0 = time.perf_counter()
        with progress_bar() as bar:
            task_id = bar.add_task("evaluate", total=None, stats="")

            def progress(done: int, total: int) -> None:
                bar.update(task_id, completed=done, total=total)

            if task == "lm":
                metrics = text_metrics(model, tokenizer, src["files"], cfg.batch_size, context,
                                       progress)
                samples: list[dict[str, Any]] = []
            else:
                skipped = Skipped()
                convs = [c for f in src["files"] for c in read_conversations(f, skipped)]
                if skipped.counts:
                    notes.append(f"skipped {sum(skipped.counts.values()):,} rows: "
                                 f"{skipped.summary()}")
                    info(f"[yellow]{notes[-1]}[/]")
                if not convs:
                    raise GoldmineError(f"data: {src['files'][0]}: no conversation with an "
                                        "assistant message")
                res = chat_metrics(model, tokenizer, convs, cfg.batch_size, cfg.samples,
                                   cfg.max_new_tokens, progress)
                metrics, samples = res["metrics"], res["samples"]
                if metrics["truncated"] or metrics["dropped"]:
                    notes.append(f"{metrics['truncated']:,} conversations cut at the model's "
                                 f"context; {metrics['dropped']:,} left out (no answer within it)")
                    info(f"[yellow]{notes[-1]}[/]")
        metrics["seconds"] = time.perf_counter() - t0
        gate = lm_gate(cfg.baseline, data, metrics, max_drop) if cfg.baseline else None
        out = {"format": FORMAT, "task": task, "run_id": run.id,
               "model": {"path": str(Path(ckpt).resolve()), "params": model.num_params()},
               "data": data,
               "metrics": metrics, "samples": samples, "notes": notes, "gate": gate}
        write_json(run.dir / "metrics.json", out)
        write_report(run.dir / "report.md", out)
        run.add_artifact("metrics", run.dir / "metrics.json")
        run.add_artifact("report", run.dir / "report.md")
        scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
        if gate:
            scalars["gate_passed"] = gate["passed"]
        run.log_metrics(scalars)
        result = {"run_id": run.id, "run_dir": str(run.dir), "task": task, "metrics": scalars,
                  "samples": samples, "data": data, "model": out["model"], "gate": gate,
                  "notes": notes}
        if task == "lm":
            info(f"loss {metrics['loss']:.4f} | perplexity {metrics['ppl']:.2f} | "
                 f"{metrics['bits_per_byte']:.4f} bits/byte | {metrics['tokens']:,} tokens → "
                 f"{run.dir / 'report.md'}")
        else:
            info(f"answer loss {metrics['answer_loss']:.4f} | answer perplexity "
                 f"{metrics['answer_ppl']:.2f} | {metrics['conversations']:,} conversations → "
                 f"{run.dir / 'report.md'}")
        if gate and not gate["passed"]:
            failed = [c for c in gate["checks"] if not c["passed"]]
            err = GateFailed(f"gate failed against baseline {gate['baseline']}: " + "; ".join(
                f"{c['metric']} {c['baseline']:.4f} → {c['current']:.4f} (+{c['worse_by']:.4f}, "
                f"allowed +{c['allowed']:.4f})" for c in failed))
            err.result = result
            raise err
    return result
