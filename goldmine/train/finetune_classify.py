"""`goldmine finetune classify`: fine-tune a BERT-family encoder or a goldmine GPT (or LoRA
adapters on either) for text classification. setup -> fit -> validate, written out; the loop
is ours, not `Trainer`.

    goldmine finetune classify --data reviews --model minilm --epochs 3
    goldmine finetune classify --data reviews --model pretrain-20261123-101500-ab12
    finetune_classify(data="reviews.csv", label_column="sentiment", lora=True)
    finetune_classify(data="reviews-5fold", fold=2)   # validate on fold 2, train on the rest

A goldmine GPT is converted to a Hugging Face Llama directory first (goldmine.hf.gpt_to_hf), so
the result is a LlamaForSequenceClassification that pools the last token (the EOS).

`--arch logreg` trains the linear baseline instead (goldmine/baselines/logreg.py) on the same
data, with the same run layout, metrics, plot, checkpoint and result keys; its model/ holds
goldmine.json and model.safetensors, which `goldmine.classifier.Classifier.load` reads.
`--arch cnn` trains a small convolutional network on images instead (goldmine/baselines/cnn.py;
an image folder, MNIST-format IDX files or scikit-learn's digits, read by
goldmine/data/images.py), with the same run layout, metrics, plot, checkpoint and result keys.

Output (the run directory, or --out):

    model/            the best checkpoint as a plain Hugging Face directory (LoRA merged), loads
                      with AutoModelForSequenceClassification.from_pretrained; config.json has
                      id2label/label2id; tokenizer files; goldmine.json (labels, max_length,
                      backbone, best step, its val metrics, the dataset)
    adapter/          LoRA only: the peft adapter (adapter_config.json + safetensors)
    checkpoint/       the latest training state for --resume: trainable.safetensors,
                      optimizer.safetensors, rng.safetensors, trainer.json
    metrics.jsonl     a row per step (loss, lr) and per evaluation (val_loss, val_accuracy, ...)
    training.png      train loss, val loss and val accuracy / F1 against steps

Batch order. Each step takes the next batch of its epoch, and an epoch's batches are a pure
function of (seed, epoch) (see `epoch_batches`), so the data position is the step counter.
With the trainable weights, AdamW state and torch RNG state (dropout) in the checkpoint,
`--resume` continues where a run stopped; on CPU the final weights equal those of a run that
was never interrupted, bit for bit.
"""

from __future__ import annotations

import copy
import json
import math
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from goldmine.checkpoint import (
    atomic_dir,
    load_optimizer,
    load_rng,
    optimizer_tensors,
    rng_tensors,
)
from goldmine.config import FinetuneClassifyConfig, explicit_options, resumed
from goldmine.errors import GoldmineError
from goldmine.files import read_json, write_json
from goldmine.hf import LORA_TARGETS, MINILM, model_type, quiet_transformers, resolve_backbone
from goldmine.progress import console, human_count, info, progress_bar
from goldmine.registry import Registry, run_id_for_path, start_run
from goldmine.runtime import resolve_device
from goldmine.train.pretrain import StopRequest, batch_generator

COMMAND = "finetune classify"
STATE_FORMAT = "goldmine-classify-trainer/1"
GROUP_CHUNK_BATCHES = 50  # group_by_length sorts within chunks of this many batches
RAW_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")
# what may change when resuming: how long to train and how often to evaluate, not what
RESUME_OVERRIDABLE = {"max_steps", "epochs", "patience", "eval_every", "device", "resume"}


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------
@dataclass
class Example:
    text: str
    label: str
    group: str | None = None  # prepared datasets: `source`, shared by a row and its copies
    origin: str = "original"  # original / oversampled / augmented
    fold: int | None = None  # cross-validation fold (`data prepare --folds`), read on request
    where: str = ""  # file:line, for messages


@dataclass
class Skipped:
    """Rows left out, by reason, with where the first of each was."""

    counts: Counter = field(default_factory=Counter)
    first: dict[str, str] = field(default_factory=dict)

    def add(self, reason: str, where: str) -> None:
        self.counts[reason] += 1
        self.first.setdefault(reason, where)

    def summary(self) -> str:
        return ", ".join(f"{reason} ({n:,}, first at {self.first[reason]})"
                         for reason, n in self.counts.most_common())


@dataclass
class Examples:
    train: list[Example]
    val: list[Example]
    val_from_train: bool  # no validation split given: val was held out of train
    skipped: Skipped
    labels: list[str]  # sorted; the id of a label is its index
    fold: int | None = None  # cross-validation: val is this fold of train


def _cell(value: Any) -> str:
    """A table cell as stripped text; '' for missing values and nested JSON."""
    if value is None or isinstance(value, (dict, list)):
        return ""
    return str(value).strip()


def _fold(value: Any, where: str) -> int | None:
    """A row's `fold` field as an int (None when absent); anything else is an error."""
    if value is None or value == "":
        return None
    bad = GoldmineError(f"{where}: fold {value!r} is not a fold number")
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise bad
    try:
        return int(value)
    except (TypeError, ValueError):
        raise bad from None


def read_table(path: Path, text_column: str, label_column: str, skipped: Skipped,
               grouped: bool = False, folds: bool = False) -> list[Example]:
    """(text, label) rows of one file. Rows that cannot be read or lack a text or label are
    counted in `skipped`; a column that no row of the file has is an error. `folds`: read each
    row's `fold` field too."""
    from goldmine.data.tables import detect_encoding, iter_rows

    rows, columns, read = [], set(), 0
    has = {text_column: False, label_column: False}
    for row in iter_rows(path, detect_encoding(path)):
        read += 1
        if row.fields is None:
            skipped.add("unreadable", row.where)
            continue
        columns.update(row.fields)
        for col in has:
            has[col] = has[col] or col in row.fields
        text, label = _cell(row.fields.get(text_column)), _cell(row.fields.get(label_column))
        if not text:
            skipped.add("no text", row.where)
        elif not label:
            skipped.add("no label", row.where)
        else:
            group = (_cell(row.fields.get("source")) or None) if grouped else None
            fold = _fold(row.fields.get("fold"), row.where) if folds else None
            rows.append(Example(text, label, group, _cell(row.fields.get("origin")) or "original",
                                fold, row.where))
    missing = [col for col, seen in has.items() if not seen]
    if read and missing and columns:
        shown = sorted(columns)[:20]
        raise GoldmineError(f"{path}: no column {' or '.join(map(repr, missing))} (columns: "
                            f"{', '.join(shown)}{', ...' if len(columns) > 20 else ''}); name "
                            "them with --text-column and --label-column")
    return rows


def hold_out(rows: list[Example], fraction: float,
             seed: int) -> tuple[list[Example], list[Example]]:
    """(train, val): `fraction` of each label's rows held out, seeded. A prepared dataset's
    oversampled and augmented copies share their original's `source`, so they stay with it: a
    held-out original takes its copies out of train, and val keeps originals only. Every label
    keeps at least one row in train."""
    key = [r.group if r.group is not None else i for i, r in enumerate(rows)]
    by_label: dict[str, dict] = {}  # label -> its group keys, in order of appearance
    for r, k in zip(rows, key):
        by_label.setdefault(r.label, {})[k] = None
    rng = np.random.default_rng(seed)
    val_keys: set = set()
    for label in sorted(by_label):
        keys = list(by_label[label])
        n_val = min(len(keys) - 1, round(len(keys) * fraction))
        val_keys.update(keys[j] for j in rng.permutation(len(keys))[:n_val])
    train = [r for r, k in zip(rows, key) if k not in val_keys]
    val = [r for r, k in zip(rows, key) if k in val_keys and r.origin == "original"]
    return train, val


def folds_of(rows: list[Example], where: str) -> list[int]:
    """The fold numbers that train rows read with `folds=True` carry; an error when rows
    have none."""
    unfolded = [r for r in rows if r.fold is None]
    if len(unfolded) == len(rows):
        raise GoldmineError(f"data {where}: the train rows have no `fold` field; prepare the "
                            "dataset with `goldmine data prepare --kind classify --folds K`")
    if unfolded:
        raise GoldmineError(f"data {where}: {len(unfolded):,} train rows have no `fold` field "
                            f"(first at {unfolded[0].where}); every row needs one")
    return sorted({r.fold for r in rows})


def fold_split(rows: list[Example], fold: int,
               where: str) -> tuple[list[Example], list[Example]]:
    """(train, val) for cross-validation: val is the original rows of fold `fold`, train every
    row of the other folds. Oversampled and augmented copies carry their original's fold, so
    the copies of a validation row are neither trained on nor validated."""
    present = folds_of(rows, where)
    if fold not in present:
        raise GoldmineError(f"fold: {fold} is not a fold of {where} (folds: "
                            f"{', '.join(map(str, present))})")
    train = [r for r in rows if r.fold != fold]
    val = [r for r in rows if r.fold == fold and r.origin == "original"]
    return train, val


def read_rows(cfg: FinetuneClassifyConfig,
              folds: bool = False) -> tuple[list[Example], list[Example], Skipped]:
    """(train rows, val split rows, skipped) of a prepared classify dataset or raw table
    file(s). `folds`: read the train rows' `fold` field, and not the val split (cross-validation
    validates on a fold)."""
    from goldmine.data.prepare import is_dataset_dir, read_manifest
    from goldmine.data.tables import collect_table_files

    path = Path(cfg.data)
    if not path.exists():
        raise GoldmineError(f"data {path}: no such file or directory")
    skipped, val = Skipped(), []
    if path.is_dir() and is_dataset_dir(path):
        manifest = read_manifest(path)
        if manifest.get("kind") != "classify":
            raise GoldmineError(f"data {path}: a {manifest.get('kind')!r} dataset; a classifier "
                                "needs one prepared with `goldmine data prepare --kind classify`")
        files = manifest.get("files") or {}
        if "train" not in files:
            raise GoldmineError(f"data {path}: the dataset has no train split")
        train = read_table(path / files["train"], "text", "label", skipped, grouped=True,
                           folds=folds)
        val_file = path / files["val"] if "val" in files and not folds else None
        if val_file is not None and val_file.is_file() and val_file.stat().st_size > 0:
            val = read_table(val_file, "text", "label", skipped)
    else:
        files = collect_table_files([path])
        plain = [f for f in files if f.suffix.lower() not in RAW_SUFFIXES]
        if plain:
            raise GoldmineError(f"data {plain[0]}: plain text carries no labels; give a "
                                f"{'/'.join(RAW_SUFFIXES)} file with text and label columns, or "
                                "a dataset from `goldmine data prepare --kind classify`")
        train = [ex for f in files for ex in read_table(f, cfg.text_column, cfg.label_column,
                                                        skipped, folds=folds)]
    if not train:
        why = f" (skipped: {skipped.summary()})" if skipped.counts else ""
        raise GoldmineError(f"data {path}: no training rows with a text and a label{why}")
    return train, val, skipped


def load_examples(cfg: FinetuneClassifyConfig) -> Examples:
    """Train and val rows from a prepared classify dataset or raw table file(s); with
    `cfg.fold`, val is that fold of train (see `fold_split`)."""
    path = Path(cfg.data)
    train, val, skipped = read_rows(cfg, folds=cfg.fold is not None)
    if cfg.fold is not None:
        train, val = fold_split(train, cfg.fold, str(path))
    val_from_train = not val and cfg.fold is None
    if val_from_train:
        train, val = hold_out(train, cfg.val_fraction, cfg.seed)
    labels = sorted({ex.label for ex in train})
    if len(labels) < 2:
        raise GoldmineError(f"data {path}: every training row has the label {labels[0]!r}; "
                            "labels that are all the same teach a classifier nothing (it needs "
                            "at least two)")
    unseen = sorted({ex.label for ex in val} - set(labels))
    if unseen:
        raise GoldmineError(f"data {path}: validation labels not seen in train: "
                            f"{', '.join(map(repr, unseen))}")
    if not val and cfg.fold is not None:
        raise GoldmineError(f"data {path}: fold {cfg.fold} has no original rows to validate on")
    if not val:
        raise GoldmineError(f"data {path}: too few rows to hold out a validation set "
                            f"({len(train)} training rows, --val-fraction {cfg.val_fraction:g})")
    return Examples(train, val, val_from_train, skipped, labels, cfg.fold)


def describe_data(cfg: FinetuneClassifyConfig, examples: Examples) -> None:
    """What is trained and validated on, and what was left out."""
    labels = examples.labels
    info(f"data: {len(examples.train):,} train / {len(examples.val):,} val rows, {len(labels)} "
         f"labels ({', '.join(labels[:10])}{', ...' if len(labels) > 10 else ''})")
    if examples.fold is not None:
        info(f"cross-validation: validating on fold {examples.fold} of train (its original "
             "rows), training on the other folds")
    if examples.val_from_train:
        info(f"[yellow]no validation split in {cfg.data}: held out {cfg.val_fraction:.0%} of "
             f"train, stratified by label (seed {cfg.seed}): {len(examples.val):,} "
             "rows[/yellow]")
    if examples.skipped.counts:
        info(f"[yellow]skipped {sum(examples.skipped.counts.values()):,} rows: "
             f"{examples.skipped.summary()}[/yellow]")


def encode(tokenizer, texts: list[str], max_length: int) -> tuple[list[list[int]], int]:
    """Token ids per text (special tokens included), cut at max_length; and how many texts were
    cut. Only texts that hit the limit are tokenized a second time, in full, to tell."""
    with quiet_transformers():  # "sequence longer than the maximum" is what we count here
        ids = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
        at_limit = [t for t, x in zip(texts, ids) if len(x) >= max_length]
        full = tokenizer(at_limit)["input_ids"] if at_limit else []
    return ids, sum(len(x) > max_length for x in full)


# ---------------------------------------------------------------------------------------------
# batches, schedule, loss
# ---------------------------------------------------------------------------------------------
def epoch_batches(lengths: np.ndarray, batch_size: int, seed: int, epoch: int,
                  group_by_length: bool) -> list[np.ndarray]:
    """The batches (arrays of example indices) of one epoch, a pure function of (seed, epoch).

    A seeded permutation of the examples cut into batches. With group_by_length, the
    permutation is taken in chunks of 50 batches; each chunk is sorted by token length
    (longest first) and cut into batches, so a batch holds texts of similar length (little
    padding); then the order of all the batches is shuffled (seeded), so lengths do not come
    in runs. Either way an epoch has ceil(n / batch_size) batches and only its last batch (in
    the unshuffled order) may be short.
    """
    g = batch_generator(seed, epoch)
    order = torch.randperm(len(lengths), generator=g).numpy()
    if not group_by_length:
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    chunk = GROUP_CHUNK_BATCHES * batch_size
    batches = []
    for start in range(0, len(order), chunk):
        part = order[start:start + chunk]
        part = part[np.argsort(-lengths[part], kind="stable")]
        batches += [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
    shuffle = torch.randperm(len(batches), generator=g).tolist()
    return [batches[i] for i in shuffle]


def learning_rate(step: int, cfg: FinetuneClassifyConfig, total_steps: int) -> float:
    """The rate for optimizer step `step` (0-based): linear warmup over the first
    ceil(warmup_ratio * total_steps) steps, then linear decay to 0, cosine decay to 0, or
    constant."""
    warmup = math.ceil(cfg.warmup_ratio * total_steps)
    if step < warmup:
        return cfg.learning_rate * (step + 1) / warmup
    if cfg.schedule == "constant":
        return cfg.learning_rate
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    if cfg.schedule == "cosine":
        return cfg.learning_rate * 0.5 * (1.0 + math.cos(math.pi * progress))
    return cfg.learning_rate * (1.0 - progress)


def inverse_frequency_weights(label_ids: list[int], num_labels: int) -> torch.Tensor:
    """Loss weights proportional to 1 / label count, normalised to mean 1: (num_labels,)."""
    counts = torch.bincount(torch.tensor(label_ids), minlength=num_labels).double()
    weights = 1.0 / counts.clamp(min=1)
    return (weights / weights.mean()).float()


def is_head(name: str, prefix: str) -> bool:
    """Whether a parameter belongs to the classification head: outside the pretrained body
    (`prefix`, e.g. "bert"), or its pooler."""
    return not name.startswith(f"{prefix}.") or name.startswith(f"{prefix}.pooler.")


def make_optimizer(model: torch.nn.Module, cfg: FinetuneClassifyConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; no weight decay on vectors (biases, LayerNorm).
    In full fine-tuning the head learns at head_lr_scale x the rate (group key "lr_scale"): it
    starts from random weights, while the body only needs to move a little."""
    prefix = getattr(model, "base_model_prefix", "")
    scale = cfg.head_lr_scale if not cfg.lora and prefix else 1.0
    groups = []
    for head in (False, True):
        params = [(n, p) for n, p in model.named_parameters()
                  if p.requires_grad and is_head(n, prefix) == head]
        for decay in (True, False):
            chosen = [p for _, p in params if (p.ndim >= 2) == decay]
            if chosen:
                groups.append({"params": chosen, "lr_scale": scale if head else 1.0,
                               "weight_decay": cfg.weight_decay if decay else 0.0})
    return torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=(0.9, 0.999), eps=1e-8)


def collate(tokenizer, ids: list[list[int]], rows: np.ndarray, label_ids: torch.Tensor,
            device: torch.device) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Examples `rows` padded to the longest of them: input_ids and attention_mask (B, T), and
    their label ids (B,)."""
    batch = tokenizer.pad({"input_ids": [ids[i] for i in rows]}, return_tensors="pt",
                          return_attention_mask=True)
    inputs = {k: batch[k].to(device) for k in ("input_ids", "attention_mask")}
    return inputs, label_ids[torch.as_tensor(rows)].to(device)


# ---------------------------------------------------------------------------------------------
# model
# ---------------------------------------------------------------------------------------------
def build_model(backbone: Path, labels: list[str], cfg: FinetuneClassifyConfig) -> torch.nn.Module:
    """The backbone with a new classification head for `labels` (seeded), wrapped in LoRA
    adapters with --lora (peft's SEQ_CLS task trains the head as well)."""
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(cfg.seed)  # the new head's initialisation, LoRA's too
    with quiet_transformers():
        model = AutoModelForSequenceClassification.from_pretrained(
            backbone, num_labels=len(labels), dtype=torch.float32,
            id2label=dict(enumerate(labels)), label2id={name: i for i, name in enumerate(labels)})
        if cfg.lora:
            from peft import LoraConfig, TaskType, get_peft_model

            lora = LoraConfig(task_type=TaskType.SEQ_CLS, r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                              lora_dropout=cfg.lora_dropout,
                              target_modules=LORA_TARGETS.get(model_type(backbone)))
            try:
                model = get_peft_model(model, lora)
            except ValueError as e:
                raise GoldmineError(f"lora: cannot place adapters in {backbone} ({e})") from None
    return model


def trainable_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters()
            if p.requires_grad}


def load_trainable(model: torch.nn.Module, path: Path) -> None:
    saved = load_file(path)
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if set(saved) != set(params):
        odd = sorted(set(saved) ^ set(params))[:3]
        raise GoldmineError(f"{path}: the saved weights do not fit this model (e.g. {odd})")
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(saved[name])


@torch.no_grad()
def evaluate(model: torch.nn.Module,
             batches: Iterable[tuple[dict[str, torch.Tensor], torch.Tensor]]) -> dict[str, float]:
    """Mean cross-entropy (unweighted), accuracy and macro F1 over the validation batches."""
    from sklearn.metrics import accuracy_score, f1_score

    model.eval()
    loss, preds, gold = 0.0, [], []
    for inputs, y in batches:
        logits = model(**inputs).logits.float()  # (B, num_labels)
        loss += F.cross_entropy(logits, y, reduction="sum").item()
        preds.append(logits.argmax(-1).cpu())
        gold.append(y.cpu())
    model.train()
    y_pred, y_true = torch.cat(preds).numpy(), torch.cat(gold).numpy()
    return {"loss": loss / len(y_true), "accuracy": float(accuracy_score(y_true, y_pred)),
            "f1_macro": float(f1_score(y_true, y_pred, average="macro", zero_division=0))}


def improved(metric: str, value: float, best: float | None) -> bool:
    if best is None:
        return True
    return value < best if metric == "loss" else value > best


def save_model(model: torch.nn.Module, tokenizer, run_dir: Path, meta: dict, lora: bool) -> Path:
    """The model as a plain Hugging Face directory run_dir/model (for LoRA: a merged copy, and
    the adapter in run_dir/adapter), each written beside its place and then swapped in."""
    out = run_dir / "model"
    targets = [(out, copy.deepcopy(model).merge_and_unload() if lora else model)]
    if lora:
        targets.append((run_dir / "adapter", model))
    for dest, m in targets:
        with atomic_dir(dest) as tmp:
            with quiet_transformers():
                m.save_pretrained(tmp)
                if dest == out:
                    tokenizer.save_pretrained(tmp)
            if dest == out:
                write_json(tmp / "goldmine.json", meta)
    return out


def save_training_state(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        state: dict[str, Any]) -> None:
    """checkpoint/: trainable weights, AdamW state, RNG state and trainer.json, atomically."""
    with atomic_dir(path) as tmp:
        save_file(trainable_tensors(model), tmp / "trainable.safetensors")
        tensors, hyper = optimizer_tensors(optimizer)
        save_file(tensors, tmp / "optimizer.safetensors")
        save_file(rng_tensors(), tmp / "rng.safetensors")
        write_json(tmp / "trainer.json", {**state, "optimizer": hyper})


# ---------------------------------------------------------------------------------------------
# resume
# ---------------------------------------------------------------------------------------------
def find_resume_checkpoint(ref: str, command: str = COMMAND) -> tuple[Path, str | None]:
    """(checkpoint dir, run id) for --resume latest | RUN_ID | RUN_DIR | RUN_DIR/checkpoint of
    a fine-tuning `command` (finetune classify or finetune sft: the same checkpoint layout)."""
    if ref == "latest":
        runs = [r for r in Registry().list(limit=None, command=command)
                if r["status"] != "completed"
                and (Path(r["run_dir"]) / "checkpoint" / "trainer.json").is_file()]
        if not runs:
            raise GoldmineError(f"--resume latest: no unfinished {command} run with a "
                                "checkpoint (see `goldmine runs list`)")
        ref = runs[0]["run_dir"]
    path = Path(ref)
    if not path.exists():
        try:
            path = Path(Registry().get(ref)["run_dir"])
        except GoldmineError:
            raise GoldmineError(f"--resume {ref}: no such run id or directory") from None
    ckpt = path if (path / "trainer.json").is_file() else path / "checkpoint"
    if not (ckpt / "trainer.json").is_file():
        raise GoldmineError(f"--resume {ref}: nothing to resume (no checkpoint/ in {path})")
    return ckpt, run_id_for_path(ckpt)


def resumed_config(ckpt: Path, explicit: dict[str, Any]) -> FinetuneClassifyConfig:
    """The saved run's config with the options given now that may change on resume."""
    state = read_json(ckpt / "trainer.json", "trainer.json")
    if state.get("format") != STATE_FORMAT:
        raise GoldmineError(f"{ckpt / 'trainer.json'}: not a finetune classify checkpoint")
    return resumed(FinetuneClassifyConfig, state["config"], explicit, RESUME_OVERRIDABLE,
                   str(ckpt / "trainer.json"))


# ---------------------------------------------------------------------------------------------
# the command
# ---------------------------------------------------------------------------------------------
def finetune_classify(cfg: FinetuneClassifyConfig | None = None, *,
                      callback: Callable[[int, torch.nn.Module], None] | None = None,
                      **overrides: Any) -> dict[str, Any]:
    """Fine-tune an encoder for text classification. Returns the run's results and paths.

    `finetune_classify(data="reviews", epochs=2)` or with a `FinetuneClassifyConfig`; keyword
    arguments override its fields. `arch="logreg"`: the linear baseline; `arch="cnn"`: a
    convolutional network on images (`data="digits"` when no data is given). Options left unset
    take the arch's defaults (FinetuneClassifyConfig.arch_defaults). `callback(step, model)`
    runs after every optimizer step (notebooks, tests).
    """
    base = cfg or FinetuneClassifyConfig()
    explicit = _absolute_paths(explicit_options(base, overrides))
    cfg = base.update(overrides, where="finetune classify")
    cfg.validate()
    cfg = cfg.with_arch_defaults()
    cfg = cfg.update(_absolute_paths({"data": cfg.data, "model": cfg.model}))
    ckpt, run_id = None, None
    if cfg.resume:
        ckpt, run_id = find_resume_checkpoint(cfg.resume)
        cfg = resumed_config(ckpt, explicit)
    if cfg.data is None and cfg.arch == "cnn":  # the embedded image set, as minilm for text
        from goldmine.data.images import DIGITS

        info(f"no --data: training on {DIGITS} (scikit-learn's 8x8 handwritten digits)")
        cfg = cfg.update({"data": DIGITS})
    if cfg.data is None:
        raise GoldmineError("data: give --data (a dataset from `goldmine data prepare --kind "
                            "classify`, or a .csv/.tsv/.jsonl/.parquet file with text and labels)")
    out = cfg.out if ckpt is None or run_id else str(ckpt.parent)
    if ckpt is None and cfg.out and (Path(cfg.out) / "checkpoint").is_dir():
        raise GoldmineError(f"{cfg.out}: already holds an earlier run's checkpoint; continue it "
                            f"with --resume {cfg.out}, or choose another --out")
    if cfg.arch == "logreg":  # the linear baseline: same data, registry and outputs
        from goldmine.baselines.logreg import featurize, train_logreg

        examples = load_examples(cfg)  # both fail before a run is recorded
        features = featurize(cfg, examples)
        with start_run(COMMAND, cfg.to_dict(), out=out, resume=run_id) as run:
            result = train_logreg(cfg, run, examples, features, ckpt, callback)
    elif cfg.arch == "cnn":  # images: a small convolutional network, same outputs again
        from goldmine.baselines.cnn import load_images, train_cnn

        examples, images = load_images(cfg)  # fails before a run is recorded
        with start_run(COMMAND, cfg.to_dict(), out=out, resume=run_id) as run:
            result = train_cnn(cfg, run, examples, images, ckpt, callback)
    else:
        # a goldmine GPT is converted into a temporary Llama directory, read once by _train
        with tempfile.TemporaryDirectory(prefix="goldmine-backbone-") as workdir:
            examples = load_examples(cfg)  # both fail before a run is recorded
            backbone, source = resolve_backbone(cfg.model, Path(workdir))
            with start_run(COMMAND, cfg.to_dict(), out=out, resume=run_id) as run:
                result = _train(cfg, run, backbone, source, examples, ckpt, callback)
    if result["stop_reason"] == "interrupted":  # recorded as such, so `--resume latest` finds it
        run.registry.update(run.id, status="interrupted",
                            error="interrupted (Ctrl-C or SIGTERM) with a checkpoint")
    return result


def _absolute_paths(values: dict[str, Any]) -> dict[str, Any]:
    """`data` and `model` as absolute paths (when they are paths), so that the recorded config
    and `--resume` work from any directory."""
    out = dict(values)
    for key in ("data", "model"):
        if out.get(key) and out[key] != MINILM and Path(out[key]).exists():
            out[key] = str(Path(out[key]).resolve())
    return out


def _train(cfg: FinetuneClassifyConfig, run, backbone: Path, source: Path | None,
           examples: Examples, ckpt: Path | None, callback) -> dict[str, Any]:
    """`source`: the goldmine GPT checkpoint that `backbone` was converted from, if any."""
    from transformers import AutoConfig, AutoTokenizer

    # ---- setup -------------------------------------------------------------------------------
    device = resolve_device(cfg.device)
    run_dir = run.dir
    labels = examples.labels
    label_index = {name: i for i, name in enumerate(labels)}
    train, val = examples.train, examples.val
    describe_data(cfg, examples)

    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(backbone)
        positions = getattr(AutoConfig.from_pretrained(backbone), "max_position_embeddings", None)
    limit = min(tokenizer.model_max_length or 10**9, positions or 10**9, 10**9)
    if cfg.max_length > limit:
        raise GoldmineError(f"max_length: {cfg.max_length} is more than {backbone} takes "
                            f"({limit} tokens)")
    train_ids, train_cut = encode(tokenizer, [ex.text for ex in train], cfg.max_length)
    val_ids, val_cut = encode(tokenizer, [ex.text for ex in val], cfg.max_length)
    truncated = {"train": train_cut, "val": val_cut}
    if train_cut or val_cut:
        info(f"truncated to {cfg.max_length} tokens: {train_cut:,} of {len(train):,} train and "
             f"{val_cut:,} of {len(val):,} val texts")
    lengths = np.array([len(x) for x in train_ids])
    train_y = torch.tensor([label_index[ex.label] for ex in train])
    val_y = torch.tensor([label_index[ex.label] for ex in val])
    val_order = np.argsort(-np.array([len(x) for x in val_ids]), kind="stable")  # less padding
    val_chunks = [val_order[i:i + cfg.batch_size] for i in range(0, len(val), cfg.batch_size)]

    def val_batches() -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]]:
        return (collate(tokenizer, val_ids, rows, val_y, device) for rows in val_chunks)

    model = build_model(backbone, labels, cfg).to(device)
    model.train()
    optimizer = make_optimizer(model, cfg)
    total_params = sum(p.numel() for p in model.parameters())
    trainable_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    weights = None
    if cfg.class_weights == "auto":
        weights = inverse_frequency_weights(train_y.tolist(), len(labels))
        info("class weights: " + ", ".join(f"{name} {w:.2f}"
                                           for name, w in zip(labels, weights.tolist())))
        weights = weights.to(device)
    class_weights = dict(zip(labels, weights.tolist())) if weights is not None else None

    per_epoch = math.ceil(len(train) / cfg.batch_size)
    total_steps = cfg.max_steps or max(1, math.ceil(cfg.epochs * per_epoch))
    eval_every = per_epoch if cfg.eval_every is None else cfg.eval_every  # 0: at the end only
    step, best, bad_evals, resumed_from = 0, None, 0, None
    if ckpt is not None:
        state = read_json(ckpt / "trainer.json", "trainer.json")
        if state["labels"] != labels:
            raise GoldmineError(f"--resume: the data's labels {labels} differ from the saved "
                                f"run's {state['labels']}")
        load_trainable(model, ckpt / "trainable.safetensors")
        load_optimizer(optimizer, ckpt, state["optimizer"])
        step, best, bad_evals = state["step"], state["best"], state["bad_evals"]
        resumed_from = step
        info(f"resuming {run.id} from {ckpt} (step {step:,} of {total_steps:,})")

    metrics_path = run_dir / "metrics.jsonl"
    _truncate_log(metrics_path, step)
    run.set_config(cfg.to_dict())
    run.add_parent_from_path(cfg.data)
    run.add_parent_from_path(source or backbone)
    kind = model_type(backbone)
    share = (f" ({100 * trainable_params / total_params:.2f}%, LoRA r={cfg.lora_r})"
             if cfg.lora else "")
    info(f"model: {kind} from {source or backbone} on {device}: "
         f"{human_count(total_params)} parameters, "
         f"{human_count(trainable_params)} trainable{share}; {total_steps:,} steps of "
         f"{cfg.batch_size} ({per_epoch:,} per epoch)")
    meta = {"task": "classify", "arch": "transformer", "labels": labels,
            "max_length": cfg.max_length,
            "backbone": cfg.model, "lora": cfg.lora, "dataset": cfg.data, "run_id": run.id,
            "metric": cfg.metric, "class_weights": class_weights,
            "val_from_train": examples.val_from_train, "val_rows": len(val),
            "fold": examples.fold}

    def log(row: dict[str, Any]) -> None:
        with open(metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")

    def state_now(stop_reason: str | None) -> dict[str, Any]:
        return {"format": STATE_FORMAT, "step": step, "epoch": step // per_epoch,
                "position": step % per_epoch, "batches_per_epoch": per_epoch,
                "total_steps": total_steps, "best": best, "bad_evals": bad_evals,
                "stop_reason": stop_reason, "labels": labels, "config": cfg.to_dict(),
                "data_order": "epoch batches seeded by (seed, epoch); see epoch_batches"}

    # ---- fit ---------------------------------------------------------------------------------
    if ckpt is not None:
        load_rng(ckpt)  # last, so that nothing in the setup draws from the restored state
    stop_reason, seen, train_s, last_val = None, 0, 0.0, (best or {}).get("val")
    batches, batches_epoch = [], -1
    with progress_bar() as bar, StopRequest() as stopper:
        task = bar.add_task("finetune", total=total_steps, completed=step, stats="")
        while step < total_steps:
            if cfg.patience and bad_evals >= cfg.patience:  # resumed after early stopping
                stop_reason = "early_stopping"
                break
            t0 = time.perf_counter()
            epoch, position = divmod(step, per_epoch)
            if epoch != batches_epoch:
                batches = epoch_batches(lengths, cfg.batch_size, cfg.seed, epoch,
                                        cfg.group_by_length)
                batches_epoch = epoch
            inputs, y = collate(tokenizer, train_ids, batches[position], train_y, device)
            lr = learning_rate(step, cfg, total_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr * group["lr_scale"]
            logits = model(**inputs).logits.float()  # (B, num_labels)
            loss = F.cross_entropy(logits, y, weight=weights)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            train_loss = loss.item()
            step += 1
            seen += len(y)
            train_s += time.perf_counter() - t0
            report_step(log, bar, task, cfg, step=step, per_epoch=per_epoch, loss=train_loss,
                        lr=lr, last_val=last_val, rate=f"{seen / train_s:,.0f} ex/s")
            if callback is not None:
                callback(step, model)

            final = step == total_steps
            if (eval_every and step % eval_every == 0) or final:
                last_val = evaluate(model, val_batches())
                log({"step": step, **{f"val_{k}": v for k, v in last_val.items()}})
                if improved(cfg.metric, last_val[cfg.metric], best and best["value"]):
                    best, bad_evals = {"step": step, "value": last_val[cfg.metric],
                                       "val": last_val}, 0
                    save_model(model, tokenizer, run_dir, {**meta, "best_step": step,
                                                           "val_metrics": last_val}, cfg.lora)
                else:
                    bad_evals += 1
                line = (f"step {step:,}/{total_steps:,} · val loss {last_val['loss']:.4f} · "
                        f"accuracy {last_val['accuracy']:.4f} · f1_macro "
                        f"{last_val['f1_macro']:.4f}" + (" · best" if bad_evals == 0 else ""))
                if not console.is_terminal:  # logs get a line per evaluation
                    info(line)
                if cfg.patience and bad_evals >= cfg.patience and not final:
                    stop_reason = "early_stopping"
                    info(f"early stopping: no better {cfg.metric} in {bad_evals} evaluations")
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
    plot = training_plot(metrics_path, run_dir / "training.png", title=f"{COMMAND} {run.id}",
                         best_step=best["step"] if best else None)
    model_dir = run_dir / "model"
    val_metrics = best["val"] if best else None
    result = {
        "run_id": run.id, "run_dir": str(run_dir), "arch": "transformer",
        "model_dir": str(model_dir) if model_dir.is_dir() else None,
        "adapter_dir": str(run_dir / "adapter") if cfg.lora and model_dir.is_dir() else None,
        "labels": labels, "steps": step, "epochs_done": step / per_epoch,
        "stop_reason": stop_reason, "best_step": best["step"] if best else None,
        "val": val_metrics, "examples_per_s": seen / train_s if train_s else None,
        "truncated": truncated, "val_from_train": examples.val_from_train, "fold": examples.fold,
        "trainable_params": trainable_params, "total_params": total_params,
        "class_weights": class_weights, "train_rows": len(train), "val_rows": len(val),
        "skipped": dict(examples.skipped.counts), "resumed_from_step": resumed_from,
        "plot": str(plot), "checkpoint": str(run_dir / "checkpoint"),
    }
    run.log_metrics({**{f"val_{k}": v for k, v in (val_metrics or {}).items()},
                     "examples_per_s": result["examples_per_s"], "steps": step,
                     "best_step": result["best_step"], "stop_reason": stop_reason,
                     "truncated_train": train_cut, "truncated_val": val_cut,
                     "labels": len(labels), "train_rows": len(train), "val_rows": len(val),
                     "val_from_train": examples.val_from_train, "skipped": result["skipped"],
                     "fold": examples.fold,
                     "trainable_params": trainable_params, "total_params": total_params,
                     "class_weights": class_weights})
    run.add_artifact("plot", plot)
    run.add_artifact("metrics", metrics_path)
    if result["model_dir"]:
        run.add_artifact("model", model_dir)
        info(f"best: step {best['step']:,}, val {cfg.metric} {best['value']:.4f} -> {model_dir}")
    if result["adapter_dir"]:
        run.add_artifact("adapter", run_dir / "adapter")
    if stop_reason == "interrupted":
        info(f"stopped at step {step:,} with a checkpoint; continue with "
             f"`goldmine finetune classify --resume {run.id}`")
    return result


# ---------------------------------------------------------------------------------------------
# log and plot
# ---------------------------------------------------------------------------------------------
def _truncate_log(path: Path, step: int) -> None:
    """On resume, drop log rows written after the checkpoint we continue from."""
    if not path.is_file():
        return
    keep = [line for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= step]
    path.write_text("".join(line + "\n" for line in keep), encoding="utf-8")


def report_step(log, bar, task, cfg: FinetuneClassifyConfig, *, step: int, per_epoch: int,
                loss: float, lr: float, last_val: dict | None, rate: str) -> None:
    """After an optimizer step of a classifier loop (transformer, logreg, cnn): stop on a
    non-finite loss, append the step to metrics.jsonl (`log`) and update the progress bar."""
    if not math.isfinite(loss):
        raise GoldmineError(f"training diverged at step {step} (loss {loss}); lower "
                            "--learning-rate")
    log({"step": step, "epoch": round(step / per_epoch, 4), "loss": loss, "lr": lr})
    stats = f"loss {loss:.3f}"
    if last_val is not None:
        stats += f" · val {cfg.metric} {last_val[cfg.metric]:.3f}"
    bar.update(task, completed=step, stats=f"{stats} · {rate}")


def record_baseline(run, cfg: FinetuneClassifyConfig, arch: str, *, labels: list[str],
                    step: int, per_epoch: int, stop_reason: str, best: dict | None, seen: int,
                    train_s: float, examples: Examples, params: int, class_weights: Any,
                    rows: tuple[int, int], resumed_from: int | None, fold: int | None,
                    extra: dict[str, Any], extra_metrics: dict[str, Any]) -> dict[str, Any]:
    """The end of a baseline's run (logreg, cnn): the training plot, the result (the keys of a
    transformer run's, plus `extra`), the metrics and artefacts recorded in the registry, and
    what to tell the user. `rows`: (train rows, val rows)."""
    run_dir = run.dir
    plot = training_plot(run_dir / "metrics.jsonl", run_dir / "training.png",
                         title=f"{COMMAND} {run.id}", best_step=best["step"] if best else None)
    model_dir = run_dir / "model"
    best_val = best["val"] if best else None
    result = {
        "run_id": run.id, "run_dir": str(run_dir), "arch": arch,
        "model_dir": str(model_dir) if model_dir.is_dir() else None, "adapter_dir": None,
        "labels": labels, "steps": step, "epochs_done": step / per_epoch,
        "stop_reason": stop_reason, "best_step": best["step"] if best else None,
        "val": best_val, "examples_per_s": seen / train_s if train_s else None,
        "truncated": {"train": 0, "val": 0}, "val_from_train": examples.val_from_train,
        "fold": fold, "trainable_params": params, "total_params": params,
        "class_weights": class_weights, "train_rows": rows[0], "val_rows": rows[1],
        "skipped": dict(examples.skipped.counts), "resumed_from_step": resumed_from,
        "plot": str(plot), "checkpoint": str(run_dir / "checkpoint"), **extra,
    }
    run.log_metrics({**{f"val_{k}": v for k, v in (best_val or {}).items()},
                     "examples_per_s": result["examples_per_s"], "steps": step,
                     "best_step": result["best_step"], "stop_reason": stop_reason,
                     "labels": len(labels), "train_rows": rows[0], "val_rows": rows[1],
                     "val_from_train": examples.val_from_train, "skipped": result["skipped"],
                     "fold": fold, "trainable_params": params, "total_params": params,
                     "class_weights": class_weights, "arch": arch, **extra_metrics})
    run.add_artifact("plot", plot)
    run.add_artifact("metrics", run_dir / "metrics.jsonl")
    if result["model_dir"]:
        run.add_artifact("model", model_dir)
        info(f"best: step {best['step']:,}, val {cfg.metric} {best['value']:.4f} -> {model_dir}")
    if stop_reason == "interrupted":
        info(f"stopped at step {step:,} with a checkpoint; continue with "
             f"`goldmine finetune classify --resume {run.id}`")
    return result


def training_plot(metrics_jsonl: Path, out_png: Path, title: str = "",
                  best_step: int | None = None) -> Path:
    """Train loss per step and val loss per evaluation (left axis), val accuracy and macro F1
    (right axis), and the best checkpoint's step."""
    from goldmine.eval.plots import plt

    rows = [json.loads(line) for line in metrics_jsonl.read_text(encoding="utf-8").splitlines()
            if line.strip()]
    train = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    evals = [r for r in rows if "val_loss" in r]
    fig, ax = plt.subplots(figsize=(7, 4.4), dpi=120)
    if train:
        ax.plot(*zip(*train), label="train loss", color="#c9a227", linewidth=1.2)
    if evals:
        steps = [r["step"] for r in evals]
        ax.plot(steps, [r["val_loss"] for r in evals], "o-", label="val loss", color="#1f4e79",
                markersize=4)
        right = ax.twinx()
        right.plot(steps, [r["val_accuracy"] for r in evals], "s--", label="val accuracy",
                   color="#2e7d32", markersize=4)
        right.plot(steps, [r["val_f1_macro"] for r in evals], "^--", label="val F1 (macro)",
                   color="#8e24aa", markersize=4)
        right.set_ylabel("accuracy / F1")
        right.set_ylim(0, 1.02)
    if best_step is not None:
        ax.axvline(best_step, color="gray", linestyle=":", label=f"best (step {best_step})")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy loss")
    ax.set_title(title or "fine-tuning")
    ax.grid(alpha=0.3)
    handles = [h for a in fig.axes for h in a.get_legend_handles_labels()[0]]
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=5, frameon=False, fontsize=8)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(out_png)
    plt.close(fig)
    return out_png
