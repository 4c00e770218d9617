"""`goldmine quantize`: int8 weights for CPU inference, and what they cost.

    goldmine quantize RUN                         # a finetune classify, pretrain or finetune sft run
    goldmine quantize RUN --method int8-weight-only --data reviews --threads 2

Every nn.Linear (and the word embedding) is replaced by a module holding int8 weights with one
fp32 scale per output channel (symmetric: w ~ int8 * scale, scale = max|row| / 127):

    int8-dynamic       activations are quantized to uint8 per batch at run time and the matmul
                       runs in int8 (fbgemm/x86 `quantized::linear_dynamic`); the fastest on CPU
    int8-weight-only   weights are dequantized per matmul, activations stay fp32: the smallest
                       accuracy change, no speed-up

Both store the same tensors (4x smaller than fp32); the method only decides the forward. Norms,
biases, position embeddings and a classifier's head stay fp32 (they are tiny). The packed
fbgemm weight is built lazily on the first forward and never saved.

Saved formats (safetensors only):

    GPT          a goldmine checkpoint directory whose config.json has "quantization": {...}
                 and whose model.safetensors holds `<module>.weight` (int8) and
                 `<module>.weight_scale` (fp32); `goldmine.checkpoint.load_model` loads it
    classifier   a Hugging Face directory whose goldmine.json has "quantization": {...};
                 `goldmine.classifier.Classifier.load` loads it (transformers itself cannot)

The command writes run_dir/model, report.md (the table: size, latency per batch, the metric
before and after), quantize.json and README.md (the model card), and records the run with the
source run as its parent.
"""

from __future__ import annotations

import copy
import math
import os
import shutil
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from goldmine.checkpoint import _load_tensors, load_weights_dict, refuse_lstm
from goldmine.errors import GoldmineError
from goldmine.runtime import tune_cpu_allocator

METHODS = ("int8-dynamic", "int8-weight-only")
FORMAT = "goldmine-quantize/1"
SCALE_SUFFIX = "_scale"          # `<module>.weight` int8 -> `<module>.weight_scale` fp32
# fbgemm quantizes activations to 7 bits (reduce_range): without AVX512-VNNI its int8 kernels add
# pairs of u8*s8 products in int16, which 8-bit activations can overflow. Safe on every x86 CPU.
REDUCE_RANGE = True
# modules of Hugging Face sequence classifiers kept fp32: the head (a few thousand weights)
HF_HEADS = ("classifier", "score")
LATENCY_BATCHES = 4              # batches timed per repetition
LATENCY_REPS = 9                 # repetitions (median), after one warm-up


# ---------------------------------------------------------------------------------------------
# int8 tensors and modules
# ---------------------------------------------------------------------------------------------
def quantize_rows(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """w (rows, cols) float -> (int8 (rows, cols), fp32 scale (rows,)), symmetric per row:
    w ~ q * scale[:, None] with q in [-127, 127]. An all-zero row gets scale 1."""
    w = w.detach().float()
    amax = w.abs().amax(dim=1)
    scale = torch.where(amax > 0, amax / 127.0, torch.ones_like(amax))
    q = torch.clamp(torch.round(w / scale[:, None]), -127, 127).to(torch.int8)
    return q, scale


def dequantize_rows(q: torch.Tensor, scale: torch.Tensor,
                    dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return q.to(dtype) * scale.to(dtype)[:, None]


class Int8Linear(nn.Module):
    """y = x W^T + b with W stored as int8 (out, in) and one fp32 scale per output channel.

    `method` picks the forward (see the module docstring). int8-dynamic needs fp32 inputs on a
    CPU whose quantized engine packs per-channel weights (x86/fbgemm); anywhere else (CUDA,
    bf16) it computes as int8-weight-only does.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 method: str = "int8-dynamic", device=None):
        super().__init__()
        if method not in METHODS:
            raise GoldmineError(f"method: {method!r} is not one of {', '.join(METHODS)}")
        self.in_features, self.out_features, self.method = in_features, out_features, method
        self.register_buffer("weight", torch.zeros(out_features, in_features, dtype=torch.int8,
                                                   device=device))
        self.register_buffer("weight_scale", torch.ones(out_features, device=device))
        self.register_buffer("bias", torch.zeros(out_features, device=device) if bias else None)
        self._packed: Any = None     # fbgemm packed weight; False: this engine cannot pack

    @classmethod
    def from_linear(cls, linear: nn.Linear, method: str) -> Int8Linear:
        m = cls(linear.in_features, linear.out_features, linear.bias is not None, method,
                device=linear.weight.device)
        q, scale = quantize_rows(linear.weight)
        m.weight.copy_(q)
        m.weight_scale.copy_(scale)
        if linear.bias is not None:
            m.bias.copy_(linear.bias.detach().float())
        return m

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, method={self.method}")

    # new weights (loading, .to(), ...) make the packed copy stale
    def _load_from_state_dict(self, *args, **kwargs):
        self._packed = None
        super()._load_from_state_dict(*args, **kwargs)

    def _apply(self, fn, *args, **kwargs):
        self._packed = None
        return super()._apply(fn, *args, **kwargs)

    def _packed_weight(self):
        if self._packed is None:
            try:
                with warnings.catch_warnings():  # torch.ao's deprecation notices
                    warnings.simplefilter("ignore")
                    w = self.weight.detach().cpu()
                    qw = torch._make_per_channel_quantized_tensor(
                        w, self.weight_scale.detach().cpu().double(),
                        torch.zeros(self.out_features, dtype=torch.long), 0)
                    bias = None if self.bias is None else self.bias.detach().cpu().float()
                    self._packed = torch.ops.quantized.linear_prepack(qw, bias)
            except (RuntimeError, NotImplementedError):
                self._packed = False  # no fbgemm/x86 engine here: dequantize per matmul
        return self._packed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.method == "int8-dynamic" and x.device.type == "cpu" and x.dtype == torch.float32:
            packed = self._packed_weight()
            if packed is not False:
                x2d = x.reshape(-1, self.in_features).contiguous()            # (N, in)
                y = torch.ops.quantized.linear_dynamic(x2d, packed, REDUCE_RANGE)  # (N, out)
                return y.view(*x.shape[:-1], self.out_features)
        w = dequantize_rows(self.weight, self.weight_scale, x.dtype)
        return F.linear(x, w, None if self.bias is None else self.bias.to(x.dtype))


class Int8Embedding(nn.Module):
    """An embedding table stored as int8 rows with one fp32 scale per row; only the rows looked
    up are dequantized."""

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None,
                 device=None):
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.padding_idx = padding_idx
        self.register_buffer("weight", torch.zeros(num_embeddings, embedding_dim,
                                                   dtype=torch.int8, device=device))
        self.register_buffer("weight_scale", torch.ones(num_embeddings, device=device))

    @classmethod
    def from_embedding(cls, emb: nn.Embedding) -> Int8Embedding:
        m = cls(emb.num_embeddings, emb.embedding_dim, emb.padding_idx, device=emb.weight.device)
        q, scale = quantize_rows(emb.weight)
        m.weight.copy_(q)
        m.weight_scale.copy_(scale)
        return m

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}"

    def forward(self, idx: torch.Tensor) -> torch.Tensor:            # (...) -> (..., C)
        scale = self.weight_scale
        return F.embedding(idx, self.weight).to(scale.dtype) * scale[idx].unsqueeze(-1)


# ---------------------------------------------------------------------------------------------
# swapping modules
# ---------------------------------------------------------------------------------------------
def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, module)


def _is_gpt(model: nn.Module) -> bool:
    from goldmine.model import GPT

    return isinstance(model, GPT)


def _default_targets(model: nn.Module) -> list[str]:
    """Names of the modules to quantize: every nn.Linear and the word embedding; for Hugging
    Face classifiers not the head."""
    if _is_gpt(model):
        return [n for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Embedding))]
    emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    names = []
    for n, m in model.named_modules():
        if n.split(".")[0] in HF_HEADS:
            continue
        if isinstance(m, nn.Linear) or (m is emb and isinstance(m, nn.Embedding)):
            names.append(n)
    return names


def quantize_model(model: nn.Module, method: str = "int8-dynamic",
                   modules: list[str] | None = None) -> nn.Module:
    """Replace the model's nn.Linear modules (and word embedding) by int8 ones, in place, and
    return it in eval mode. `modules`: the names to replace (default: see _default_targets).
    Works for goldmine's GPT (a tied head shares the embedding's int8 table) and Hugging Face
    sequence classifiers."""
    if method not in METHODS:
        raise GoldmineError(f"method: {method!r} is not one of {', '.join(METHODS)}")
    names = _default_targets(model) if modules is None else list(modules)
    tied = _is_gpt(model) and model.config.tie_embeddings
    with torch.no_grad():
        for name in names:
            m = model.get_submodule(name)
            if tied and name == "head":
                continue  # shares the embedding's table, set below
            if isinstance(m, nn.Linear):
                _set_module(model, name, Int8Linear.from_linear(m, method))
            elif isinstance(m, nn.Embedding):
                _set_module(model, name, Int8Embedding.from_embedding(m))
            else:
                raise GoldmineError(f"{name}: a {type(m).__name__}, not a Linear or Embedding")
    if tied:
        _tie_head(model, method)
    model.quantization = {"method": method}
    return model.eval()


def _tie_head(model, method: str) -> None:
    """The GPT's head as an Int8Linear over the Int8Embedding's own int8 rows and scales."""
    emb = model.embed
    if not isinstance(emb, Int8Embedding):
        raise GoldmineError("tied embeddings: the head and the embedding are quantized together")
    head = Int8Linear(emb.embedding_dim, emb.num_embeddings, bias=False, method=method,
                      device=emb.weight.device)
    head.weight, head.weight_scale = emb.weight, emb.weight_scale
    model.head = head


def quantized_modules(keys) -> list[str]:
    """The module names a quantized state dict holds int8 weights for."""
    tail = ".weight" + SCALE_SUFFIX
    return sorted(k[:-len(tail)] for k in keys if k.endswith(tail))


def model_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """A quantized model's tensors to save (a tied GPT head is stored once, as embed.*)."""
    sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if _is_gpt(model) and model.config.tie_embeddings:
        sd = {k: v for k, v in sd.items() if not k.startswith("head.")}
    return sd


def _empty_like_quantized(model: nn.Module, modules: list[str], method: str,
                          device=None) -> None:
    """Swap the named modules for empty int8 ones of the same shapes (weights loaded after)."""
    tied = _is_gpt(model) and model.config.tie_embeddings
    for name in modules:
        try:
            m = model.get_submodule(name)
        except AttributeError:
            raise GoldmineError(f"{name}: no such module in the model") from None
        if isinstance(m, nn.Linear):
            dev = device if device is not None else m.weight.device
            _set_module(model, name, Int8Linear(m.in_features, m.out_features,
                                                m.bias is not None, method, device=dev))
        elif isinstance(m, nn.Embedding):
            dev = device if device is not None else m.weight.device
            _set_module(model, name, Int8Embedding(m.num_embeddings, m.embedding_dim,
                                                   m.padding_idx, device=dev))
        else:
            raise GoldmineError(f"{name}: a {type(m).__name__}, not a Linear or Embedding")
    if tied and "embed" in modules:
        _tie_head(model, method)


def load_quantized_gpt(model, path: Path, quant: dict[str, Any], device="cpu"):
    """Fill `model` (a GPT built on the meta device) from a quantized model.safetensors."""
    method = quant.get("method") if isinstance(quant, dict) else None
    if method not in METHODS:
        raise GoldmineError(f"{path.parent / 'config.json'}: quantization.method must be one "
                            f"of {', '.join(METHODS)}, got {method!r}")
    sd = _load_tensors(path)
    _empty_like_quantized(model, quantized_modules(sd), method, device="meta")
    model = model.to_empty(device=device)
    if model.config.tie_embeddings and "embed.weight" in sd:
        if "embed.weight" + SCALE_SUFFIX in sd:
            _tie_head(model, method)  # to_empty gave the head buffers of its own
            sd = {**sd, "head.weight": sd["embed.weight"],
                  "head.weight_scale": sd["embed.weight_scale"]}
        else:
            sd = {**sd, "head.weight": sd["embed.weight"]}
    load_weights_dict(model, sd, str(path))
    if model.config.tie_embeddings:
        if isinstance(model.embed, Int8Embedding):
            _tie_head(model, method)
        else:
            model.head.weight = model.embed.weight
    model.quantization = dict(quant)
    return model.eval()


def load_quantized_classifier(path: Path, quant: dict[str, Any]):
    """A Hugging Face sequence classifier from a quantized directory (config.json + int8
    model.safetensors)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from goldmine.hf import quiet_transformers

    method = quant.get("method") if isinstance(quant, dict) else None
    if method not in METHODS:
        raise GoldmineError(f"{path / 'goldmine.json'}: quantization.method must be one of "
                            f"{', '.join(METHODS)}, got {method!r}")
    weights = path / "model.safetensors"
    sd = _load_tensors(weights)
    with quiet_transformers():
        try:
            config = AutoConfig.from_pretrained(str(path))
            model = AutoModelForSequenceClassification.from_config(config)
        except (OSError, ValueError, KeyError) as e:
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise GoldmineError(f"{path}: cannot build the classifier ({msg})") from None
    _empty_like_quantized(model, quantized_modules(sd), method)
    load_weights_dict(model, sd, str(weights))
    model.quantization = dict(quant)
    return model.eval()


# ---------------------------------------------------------------------------------------------
# saving
# ---------------------------------------------------------------------------------------------
def _info(method: str, model: nn.Module, source: Path) -> dict[str, Any]:
    n = sum(1 for m in model.modules() if isinstance(m, (Int8Linear, Int8Embedding)))
    return {"method": method, "bits": 8, "weights": "int8, symmetric, one scale per output "
            "channel", "activations": ("uint8 per batch (dynamic)" if method == "int8-dynamic"
                                       else "fp32"),
            "modules": n, "source": str(Path(source).resolve())}


def save_quantized_gpt(model, source_ckpt: Path, out: Path, method: str) -> Path:
    """A goldmine checkpoint directory `out` for the quantized GPT (written atomically)."""
    from safetensors.torch import save_file

    from goldmine.checkpoint import atomic_dir
    from goldmine.files import read_json, write_json

    meta = read_json(source_ckpt / "config.json", "config.json")
    meta["quantization"] = _info(method, model, source_ckpt)
    with atomic_dir(out) as tmp:
        write_json(tmp / "config.json", meta)
        save_file(model_tensors(model), tmp / "model.safetensors", metadata={"format": "pt"})
        for name in ("tokenizer.json", "tokenizer_config.json"):
            if (source_ckpt / name).is_file():
                shutil.copyfile(source_ckpt / name, tmp / name)
    return out


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".pkl", ".h5", ".msgpack")


def save_quantized_classifier(model, source_dir: Path, out: Path, method: str) -> Path:
    """A Hugging Face-style directory `out`: the source's config and tokenizer files, int8
    model.safetensors, goldmine.json with "quantization" (written atomically)."""
    from safetensors.torch import save_file

    from goldmine.checkpoint import atomic_dir
    from goldmine.classifier import META_FILE, _read_json
    from goldmine.files import write_json

    meta = _read_json(source_dir / META_FILE) if (source_dir / META_FILE).is_file() else {}
    meta.setdefault("task", "classify")
    meta["quantization"] = _info(method, model, source_dir)
    with atomic_dir(out) as tmp:
        for f in sorted(source_dir.iterdir()):
            if f.is_file() and f.name != META_FILE and not f.name.endswith(WEIGHT_SUFFIXES) \
                    and not f.name.endswith(".index.json"):
                shutil.copyfile(f, tmp / f.name)
        save_file(model_tensors(model), tmp / "model.safetensors", metadata={"format": "pt"})
        write_json(tmp / META_FILE, meta)
    return out


# ---------------------------------------------------------------------------------------------
# the source run
# ---------------------------------------------------------------------------------------------
@dataclass
class Source:
    kind: str                      # "gpt" or "classifier"
    path: Path                     # the checkpoint directory or HF classifier directory
    row: dict[str, Any] | None     # the registry row of the run it came from
    weights_mb: float              # size of its weights files


def _weights_mb(path: Path) -> float:
    files = list(path.glob("*.safetensors"))
    return sum(f.stat().st_size for f in files) / 1e6


def _registry_row(path: Path) -> dict[str, Any] | None:
    from goldmine.registry import Registry, run_id_for_path

    rid = run_id_for_path(path)
    if not rid:
        return None
    try:
        return Registry().get(rid)
    except GoldmineError:
        return None


def resolve_source(ref: str) -> Source:
    """RUN (run id, run directory, checkpoint or classifier directory) -> what to quantize."""
    from goldmine.checkpoint import resolve_checkpoint
    from goldmine.classifier import META_FILE, _read_json
    from goldmine.files import read_json
    from goldmine.hf import _holds_gpt
    from goldmine.registry import Registry

    p = Path(ref).expanduser()
    label = ref
    if not p.exists():
        if any(sep in ref for sep in ("/", "\\")) or ref.startswith("."):
            raise GoldmineError(f"run: {ref} not found (no such directory)")
        reg = Registry()
        try:
            row = reg.get(ref)
        except GoldmineError as e:
            if str(e).startswith("no run"):
                raise GoldmineError(f"run: {ref}: no such directory and no run with that id in "
                                    f"{reg.path}") from None
            raise
        p, label = Path(row["run_dir"]), f"run {row['id']} (`goldmine {row['command']}`)"
    elif not p.is_dir():
        raise GoldmineError(f"run: {p} is a file; give a run id, a run directory, a checkpoint "
                            "directory or a classifier directory")
    if _holds_gpt(p):
        ckpt = resolve_checkpoint(p, "best")
        meta = read_json(ckpt / "config.json", "config.json")
        if isinstance(meta, dict) and meta.get("quantization"):
            raise GoldmineError(f"run: {ckpt / 'config.json'} is already quantized "
                                f"({meta['quantization'].get('method')}); quantize the fp32 "
                                "run it came from")
        refuse_lstm(ckpt, f"run: {label}", "quantized", " (int8 here covers the GPT's and "
                    "classifiers' linear layers); it runs in fp32 in generate and evaluate")
        return Source("gpt", ckpt, _registry_row(ckpt), _weights_mb(ckpt))
    from goldmine.baselines import cnn
    from goldmine.baselines.logreg import QUANTIZE_REFUSAL, refuse

    refuse(p, QUANTIZE_REFUSAL)
    cnn.refuse(p, cnn.QUANTIZE_REFUSAL)
    model_dir = p if (p / "config.json").is_file() else p / "model"
    if not (model_dir / "config.json").is_file():
        raise GoldmineError(f"run: {label} at {p} holds no model to quantize (no checkpoint, "
                            "no model/config.json); give a `finetune classify`, `pretrain` or "
                            "`finetune sft` run")
    config = _read_json(model_dir / "config.json")
    meta = _read_json(model_dir / META_FILE) if (model_dir / META_FILE).is_file() else {}
    if meta.get("quantization") or config.get("quantization_config"):
        raise GoldmineError(f"run: {model_dir} is already quantized; quantize the fp32 run it "
                            "came from")
    archs = config.get("architectures") or []
    if meta.get("task") not in (None, "classify") or not (
            meta.get("task") == "classify" or any("SequenceClassification" in a for a in archs)):
        raise GoldmineError(f"run: {model_dir} is not a sequence classifier or a goldmine GPT "
                            f"(architectures: {', '.join(archs) or 'none'})")
    if not (model_dir / "model.safetensors").is_file():
        raise GoldmineError(f"run: {model_dir}: no model.safetensors (sharded or pickle weights "
                            "are not supported)")
    return Source("classifier", model_dir, _registry_row(model_dir), _weights_mb(model_dir))


# ---------------------------------------------------------------------------------------------
# measurement data
# ---------------------------------------------------------------------------------------------
def _known(cls, config: dict[str, Any]):
    fields = cls.__dataclass_fields__
    return cls().update({k: v for k, v in (config or {}).items() if k in fields})


def classifier_rows(cfg, source: Source, labels: list[str]) -> tuple[list[str], list[int], str]:
    """(texts, label ids, description) to measure a classifier on: --data, else the validation
    rows the source run held out (the very rows, recomputed from its config)."""
    from goldmine.eval.classify import label_mapper, read_labelled, resolve_data

    if cfg.data:
        src = resolve_data(cfg.data, None)
        config = (source.row or {}).get("config") or {}
        text_col = config.get("text_column", "text") if src["raw"] else "text"
        label_col = config.get("label_column", "label") if src["raw"] else "label"
        rows = read_labelled(src["path"], text_col, label_col)
        texts, raw = rows["texts"], rows["labels"]
        where = f"{src['path']}" + (f" ({src['split']} split)" if src["split"] else "")
    else:
        row = source.row
        if not row or row["command"] != "finetune classify":
            raise GoldmineError(f"data: {source.path} is not from a `goldmine finetune classify` "
                                "run here, so its validation data is unknown; give --data")
        from goldmine.config import FinetuneClassifyConfig
        from goldmine.train.finetune_classify import load_examples

        ft = _known(FinetuneClassifyConfig, row["config"])
        try:
            examples = load_examples(ft)
        except GoldmineError as e:
            raise GoldmineError(f"data: cannot read the validation data of run {row['id']} "
                                f"({e}); give --data") from None
        texts = [e.text for e in examples.val]
        raw = [e.label for e in examples.val]
        where = f"the validation rows of run {row['id']} ({ft.data})"
    to_model = label_mapper(labels)
    mapped = [to_model(x) for x in raw]
    unknown = sorted({str(r) for r, m in zip(raw, mapped) if m is None})
    if unknown:
        raise GoldmineError(f"data: labels the model does not know: {', '.join(unknown[:10])}; "
                            f"the model's labels: {', '.join(labels)}")
    if not texts:
        raise GoldmineError(f"data: {where}: no rows with a text and a label")
    index = {lab: i for i, lab in enumerate(labels)}
    return texts, [index[m] for m in mapped], where


def classifier_batches(tokenizer, texts: list[str], max_length: int, batch_size: int,
                       max_batches: int | None) -> list[dict[str, torch.Tensor]]:
    """Padded input batches in data order (the same for both models)."""
    n = len(texts) if max_batches is None else min(len(texts), batch_size * max_batches)
    out = []
    for i in range(0, n, batch_size):
        enc = tokenizer(texts[i:min(i + batch_size, n)], truncation=True, max_length=max_length,
                        padding=True, return_tensors="pt")
        out.append(dict(enc))
    return out


def _windows(stream: list[int] | Any, context: int, pad_id: int, batch_size: int,
             max_batches: int | None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Non-overlapping windows of `context` tokens over a token stream, each predicting its
    next tokens, batched; the last window is padded (targets -100)."""
    stream = torch.as_tensor(stream, dtype=torch.long)
    context = max(1, min(context, len(stream) - 1))
    starts = list(range(0, len(stream) - 1, context))
    if max_batches is not None:
        starts = starts[:batch_size * max_batches]
    out = []
    for b in range(0, len(starts), batch_size):
        rows = [stream[s:s + context + 1] for s in starts[b:b + batch_size]]
        T = max(len(r) for r in rows) - 1
        x = torch.full((len(rows), T), pad_id, dtype=torch.long)
        y = torch.full((len(rows), T), -100, dtype=torch.long)
        for i, r in enumerate(rows):
            x[i, :len(r) - 1], y[i, :len(r) - 1] = r[:-1], r[1:]
        out.append((x, y))
    return out


def _text_stream(tokenizer, files: list[Path], limit: int) -> list[int]:
    """Documents tokenized as pretraining framed them (BOS per the model, EOS after each)."""
    from goldmine.data.readers import iter_texts

    stream: list[int] = []
    starting = True
    for piece in iter_texts(files):
        if starting and tokenizer.add_bos:
            stream.append(tokenizer.bos_id)
        stream += tokenizer.encode(piece.text)
        starting = piece.doc_end
        if piece.doc_end:
            stream.append(tokenizer.eos_id)
        if len(stream) > limit:
            break
    return stream


def _shard_stream(directory: Path, limit: int) -> tuple[torch.Tensor, str]:
    from goldmine.data.shards import TokenShards

    shards = TokenShards(directory)
    split = "val" if shards.tokens("val") > 1 else "train"
    parts, n = [], 0
    for arr in shards.arrays(split):
        parts.append(torch.from_numpy(arr[:limit - n].astype("int64")))
        n += len(parts[-1])
        if n >= limit:
            break
    if n < 2:
        raise GoldmineError(f"data: {directory}: no tokens to measure on")
    return torch.cat(parts), f"{directory} ({split} split)"


def _chat_batches(tokenizer, conversations, block: int, batch_size: int,
                  max_batches: int | None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    from goldmine.train.finetune_sft import collate, encode_conversations

    if max_batches is not None:
        conversations = conversations[:batch_size * max_batches]
    enc = encode_conversations(tokenizer, conversations, block)
    if not enc.ids:
        raise GoldmineError(f"data: no conversation has an answer within the model's context "
                            f"({block} tokens)")
    out = []
    for b in range(0, len(enc.ids), batch_size):
        idx = list(range(b, min(b + batch_size, len(enc.ids))))
        x, y, _ = collate(enc, [[i] for i in idx], tokenizer.pad_id, torch.device("cpu"), False)
        out.append((x, y))
    return out


def gpt_batches(cfg, source: Source, tokenizer, block: int
                ) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], str]:
    """(batches of (inputs, targets), description): --data, else the validation data of the
    source run (a pretrain run's token shards, a finetune sft run's conversations)."""
    from goldmine.data.shards import is_shards_dir

    bs, mb = cfg.batch_size, cfg.max_batches
    limit = bs * (mb or 10**9) * block + 1
    if cfg.data:
        if is_shards_dir(cfg.data):
            stream, where = _shard_stream(Path(cfg.data), limit)
            return _windows(stream, block, tokenizer.pad_id, bs, mb), where
        from goldmine.eval.lm import resolve_lm_data
        from goldmine.train.finetune_sft import Skipped, read_conversations

        src = resolve_lm_data(cfg.data, None)
        where = str(src["files"][0]) + (f" ({src['split']} split)" if src["split"] else "")
        if src["kind"] == "chat":
            convs = [c for f in src["files"] for c in read_conversations(f, Skipped())]
            if not convs:
                raise GoldmineError(f"data: {where}: no conversation with an assistant message")
            return _chat_batches(tokenizer, convs, block, bs, mb), where
        stream = _text_stream(tokenizer, src["files"], limit)
        if len(stream) < 2:
            raise GoldmineError(f"data: {where}: no text to measure on")
        return _windows(stream, block, tokenizer.pad_id, bs, mb), where
    row = source.row
    command = row["command"] if row else None
    if command == "pretrain":
        data = (row.get("config") or {}).get("data")
        run_dir = Path(row["run_dir"])
        for cand in (data, run_dir / "data"):
            if cand and is_shards_dir(cand):
                stream, where = _shard_stream(Path(cand), limit)
                return _windows(stream, block, tokenizer.pad_id, bs, mb), where
        raise GoldmineError(f"data: the token shards run {row['id']} trained on ({data}) are "
                            "gone; give --data")
    if command == "finetune sft":
        from goldmine.config import FinetuneSFTConfig
        from goldmine.train.finetune_sft import load_conversations

        ft = _known(FinetuneSFTConfig, row["config"])
        try:
            conv = load_conversations(ft)
        except GoldmineError as e:
            raise GoldmineError(f"data: cannot read the validation data of run {row['id']} "
                                f"({e}); give --data") from None
        return (_chat_batches(tokenizer, conv.val, block, bs, mb),
                f"the validation conversations of run {row['id']} ({ft.data})")
    raise GoldmineError(f"data: {source.path} is not from a `goldmine pretrain` or `finetune "
                        "sft` run here, so its validation data is unknown; give --data")


# ---------------------------------------------------------------------------------------------
# measuring
# ---------------------------------------------------------------------------------------------
def _rep_times(fns: list[Callable[[Any], Any]], batches: list, reps: int, warmup: int,
               tick: Callable[[], None] | None) -> list[list[float]]:
    """Milliseconds per batch of each fn in every repetition over the first LATENCY_BATCHES
    batches; the fns take turns (order alternating every repetition) so that machine noise
    hits all alike."""
    sample = batches[:LATENCY_BATCHES]
    times: list[list[float]] = [[] for _ in fns]
    for r in range(warmup + reps):
        order = list(range(len(fns)))
        if r % 2:
            order.reverse()
        for i in order:
            t0 = time.perf_counter()
            for b in sample:
                fns[i](b)
            dt = time.perf_counter() - t0
            if r >= warmup:
                times[i].append(dt / len(sample) * 1000)
            if tick:
                tick()
    return times


def time_pair(base: Callable[[Any], Any], other: Callable[[Any], Any], batches: list,
              reps: int = LATENCY_REPS, warmup: int = 1,
              tick: Callable[[], None] | None = None) -> tuple[float, float, float]:
    """(base ms, other ms, other/base) per batch. The ratio is the median of the ratios of each
    repetition's back-to-back pair, not the ratio of the two medians: on a shared machine the
    speed drifts within seconds, and a pair measured moments apart sees the same machine."""
    a, b = _rep_times([base, other], batches, reps, warmup, tick)
    return statistics.median(a), statistics.median(b), statistics.median(
        y / x for x, y in zip(a, b))


@torch.inference_mode()
def classifier_metrics(model, batches, y_true: list[int], n_labels: int,
                       tick=None) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    preds: list[int] = []
    for b in batches:
        preds += model(**b).logits.argmax(-1).tolist()
        if tick:
            tick()
    y = y_true[:len(preds)]
    return {"accuracy": float(accuracy_score(y, preds)),
            "f1_macro": float(f1_score(y, preds, average="macro", labels=list(range(n_labels)),
                                       zero_division=0))}


@torch.inference_mode()
def gpt_metrics(model, batches, tick=None) -> dict[str, float]:
    nats, count = 0.0, 0
    for x, y in batches:
        logits = model(x).float()
        nats += F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1), ignore_index=-100,
                                reduction="sum").item()
        count += int((y != -100).sum())
        if tick:
            tick()
    loss = nats / max(count, 1)
    return {"loss": loss, "ppl": math.exp(min(loss, 50)), "tokens": count}


# ---------------------------------------------------------------------------------------------
# the command
# ---------------------------------------------------------------------------------------------
def _report(res: dict[str, Any]) -> str:
    cols = list(res["table"][0])
    lines = [f"# Quantization: {res['method']}", "",
             f"- source: `{res['source']['path']}`" + (f" (run `{res['source']['run_id']}`)"
                                                      if res["source"]["run_id"] else ""),
             f"- model: `{res['model_dir']}`",
             f"- data: {res['data']['where']}: {res['data']['batches']} batches of up to "
             f"{res['data']['batch_size']}",
             f"- latency: median of {LATENCY_REPS} passes over {res['data']['timed_batches']} "
             f"batches, models interleaved, {res['threads']} CPU threads; the int8/fp32 ratio "
             "is the median of each pass's ratio", "",
             "| " + " | ".join(c.replace("_", " ") for c in cols) + " |",
             "|" + "---|" * len(cols)]
    for row in res["table"]:
        cells = [f"{v:,.4f}" if isinstance(v, float) else str(v) for v in row.values()]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"int8/fp32: size x{res['metrics']['size_ratio']:.3f}, latency "
              f"x{res['metrics']['latency_ratio']:.3f}."]
    return "\n".join(lines) + "\n"


def _inside(a: Path, b: Path) -> bool:
    a, b = a.resolve(), b.resolve()
    return a == b or b in a.parents


def quantize(cfg=None, **overrides: Any) -> dict[str, Any]:
    """`goldmine quantize` (see the module docstring). Returns {run_id, run_dir, method, kind,
    model_dir, table, metrics, source, data}."""
    from goldmine.checkpoint import load_model, replace_dir
    from goldmine.classifier import Classifier
    from goldmine.config import QuantizeConfig
    from goldmine.export.card import write_model_card
    from goldmine.files import write_json, write_text
    from goldmine.progress import info, progress_bar
    from goldmine.registry import home, start_run

    cfg = (cfg or QuantizeConfig()).update(overrides)
    cfg.validate()
    # int8 matmuls allocate twice per call (int32 accumulators, fp32 out): without this every
    # call page-faults megabytes back in, which costs a small int8 model all its speed-up
    tune_cpu_allocator()
    source = resolve_source(str(cfg.run))
    out = Path(cfg.out).expanduser() if cfg.out else None
    if out is not None:
        if out.exists() and not cfg.overwrite:
            raise GoldmineError(f"out: {out} already exists; choose another --out or pass "
                                "--overwrite to replace it")
        if out.exists() and not out.is_dir():
            raise GoldmineError(f"out: {out} is a file, not a directory")
        src_root = Path(source.row["run_dir"]) if source.row else source.path
        if _inside(src_root, out) or _inside(source.path, out):
            raise GoldmineError(f"out: {out} holds the model being quantized ({source.path}); "
                                "choose another --out")

    # -- the fp32 model and the data, before anything is written ------------------------------
    if source.kind == "gpt":
        fp32, tokenizer, _ = load_model(source.path, device="cpu")
        fp32 = fp32.float().eval()
        batches, where = gpt_batches(cfg, source, tokenizer, fp32.config.block_size)
        labels, y_true = None, None
        kind = "chat" if getattr(tokenizer, "chat", None) else "gpt"
    else:
        clf = Classifier.load(source.path, device="cpu")
        fp32 = clf.model.float().eval()
        labels = clf.labels
        texts, y_true, where = classifier_rows(cfg, source, labels)
        batches = classifier_batches(clf.tokenizer, texts, clf.max_length, cfg.batch_size,
                                     cfg.max_batches)
        kind = "classifier"
    if not batches:
        raise GoldmineError(f"data: {where}: nothing to measure on")
    info(f"quantizing {source.path} ({source.kind}, {source.weights_mb:.1f} MB) with "
         f"{cfg.method}; measuring on {where}")

    stage_parent = out.parent if out is not None else home()
    stage_parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=stage_parent, prefix=".quantize-"))
    threads_before = torch.get_num_threads()
    try:
        q = quantize_model(copy.deepcopy(fp32), cfg.method)
        staged = stage / "model"
        if source.kind == "gpt":
            save_quantized_gpt(q, source.path, staged, cfg.method)
        else:
            save_quantized_classifier(q, source.path, staged, cfg.method)
        del q
        # measure what users will load: the int8 model read back from disk
        if source.kind == "gpt":
            int8 = load_model(staged, device="cpu")[0]
            fns = [lambda b, m=m: m(b[0]) for m in (fp32, int8)]
        else:
            int8 = Classifier.load(staged, device="cpu").model
            fns = [lambda b, m=m: m(**b) for m in (fp32, int8)]
        int8_mb = _weights_mb(staged)

        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        threads = torch.get_num_threads()
        timed = min(len(batches), LATENCY_BATCHES)
        total = (1 + LATENCY_REPS) * 2 + 2 * len(batches)
        with progress_bar() as bar, torch.inference_mode():
            task = bar.add_task("latency", total=total, stats="fp32 vs int8")

            def tick():
                bar.advance(task)

            fp32_ms, int8_ms, ratio = time_pair(*fns, batches, tick=tick)
            bar.update(task, description="metric", stats=f"{len(batches)} batches")
            if source.kind == "gpt":
                before = gpt_metrics(fp32, batches, tick)
                after = gpt_metrics(int8, batches, tick)
                names = ("loss", "ppl")
            else:
                before = classifier_metrics(fp32, batches, y_true, len(labels), tick)
                after = classifier_metrics(int8, batches, y_true, len(labels), tick)
                names = ("accuracy", "f1_macro")
        table = [{"model": "fp32", "size_mb": source.weights_mb, "latency_ms": fp32_ms,
                  **{k: before[k] for k in names}},
                 {"model": "int8", "size_mb": int8_mb, "latency_ms": int8_ms,
                  **{k: after[k] for k in names}}]
        metrics: dict[str, Any] = {
            "fp32_mb": source.weights_mb, "int8_mb": int8_mb,
            "size_ratio": int8_mb / source.weights_mb if source.weights_mb else None,
            "fp32_ms": fp32_ms, "int8_ms": int8_ms, "latency_ratio": ratio,
            "threads": threads}
        for k in names:
            metrics[f"{k}_fp32"], metrics[f"{k}_int8"] = before[k], after[k]
        if source.kind == "gpt":
            metrics["ppl_increase"] = after["ppl"] / before["ppl"] - 1
        else:
            metrics["accuracy_drop"] = before["accuracy"] - after["accuracy"]
        n_rows = sum(len(b[1]) if source.kind == "gpt" else len(b["input_ids"])
                     for b in batches)

        # -- record: the run directory appears complete, or not at all -------------------------
        old = None
        if out is not None and out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
        run_dir = None
        try:
            with start_run("quantize", cfg.to_dict(), out=out) as run:
                run_dir = run.dir
                run.add_parent_from_path(source.path)
                model_dir = run.dir / "model"
                replace_dir(staged, model_dir)
                res = {"format": FORMAT, "run_id": run.id, "run_dir": str(run.dir),
                       "method": cfg.method, "kind": source.kind, "model_dir": str(model_dir),
                       "table": table, "metrics": metrics, "threads": threads,
                       "reduce_range": REDUCE_RANGE,
                       "source": {"path": str(source.path.resolve()),
                                  "run_id": source.row["id"] if source.row else None},
                       "data": {"where": where, "batches": len(batches), "rows": n_rows,
                                "batch_size": cfg.batch_size, "timed_batches": timed}}
                write_json(run.dir / "quantize.json", res)
                write_text(run.dir / "report.md", _report(res))
                title = (f"{source.row['id']} (int8)" if source.row
                         else f"{source.path.name} (int8)")
                card_metrics = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
                write_model_card(run.dir, title=title, kind=kind, fmt="int8", source=source.row,
                                 labels=labels, metrics=card_metrics, license="other",
                                 usage=USAGE[source.kind].format(model=model_dir),
                                 notes=NOTES)
                run.log_metrics({k: v for k, v in metrics.items() if v is not None})
                for name, p in (("model", model_dir), ("report", run.dir / "report.md"),
                                ("quantize", run.dir / "quantize.json"),
                                ("card", run.dir / "README.md")):
                    run.add_artifact(name, p)
        except BaseException:
            if run_dir is not None:
                shutil.rmtree(run_dir, ignore_errors=True)
            if old is not None:
                os.replace(old, out)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        torch.set_num_threads(threads_before)
        shutil.rmtree(stage, ignore_errors=True)
    info(f"int8 model: {int8_mb:.1f} MB (x{metrics['size_ratio']:.2f}), latency "
         f"x{metrics['latency_ratio']:.2f} → {model_dir}")
    return res


USAGE = {
    "gpt": "Load it with goldmine (CPU): `goldmine generate --model {model}`, "
           "`goldmine evaluate --model {model} --data ...`, `goldmine serve --model "
           "NAME={model}`, or `goldmine.checkpoint.load_model(\"{model}\")` in Python.",
    "classifier": "Load it with goldmine (CPU): `goldmine predict --model {model} ...`, "
                  "`goldmine evaluate --model {model} --data ...`, `goldmine serve --model "
                  "NAME={model}`, or `goldmine.classifier.Classifier.load(\"{model}\")`.",
}
NOTES = ("int8 weights (one scale per output channel); made for CPU inference.",
         "transformers cannot load this directory directly; export the fp32 source run with "
         "`goldmine export` for other tools.")
