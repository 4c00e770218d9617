"""`goldmine finetune sft`: teach a GPT to answer in conversations. setup -> fit -> validate,
written out.

    goldmine finetune sft --model RUN --data chats --epochs 3
    finetune_sft(model="models/llama-tiny", data="support.jsonl", lora=True, packing=True)

Every conversation is rendered with the one chat template (goldmine.chat); the loss covers only
what the assistant says (its text, its end-of-turn, the closing EOS), so the model learns to
answer and to stop, not to imitate users. With --packing, several conversations share one
sequence of max_length tokens; each attends only to itself and its positions start at 0 (see
GPT.forward's `segments`), so packing changes speed, not what is learned.

Output (the run directory, or --out):

    model/            the best checkpoint (lowest validation loss on answer tokens) as a goldmine
                      checkpoint with its tokenizer and chat template (config.json "chat", and
                      tokenizer_config.json for transformers); LoRA adapters merged in.
                      `goldmine generate --model RUN` chats with it.
    adapter/          LoRA only: adapter_config.json + adapter_model.safetensors (peft)
    checkpoint/       the latest training state for --resume (see finetune_classify)
    metrics.jsonl     a row per step and per evaluation; training.png: the loss curves

Batch order is a pure function of (seed, epoch) and the step counter, so `--resume` continues
exactly: on CPU its final weights equal an uninterrupted run's, bit for bit.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from goldmine import chat
from goldmine.checkpoint import (
    atomic_dir,
    load_model,
    load_optimizer,
    load_rng,
    refuse_lstm,
    refuse_quantized,
    save_checkpoint,
)
from goldmine.config import FinetuneSFTConfig, explicit_options, resumed
from goldmine.errors import GoldmineError
from goldmine.files import read_json
from goldmine.progress import console, human_count, info, progress_bar
from goldmine.registry import start_run
from goldmine.runtime import autocast, resolve_device, resolve_precision
from goldmine.train.finetune_classify import (
    Skipped,
    _truncate_log,
    epoch_batches,
    find_resume_checkpoint,
    learning_rate,
    load_trainable,
    save_training_state,
)
from goldmine.train.pretrain import StopRequest

COMMAND = "finetune sft"
STATE_FORMAT = "goldmine-sft-trainer/1"
RESUME_OVERRIDABLE = {"max_steps", "epochs", "patience", "eval_every", "device", "precision",
                      "resume"}
IGNORE = -100  # target id with no loss


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------
@dataclass
class Conversations:
    train: list[list[dict[str, str]]]
    val: list[list[dict[str, str]]]
    val_from_train: bool
    skipped: Skipped


def read_conversations(path: Path, skipped: Skipped) -> list[list[dict[str, str]]]:
    """The conversations of a .jsonl/.json/.parquet file with a `messages` field per row. Rows
    that cannot be read, or hold no assistant message, are counted in `skipped`."""
    from goldmine.data.tables import detect_encoding, iter_rows

    out, read = [], 0
    for row in iter_rows(path, detect_encoding(path)):
        read += 1
        if row.fields is None:
            skipped.add("unreadable", row.where)
            continue
        if "messages" not in row.fields:
            raise GoldmineError(f"{row.where}: no `messages` field (columns: "
                                f"{', '.join(sorted(row.fields))}); make a chat dataset with "
                                "`goldmine data prepare --kind chat`")
        try:
            messages = chat.check_messages(row.fields["messages"], row.where)
        except GoldmineError as e:
            skipped.add(f"bad messages: {str(e).split(': ', 2)[-1]}", row.where)
            continue
        if not any(m["role"] == "assistant" for m in messages):
            skipped.add("no assistant message", row.where)
            continue
        out.append(messages)
    return out


def load_conversations(cfg: FinetuneSFTConfig) -> Conversations:
    """Train and val conversations from a prepared chat dataset or raw JSONL file(s)."""
    from goldmine.data.prepare import is_dataset_dir, read_manifest
    from goldmine.data.tables import collect_table_files

    path = Path(cfg.data)
    if not path.exists():
        raise GoldmineError(f"data {path}: no such file or directory")
    skipped, val = Skipped(), []
    if path.is_dir() and is_dataset_dir(path):
        manifest = read_manifest(path)
        if manifest.get("kind") != "chat":
            raise GoldmineError(f"data {path}: a {manifest.get('kind')!r} dataset; SFT needs one "
                                "prepared with `goldmine data prepare --kind chat`")
        files = manifest.get("files") or {}
        if "train" not in files:
            raise GoldmineError(f"data {path}: the dataset has no train split")
        train = read_conversations(path / files["train"], skipped)
        val_file = path / files["val"] if "val" in files else None
        if val_file is not None and val_file.is_file() and val_file.stat().st_size > 0:
            val = read_conversations(val_file, skipped)
    else:
        files = collect_table_files([path])
        odd = [f for f in files if f.suffix.lower() not in (".jsonl", ".json", ".parquet")]
        if odd:
            raise GoldmineError(f"data {odd[0]}: SFT reads conversations (.jsonl with a "
                                "`messages` list per line, or a prepared chat dataset)")
        train = [m for f in files for m in read_conversations(f, skipped)]
    if not train:
        why = f" (skipped: {skipped.summary()})" if skipped.counts else ""
        raise GoldmineError(f"data {path}: no conversations with an assistant message{why}")
    val_from_train = not val
    if val_from_train:
        if len(train) < 2:
            raise GoldmineError(f"data {path}: one conversation is too few to hold out a "
                                "validation set")
        order = np.random.default_rng(cfg.seed).permutation(len(train))
        n_val = max(1, round(len(train) * cfg.val_fraction))
        held = set(order[:n_val].tolist())
        val = [c for i, c in enumerate(train) if i in held]
        train = [c for i, c in enumerate(train) if i not in held]
    return Conversations(train, val, val_from_train, skipped)


@dataclass
class Encoded:
    """Rendered conversations: ids and loss masks, cut to max_length."""

    ids: list[list[int]]
    masks: list[list[bool]]
    truncated: int  # conversations cut at max_length (their tail lost)
    dropped: int  # conversations with no answer token left within max_length (left out)


def encode_conversations(tokenizer, conversations: list[list[dict[str, str]]],
                         max_length: int) -> Encoded:
    enc = Encoded([], [], 0, 0)
    for messages in conversations:
        ids, mask = chat.render(tokenizer, messages)
        if len(ids) > max_length:
            enc.truncated += 1
            ids, mask = ids[:max_length], mask[:max_length]
        if not any(mask[1:]):
            enc.dropped += 1
            continue
        enc.ids.append(ids)
        enc.masks.append(mask)
    return enc


def pack(lengths: list[int], max_length: int) -> list[list[int]]:
    """Conversations (indices) grouped into sequences of at most max_length tokens: first fit,
    longest first. Deterministic, so the packs are the same on every resume."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    packs: list[list[int]] = []
    room: list[int] = []
    for i in order:
        for j, free in enumerate(room):
            if lengths[i] <= free:
                packs[j].append(i)
                room[j] -= lengths[i]
                break
        else:
            packs.append([i])
            room.append(max_length - lengths[i])
    return packs


def collate(enc: Encoded, sequences: list[list[int]], pad_id: int, device: torch.device,
            packed: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """inputs (B, T), targets (B, T) with IGNORE outside answers and padding, and with packing
    the segment id of every position (B, T) (-1 on padding)."""
    rows = []
    for seq in sequences:
        x, y, s = [], [], []
        for k, c in enumerate(seq):
            ids, mask = enc.ids[c], enc.masks[c]
            x += ids
            y += [t if m else IGNORE for t, m in zip(ids[1:], mask[1:])] + [IGNORE]
            s += [k] * len(ids)
        rows.append((x, y, s))
    T = max(len(x) for x, _, _ in rows)
    X = torch.full((len(rows), T), pad_id, dtype=torch.long)
    Y = torch.full((len(rows), T), IGNORE, dtype=torch.long)
    S = torch.full((len(rows), T), -1, dtype=torch.long)
    for b, (x, y, s) in enumerate(rows):
        X[b, :len(x)], Y[b, :len(y)], S[b, :len(s)] = (torch.tensor(x), torch.tensor(y),
                                                       torch.tensor(s))
    return X.to(device), Y.to(device), S.to(device) if packed else None


@torch.no_grad()
def answer_loss(model, enc: Encoded, pad_id: int, batch_size: int, device: torch.device,
                precision: str = "fp32") -> dict[str, float]:
    """Mean cross-entropy per answer token over all conversations, and its perplexity."""
    model.eval()
    order = sorted(range(len(enc.ids)), key=lambda i: -len(enc.ids[i]))  # little padding
    total, count = 0.0, 0
    for start in range(0, len(order), batch_size):
        x, y, _ = collate(enc, [[i] for i in order[start:start + batch_size]], pad_id, device,
                          False)
        with autocast(device, precision):
            logits = model(x).float()  # (B, T, V)
        total += F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1),
                                 ignore_index=IGNORE, reduction="sum").item()
        count += int((y != IGNORE).sum())
    model.train()
    loss = total / max(count, 1)
    return {"loss": loss, "ppl": math.exp(min(loss, 50)), "tokens": count}


# ---------------------------------------------------------------------------------------------
# model
# ---------------------------------------------------------------------------------------------
def add_lora(model, cfg: FinetuneSFTConfig):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(cfg.seed)
    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=list(cfg.lora_targets))
    try:
        return get_peft_model(model, lora)
    except ValueError as e:
        raise GoldmineError(f"lora_targets: {e} (goldmine's GPT has wqkv, wo, w13, w2)") from None


def make_optimizer(model: torch.nn.Module, cfg: FinetuneSFTConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; no weight decay on vectors (norms, biases)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=(0.9, 0.95), eps=1e-8)


def save_model(model, tokenizer_path: Path, run_dir: Path, info_: dict[str, Any],
               lora: bool) -> Path:
    """run_dir/model: a goldmine checkpoint with the chat template (LoRA merged into a copy);
    for LoRA also run_dir/adapter (peft's files). Each is swapped in whole."""
    base = copy.deepcopy(model).merge_and_unload() if lora else model
    path = save_checkpoint(run_dir / "model", base, tokenizer_path, info_,
                           data={"bos": True, "eos": True}, chat=chat.template_meta())
    if lora:
        from peft import get_peft_model_state_dict
        from safetensors.torch import save_file

        with atomic_dir(run_dir / "adapter") as tmp:
            model.peft_config["default"].save_pretrained(tmp)
            tensors = {k: v.detach().cpu().contiguous()
                       for k, v in get_peft_model_state_dict(model).items()}
            save_file(tensors, tmp / "adapter_model.safetensors", metadata={"format": "pt"})
    return path


# ---------------------------------------------------------------------------------------------
# the command
# ---------------------------------------------------------------------------------------------
def finetune_sft(cfg: FinetuneSFTConfig | None = None, *,
                 callback: Callable[[int, torch.nn.Module], None] | None = None,
                 **overrides: Any) -> dict[str, Any]:
    """Supervised fine-tuning on conversations. Returns the run's results and paths.

    `finetune_sft(model=RUN, data="chats", epochs=2)` or with a `FinetuneSFTConfig`; keyword
    arguments override its fields. `callback(step, model)` runs after every optimizer step.
    """
    base = cfg or FinetuneSFTConfig()
    explicit = _absolute_paths(explicit_options(base, overrides))
    cfg = base.update(overrides, where="finetune sft")
    cfg.validate()
    cfg = cfg.update(_absolute_paths({"data": cfg.data, "model": cfg.model}))
    ckpt, run_id = None, None
    if cfg.resume:
        ckpt, run_id = find_resume_checkpoint(cfg.resume, COMMAND)
        state = read_json(ckpt / "trainer.json", "trainer.json")
        if state.get("format") != STATE_FORMAT:
            raise GoldmineError(f"{ckpt / 'trainer.json'}: not a finetune sft checkpoint")
        cfg = resumed(FinetuneSFTConfig, state["config"], explicit, RESUME_OVERRIDABLE,
                      str(ckpt / "trainer.json"))
    if cfg.data is None:
        raise GoldmineError("data: give --data (a dataset from `goldmine data prepare --kind "
                            "chat`, or a .jsonl file with a `messages` list per line)")
    if cfg.model is None:
        raise GoldmineError("model: give --model (a goldmine GPT run, or a local Hugging Face "
                            "causal-LM directory)")
    out = cfg.out if ckpt is None or run_id else str(ckpt.parent)
    if ckpt is None and cfg.out and (Path(cfg.out) / "checkpoint").is_dir():
        raise GoldmineError(f"{cfg.out}: already holds an earlier run's checkpoint; continue it "
                            f"with --resume {cfg.out}, or choose another --out")
    device = resolve_device(cfg.device)
    model, tokenizer, source = load_model(cfg.model, "best", device)  # fail before recording
    refuse_quantized(model, cfg.model, "fine-tuned")
    refuse_lstm(model, cfg.model, "chat-tuned", " (packed conversations need the GPT's "
                "attention masks); fine-tune a GPT run")
    if (cfg.max_length or 0) > model.config.block_size:
        raise GoldmineError(f"max_length: {cfg.max_length} is more than the model's context "
                            f"({model.config.block_size} tokens)")
    conversations = load_conversations(cfg)
    with start_run(COMMAND, cfg.to_dict(), out=out, resume=run_id) as run:
        result = _train(cfg, run, model, tokenizer, source, conversations, ckpt, device, callback)
    if result["stop_reason"] == "interrupted":  # recorded as such, so `--resume latest` finds it
        run.registry.update(run.id, status="interrupted",
                            error="interrupted (Ctrl-C or SIGTERM) with a checkpoint")
    return result


def _absolute_paths(values: dict[str, Any]) -> dict[str, Any]:
    out = dict(values)
    for key in ("data", "model"):
        if out.get(key) and Path(out[key]).exists():
            out[key] = str(Path(out[key]).resolve())
    return out


def _train(cfg: FinetuneSFTConfig, run, model, tokenizer, source: Path, conv: Conversations,
           ckpt: Path | None, device: torch.device, callback) -> dict[str, Any]:
    # ---- setup -------------------------------------------------------------------------------
    run_dir = run.dir
    precision = resolve_precision(cfg.precision, device)
    max_length = cfg.max_length or model.config.block_size
    tokenizer_path = tokenizer.save(run_dir)  # with any chat tokens added to an HF tokenizer
    info(f"data: {len(conv.train):,} train / {len(conv.val):,} val conversations")
    if conv.val_from_train:
        info(f"[yellow]no validation split in {cfg.data}: held out {cfg.val_fraction:.0%} of "
             f"train (seed {cfg.seed}): {len(conv.val):,} conversations[/yellow]")
    if conv.skipped.counts:
        info(f"[yellow]skipped {sum(conv.skipped.counts.values()):,} rows: "
             f"{conv.skipped.summary()}[/yellow]")
    train = encode_conversations(tokenizer, conv.train, max_length)
    val = encode_conversations(tokenizer, conv.val, max_length)
    cut = {"train": train.truncated, "val": val.truncated}
    dropped = {"train": train.dropped, "val": val.dropped}
    if train.truncated or val.truncated:
        info(f"[yellow]cut to {max_length} tokens: {train.truncated:,} train and "
             f"{val.truncated:,} val conversations (their tails are not trained on)[/yellow]")
    if train.dropped or val.dropped:
        info(f"[yellow]left out (no answer within {max_length} tokens): {train.dropped:,} train "
             f"and {val.dropped:,} val conversations[/yellow]")
    if not train.ids or not val.ids:
        raise GoldmineError(f"data {cfg.data}: no conversation has an answer within "
                            f"{max_length} tokens; raise --max-length")
    lengths = [len(x) for x in train.ids]
    sequences = pack(lengths, max_length) if cfg.packing else [[i] for i in range(len(lengths))]
    seq_lengths = np.array([sum(lengths[i] for i in s) for s in sequences])
    answer_tokens = sum(sum(m[1:]) for m in train.masks)
    if cfg.packing:
        info(f"packing: {len(lengths):,} conversations in {len(sequences):,} sequences of up to "
             f"{max_length} tokens ({seq_lengths.sum() / (len(sequences) * max_length):.0%} "
             "full)")

    if cfg.lora:
        model = add_lora(model, cfg)
    model.to(device)
    model.train()
    optimizer = make_optimizer(model, cfg)
    total_params = sum(p.numel() for p in model.parameters())
    trainable_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    per_epoch = math.ceil(len(sequences) / cfg.batch_size)
    total_steps = cfg.max_steps or max(1, math.ceil(cfg.epochs * per_epoch))
    eval_every = per_epoch if cfg.eval_every is None else cfg.eval_every  # 0: at the end only
    pad_id = tokenizer.pad_id

    step, best, bad_evals, resumed_from = 0, None, 0, None
    if ckpt is not None:
        state = read_json(ckpt / "trainer.json", "trainer.json")
        load_trainable(model, ckpt / "trainable.safetensors")
        load_optimizer(optimizer, ckpt, state["optimizer"])
        step, best, bad_evals = state["step"], state["best"], state["bad_evals"]
        resumed_from = step
        info(f"resuming {run.id} from {ckpt} (step {step:,} of {total_steps:,})")
    metrics_path = run_dir / "metrics.jsonl"
    _truncate_log(metrics_path, step)
    run.set_config(cfg.to_dict())
    run.add_parent_from_path(cfg.data)
    run.add_parent_from_path(source)
    share = (f" ({100 * trainable_params / total_params:.2f}%, LoRA r={cfg.lora_r})"
             if cfg.lora else "")
    info(f"model: {human_count(total_params)} parameters from {source} on {device} "
         f"({precision}), "
         f"{human_count(trainable_params)} trainable{share}; {total_steps:,} steps of "
         f"{cfg.batch_size} sequences ({per_epoch:,} per epoch)")
    meta = {"task": "sft", "source": str(source), "dataset": cfg.data, "run_id": run.id,
            "lora": cfg.lora, "max_length": max_length, "packing": cfg.packing}

    def log(row: dict[str, Any]) -> None:
        with open(metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")

    def state_now(stop_reason: str | None) -> dict[str, Any]:
        return {"format": STATE_FORMAT, "step": step, "epoch": step // per_epoch,
                "position": step % per_epoch, "batches_per_epoch": per_epoch,
                "total_steps": total_steps, "best": best, "bad_evals": bad_evals,
                "stop_reason": stop_reason, "config": cfg.to_dict(),
                "data_order": "epoch batches seeded by (seed, epoch); see epoch_batches"}

    # ---- fit ---------------------------------------------------------------------------------
    if ckpt is not None:
        load_rng(ckpt)  # last, so that nothing in the setup draws from the restored state
    stop_reason, tokens, train_s = None, 0, 0.0
    last_val = (best or {}).get("val")
    batches, batches_epoch = [], -1
    with progress_bar() as bar, StopRequest() as stopper:
        task = bar.add_task("finetune sft", total=total_steps, completed=step, stats="")
        while step < total_steps:
            if cfg.patience and bad_evals >= cfg.patience:  # resumed after early stopping
                stop_reason = "early_stopping"
                break
            t0 = time.perf_counter()
            epoch, position = divmod(step, per_epoch)
            if epoch != batches_epoch:
                batches = epoch_batches(seq_lengths, cfg.batch_size, cfg.seed, epoch,
                                        cfg.group_by_length)
                batches_epoch = epoch
            x, y, segments = collate(train, [sequences[i] for i in batches[position]], pad_id,
                                     device, cfg.packing)
            lr = learning_rate(step, cfg, total_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            with autocast(device, precision):
                loss = model(x, targets=y, segments=segments)  # mean over answer tokens
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            train_loss = loss.item()
            step += 1
            tokens += int((x != pad_id).sum())
            train_s += time.perf_counter() - t0
            if not math.isfinite(train_loss):
                raise GoldmineError(f"training diverged at step {step} (loss {train_loss}); "
                                    "lower --learning-rate")
            log({"step": step, "epoch": round(step / per_epoch, 4), "loss": train_loss, "lr": lr})
            stats = f"loss {train_loss:.3f}"
            if last_val is not None:
                stats += f" · val {last_val['loss']:.3f}"
            bar.update(task, completed=step, stats=f"{stats} · {tokens / train_s:,.0f} tok/s")
            if callback is not None:
                callback(step, model)

            final = step == total_steps
            if (eval_every and step % eval_every == 0) or final:
                last_val = answer_loss(model, val, pad_id, cfg.batch_size, device, precision)
                log({"step": step, "val_loss": last_val["loss"], "val_ppl": last_val["ppl"]})
                if best is None or last_val["loss"] < best["value"]:
                    best, bad_evals = {"step": step, "value": last_val["loss"], "val": last_val}, 0
                    save_model(model, tokenizer_path, run_dir,
                               {**meta, "best_step": step, "val": last_val}, cfg.lora)
                else:
                    bad_evals += 1
                if not console.is_terminal:  # logs get a line per evaluation
                    info(f"step {step:,}/{total_steps:,} · val answer loss {last_val['loss']:.4f}"
                         f" (ppl {last_val['ppl']:.2f})" + (" · best" if bad_evals == 0 else ""))
                if cfg.patience and bad_evals >= cfg.patience and not final:
                    stop_reason = "early_stopping"
                    info(f"early stopping: no lower val loss in {bad_evals} evaluations")
                save_training_state(run_dir / "checkpoint", model, optimizer,
                                    state_now(stop_reason))
            elif stopper.signal is not None:
                save_training_state(run_dir / "checkpoint", model, optimizer,
                                    state_now("interrupted"))
            if stop_reason is None and stopper.signal is not None and not final:
                stop_reason = "interrupted"
            if stop_reason is not None:
                break
    if stop_reason is None:
        stop_reason = "max_steps" if cfg.max_steps else "epochs"

    # ---- validate and record -----------------------------------------------------------------
    from goldmine.eval.plots import loss_curve

    plot = loss_curve(metrics_path, run_dir / "training.png", title=f"{COMMAND} {run.id}")
    model_dir = run_dir / "model"
    result = {
        "run_id": run.id, "run_dir": str(run_dir),
        "model_dir": str(model_dir) if model_dir.is_dir() else None,
        "adapter_dir": str(run_dir / "adapter") if cfg.lora and model_dir.is_dir() else None,
        "steps": step, "epochs_done": step / per_epoch, "stop_reason": stop_reason,
        "best_step": best["step"] if best else None, "val": best["val"] if best else None,
        "tokens_per_s": tokens / train_s if train_s else None,
        "train_conversations": len(train.ids), "val_conversations": len(val.ids),
        "answer_tokens": answer_tokens, "sequences": len(sequences), "max_length": max_length,
        "truncated": cut, "dropped": dropped, "val_from_train": conv.val_from_train,
        "skipped": dict(conv.skipped.counts), "trainable_params": trainable_params,
        "total_params": total_params, "resumed_from_step": resumed_from, "plot": str(plot),
        "device": str(device), "precision": precision,
        "checkpoint": str(run_dir / "checkpoint"),
    }
    run.log_metrics({**{f"val_{k}": v for k, v in (result["val"] or {}).items()},
                     "tokens_per_s": result["tokens_per_s"], "steps": step,
                     "best_step": result["best_step"], "stop_reason": stop_reason,
                     "truncated": cut, "dropped": dropped, "skipped": result["skipped"],
                     "train_conversations": len(train.ids), "val_conversations": len(val.ids),
                     "trainable_params": trainable_params, "total_params": total_params,
                     "device": str(device), "precision": precision})
    run.add_artifact("plot", plot)
    run.add_artifact("metrics", metrics_path)
    if result["model_dir"]:
        run.add_artifact("model", model_dir)
        info(f"best: step {best['step']:,}, val answer loss {best['value']:.4f} -> {model_dir}")
    if result["adapter_dir"]:
        run.add_artifact("adapter", run_dir / "adapter")
    if stop_reason == "interrupted":
        info(f"stopped at step {step:,} with a checkpoint; continue with "
             f"`goldmine finetune sft --resume {run.id}`")
    return result
