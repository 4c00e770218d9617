"""The linear baseline for text classification: hashed word and character n-grams (TF-IDF) and
a multinomial logistic regression trained by mini-batch SGD with momentum, written out.

    goldmine finetune classify --arch logreg --data reviews
    finetune_classify(arch="logreg", data="tickets.csv", label_column="queue")
    clf = Classifier.load(run_id)     # a LogRegClassifier: labels, predict, predict_proba

It is the model a large one has to beat: it trains in seconds on a CPU and predicts in
microseconds. It runs through the same data loading, run registry, evaluation, prediction and
serving as the fine-tuned transformers (goldmine/train/finetune_classify.py dispatches here).

Features (`Featurizer`). A text is lowercased and split into words, runs of letters and digits
(`\\w+`: punctuation and emoji are dropped). Its n-grams are the word n-grams (1-2 by default)
and the character n-grams (2-4 by default) of each word padded with a space on either side, or
of the whole cleaned text (--char-scope text). Chinese has no spaces: a run of Chinese
characters is one "word" and its character n-grams are the features, so no segmenter is needed.
Each n-gram is hashed (CRC-32 of its UTF-8 bytes: stable across processes and machines, unlike
Python's `hash`) into one of --hash-buckets columns, so no vocabulary is kept. A cell holds
1 + log(count) (sublinear tf), times its column's idf, log((1 + n) / (1 + df)) + 1 fit on train
(--tfidf, scikit-learn's smooth idf); then each row is scaled to unit L2 norm, so long and short
texts weigh alike and the curvature of the loss is bounded (see the optimizer).

Model. p(y | x) = softmax(x W + b), W: (buckets, K), b: (K,), both zero at the start (the
problem is convex: any start reaches the same optimum). The objective is

    mean over training rows of -log p(y_i | x_i)  +  (l2 / 2) * ||W||^2      (b not penalised)

which is what scikit-learn's LogisticRegression minimises with C = 1 / (n * l2), up to the
factor C * n; a test checks that both reach the same accuracy and log-loss. The log-softmax
subtracts each row's maximum before exp, so huge logits neither overflow nor lose the loss.

Optimizer. Mini-batch SGD with heavy-ball momentum (0.9), gradients written out:

    g = X^T (p - onehot(y)) / B  +  l2 * W;   v = momentum * v + g;   W -= lr * v   (b: no l2)

SGD rather than Adam: it is the textbook method for this convex problem, keeps one state
tensor the size of W (not two), and settles at the optimum that scikit-learn's solver finds
when its rate decays to 0. Rows of unit norm bound the curvature of the log-loss by 1/2 per
row, and sparse rows that share few columns keep a batch's curvature well below that, so large
rates are stable: the default 4 (with momentum, an effective step of 40) is what makes the rare
n-grams, whose gradients are tiny, learn within a few epochs (Banking77, 10 epochs, a seeded
80/20 split: validation accuracy 0.883 at rate 2, 0.890 at 4; 8 did a little better there but
spiked on SST-2). Schedule: --schedule cosine (the logreg default)
decays the rate from --learning-rate to 0 along a half cosine over the run, without warmup, so
the last steps average out the noise of the mini-batches. Batches are a seeded shuffle per
epoch. Early stopping: the validation log-loss (--metric loss, the logreg default) once per
epoch; the best model is kept. Training runs the whole schedule by default (--patience 0):
while the rate is high the validation loss wanders, and on SST-2 the best epoch was the
seventh, after three worse ones (dev accuracy 0.912 against 0.872 when --patience 3 stopped at
the fourth). --patience N stops after N evaluations without a better one.

A step computes on the rows of W that its batch's n-grams hit (a few thousand of 2^18): the
batch is a sparse (B, U) matrix over its U columns (scipy, which multiplies it fastest). The
L2 term and the momentum cover all of W (in place), as the full gradient says.

Output, like a transformer classifier's (model/ in the run):

    goldmine.json        task classify, arch logreg, labels, feature settings, best step, metrics
    model.safetensors    W (buckets, K), b (K,), idf (buckets,): no pickles
    checkpoint/          state.safetensors (W, b and the momentum), trainer.json: for --resume
"""

from __future__ import annotations

import json
import math
import re
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from safetensors.torch import load_file, save_file

from goldmine.errors import GoldmineError
from goldmine.files import read_json, write_json

ARCH = "logreg"
FORMAT = "goldmine-logreg/1"
META_FILE = "goldmine.json"
WEIGHTS_FILE = "model.safetensors"
WORD = re.compile(r"\w+")
NO_NGRAMS = "no n-grams"  # skip reason: the text is empty or punctuation only after cleaning
SCORE_CHUNK = 4096  # rows scored at a time


# ---------------------------------------------------------------------------------------------
# features
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Features:
    """How a text becomes a row: n-gram length ranges ((0, 0): none), where character n-grams
    are taken (each word, or the whole text), the number of hash buckets, idf weighting."""

    word_ngrams: tuple[int, int] = (1, 2)
    char_ngrams: tuple[int, int] = (2, 4)
    char_scope: str = "words"
    buckets: int = 2**18
    tfidf: bool = True

    @classmethod
    def from_config(cls, cfg) -> Features:
        return cls(cfg.ngram_range("word_ngrams"), cfg.ngram_range("char_ngrams"),
                   cfg.char_scope, cfg.hash_buckets, cfg.tfidf)

    def to_json(self) -> dict[str, Any]:
        return {"word_ngrams": list(self.word_ngrams), "char_ngrams": list(self.char_ngrams),
                "char_scope": self.char_scope, "hash_buckets": self.buckets,
                "tfidf": self.tfidf, "words": WORD.pattern, "hash": "crc32(utf-8) % buckets",
                "tf": "1 + log(count)", "norm": "l2"}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Features:
        return cls(tuple(d["word_ngrams"]), tuple(d["char_ngrams"]), d["char_scope"],
                   int(d["hash_buckets"]), bool(d["tfidf"]))


def clean(text: str) -> list[str]:
    """The words of a text: lowercased runs of letters, digits and underscores (`\\w+`)."""
    return WORD.findall(text.lower())


def ngrams(words: list[str], f: Features) -> list[str]:
    """A text's n-grams as strings: "w" + a word n-gram, "c" + a character n-gram (the prefix
    keeps the word "ab" apart from the character bigram "ab")."""
    out = []
    lo, hi = f.word_ngrams
    for n in range(lo, hi + 1) if lo else ():
        out += ["w" + " ".join(words[i:i + n]) for i in range(len(words) - n + 1)]
    lo, hi = f.char_ngrams
    if lo and words:
        # " ab " gives the n-grams that start or end a word their own features
        pieces = [f" {w} " for w in words] if f.char_scope == "words" else [f" {' '.join(words)} "]
        for piece in pieces:
            for n in range(lo, hi + 1):
                out += ["c" + piece[i:i + n] for i in range(len(piece) - n + 1)]
    return out


class Featurizer:
    """Texts -> sparse rows (n, buckets), float32, unit L2 norm (see the module docstring)."""

    def __init__(self, features: Features, idf: np.ndarray | None = None):
        self.features = features
        self.idf = idf  # (buckets,) float32 with tfidf, fit on train by `fit`

    def counts(self, texts: list[str]) -> sp.csr_matrix:
        """Sublinear term frequencies 1 + log(count), before idf and normalisation."""
        buckets = self.features.buckets
        indptr, indices, data = [0], [np.zeros(0, np.int64)], [np.zeros(0)]
        for text in texts:
            grams = ngrams(clean(text), self.features)
            hashed = np.fromiter((zlib.crc32(g.encode("utf-8")) for g in grams), np.int64,
                                 len(grams)) % buckets
            cols, n = np.unique(hashed, return_counts=True)  # sorted: a canonical CSR row
            indices.append(cols)
            data.append(1.0 + np.log(n))
            indptr.append(indptr[-1] + len(cols))
        return sp.csr_matrix((np.concatenate(data).astype(np.float32), np.concatenate(indices),
                              np.array(indptr)), shape=(len(texts), buckets))

    def fit(self, texts: list[str]) -> sp.csr_matrix:
        """Fit the idf on `texts` (with tfidf) and return their rows."""
        tf = self.counts(texts)
        if self.features.tfidf:
            df = np.bincount(tf.indices, minlength=self.features.buckets)  # (buckets,)
            self.idf = (np.log((1 + tf.shape[0]) / (1 + df)) + 1).astype(np.float32)
        return self._weigh(tf)

    def transform(self, texts: list[str]) -> sp.csr_matrix:
        if self.features.tfidf and self.idf is None:
            raise ValueError("Featurizer.transform before fit: tf-idf needs the train idf")
        return self._weigh(self.counts(texts))

    def _weigh(self, tf: sp.csr_matrix) -> sp.csr_matrix:
        if self.features.tfidf:
            tf.data *= self.idf[tf.indices]
        row_of = np.repeat(np.arange(tf.shape[0]), np.diff(tf.indptr))  # (nnz,)
        norms = np.sqrt(np.bincount(row_of, weights=tf.data.astype(np.float64) ** 2,
                                    minlength=tf.shape[0]))
        tf.data /= norms[row_of].astype(np.float32)  # rows without n-grams have no entries
        return tf


def empty_rows(X: sp.csr_matrix) -> np.ndarray:
    """Indices of rows without a single n-gram."""
    return np.flatnonzero(np.diff(X.indptr) == 0)


# ---------------------------------------------------------------------------------------------
# model, loss and gradient
# ---------------------------------------------------------------------------------------------
class LinearSoftmax(torch.nn.Module):
    """logits = x W + b; W: (buckets, K), b: (K,). The parameters do not require grad: `sgd_step`
    computes the gradient itself (they are Parameters so that parameter counts see them)."""

    def __init__(self, buckets: int, num_labels: int):
        super().__init__()
        self.W = torch.nn.Parameter(torch.zeros(buckets, num_labels), requires_grad=False)
        self.b = torch.nn.Parameter(torch.zeros(num_labels), requires_grad=False)

    def scores(self, X: sp.csr_matrix) -> torch.Tensor:
        """Logits of many rows (n, K): scipy's sparse x dense product, a chunk at a time."""
        W = self.W.detach().numpy()
        parts = [X[i:i + SCORE_CHUNK] @ W for i in range(0, X.shape[0], SCORE_CHUNK)]
        out = np.concatenate(parts) if parts else np.zeros((0, W.shape[1]), np.float32)
        return torch.from_numpy(out) + self.b.detach()


def log_softmax(z: torch.Tensor) -> torch.Tensor:
    """log p = z - log(sum(exp(z))) per row, (B, K). The row's maximum is taken out first:
    exp then sees values <= 0 (no overflow) and the sum is >= 1 (its log is finite), so logits
    of 1e4 give the same answer as logits of 0."""
    z = z - z.max(dim=1, keepdim=True).values
    return z - z.exp().sum(dim=1, keepdim=True).log()


def loss_and_grad(W: torch.Tensor, b: torch.Tensor, x: sp.csr_matrix | np.ndarray,
                  y: torch.Tensor, weights: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean log-loss of a batch and its gradients, written out (no autograd).

    x (B, D) scipy sparse or a numpy array, W (D, K), b (K,), y (B,) label ids; `weights` (K,)
    per-class loss weights (the mean is then weighted, as in F.cross_entropy). With
    dz = (p - onehot(y)) w_i / sum(w), (B, K): dloss/dW = x^T dz (D, K) and dloss/db = dz summed
    over the batch (K,). The two products with x are scipy's (a tenth of the time of torch's
    sparse ones at this size).
    """
    rows = torch.arange(len(y))
    logp = log_softmax(torch.from_numpy(x @ W.numpy()) + b)  # (B, K)
    w = torch.ones(len(y)) if weights is None else weights[y]  # (B,)
    w = w / w.sum()
    loss = -(w * logp[rows, y]).sum()
    dz = logp.exp()
    dz[rows, y] -= 1.0
    dz *= w[:, None]
    return loss, torch.from_numpy(x.T @ dz.numpy()), dz.sum(dim=0)


def batch_matrix(X: sp.csr_matrix, rows: np.ndarray) -> tuple[sp.csr_matrix, torch.Tensor]:
    """Rows `rows` of X as a (B, U) matrix over the U columns they use, and those columns
    (U,): the step computes on those rows of W only."""
    part = X[rows]
    used = np.zeros(X.shape[1], dtype=bool)
    used[part.indices] = True
    cols = np.flatnonzero(used)  # (U,), sorted
    local = np.empty(X.shape[1], dtype=np.int64)  # bucket -> its column in the batch
    local[cols] = np.arange(len(cols))
    x = sp.csr_matrix((part.data, local[part.indices], part.indptr), shape=(len(rows), len(cols)))
    return x, torch.from_numpy(cols)


def sgd_step(model: LinearSoftmax, velocity: tuple[torch.Tensor, torch.Tensor],
             x: sp.csr_matrix, cols: torch.Tensor, y: torch.Tensor, lr: float, l2: float,
             momentum: float, weights: torch.Tensor | None = None) -> float:
    """One step of SGD with momentum on the batch's mean log-loss + (l2 / 2) ||W||^2:
    v = momentum v + g, W -= lr v. The log-loss gradient is zero outside the batch's columns,
    so it is added into them; the L2 term and the momentum cover all of W."""
    W, b = model.W.data, model.b.data
    vW, vb = velocity
    loss, gW, gb = loss_and_grad(W[cols], b, x, y, weights)  # gW: (U, K)
    vW.mul_(momentum).add_(W, alpha=l2).index_add_(0, cols, gW)
    vb.mul_(momentum).add_(gb)
    W.add_(vW, alpha=-lr)
    b.add_(vb, alpha=-lr)
    return loss.item()


@torch.no_grad()
def val_metrics(model: LinearSoftmax, X: sp.csr_matrix, y: np.ndarray) -> dict[str, float]:
    """Mean log-loss (unweighted), accuracy and macro F1: the keys the transformer path logs."""
    from sklearn.metrics import accuracy_score, f1_score

    logp = log_softmax(model.scores(X))  # (n, K)
    loss = -logp[torch.arange(len(y)), torch.from_numpy(y)].mean().item()
    pred = logp.argmax(dim=1).numpy()
    return {"loss": loss, "accuracy": float(accuracy_score(y, pred)),
            "f1_macro": float(f1_score(y, pred, average="macro", zero_division=0))}


@contextmanager
def one_thread() -> Iterator[None]:
    """Train on one thread: a step is a few small sparse products and passes over W that are
    bound by memory, which a thread pool barely speeds up; on a busy machine its threads wait
    on each other and made steps 20-40x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------------------------------------
# save and load
# ---------------------------------------------------------------------------------------------
def is_logreg_dir(path: str | Path) -> bool:
    """A directory holding a saved logreg model (goldmine.json says arch logreg)."""
    meta = Path(path) / META_FILE
    if not meta.is_file():
        return False
    try:
        return json.loads(meta.read_text(encoding="utf-8")).get("arch") == ARCH
    except (ValueError, OSError, UnicodeDecodeError, AttributeError):
        return False


def save_model(model: LinearSoftmax, featurizer: Featurizer, out: Path,
               meta: dict[str, Any]) -> Path:
    """model/: goldmine.json + model.safetensors, written beside `out` and swapped in."""
    from goldmine.checkpoint import atomic_dir

    tensors = {"W": model.W.detach().contiguous(), "b": model.b.detach().contiguous()}
    if featurizer.idf is not None:
        tensors["idf"] = torch.from_numpy(featurizer.idf)
    with atomic_dir(out) as tmp:
        save_file(tensors, tmp / WEIGHTS_FILE)
        write_json(tmp / META_FILE, {**meta, "format": FORMAT, "task": "classify", "arch": ARCH,
                                     "features": featurizer.features.to_json()})
    return out


def load_model(path: Path) -> tuple[LinearSoftmax, Featurizer, dict[str, Any]]:
    """(model, featurizer, goldmine.json) of a saved model directory."""
    meta = read_json(path / META_FILE, META_FILE)
    if meta.get("format") != FORMAT:
        raise GoldmineError(f"{path / META_FILE}: format {meta.get('format')!r}; this goldmine "
                            f"reads {FORMAT}")
    try:
        features = Features.from_json(meta["features"])
        labels = [str(x) for x in meta["labels"]]
        tensors = load_file(path / WEIGHTS_FILE)
    except (KeyError, TypeError, ValueError) as e:
        raise GoldmineError(f"{path}: not a complete logreg model ({e})") from None
    except OSError as e:
        raise GoldmineError(f"{path / WEIGHTS_FILE}: cannot read ({e})") from None
    W, b = tensors.get("W"), tensors.get("b")
    if W is None or b is None or W.shape != (features.buckets, len(labels)) \
            or b.shape != (len(labels),):
        raise GoldmineError(f"{path / WEIGHTS_FILE}: W and b do not fit {features.buckets} "
                            f"buckets and {len(labels)} labels")
    idf = tensors.get("idf")
    if features.tfidf and (idf is None or idf.shape != (features.buckets,)):
        raise GoldmineError(f"{path / WEIGHTS_FILE}: no idf of {features.buckets} buckets")
    model = LinearSoftmax(features.buckets, len(labels))
    model.W.data.copy_(W.float())
    model.b.data.copy_(b.float())
    return model, Featurizer(features, idf.numpy() if features.tfidf else None), meta


class LogRegClassifier:
    """A saved logreg model with the interface of `goldmine.classifier.Classifier`: `labels`,
    `predict`, `predict_proba`, `path`, `run_id`, `meta`, `model`, and the counters that
    evaluate, predict and the server read. It runs on the CPU; texts are never truncated
    (`max_length` is None, `last_truncated` 0), and `last_tokens` counts words."""

    def __init__(self, model: LinearSoftmax, featurizer: Featurizer, meta: dict[str, Any],
                 path: Path, run_id: str | None):
        self.model = model
        self.featurizer = featurizer
        self.meta = meta
        self.labels = [str(x) for x in meta["labels"]]
        self.path = Path(path)
        self.run_id = run_id
        self.device = torch.device("cpu")
        self.max_length = None
        self.tokenizer = None
        self.last_truncated = self.truncated = 0
        self.last_tokens = 0  # words read by the latest predict_proba call (the server's usage)

    @classmethod
    def load(cls, path: str | Path, max_length: int | None = None) -> LogRegClassifier:
        from goldmine.registry import run_id_for_path

        if max_length is not None:
            raise GoldmineError("max_length: a logreg model reads whole texts (its n-gram "
                                "features have no length limit); drop --max-length")
        path = Path(path)
        model, featurizer, meta = load_model(path)
        return cls(model, featurizer, meta, path, run_id_for_path(path))

    def predict_proba(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Class probabilities (len(texts), len(labels)), float64. A text without n-grams gets
        the bias alone: the label frequencies the model learned."""
        texts = ["" if t is None else str(t) for t in texts]
        self.last_tokens = sum(len(clean(t)) for t in texts)
        with torch.no_grad():
            scores = self.model.scores(self.featurizer.transform(texts)).double()  # (n, K)
        return log_softmax(scores).exp().numpy()  # float64: rows sum to 1 within 1e-15

    def predict(self, texts: list[str], batch_size: int = 64) -> list[str]:
        return [self.labels[i] for i in self.predict_proba(texts, batch_size).argmax(axis=1)]

    def __repr__(self) -> str:
        return f"LogRegClassifier(path={str(self.path)!r}, labels={self.labels!r})"


def refuse(path: str | Path, why: str) -> None:
    """A GoldmineError "PATH: why" when `path` (a model directory, or a run directory with
    model/) holds a logreg model: for the commands that apply to neural models only."""
    path = Path(path)
    for d in (path, path / "model"):
        if is_logreg_dir(d):
            raise GoldmineError(f"{d}: {why}")


EXPORT_REFUSAL = ("a logreg model (hashed n-grams and one linear layer) has no Hugging Face, "
                  "ONNX or GGUF form; its model/ directory (goldmine.json + model.safetensors) "
                  "is portable as it is: copy it, and load it with goldmine.classifier."
                  "Classifier.load or `goldmine serve`")
QUANTIZE_REFUSAL = ("int8 quantization applies to neural models; a logreg model is already "
                    "small (one float per hash bucket and label)")


# ---------------------------------------------------------------------------------------------
# training (called by goldmine.train.finetune_classify.finetune_classify for --arch logreg)
# ---------------------------------------------------------------------------------------------
def featurize(cfg, examples) -> tuple[Featurizer, sp.csr_matrix, sp.csr_matrix]:
    """(featurizer with idf fit on train, train rows, val rows). Texts without n-grams are
    taken out of `examples` and counted as skipped; an error when no train text has any."""
    from goldmine.progress import info

    t0 = time.perf_counter()
    featurizer = Featurizer(Features.from_config(cfg))
    X = featurizer.fit([ex.text for ex in examples.train])
    bad = empty_rows(X)
    if len(bad) == len(examples.train):
        raise GoldmineError(f"data {cfg.data}: no training text has a word or character n-gram "
                            f"(all {len(bad):,} are empty or punctuation after cleaning; first "
                            f"at {examples.train[0].where})")
    if len(bad):  # the idf counted them as documents: fit it again without them
        bad = set(bad.tolist())
        for i in sorted(bad):
            examples.skipped.add(NO_NGRAMS, examples.train[i].where)
        examples.train = [ex for i, ex in enumerate(examples.train) if i not in bad]
        X = featurizer.fit([ex.text for ex in examples.train])
    X_val = featurizer.transform([ex.text for ex in examples.val])
    bad = set(empty_rows(X_val).tolist())
    if bad:
        for i in sorted(bad):
            examples.skipped.add(NO_NGRAMS, examples.val[i].where)
        examples.val = [ex for i, ex in enumerate(examples.val) if i not in bad]
        if not examples.val:
            raise GoldmineError(f"data {cfg.data}: no validation text has a word or character "
                                "n-gram (all are empty or punctuation after cleaning)")
        X_val = X_val[[i for i in range(X_val.shape[0]) if i not in bad]]
    per_row = X.nnz / max(1, X.shape[0])
    info(f"features: {featurizer.features.buckets:,} hash buckets; word n-grams "
         f"{'-'.join(map(str, featurizer.features.word_ngrams))}, char n-grams "
         f"{'-'.join(map(str, featurizer.features.char_ngrams))} "
         f"({featurizer.features.char_scope}), {'tf-idf' if featurizer.features.tfidf else 'tf'};"
         f" {per_row:,.0f} per text; {time.perf_counter() - t0:.1f} s")
    return featurizer, X, X_val


def train_logreg(cfg, run, examples, features: tuple[Featurizer, sp.csr_matrix, sp.csr_matrix],
                 ckpt: Path | None,
                 callback: Callable[[int, LinearSoftmax], None] | None = None) -> dict[str, Any]:
    """`goldmine finetune classify --arch logreg` inside its run: setup -> fit -> validate.
    `features`: what `featurize` returned (before the run was recorded, so that bad input
    records nothing). Returns the same keys as the transformer path."""
    from goldmine.progress import console, human_count, info, progress_bar
    from goldmine.train.finetune_classify import (
        STATE_FORMAT,
        _truncate_log,
        describe_data,
        epoch_batches,
        improved,
        inverse_frequency_weights,
        learning_rate,
        record_baseline,
        report_step,
    )
    from goldmine.train.pretrain import StopRequest

    # ---- setup -------------------------------------------------------------------------------
    run_dir = run.dir
    if cfg.device not in ("auto", "cpu"):
        info(f"[yellow]device {cfg.device}: a logreg model trains on the CPU[/yellow]")
    featurizer, X, X_val = features
    describe_data(cfg, examples)
    labels = examples.labels
    label_index = {name: i for i, name in enumerate(labels)}
    train, val = examples.train, examples.val
    y = torch.tensor([label_index[ex.label] for ex in train])  # (n,)
    y_val = np.array([label_index[ex.label] for ex in val])

    model = LinearSoftmax(featurizer.features.buckets, len(labels))
    velocity = (torch.zeros_like(model.W), torch.zeros_like(model.b))
    params = model.W.numel() + model.b.numel()
    weights, class_weights = None, None
    if cfg.class_weights == "auto":
        weights = inverse_frequency_weights(y.tolist(), len(labels))
        class_weights = dict(zip(labels, weights.tolist()))
        info("class weights: " + ", ".join(f"{k} {w:.2f}" for k, w in class_weights.items()))

    per_epoch = math.ceil(len(train) / cfg.batch_size)
    total_steps = cfg.max_steps or max(1, math.ceil(cfg.epochs * per_epoch))
    eval_every = per_epoch if cfg.eval_every is None else cfg.eval_every  # 0: at the end only
    step, best, bad_evals, resumed_from = 0, None, 0, None
    if ckpt is not None:
        state = read_json(ckpt / "trainer.json", "trainer.json")
        if state.get("arch") != ARCH:
            raise GoldmineError(f"--resume: {ckpt} is not a logreg checkpoint")
        if state["labels"] != labels:
            raise GoldmineError(f"--resume: the data's labels {labels} differ from the saved "
                                f"run's {state['labels']}")
        saved = load_file(ckpt / "state.safetensors")
        for dst, name in ((model.W.data, "W"), (model.b.data, "b"), (velocity[0], "vW"),
                          (velocity[1], "vb")):
            dst.copy_(saved[name])
        step, best, bad_evals = state["step"], state["best"], state["bad_evals"]
        resumed_from = step
        info(f"resuming {run.id} from {ckpt} (step {step:,} of {total_steps:,})")

    metrics_path = run_dir / "metrics.jsonl"
    _truncate_log(metrics_path, step)
    run.set_config(cfg.to_dict())
    run.add_parent_from_path(cfg.data)
    info(f"model: logistic regression on the CPU, {human_count(params)} parameters "
         f"({featurizer.features.buckets:,} x {len(labels)} + bias); SGD with momentum "
         f"{cfg.momentum:g}, lr {cfg.learning_rate:g} ({cfg.schedule}), l2 {cfg.l2:g}; "
         f"{total_steps:,} steps of {cfg.batch_size} ({per_epoch:,} per epoch)")
    meta = {"labels": labels, "dataset": cfg.data, "run_id": run.id, "metric": cfg.metric,
            "l2": cfg.l2, "class_weights": class_weights, "train_rows": len(train),
            "val_from_train": examples.val_from_train, "val_rows": len(val),
            "fold": examples.fold}

    def log(row: dict[str, Any]) -> None:
        with open(metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")

    def save_state(stop_reason: str | None) -> None:
        from goldmine.checkpoint import atomic_dir

        with atomic_dir(run_dir / "checkpoint") as tmp:
            save_file({"W": model.W.detach(), "b": model.b.detach(), "vW": velocity[0],
                       "vb": velocity[1]}, tmp / "state.safetensors")
            write_json(tmp / "trainer.json", {
                "format": STATE_FORMAT, "arch": ARCH, "step": step,
                "epoch": step // per_epoch, "position": step % per_epoch,
                "batches_per_epoch": per_epoch, "total_steps": total_steps, "best": best,
                "bad_evals": bad_evals, "stop_reason": stop_reason, "labels": labels,
                "config": cfg.to_dict(),
                "data_order": "epoch batches seeded by (seed, epoch); see epoch_batches"})

    # ---- fit ---------------------------------------------------------------------------------
    stop_reason, seen, train_s, last_val = None, 0, 0.0, (best or {}).get("val")
    batches, batches_epoch = [], -1
    ones = np.ones(len(train))  # epoch_batches groups by length; rows have none here
    with one_thread(), progress_bar() as bar, StopRequest() as stopper:
        task = bar.add_task("logreg", total=total_steps, completed=step, stats="")
        while step < total_steps:
            if cfg.patience and bad_evals >= cfg.patience:  # resumed after early stopping
                stop_reason = "early_stopping"
                break
            t0 = time.perf_counter()
            epoch, position = divmod(step, per_epoch)
            if epoch != batches_epoch:
                batches = epoch_batches(ones, cfg.batch_size, cfg.seed, epoch, False)
                batches_epoch = epoch
            rows = batches[position]
            x, cols = batch_matrix(X, rows)
            lr = learning_rate(step, cfg, total_steps)
            train_loss = sgd_step(model, velocity, x, cols, y[torch.from_numpy(rows)], lr,
                                  cfg.l2, cfg.momentum, weights)
            step += 1
            seen += len(rows)
            train_s += time.perf_counter() - t0
            report_step(log, bar, task, cfg, step=step, per_epoch=per_epoch, loss=train_loss,
                        lr=lr, last_val=last_val, rate=f"{seen / train_s:,.0f} ex/s")
            if callback is not None:
                callback(step, model)

            final = step == total_steps
            if (eval_every and step % eval_every == 0) or final:
                last_val = val_metrics(model, X_val, y_val)
                log({"step": step, **{f"val_{k}": v for k, v in last_val.items()}})
                if improved(cfg.metric, last_val[cfg.metric], best and best["value"]):
                    best, bad_evals = {"step": step, "value": last_val[cfg.metric],
                                       "val": last_val}, 0
                    save_model(model, featurizer, run_dir / "model",
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
                save_state(stop_reason)
            elif stopper.signal is not None:
                save_state("interrupted")
            if stop_reason is None and stopper.signal is not None and not final:
                stop_reason = "interrupted"
            if stop_reason is not None:
                break
    if stop_reason is None:
        stop_reason = "max_steps" if cfg.max_steps else "epochs"

    # ---- validate and record -----------------------------------------------------------------
    return record_baseline(run, cfg, ARCH, labels=labels, step=step, per_epoch=per_epoch,
                           stop_reason=stop_reason, best=best, seen=seen, train_s=train_s,
                           examples=examples, params=params, class_weights=class_weights,
                           rows=(len(train), len(val)), resumed_from=resumed_from,
                           fold=examples.fold,
                           extra={"features": featurizer.features.to_json()}, extra_metrics={})
