"""Pretraining a GPT from scratch: setup -> fit -> validate, written out.

`--arch lstm` trains the LSTM baseline (goldmine/lstm.py) in the same loop: same shards,
batches, optimizer, schedule, checkpoints and FLOPs accounting; only the model differs.

`--objective mlm` trains a BERT-style encoder (goldmine/encoder.py) in the same loop too: the
batches are masked sequences of the text held in memory (goldmine/data/mlm.py) instead of
windows of token shards, the loss is on the masked tokens, validation also reports how many of
them are predicted right, and the run ends by writing RUN/hf, a Hugging Face BERT directory.

One process: `goldmine pretrain ...`. Many processes: `torchrun --nproc-per-node N -m goldmine
pretrain ...` (DDP; NCCL on GPUs, gloo on CPU). Every rank draws its own batches; gradients are
averaged by DDP; rank 0 writes checkpoints, metrics and the plot.

Batches are drawn from a generator seeded by (seed, rank, step, micro-step), so the data
position is the step counter itself; with the weights, AdamW state and RNG state in the
checkpoint, `--resume` continues exactly where a run stopped, bit for bit on CPU.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import signal
import sys
import threading
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from goldmine import cost
from goldmine.checkpoint import (
    list_steps,
    load_optimizer,
    load_rng,
    load_weights,
    read_json,
    resolve_checkpoint,
    save_checkpoint,
    write_json,
)
from goldmine.config import PretrainConfig, explicit_options, parse_duration, resumed
from goldmine.errors import GoldmineError
from goldmine.lstm import LSTM, LSTMConfig, lstm_for_params
from goldmine.model import GPT, GPTConfig
from goldmine.progress import console, human_count, info, progress_bar
from goldmine.registry import Registry, start_run
from goldmine.runtime import (
    autocast,
    init_distributed,
    resolve_device,
    resolve_precision,
    tune_cpu_allocator,
)

# what may change when resuming: how long to run and how often to report, not what is trained
RESUME_OVERRIDABLE = {"max_steps", "max_tokens", "max_time", "eval_every", "eval_batches",
                      "ckpt_every", "keep_last", "log_every", "device", "compile", "resume"}


# ---------------------------------------------------------------------------------------------
# schedule and batches
# ---------------------------------------------------------------------------------------------
def learning_rate(step: int, cfg: PretrainConfig, total_steps: int) -> float:
    """Linear warmup to the peak, then cosine decay to min_lr at total_steps."""
    min_lr = cfg.min_lr if cfg.min_lr is not None else cfg.learning_rate / 10
    if step < cfg.warmup_steps:
        return cfg.learning_rate * (step + 1) / cfg.warmup_steps
    if step >= total_steps:
        return min_lr
    progress = (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (cfg.learning_rate - min_lr)


def batch_generator(seed: int, *key: int) -> torch.Generator:
    """A generator for one batch, seeded by (seed, *key): batches depend only on the step."""
    digest = hashlib.blake2b(repr((seed, *key)).encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") & (2**63 - 1))


def lstm_config(cfg: PretrainConfig, gpt: GPTConfig) -> LSTMConfig:
    """The LSTM of --arch lstm: --lstm-layers deep (2), with the embedding width, context,
    dropout and tying of `gpt`, and --lstm-hidden wide or, by default, as wide as gives it the
    parameter count of `gpt` (the GPT the same options describe): equal parameters."""
    shape = dict(vocab_size=gpt.vocab_size, block_size=gpt.block_size,
                 n_layer=cfg.lstm_layers or 2, n_embd=gpt.n_embd, dropout=cfg.dropout,
                 tie_embeddings=gpt.tie_embeddings)
    if cfg.lstm_hidden:
        return LSTMConfig(**shape, hidden=cfg.lstm_hidden)
    return lstm_for_params(cost.param_count(gpt), **shape)


def make_optimizer(model: torch.nn.Module, cfg: PretrainConfig,
                   device: torch.device) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices only (not norms or biases); fused kernel where available."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    kw = dict(lr=cfg.learning_rate, betas=(cfg.beta1, cfg.beta2), eps=1e-8)
    try:
        return torch.optim.AdamW(groups, fused=device.type in ("cuda", "cpu"), **kw)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, **kw)


# ---------------------------------------------------------------------------------------------
# resume
# ---------------------------------------------------------------------------------------------
def find_resume_checkpoint(ref: str) -> tuple[Path, str | None]:
    """(checkpoint dir, run id) for --resume latest | RUN | RUN_DIR | CHECKPOINT_DIR."""
    run_id = None
    if ref == "latest":
        runs = [r for r in Registry().list(limit=None, command="pretrain")
                if r["status"] != "completed" and list_steps(Path(r["run_dir"]) / "checkpoints")]
        if not runs:
            raise GoldmineError("--resume latest: no unfinished pretrain run with a checkpoint "
                                "(see `goldmine runs list`)")
        ref, run_id = runs[0]["run_dir"], runs[0]["id"]
    p = Path(ref)
    if p.is_dir() and not (p / "checkpoints").is_dir() and not (p / "trainer.json").is_file():
        raise GoldmineError(f"--resume {ref}: nothing to resume (no checkpoints in {p})")
    ckpt = resolve_checkpoint(ref, "last")
    if not (ckpt / "optimizer.safetensors").is_file():
        raise GoldmineError(f"--resume {ckpt}: this checkpoint holds weights only "
                            "(no optimizer state), so training cannot continue from it")
    if run_id is None:
        from goldmine.registry import run_id_for_path

        run_id = run_id_for_path(ckpt)
    return ckpt, run_id


def resumed_config(ckpt: Path, explicit: dict[str, Any]) -> PretrainConfig:
    state = read_json(ckpt / "trainer.json", "trainer.json")
    return resumed(PretrainConfig, state["config"], explicit, RESUME_OVERRIDABLE,
                   str(ckpt / "trainer.json"))


# ---------------------------------------------------------------------------------------------
# the command
# ---------------------------------------------------------------------------------------------
def pretrain(cfg: PretrainConfig | None = None, **overrides) -> dict[str, Any]:
    """Train a GPT (or, with arch="lstm", an LSTM) from scratch. Returns the run's final
    metrics and paths.

    `goldmine.pretrain(data="corpus.txt", tokenizer="tok/", max_steps=200)` or with a
    `PretrainConfig`; keyword arguments override its fields.
    """
    base = cfg or PretrainConfig()
    explicit = explicit_options(base, overrides)
    cfg = base.update(overrides)
    cfg.validate()
    resume_from, run_id = None, None
    if cfg.resume:
        resume_from, run_id = find_resume_checkpoint(cfg.resume)
        cfg = resumed_config(resume_from, explicit)
    if cfg.data is None:
        if cfg.objective == "mlm":
            raise GoldmineError("data: give --data (a .txt/.jsonl file or folder, or a prepared "
                                "dataset) to pretrain the encoder on")
        raise GoldmineError("data: give --data (token shards from `goldmine data tokenize`, or "
                            "a text file or folder with --tokenizer)")

    if resume_from is None and cfg.out and list_steps(Path(cfg.out) / "checkpoints"):
        raise GoldmineError(f"{cfg.out}: already holds checkpoints of an earlier run; continue it "
                            f"with --resume {cfg.out}, or choose another --out")
    dist = init_distributed()
    try:
        if not dist.is_main:  # only rank 0 records the run; the others train beside it
            return _train(cfg, dist, None, resume_from)
        with start_run("pretrain", cfg.to_dict(), out=cfg.out, resume=run_id) as run:
            return _train(cfg, dist, run, resume_from)
    finally:
        # a process group still up at interpreter exit can abort the process as its
        # communication threads are torn down ("terminate called without an active exception")
        if dist.enabled and torch.distributed.is_initialized():
            if sys.exc_info()[0] is None:
                dist.barrier()  # no rank tears its connections down while another still talks
            torch.distributed.destroy_process_group()


def _train(cfg: PretrainConfig, dist, run, resume_from: Path | None) -> dict[str, Any]:
    from goldmine.data.shards import TokenShards, ensure_shards

    # ---- setup -------------------------------------------------------------------------------
    device = resolve_device(cfg.device, dist.local_rank)
    precision = resolve_precision(cfg.precision, device)
    if device.type == "cpu":
        tune_cpu_allocator()
    if dist.enabled:  # rank 0's run directory, for every rank
        obj = [str(run.dir) if run else None]
        torch.distributed.broadcast_object_list(obj, src=0)
        run_dir = Path(obj[0])
    else:
        run_dir = run.dir
    mlm = cfg.objective == "mlm"

    def prepare():
        if mlm:  # the text in memory, masked batch by batch; a WordPiece vocabulary if none given
            from goldmine.data.mlm import load_mlm_data

            return load_mlm_data(cfg.data, cfg.tokenizer, run_dir / "data",
                                 vocab_size=cfg.vocab_size, mask_prob=cfg.mask_prob,
                                 whole_word=cfg.whole_word, progress=dist.is_main)
        return ensure_shards(cfg.data, cfg.tokenizer, run_dir / "data")

    if dist.is_main:  # rank 0 tokenizes (or trains the tokenizer) first; the others reuse it
        prepared = prepare()
    dist.barrier()
    if not dist.is_main:
        prepared = prepare()
    if mlm:
        data, shards_dir = prepared, run_dir / "data"
        vocab_size, tokenizer_path = data.tok.vocab_size, shards_dir / "tokenizer.json"
        framing = {"objective": "mlm", "cls": True, "sep": True, "mask_prob": data.mask_prob,
                   "whole_word": data.whole_word}
    else:
        shards_dir = prepared
        data = TokenShards(shards_dir)
        vocab_size = data.tokenizer().vocab_size
        tokenizer_path = Path(shards_dir) / "tokenizer.json"
        framing = {"bos": bool(data.meta.get("bos", False)),
                   "eos": bool(data.meta.get("eos", True))}

    try:
        if mlm:
            from goldmine.encoder import Encoder, EncoderConfig

            mcfg = EncoderConfig.from_preset(cfg.model, vocab_size=vocab_size,
                                             n_layer=cfg.n_layer, n_head=cfg.n_head,
                                             n_embd=cfg.n_embd, block_size=cfg.block_size,
                                             intermediate_size=cfg.intermediate_size,
                                             dropout=cfg.dropout, pad_token_id=data.tok.pad_id)
        else:
            mcfg = GPTConfig.from_preset(cfg.model, vocab_size=vocab_size,
                                         n_layer=cfg.n_layer, n_head=cfg.n_head,
                                         n_kv_head=cfg.n_kv_head, n_embd=cfg.n_embd,
                                         intermediate_size=cfg.intermediate_size,
                                         block_size=cfg.block_size, rope_theta=cfg.rope_theta,
                                         tie_embeddings=cfg.tie_embeddings, dropout=cfg.dropout)
        gpt_cfg = mcfg
        if cfg.arch == "lstm":
            mcfg = lstm_config(cfg, gpt_cfg)
    except ValueError as e:
        raise GoldmineError(f"model: {e}") from None
    T, B = mcfg.block_size, cfg.batch_size
    for split in ("train", "val"):  # fails early, naming the split, if it is too short for T
        data.get_batch(split, 1, T, batch_generator(cfg.seed, -1))

    torch.manual_seed(cfg.seed)
    if mlm:
        model = Encoder(mcfg, seed=cfg.seed)
    else:
        model = LSTM(mcfg, seed=cfg.seed) if cfg.arch == "lstm" else GPT(mcfg, seed=cfg.seed)
    model.to(device)
    optimizer = make_optimizer(model, cfg, device)
    world_tokens = B * T * cfg.grad_accum * dist.world_size  # tokens per optimizer step
    total_steps = cfg.max_steps
    if cfg.max_tokens:
        total_steps = max(1, math.ceil(cfg.max_tokens / world_tokens))
    max_time = parse_duration(cfg.max_time) if cfg.max_time else None

    step, best_val, elapsed_before, saved_val = 0, float("inf"), 0.0, None
    saved_acc = None  # MLM: the masked accuracy of the checkpoint resumed from
    if resume_from is not None:
        state = read_json(resume_from / "trainer.json", "trainer.json")
        load_weights(model, resume_from / "model.safetensors")
        load_optimizer(optimizer, resume_from, state["optimizer"])
        step, best_val = state["step"], state.get("best_val_loss") or float("inf")
        elapsed_before, saved_val = state.get("elapsed_s", 0.0), state.get("val_loss")
        saved_acc = state.get("val_accuracy")
        if dist.is_main:
            done = " — already complete" if step >= total_steps else ""
            info(f"resuming {run.id} from {resume_from} (step {step:,} of {total_steps:,}){done}")

    train_model = model
    if dist.enabled:
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        train_model = torch.compile(train_model)

    flops_tok = cost.flops_per_token(mcfg, T)  # an LSTM's: lstm_flops_per_token, any context
    if mlm:  # the head runs on the masked positions only
        flops_tok = cost.encoder_flops_per_token(mcfg, T, predicted=data.mask_prob)
    peak = cost.peak_flops(device, "bf16" if precision == "bf16" else "fp32")
    metrics_path = run_dir / "metrics.jsonl"
    if dist.is_main:
        _truncate_log(metrics_path, step)
        write_json(run_dir / "config.json", {"pretrain": cfg.to_dict(), "model": mcfg.to_dict()})
        run.set_config({**cfg.to_dict(), "resolved_model": mcfg.to_dict()})
        run.add_parent_from_path(shards_dir)
        run.add_parent_from_path(cfg.data)  # raw text tokenized here: a prepared dataset, say
        run.add_parent_from_path(cfg.tokenizer)
        run.log_metrics({"params": model.num_params(), "flops_per_token": flops_tok,
                         "tokens_per_step": world_tokens, "device": str(device),
                         "precision": precision, "world_size": dist.world_size})
        if mlm:
            shape = f"BERT-style encoder {mcfg.n_layer}L/{mcfg.n_head}H/{mcfg.n_embd}d"
            info(f"data: {data.tokens('train'):,} train and {data.tokens('val'):,} val tokens; "
                 f"WordPiece tokenizer {data.tokenizer_source}; masking "
                 f"{100 * data.mask_prob:g}% of each sequence, "
                 f"{'whole words' if data.whole_word else 'single tokens'}")
        elif cfg.arch == "lstm":
            shape = (f"LSTM {mcfg.n_layer}L/{mcfg.hidden} hidden/{mcfg.n_embd}d embeddings; the "
                     f"GPT of these options: {human_count(cost.param_count(gpt_cfg))}")
        else:
            shape = f"{mcfg.n_layer}L/{mcfg.n_head}H/{mcfg.n_embd}d"
        info(f"model: {human_count(model.num_params())} parameters ({shape}, context {T}, vocab "
             f"{mcfg.vocab_size}) on {device} ({precision}); {world_tokens:,} tokens per step")

    def evaluate() -> tuple[float, float | None]:
        """(val loss, and for MLM the share of masked tokens predicted right)."""
        model.eval()
        losses = torch.zeros(cfg.eval_batches, device=device)
        hits = torch.zeros(2, device=device)  # MLM: correct predictions, predictions
        with torch.no_grad(), autocast(device, precision):
            for i in range(cfg.eval_batches):
                x, y = data.get_batch("val", B, T, batch_generator(cfg.seed, -2, dist.rank, i))
                if mlm:
                    losses[i], correct, count = model.mlm_metrics(x.to(device), y.to(device))
                    hits += torch.stack([correct, count]).float()
                else:
                    losses[i] = model(x.to(device), targets=y.to(device))
        model.train()
        loss = losses.mean()
        if dist.enabled:
            torch.distributed.all_reduce(loss)
            torch.distributed.all_reduce(hits)
            loss /= dist.world_size
        return loss.item(), (hits[0] / hits[1]).item() if mlm else None

    def checkpoint(step_: int, val: float | None) -> None:
        nonlocal best_val
        if not dist.is_main:
            return
        ckdir = run_dir / "checkpoints"
        state = {"step": step_, "tokens": step_ * world_tokens, "val_loss": val,
                 "best_val_loss": min(best_val, val) if val is not None else best_val,
                 "elapsed_s": elapsed_before + time.perf_counter() - t_start,
                 "config": cfg.to_dict(), "model": mcfg.to_dict(),
                 # the schedule and the data position are functions of the step (see above)
                 "scheduler": {"kind": "linear warmup + cosine", "lr": learning_rate(
                     step_, cfg, total_steps), "warmup_steps": cfg.warmup_steps,
                     "total_steps": total_steps},
                 "data_position": {"next_step": step_, "batches": "seeded by (seed, rank, "
                                   "step, micro-step)", "world_size": dist.world_size}}
        if mlm:
            state["val_accuracy"] = last_acc if val is not None else None
        if state["best_val_loss"] == float("inf"):
            state["best_val_loss"] = None
        path = save_checkpoint(ckdir / f"step-{step_:06d}", model, tokenizer_path, state, optimizer,
                               data=framing)
        if val is not None and val < best_val:
            best_val = val
            save_checkpoint(ckdir / "best", model, tokenizer_path, state, data=framing)  # weights only
        for old in list_steps(ckdir)[:-cfg.keep_last]:
            shutil.rmtree(old, ignore_errors=True)
        run.add_artifact("checkpoint", path)

    def log(row: dict) -> None:
        if dist.is_main:
            with open(metrics_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")

    # ---- fit ---------------------------------------------------------------------------------
    if resume_from is not None:
        load_rng(resume_from)  # last, so that nothing in the setup draws from the restored state
    model.train()
    t_start = time.perf_counter()
    t_log, tokens_since_log, steps_since_log = time.perf_counter(), 0, 0
    loss_acc = torch.zeros((), device=device)
    last_val, stop_reason, tokens_per_s, mfu = saved_val, "max_steps", 0.0, None
    last_acc = saved_acc
    bar = progress_bar() if dist.is_main else None
    with bar or nullcontext(), StopRequest() as stopper:
        task = bar.add_task("pretrain", total=total_steps, completed=step, stats="") if bar else None
        while step < total_steps:
            lr = learning_rate(step, cfg, total_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            for micro in range(cfg.grad_accum):
                x, y = data.get_batch("train", B, T, batch_generator(cfg.seed, dist.rank, step, micro))
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                sync = micro == cfg.grad_accum - 1 or not dist.enabled
                with (nullcontext() if sync else train_model.no_sync()), autocast(device, precision):
                    loss = train_model(x, targets=y)
                    if cfg.grad_accum > 1:
                        loss = loss / cfg.grad_accum
                loss.backward()
                loss_acc += loss.detach()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            tokens_since_log += world_tokens
            steps_since_log += 1

            if step % cfg.log_every == 0 or step == total_steps:
                train_loss = loss_acc.item() / steps_since_log  # mean over the steps since the last log
                loss_acc.zero_()
                now = time.perf_counter()
                tokens_per_s = tokens_since_log / (now - t_log)
                mfu = cost.mfu(tokens_per_s, flops_tok, peak * dist.world_size if peak else None)
                t_log, tokens_since_log, steps_since_log = now, 0, 0
                if not math.isfinite(train_loss):
                    raise GoldmineError(f"training diverged at step {step} (loss {train_loss}); "
                                        "lower --learning-rate or raise --warmup-steps")
                log({"step": step, "loss": train_loss, "lr": lr, "tokens": step * world_tokens,
                     "tokens_per_s": tokens_per_s, "mfu": mfu})
                if bar:
                    stats = f"loss {train_loss:.3f}"
                    if last_val is not None:
                        stats += f" · val {last_val:.3f}"
                    stats += f" · {human_count(tokens_per_s)} tok/s"
                    if mfu is not None:
                        stats += f" · MFU {100 * mfu:.0f}%"
                    bar.update(task, completed=step, stats=stats)
            elif bar:
                bar.update(task, completed=step)

            out_of_time = max_time is not None and time.perf_counter() - t_start >= max_time
            interrupted = stopper.signal is not None
            if dist.enabled:  # every rank must stop at the same step
                flags = torch.tensor([float(out_of_time), float(interrupted)], device=device)
                torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
                out_of_time, interrupted = bool(flags[0].item()), bool(flags[1].item())
            final = step == total_steps or out_of_time or interrupted
            evaluated = False
            if (cfg.eval_every and step % cfg.eval_every == 0) or final:
                (last_val, last_acc), evaluated = evaluate(), True
                row = {"step": step, "val_loss": last_val, "val_ppl": math.exp(min(last_val, 50))}
                log(row if last_acc is None else {**row, "val_accuracy": last_acc})
                if bar:
                    stats = _stats(bar.tasks[task].fields["stats"], last_val)
                    bar.update(task, stats=stats)
                    if not console.is_terminal:  # logs get a line per evaluation, not a live bar
                        acc = "" if last_acc is None else f" · masked acc {100 * last_acc:.1f}%"
                        info(f"step {step:,}/{total_steps:,} · {stats}{acc} · "
                             f"{time.perf_counter() - t_start:.0f} s")
            if step % cfg.ckpt_every == 0 or final:
                checkpoint(step, last_val if evaluated else None)
            if (out_of_time or interrupted) and step < total_steps:
                stop_reason = "interrupted" if interrupted else "max_time"
                break

    # ---- validate and record -----------------------------------------------------------------
    in_sync = True
    if dist.enabled:
        digest = hashlib.sha256()
        for p in model.parameters():
            digest.update(p.detach().cpu().numpy().tobytes())
        digests = [None] * dist.world_size
        torch.distributed.all_gather_object(digests, digest.hexdigest())
        in_sync = len(set(digests)) == 1
        if not in_sync:
            raise GoldmineError(f"DDP ranks diverged: parameter digests {digests}")
    if not dist.is_main:
        if stop_reason == "interrupted":
            raise KeyboardInterrupt
        return {"rank": dist.rank, "step": step}

    elapsed = elapsed_before + time.perf_counter() - t_start
    from goldmine.eval.plots import loss_curve

    plot = loss_curve(metrics_path, run_dir / "loss.png", title=f"pretrain {run.id}")
    hf_dir = None
    if mlm:  # the result: a Hugging Face BERT directory, from the best checkpoint
        from goldmine.encoder import save_hf

        ckpt = resolve_checkpoint(run_dir, "best")
        hf_dir = save_hf(mcfg, ckpt / "model.safetensors", data.tok, run_dir / "hf")
        run.add_artifact("hf", hf_dir)
        run.add_artifact("tokenizer", hf_dir / "tokenizer.json")
        info(f"Hugging Face BERT directory (weights of {ckpt.name}): {hf_dir}; fine-tune it with "
             f"`goldmine finetune classify --model {run.id}`")
    result = {
        "run_id": run.id, "run_dir": str(run_dir), "step": step, "max_steps": total_steps,
        "stop_reason": stop_reason, "tokens": step * world_tokens, "val_loss": last_val,
        "val_ppl": math.exp(min(last_val, 50)) if last_val is not None else None,
        "best_val_loss": best_val if best_val < float("inf") else None,
        "tokens_per_s": tokens_per_s, "mfu": mfu, "elapsed_s": elapsed,
        "params": model.num_params(), "world_size": dist.world_size, "ranks_in_sync": in_sync,
        "checkpoint": str(list_steps(run_dir / "checkpoints")[-1]), "plot": str(plot),
    }
    if mlm:
        result.update(objective="mlm", val_accuracy=last_acc, hf=str(hf_dir))
    run.log_metrics({k: v for k, v in result.items()
                     if k not in ("run_id", "run_dir", "checkpoint", "plot", "hf")})
    run.add_artifact("plot", plot)
    run.add_artifact("metrics", metrics_path)
    if (run_dir / "checkpoints" / "best").is_dir():
        run.add_artifact("best", run_dir / "checkpoints" / "best")
    if stop_reason == "interrupted":  # recorded as interrupted, so `--resume latest` finds it
        info(f"stopped at step {step:,} with a checkpoint; continue with "
             f"`goldmine pretrain --resume {run.id}`")
        raise KeyboardInterrupt
    return result


class StopRequest:
    """Ctrl-C or SIGTERM (a scheduler's preemption) during training: finish the current step,
    save a checkpoint, then stop. A second signal aborts at once, without a checkpoint."""

    def __init__(self):
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = signum
        info("[yellow]stopping after this step to save a checkpoint "
             "(press Ctrl-C again to abort without one)[/yellow]")

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _stats(text: str, val: float) -> str:
    """The progress bar's figures with the validation loss put in (or replaced)."""
    parts = [p for p in text.split(" · ") if p and not p.startswith("val ")]
    return " · ".join(parts[:1] + [f"val {val:.3f}"] + parts[1:])


def _truncate_log(path: Path, step: int) -> None:
    """On resume, drop log rows written after the checkpoint we continue from."""
    if not path.is_file():
        return
    keep = [line for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= step]
    path.write_text("".join(line + "\n" for line in keep), encoding="utf-8")
