"""A small convolutional network for image classification, written out in PyTorch: the model,
its training loop (setup -> fit -> validate) and the classifier that predicts with it.

    goldmine finetune classify --arch cnn --data digits          # scikit-learn's 8x8 digits
    goldmine finetune classify --arch cnn --data photos --cnn-size large --image-size 32
    finetune_classify(arch="cnn", data="mnist")                   # a folder of IDX files
    clf = Classifier.load(run_id)     # a CNNClassifier: labels, predict, predict_proba(images)
    digits_cnn_accuracy()             # the benchmark: test accuracy on digits' held-out 20%

It runs through the same run registry, metrics, training plot, checkpoints and `--resume`,
`goldmine evaluate`, `predict`, `compare` and `serve` (base64 images to POST /v1/classify) as
the text classifiers (goldmine/train/finetune_classify.py dispatches here). Images are read by
goldmine/data/images.py: an image folder with one sub-folder per label, MNIST-format IDX files,
or `digits`; all brought to one size and mode (and the user told how many were changed).

Model (`CNN`). Blocks of 3x3 convolution (padding 1, so the size is kept) -> ReLU -> 2x2 max
pooling (halves height and width; skipped once a side is down to 1), then an adaptive average
pool to a grid of at most 4x4 (so that large images do not make the first dense layer huge),
flatten, a dense layer with ReLU and dropout, and the output layer:

    x (B, C, H, W) uint8 pixels -> (x / 255 - mean) / std, per channel, fit on train
    block i: conv3x3 (B, c_i, h, w) -> ReLU -> maxpool2 (B, c_i, h/2, w/2)
    adaptive avg pool (B, c_last, gh, gw), gh = min(h_last, 4) -> flatten (B, c_last*gh*gw)
    dense (B, hidden) -> ReLU -> dropout -> dense (B, K) logits

--cnn-size picks the widths: small (16, 32 channels; dense 64), medium (32, 64; 128, the
default) and large (32, 64, 128; 256). The normalisation statistics are buffers of the model,
so the saved weights take raw pixels.

Training. AdamW (weight decay on the conv and dense weights, not biases), a learning rate of
3e-3 with cosine decay to 0 and no warmup, batches of 64, 30 epochs; the best model by
validation log-loss once per epoch, over the whole schedule (--patience 0, as for logreg: the
validation loss wanders while the rate is high; --patience N stops early). Data augmentation (--augment
shift, the default): each training image is moved by up to 10% of its side (at least a pixel)
in x and y, edges repeated, drawn per step from a generator seeded by (seed, step), so that
`--resume` sees the same batches; `shift-flip` also mirrors half of them left-right (photos;
not digits). On a CPU it trains on one thread: these small convolutions gain little from a
thread pool, and on a busy machine its threads wait on each other (2 threads made a digits run
up to 40x slower here: 44-94 s against 1-2 s).

Digits (goldmine.data.images: 1,437 train images, of which 10% are held out for validation,
and 360 test images), defaults: test accuracy 0.9944 (358 of 360) in 5-6 s of training on one
core of a 2-core CPU (seed 42, `digits_cnn_accuracy()`); seeds 0-5 gave 0.983-0.997. The
small size reached 0.981, large 0.994, and no augmentation 0.983 (seed 42).

Output (model/ in the run):

    goldmine.json        task classify, arch cnn, labels, image size/mode, network, mean/std,
                         best step and its validation metrics
    model.safetensors    the weights and the normalisation buffers: no pickles
    checkpoint/          trainable.safetensors, optimizer.safetensors, rng.safetensors,
                         trainer.json: for --resume (ends bit for bit like an uninterrupted run
                         on a CPU)
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from goldmine.errors import GoldmineError
from goldmine.files import read_json, write_json

ARCH = "cnn"
FORMAT = "goldmine-cnn/1"
META_FILE = "goldmine.json"
WEIGHTS_FILE = "model.safetensors"
SIZES = {  # --cnn-size: conv widths per block, width of the dense layer
    "small": {"channels": (16, 32), "hidden": 64},
    "medium": {"channels": (32, 64), "hidden": 128},
    "large": {"channels": (32, 64, 128), "hidden": 256},
}
MAX_GRID = 4  # the last feature map is average-pooled to at most MAX_GRID x MAX_GRID
SHIFT = 0.1  # --augment shift: up to this share of a side (at least one pixel)
DROPOUT = 0.25


# ---------------------------------------------------------------------------------------------
# the model
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CNNConfig:
    """The shape of a network: its input (channels, height, width), conv widths, dense width,
    number of labels and dropout."""

    in_channels: int
    height: int
    width: int
    channels: tuple[int, ...]
    hidden: int
    num_labels: int
    dropout: float = DROPOUT

    def to_json(self) -> dict[str, Any]:
        return {"in_channels": self.in_channels, "height": self.height, "width": self.width,
                "channels": list(self.channels), "hidden": self.hidden,
                "num_labels": self.num_labels, "dropout": self.dropout}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> CNNConfig:
        return cls(int(d["in_channels"]), int(d["height"]), int(d["width"]),
                   tuple(int(c) for c in d["channels"]), int(d["hidden"]),
                   int(d["num_labels"]), float(d.get("dropout", DROPOUT)))


class ConvBlock(nn.Module):
    """conv 3x3 (padding 1) -> ReLU -> max pool 2x2 (or none, once a side is 1)."""

    def __init__(self, c_in: int, c_out: int, pool: bool):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(2) if pool else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, c_in, h, w)
        return self.pool(F.relu(self.conv(x)))  # (B, c_out, h/2, w/2)


class CNN(nn.Module):
    def __init__(self, c: CNNConfig):
        super().__init__()
        self.config = c
        # pixels -> inputs of mean 0 and std 1 per channel (set from the training images)
        self.register_buffer("mean", torch.zeros(c.in_channels))
        self.register_buffer("std", torch.ones(c.in_channels))
        blocks, c_in, h, w = [], c.in_channels, c.height, c.width
        for c_out in c.channels:
            pool = min(h, w) >= 2
            blocks.append(ConvBlock(c_in, c_out, pool))
            c_in, h, w = c_out, (h // 2 if pool else h), (w // 2 if pool else w)
        self.blocks = nn.ModuleList(blocks)
        self.grid = (min(h, MAX_GRID), min(w, MAX_GRID))
        self.pool = nn.AdaptiveAvgPool2d(self.grid)
        self.fc = nn.Linear(c_in * self.grid[0] * self.grid[1], c.hidden)
        self.drop = nn.Dropout(c.dropout)
        self.out = nn.Linear(c.hidden, c.num_labels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) pixels 0-255 (uint8 or float) -> logits (B, K)."""
        x = (x.float() / 255.0 - self.mean[:, None, None]) / self.std[:, None, None]
        for block in self.blocks:
            x = block(x)  # (B, c_i, h_i, w_i)
        x = self.pool(x).flatten(1)  # (B, c_last * gh * gw)
        x = self.drop(F.relu(self.fc(x)))  # (B, hidden)
        return self.out(x)  # (B, K)


def shift_images(x: torch.Tensor, max_shift: int, flip: bool,
                 g: torch.Generator) -> torch.Tensor:
    """Each image of x (B, C, H, W) moved by dy, dx in [-max_shift, max_shift] (edges
    repeated) and, with `flip`, half of them mirrored left-right; draws come from `g`."""
    B, _, H, W = x.shape
    s = max_shift
    padded = F.pad(x.float(), (s, s, s, s), mode="replicate")  # (B, C, H + 2s, W + 2s)
    dy = torch.randint(0, 2 * s + 1, (B,), generator=g)
    dx = torch.randint(0, 2 * s + 1, (B,), generator=g)
    rows = (dy[:, None] + torch.arange(H))[:, :, None]  # (B, H, 1)
    cols = (dx[:, None] + torch.arange(W))[:, None, :]  # (B, 1, W)
    out = padded.permute(0, 2, 3, 1)[torch.arange(B)[:, None, None], rows, cols]  # (B,H,W,C)
    out = out.permute(0, 3, 1, 2)
    if flip:
        mirror = torch.rand(B, generator=g) < 0.5
        out = torch.where(mirror[:, None, None, None], out.flip(-1), out)
    return out


# ---------------------------------------------------------------------------------------------
# save and load
# ---------------------------------------------------------------------------------------------
def is_cnn_dir(path: str | Path) -> bool:
    """A directory holding a saved cnn model (goldmine.json says arch cnn)."""
    meta = Path(path) / META_FILE
    if not meta.is_file():
        return False
    try:
        return json.loads(meta.read_text(encoding="utf-8")).get("arch") == ARCH
    except (ValueError, OSError, UnicodeDecodeError, AttributeError):
        return False


def save_model(model: CNN, out: Path, meta: dict[str, Any]) -> Path:
    """model/: goldmine.json + model.safetensors, written beside `out` and swapped in."""
    from goldmine.checkpoint import atomic_dir

    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    c = model.config
    with atomic_dir(out) as tmp:
        save_file(tensors, tmp / WEIGHTS_FILE)
        write_json(tmp / META_FILE, {
            **meta, "format": FORMAT, "task": "classify", "arch": ARCH,
            "image": {"height": c.height, "width": c.width, "channels": c.in_channels,
                      "mode": "L" if c.in_channels == 1 else "RGB"},
            "normalisation": {"mean": model.mean.tolist(), "std": model.std.tolist(),
                              "of": "pixel / 255, per channel, on the training images"},
            "network": c.to_json()})
    return out


def load_model(path: Path) -> tuple[CNN, dict[str, Any]]:
    """(model in eval mode on the CPU, goldmine.json) of a saved model directory."""
    meta = read_json(path / META_FILE, META_FILE)
    if meta.get("format") != FORMAT:
        raise GoldmineError(f"{path / META_FILE}: format {meta.get('format')!r}; this goldmine "
                            f"reads {FORMAT}")
    try:
        config = CNNConfig.from_json(meta["network"])
        labels = [str(x) for x in meta["labels"]]
        tensors = load_file(path / WEIGHTS_FILE)
    except (KeyError, TypeError, ValueError) as e:
        raise GoldmineError(f"{path}: not a complete cnn model ({e})") from None
    except OSError as e:
        raise GoldmineError(f"{path / WEIGHTS_FILE}: cannot read ({e})") from None
    if config.num_labels != len(labels):
        raise GoldmineError(f"{path}: the network has {config.num_labels} outputs but "
                            f"{len(labels)} labels")
    model = CNN(config)
    try:
        model.load_state_dict(tensors)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise GoldmineError(f"{path / WEIGHTS_FILE}: the weights do not fit the network in "
                            f"{META_FILE} ({first})") from None
    return model.eval(), meta


class CNNClassifier:
    """A saved cnn model with the interface of `goldmine.classifier.Classifier`: `labels`,
    `predict`, `predict_proba`, `path`, `run_id`, `meta`, `model`, and the counters that
    evaluate, predict and the server read. `inputs` is "image": it takes images, not text.

    An image may be a file path, encoded bytes (PNG, JPEG, ...), a PIL image, a uint8 array
    (H, W) or (H, W, C), or (C, H, W) at the model's shape; a 4-D array (n, C, H, W) at the
    model's shape is a batch. Images of another size are resized and of another mode converted
    (counted in `last_resized` / `last_converted`); text is an error."""

    inputs = "image"

    def __init__(self, model: CNN, meta: dict[str, Any], path: Path, run_id: str | None,
                 device: torch.device):
        self.model = model.to(device)
        self.meta = meta
        self.labels = [str(x) for x in meta["labels"]]
        self.path = Path(path)
        self.run_id = run_id
        self.device = device
        c = model.config
        self.size = (c.height, c.width)
        self.mode = "L" if c.in_channels == 1 else "RGB"
        self.max_length = None
        self.tokenizer = None
        self.last_truncated = self.truncated = 0
        self.last_tokens = 0  # images read by the latest call (the server's usage counts them)
        self.last_resized = self.last_converted = 0

    @classmethod
    def load(cls, path: str | Path, device: str = "auto",
             max_length: int | None = None) -> CNNClassifier:
        from goldmine.registry import run_id_for_path
        from goldmine.runtime import resolve_device

        if max_length is not None:
            raise GoldmineError("max_length: a cnn model reads images, not tokens; drop "
                                "--max-length")
        path = Path(path)
        model, meta = load_model(path)
        return cls(model, meta, path, run_id_for_path(path), resolve_device(device))

    def describe_input(self) -> str:
        return f"{self.size[1]}x{self.size[0]} {self.mode}"

    def pixels(self, images: Any) -> np.ndarray:
        """Images (see the class docstring) as uint8 (n, C, H, W) at the model's shape."""
        from goldmine.data.images import open_image, to_array

        shape = (1 if self.mode == "L" else 3, *self.size)
        self.last_resized = self.last_converted = 0
        if isinstance(images, np.ndarray) and images.ndim == 4:
            if images.shape[1:] != shape:
                raise GoldmineError(f"images: a batch of shape {tuple(images.shape)}; this model "
                                    f"takes (n, {', '.join(map(str, shape))})")
            return np.ascontiguousarray(images, dtype=np.uint8)
        out = np.empty((len(images), *shape), np.uint8)
        for i, item in enumerate(images):
            where = f"image {i}"
            if isinstance(item, np.ndarray) and item.shape == shape:
                out[i] = np.clip(item, 0, 255)
                continue
            if isinstance(item, np.ndarray):
                from PIL import Image

                a = np.clip(item, 0, 255).astype(np.uint8)
                if a.ndim == 3 and a.shape[2] not in (1, 3, 4) and a.shape[0] in (1, 3, 4):
                    a = a.transpose(1, 2, 0)  # (C, H, W) at another size -> (H, W, C)
                if a.ndim == 3 and a.shape[2] == 1:
                    a = a[:, :, 0]
                if a.ndim not in (2, 3):
                    raise GoldmineError(f"{where}: an array of shape {item.shape} is not an "
                                        "image ((H, W) or (H, W, C))")
                img = Image.fromarray(a)
            elif isinstance(item, (str, Path)):
                p = Path(item) if len(str(item)) < 4096 else None
                if p is None or not p.is_file():
                    text = str(item)
                    raise GoldmineError(f"{where}: text ({text[:40]!r}{'...' if len(text) > 40 else ''}) "
                                        f"given to an image classifier ({self.path}, --arch "
                                        "cnn); give image files, encoded bytes, arrays or PIL "
                                        "images")
                img = open_image(p, str(p))
            elif isinstance(item, (bytes, bytearray)) or hasattr(item, "mode"):
                img = open_image(item, where)
            else:
                raise GoldmineError(f"{where}: a {type(item).__name__} is not an image")
            out[i], resized, converted = to_array(img, self.size, self.mode)
            self.last_resized += resized
            self.last_converted += converted
        return out

    def predict_proba(self, images: Any, batch_size: int = 64) -> np.ndarray:
        """Class probabilities (len(images), len(labels)), float64, rows in the order given."""
        x = self.pixels(images)
        self.last_tokens = len(x)
        out = np.zeros((len(x), len(self.labels)), dtype=np.float64)
        batch_size = max(1, int(batch_size))
        with torch.inference_mode():
            for start in range(0, len(x), batch_size):
                batch = torch.from_numpy(x[start:start + batch_size]).to(self.device)
                logits = self.model(batch).double()
                out[start:start + len(batch)] = torch.softmax(logits, dim=-1).cpu().numpy()
        return out

    def predict(self, images: Any, batch_size: int = 64) -> list[str]:
        return [self.labels[i] for i in self.predict_proba(images, batch_size).argmax(axis=1)]

    def __repr__(self) -> str:
        return (f"CNNClassifier(path={str(self.path)!r}, labels={self.labels!r}, "
                f"input={self.describe_input()!r})")


def refuse(path: str | Path, why: str) -> None:
    """A GoldmineError "PATH: why" when `path` (a model directory, or a run directory with
    model/) holds a cnn model."""
    path = Path(path)
    for d in (path, path / "model"):
        if is_cnn_dir(d):
            raise GoldmineError(f"{d}: {why}")


EXPORT_REFUSAL = ("a cnn image classifier has no Hugging Face, ONNX or GGUF form here (export "
                  "covers language models and text classifiers); its model/ directory "
                  "(goldmine.json + model.safetensors) is portable as it is: copy it, and load "
                  "it with goldmine.classifier.Classifier.load or `goldmine serve`")
QUANTIZE_REFUSAL = ("int8 quantization here covers the linear layers of transformers and GPTs; "
                    "a cnn model is small (tens of thousands of parameters) and its "
                    "convolutions run in fp32")


# ---------------------------------------------------------------------------------------------
# data (called by goldmine.train.finetune_classify.finetune_classify for --arch cnn)
# ---------------------------------------------------------------------------------------------
@dataclass
class Images:
    """What training reads: train and val images (pixels in the order of the Examples rows)
    and the source they came from."""

    train: Any  # goldmine.data.images.ImageSet
    val: Any
    data: Any  # goldmine.data.images.ImageData


def load_images(cfg):
    """(Examples, Images) for --arch cnn: the train split and the val split (or, without one,
    --val-fraction of train held out, stratified and seeded, as for text). Examples carry each
    image's file (or FILE[i]) as its text, so the shared summaries and checks apply."""
    from goldmine.data.images import read_images
    from goldmine.train.finetune_classify import Example, Examples, Skipped, hold_out

    if cfg.fold is not None:
        raise GoldmineError("fold: cross-validation folds come from `goldmine data prepare "
                            "--folds` (text datasets); --arch cnn trains on images")
    for name in ("text_column", "label_column"):
        if getattr(cfg, name) != type(cfg).__dataclass_fields__[name].default:
            raise GoldmineError(f"{name}: applies to table files; --arch cnn reads images "
                                "(label folders, IDX files or digits)")
    data = read_images(cfg.data, size=cfg.image_hw(), splits=("train", "val"))
    if "train" not in data.splits:
        raise GoldmineError(f"data {cfg.data}: no training images (a train/ folder of label "
                            "folders, train-*-ubyte IDX files, or label folders at the top)")
    train = data.splits["train"]
    val = data.splits.get("val")
    skipped = Skipped()
    for reason, n in data.skipped.items():
        skipped.counts[reason] += n
        skipped.first[reason] = data.skipped_first.get(reason, "")
    rows = [Example(w, lab, where=w) for w, lab in zip(train.where, train.labels)]
    val_from_train = val is None
    if val_from_train:
        index = {id(r): i for i, r in enumerate(rows)}
        train_rows, val_rows = hold_out(rows, cfg.val_fraction, cfg.seed)
        train, val = (train.take([index[id(r)] for r in train_rows]),
                      train.take([index[id(r)] for r in val_rows]))
    else:
        train_rows = rows
        val_rows = [Example(w, lab, where=w) for w, lab in zip(val.where, val.labels)]
    labels = sorted(set(train.labels))
    if len(labels) < 2:
        raise GoldmineError(f"data {cfg.data}: every training image has the label "
                            f"{labels[0]!r}; a classifier needs at least two labels")
    unseen = sorted(set(val.labels) - set(labels))
    if unseen:
        raise GoldmineError(f"data {cfg.data}: validation labels not seen in train: "
                            f"{', '.join(map(repr, unseen))}")
    if not len(val):
        raise GoldmineError(f"data {cfg.data}: too few images to hold out a validation set "
                            f"({len(train)} training images, --val-fraction "
                            f"{cfg.val_fraction:g})")
    return Examples(train_rows, val_rows, val_from_train, skipped, labels), Images(train, val,
                                                                                  data)


# ---------------------------------------------------------------------------------------------
# training (called by goldmine.train.finetune_classify.finetune_classify for --arch cnn)
# ---------------------------------------------------------------------------------------------
@torch.no_grad()
def val_metrics(model: CNN, x: torch.Tensor, y: torch.Tensor,
                batch_size: int) -> dict[str, float]:
    """Mean log-loss (unweighted), accuracy and macro F1: the keys the other archs log."""
    from sklearn.metrics import accuracy_score, f1_score

    model.eval()
    logits = torch.cat([model(x[i:i + batch_size]).float().cpu()
                        for i in range(0, len(x), batch_size)])  # (n, K)
    model.train()
    y = y.cpu()
    pred = logits.argmax(dim=1).numpy()
    return {"loss": F.cross_entropy(logits, y).item(),
            "accuracy": float(accuracy_score(y.numpy(), pred)),
            "f1_macro": float(f1_score(y.numpy(), pred, average="macro", zero_division=0))}


def channel_stats(x: torch.Tensor, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation (C,) of pixel / 255 per channel of x (n, C, H, W) uint8, in
    float64 and in chunks (a float copy of MNIST's training images would take 170 MB)."""
    total = torch.zeros(x.shape[1], dtype=torch.float64)
    squares = torch.zeros(x.shape[1], dtype=torch.float64)
    for i in range(0, len(x), chunk):
        b = x[i:i + chunk].double() / 255.0
        total += b.sum(dim=(0, 2, 3))
        squares += (b * b).sum(dim=(0, 2, 3))
    count = max(1, x.numel() // x.shape[1])
    mean = total / count
    std = (squares / count - mean * mean).clamp(min=0).sqrt()
    return mean.float(), std.float().clamp(min=1e-3)


def make_optimizer(model: CNN, cfg) -> torch.optim.AdamW:
    """AdamW; weight decay on conv kernels and dense weights, not on biases."""
    decay = [p for p in model.parameters() if p.ndim >= 2]
    rest = [p for p in model.parameters() if p.ndim < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": rest, "weight_decay": 0.0}],
                             lr=cfg.learning_rate, betas=(0.9, 0.999), eps=1e-8)


def train_cnn(cfg, run, examples, images: Images, ckpt: Path | None,
              callback: Callable[[int, CNN], None] | None = None) -> dict[str, Any]:
    """`goldmine finetune classify --arch cnn` inside its run: setup -> fit -> validate.
    `examples`, `images`: what `load_images` returned (before the run was recorded, so that bad
    input records nothing). Returns the same keys as the other archs."""
    from goldmine.baselines.logreg import one_thread
    from goldmine.checkpoint import load_optimizer, load_rng
    from goldmine.progress import console, human_count, info, progress_bar
    from goldmine.runtime import resolve_device
    from goldmine.train.finetune_classify import (
        _truncate_log,
        describe_data,
        epoch_batches,
        improved,
        inverse_frequency_weights,
        learning_rate,
        load_trainable,
        record_baseline,
        report_step,
        save_training_state,
    )
    from goldmine.train.pretrain import StopRequest, batch_generator

    # ---- setup -------------------------------------------------------------------------------
    device = resolve_device(cfg.device)
    run_dir = run.dir
    describe_data(cfg, examples)
    data = images.data
    for note in data.notes:
        info(f"[yellow]{note}[/yellow]")
    labels = examples.labels
    label_index = {name: i for i, name in enumerate(labels)}
    x = torch.from_numpy(images.train.pixels)  # (n, C, H, W) uint8, on the CPU
    y = torch.tensor([label_index[lab] for lab in images.train.labels])  # (n,)
    x_val = torch.from_numpy(images.val.pixels).to(device)
    y_val = torch.tensor([label_index[lab] for lab in images.val.labels]).to(device)
    height, width = data.size
    size = SIZES[cfg.cnn_size]
    shift = max(1, round(SHIFT * min(height, width))) if cfg.augment != "none" else 0

    torch.manual_seed(cfg.seed)  # the initial weights
    config = CNNConfig(data.channels, height, width, tuple(size["channels"]), size["hidden"],
                       len(labels))
    model = CNN(config)
    mean, std = channel_stats(x)  # the normalisation: per channel, over the training images
    model.mean.copy_(mean)
    model.std.copy_(std)
    model.to(device).train()
    optimizer = make_optimizer(model, cfg)
    params = sum(p.numel() for p in model.parameters())
    weights, class_weights = None, None
    if cfg.class_weights == "auto":
        weights = inverse_frequency_weights(y.tolist(), len(labels))
        class_weights = dict(zip(labels, weights.tolist()))
        info("class weights: " + ", ".join(f"{k} {w:.2f}" for k, w in class_weights.items()))
        weights = weights.to(device)

    per_epoch = math.ceil(len(y) / cfg.batch_size)
    total_steps = cfg.max_steps or max(1, math.ceil(cfg.epochs * per_epoch))
    eval_every = per_epoch if cfg.eval_every is None else cfg.eval_every  # 0: at the end only
    step, best, bad_evals, resumed_from = 0, None, 0, None
    if ckpt is not None:
        state = read_json(ckpt / "trainer.json", "trainer.json")
        if state.get("arch") != ARCH:
            raise GoldmineError(f"--resume: {ckpt} is not a cnn checkpoint")
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
    augment = {"none": "no augmentation", "shift": f"shifts up to {shift} px",
               "shift-flip": f"shifts up to {shift} px and mirroring"}[cfg.augment]
    info(f"model: cnn ({cfg.cnn_size}: conv {'-'.join(map(str, config.channels))}, dense "
         f"{config.hidden}) on {width}x{height} {data.mode} images, {device}: "
         f"{human_count(params)} parameters; AdamW lr {cfg.learning_rate:g} ({cfg.schedule}), "
         f"{augment}; {total_steps:,} steps of {cfg.batch_size} ({per_epoch:,} per epoch)")
    meta = {"labels": labels, "dataset": cfg.data, "run_id": run.id, "metric": cfg.metric,
            "cnn_size": cfg.cnn_size, "augment": cfg.augment, "class_weights": class_weights,
            "train_rows": len(y), "val_from_train": examples.val_from_train,
            "val_rows": len(y_val), "fold": None}

    def log(row: dict[str, Any]) -> None:
        with open(metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")

    def state_now(stop_reason: str | None) -> dict[str, Any]:
        from goldmine.train.finetune_classify import STATE_FORMAT

        return {"format": STATE_FORMAT, "arch": ARCH, "step": step,
                "epoch": step // per_epoch, "position": step % per_epoch,
                "batches_per_epoch": per_epoch, "total_steps": total_steps, "best": best,
                "bad_evals": bad_evals, "stop_reason": stop_reason, "labels": labels,
                "config": cfg.to_dict(),
                "data_order": "epoch batches seeded by (seed, epoch), augmentation by "
                              "(seed, step, 1); see epoch_batches and shift_images"}

    # ---- fit ---------------------------------------------------------------------------------
    if ckpt is not None:
        load_rng(ckpt)  # last, so that nothing in the setup draws from the restored state
    stop_reason, seen, train_s, last_val = None, 0, 0.0, (best or {}).get("val")
    batches, batches_epoch = [], -1
    ones = np.ones(len(y))  # epoch_batches groups by length; images have none
    threads = one_thread() if device.type == "cpu" else contextlib.nullcontext()
    with threads, progress_bar() as bar, StopRequest() as stopper:
        task = bar.add_task("cnn", total=total_steps, completed=step, stats="")
        while step < total_steps:
            if cfg.patience and bad_evals >= cfg.patience:  # resumed after early stopping
                stop_reason = "early_stopping"
                break
            t0 = time.perf_counter()
            epoch, position = divmod(step, per_epoch)
            if epoch != batches_epoch:
                batches = epoch_batches(ones, cfg.batch_size, cfg.seed, epoch, False)
                batches_epoch = epoch
            rows = torch.from_numpy(batches[position])
            xb, yb = x[rows], y[rows].to(device)  # (B, C, H, W) uint8, (B,)
            if shift:
                xb = shift_images(xb, shift, cfg.augment == "shift-flip",
                                  batch_generator(cfg.seed, step, 1))
            lr = learning_rate(step, cfg, total_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss = F.cross_entropy(model(xb.to(device)).float(), yb, weight=weights)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            train_loss = loss.item()
            step += 1
            seen += len(rows)
            train_s += time.perf_counter() - t0
            report_step(log, bar, task, cfg, step=step, per_epoch=per_epoch, loss=train_loss,
                        lr=lr, last_val=last_val, rate=f"{seen / train_s:,.0f} img/s")
            if callback is not None:
                callback(step, model)

            final = step == total_steps
            if (eval_every and step % eval_every == 0) or final:
                last_val = val_metrics(model, x_val, y_val, 256)
                log({"step": step, **{f"val_{k}": v for k, v in last_val.items()}})
                if improved(cfg.metric, last_val[cfg.metric], best and best["value"]):
                    best, bad_evals = {"step": step, "value": last_val[cfg.metric],
                                       "val": last_val}, 0
                    save_model(model, run_dir / "model",
                               {**meta, "best_step": step, "val_metrics": last_val})
                else:
                    bad_evals += 1
                if not console.is_terminal:  # logs get a line per evaluation
                    info(f"step {step:,}/{total_steps:,} · val loss {last_val['loss']:.4f} · "
                         f"accuracy {last_val['accuracy']:.4f} · f1_macro "
                         f"{last_val['f1_macro']:.4f}" + (" · best" if bad_evals == 0 else ""))
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
    image = {"height": height, "width": width, "mode": data.mode, "resized": data.resized,
             "converted": data.converted}
    return record_baseline(run, cfg, ARCH, labels=labels, step=step, per_epoch=per_epoch,
                           stop_reason=stop_reason, best=best, seen=seen, train_s=train_s,
                           examples=examples, params=params, class_weights=class_weights,
                           rows=(len(y), len(y_val)), resumed_from=resumed_from, fold=None,
                           extra={"image": image, "network": config.to_json()},
                           extra_metrics={"resized": data.resized,
                                          "converted": data.converted})


# ---------------------------------------------------------------------------------------------
# the benchmark
# ---------------------------------------------------------------------------------------------
def digits_cnn_accuracy(seed: int = 42, **options: Any) -> dict[str, Any]:
    """Train `--arch cnn` with its defaults (and `options`) on scikit-learn's digits (the train
    80% of goldmine.data.images' seeded, stratified 80/20 split; 10% of it held out for
    validation) and score the best model on the held-out 20% (360 images).

    Returns {"accuracy", "f1_macro", "test_images", "train_seconds", "seconds", "run_id",
    "steps", "stop_reason"}. Runs are recorded under GOLDMINE_HOME like any other."""
    from goldmine.classifier import Classifier
    from goldmine.data.images import read_images
    from goldmine.train.finetune_classify import finetune_classify

    t0 = time.perf_counter()
    res = finetune_classify(arch="cnn", data="digits", seed=seed, **options)
    train_s = time.perf_counter() - t0
    clf = Classifier.load(res["run_id"], device=options.get("device", "auto"))
    test = read_images("digits", size=clf.size, mode=clf.mode, splits=("test",)).splits["test"]
    pred = clf.predict(test.pixels, batch_size=512)
    from sklearn.metrics import f1_score

    return {"accuracy": float(np.mean([p == t for p, t in zip(pred, test.labels)])),
            "f1_macro": float(f1_score(test.labels, pred, average="macro")),
            "test_images": len(test), "train_seconds": train_s,
            "seconds": time.perf_counter() - t0, "run_id": res["run_id"],
            "steps": res["steps"], "stop_reason": res["stop_reason"]}
