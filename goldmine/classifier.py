"""A fine-tuned text classifier, loaded from a run or a Hugging Face directory, run in batches.

    clf = Classifier.load("finetune-20261123-101500-ab12")     # or a run dir, or model/ itself
    probs = clf.predict_proba(["great scarf", "never arrived"])   # (2, len(clf.labels))
    print(clf.labels, clf.last_truncated)                         # texts cut at max_length
    clf.predict(["great scarf"])                                  # -> ["positive"]

What `load` accepts:

- a run id (or unique prefix) of `goldmine finetune classify`: its `model/` directory;
- a run directory holding `model/`;
- a Hugging Face sequence-classification directory (`config.json` inside). `goldmine.json`
  beside it (written by fine-tuning) gives the labels and max_length; without it the labels
  come from `config.id2label` and max_length is 512, capped by the model's
  `max_position_embeddings`;
- a logreg model directory (`--arch logreg`: `goldmine.json` with arch logreg and
  `model.safetensors`, no config.json): `load` returns a `goldmine.baselines.logreg.
  LogRegClassifier`, which offers the same `labels`, `predict` and `predict_proba`;
- a cnn model directory (`--arch cnn`, laid out the same way): `load` returns a
  `goldmine.baselines.cnn.CNNClassifier`, whose `predict` and `predict_proba` take images
  (files, encoded bytes, arrays, PIL images), not texts; its `inputs` is "image"
  (`is_image_model` tells without loading).

Inference is in eval mode without gradients; texts are sorted by length inside each call and
padded per batch (dynamic padding), and truncated at `max_length` tokens. The number of texts
truncated by the latest `predict_proba` call is in `last_truncated`; `truncated` counts all
calls since loading.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from goldmine.errors import GoldmineError

DEFAULT_MAX_LENGTH = 512
META_FILE = "goldmine.json"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError, UnicodeDecodeError) as e:
        raise GoldmineError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise GoldmineError(f"{path}: expected a JSON object")
    return data


def _run_command(run_dir: Path) -> str | None:
    marker = run_dir / "run.json"
    if not marker.is_file():
        return None
    try:
        return json.loads(marker.read_text(encoding="utf-8")).get("command")
    except (ValueError, OSError, AttributeError):
        return None


def _is_model_dir(path: Path) -> bool:
    """A Hugging Face classifier directory, or a logreg or cnn model directory."""
    from goldmine.baselines.cnn import is_cnn_dir
    from goldmine.baselines.logreg import is_logreg_dir

    return (path / "config.json").is_file() or is_logreg_dir(path) or is_cnn_dir(path)


def is_image_model(ref: str | Path | None) -> bool:
    """Whether `ref` (run id, run directory or model directory) is an image classifier
    (--arch cnn); False for anything else, including references that do not resolve (loading
    them says what is wrong)."""
    from goldmine.baselines.cnn import is_cnn_dir

    if not ref:
        return False
    try:
        return is_cnn_dir(resolve_model_dir(ref))
    except GoldmineError:
        return False


def resolve_model_dir(ref: str | Path) -> Path:
    """A classifier reference (run id, run directory or model directory) -> the model directory
    (a Hugging Face one, or a logreg one)."""
    ref_s = str(ref)
    p = Path(ref_s).expanduser()
    if p.exists():
        if not p.is_dir():
            raise GoldmineError(f"{p}: is a file; give a classifier run id, run directory or "
                                "Hugging Face model directory")
        if _is_model_dir(p):
            return p
        if _is_model_dir(p / "model"):
            return p / "model"
        command = _run_command(p)
        if command is not None:
            raise GoldmineError(f"{p}: run of `goldmine {command}` has no classifier (no "
                                "model/config.json); give a `goldmine finetune classify` run")
        if (p / "adapter_config.json").is_file():
            raise GoldmineError(f"{p}: holds LoRA adapters only (adapter_config.json, no "
                                "config.json); give the fine-tuning run, whose model/ is merged")
        raise GoldmineError(f"{p}: not a Hugging Face model directory (no config.json) and not "
                            "a run directory with model/")
    from goldmine.registry import Registry

    looks_like_path = any(sep in ref_s for sep in ("/", "\\")) or ref_s.startswith(".")
    reg = Registry()
    try:
        row = reg.get(ref_s)
    except GoldmineError as e:
        if looks_like_path or str(e).startswith("no run"):
            raise GoldmineError(f"{ref_s}: not found (no such directory and no run with that id "
                                f"in {reg.path})") from None
        raise
    run_dir = Path(row["run_dir"])
    model_dir = run_dir / "model"
    if not _is_model_dir(model_dir):
        raise GoldmineError(f"run {row['id']} (`goldmine {row['command']}`) has no classifier "
                            f"({model_dir}/config.json not found); give a `goldmine finetune "
                            "classify` run")
    return model_dir


class Classifier:
    """A loaded sequence classifier: `labels`, `max_length`, `path`, `run_id`, `device`."""

    inputs = "text"  # what predict_proba takes (a CNNClassifier's is "image")

    def __init__(self, model, tokenizer, labels: list[str], max_length: int, path: Path,
                 run_id: str | None, device, meta: dict[str, Any] | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.labels = list(labels)
        self.max_length = int(max_length)
        self.path = Path(path)
        self.run_id = run_id
        self.device = device
        self.meta = meta or {}
        self.last_truncated = 0  # texts truncated by the latest predict_proba call
        self.last_tokens = 0  # tokens read by the latest predict_proba call
        self.truncated = 0  # texts truncated since loading

    # -- loading ---------------------------------------------------------------------------
    @classmethod
    def load(cls, ref: str | Path, device: str = "auto",
             max_length: int | None = None) -> Classifier:
        """Load from a run id, run directory or HF classifier directory (see module docstring).

        `max_length` overrides the trained length (it may not exceed the model's positions).
        A logreg model comes back as a LogRegClassifier (on the CPU; it takes no max_length),
        a cnn model as a CNNClassifier (it takes images, and no max_length).
        """
        from goldmine.registry import run_id_for_path

        path = resolve_model_dir(ref)
        meta = _read_json(path / META_FILE) if (path / META_FILE).is_file() else {}
        if meta.get("arch") == "logreg":  # n-grams + a linear layer: no transformers involved
            from goldmine.baselines.logreg import LogRegClassifier

            return LogRegClassifier.load(path, max_length=max_length)
        if meta.get("arch") == "cnn":  # an image classifier (goldmine/baselines/cnn.py)
            from goldmine.baselines.cnn import CNNClassifier

            return CNNClassifier.load(path, device=device, max_length=max_length)
        config = _read_json(path / "config.json")
        task = meta.get("task")
        if task is not None and task != "classify":
            raise GoldmineError(f"{path}: a {task!r} model, not a classifier "
                                f"({META_FILE} says task={task!r})")
        archs = config.get("architectures") or []
        if not meta and archs and not any("SequenceClassification" in a for a in archs):
            raise GoldmineError(f"{path}: not a sequence classifier (architectures: "
                                f"{', '.join(archs)}); fine-tune it with `goldmine finetune "
                                "classify` first")
        if config.get("problem_type") == "multi_label_classification":
            raise GoldmineError(f"{path}: multi-label classifiers are not supported")
        labels = cls._labels(path, config, meta)

        from goldmine.runtime import resolve_device

        dev = resolve_device(device)
        import transformers
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        verbosity = transformers.logging.get_verbosity()
        bars = transformers.logging.is_progress_bar_enabled()
        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()  # "Loading weights" for a small model
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(path))
            if meta.get("quantization"):  # int8 (`goldmine quantize`): not for transformers
                from goldmine.quantize import load_quantized_classifier

                model = load_quantized_classifier(path, meta["quantization"])
            else:
                model = AutoModelForSequenceClassification.from_pretrained(str(path))
        except (OSError, ValueError, KeyError) as e:
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise GoldmineError(f"{path}: cannot load the classifier ({msg})") from None
        finally:
            transformers.logging.set_verbosity(verbosity)
            if bars:
                transformers.logging.enable_progress_bar()
        n_out = model.config.num_labels
        if n_out != len(labels):
            raise GoldmineError(f"{path}: the model has {n_out} outputs but {len(labels)} labels")
        model.to(dev).eval()

        positions = getattr(model.config, "max_position_embeddings", None)
        limit = min(DEFAULT_MAX_LENGTH, positions) if positions else DEFAULT_MAX_LENGTH
        if max_length is not None:
            if max_length < 1:
                raise GoldmineError(f"max_length: must be >= 1, got {max_length}")
            if positions and max_length > positions:
                raise GoldmineError(f"max_length: {max_length} exceeds the model's "
                                    f"{positions} positions")
            length = max_length
        else:
            length = int(meta.get("max_length") or limit)
            if positions:
                length = min(length, positions)
        return cls(model, tokenizer, labels, length, path, run_id_for_path(path), dev, meta)

    @staticmethod
    def _labels(path: Path, config: dict[str, Any], meta: dict[str, Any]) -> list[str]:
        labels = meta.get("labels")
        if labels:
            return [str(x) for x in labels]
        id2label = config.get("id2label")
        if not id2label:
            raise GoldmineError(f"{path}: the model has no label names (no labels in {META_FILE} "
                                "and no id2label in config.json)")
        try:
            by_id = {int(k): str(v) for k, v in id2label.items()}
        except (TypeError, ValueError, AttributeError):
            raise GoldmineError(f"{path}: config.json id2label is not a map of ids to names") \
                from None
        if sorted(by_id) != list(range(len(by_id))):
            raise GoldmineError(f"{path}: config.json id2label ids are not 0..{len(by_id) - 1}")
        return [by_id[i] for i in range(len(by_id))]

    # -- inference -------------------------------------------------------------------------
    def _encode(self, texts: list[str]) -> tuple[list[list[int]], list[list[int]] | None, int]:
        """Token ids (and token type ids) truncated at max_length; and how many were cut."""
        tok, n = self.tokenizer, self.max_length
        enc = tok(texts, truncation=True, max_length=n + 1, padding=False)
        ids = enc["input_ids"]
        types = enc.get("token_type_ids")
        long = [i for i, x in enumerate(ids) if len(x) > n]
        if long:
            again = tok([texts[i] for i in long], truncation=True, max_length=n, padding=False)
            for j, i in enumerate(long):
                ids[i] = again["input_ids"][j]
                if types is not None:
                    types[i] = again["token_type_ids"][j]
        return ids, types, len(long)

    def predict_proba(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Class probabilities, shape (len(texts), len(labels)), rows in the order given.

        Sets `last_truncated` (texts cut at max_length in this call) and adds to `truncated`.
        """
        import torch

        texts = ["" if t is None else str(t) for t in texts]
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float64)
        self.last_truncated = self.last_tokens = 0
        if not texts:
            return out
        batch_size = max(1, int(batch_size))
        pad_id = self.tokenizer.pad_token_id or 0
        ids, types, cut = self._encode(texts)
        self.last_truncated = cut
        self.last_tokens = sum(len(x) for x in ids)  # tokens read (after truncation)
        self.truncated += cut
        order = sorted(range(len(texts)), key=lambda i: len(ids[i]))
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                rows = order[start:start + batch_size]
                width = max(len(ids[i]) for i in rows)
                input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
                mask = torch.zeros((len(rows), width), dtype=torch.long)
                type_ids = torch.zeros((len(rows), width), dtype=torch.long) if types else None
                for r, i in enumerate(rows):
                    k = len(ids[i])
                    input_ids[r, :k] = torch.tensor(ids[i], dtype=torch.long)
                    mask[r, :k] = 1
                    if type_ids is not None:
                        type_ids[r, :k] = torch.tensor(types[i], dtype=torch.long)
                inputs = {"input_ids": input_ids.to(self.device),
                          "attention_mask": mask.to(self.device)}
                if type_ids is not None:
                    inputs["token_type_ids"] = type_ids.to(self.device)
                logits = self.model(**inputs).logits.float()
                probs = torch.softmax(logits, dim=-1).cpu().double().numpy()
                out[rows] = probs
        return out

    def predict(self, texts: list[str], batch_size: int = 64) -> list[str]:
        """The most likely label of each text."""
        probs = self.predict_proba(texts, batch_size=batch_size)
        return [self.labels[i] for i in probs.argmax(axis=1)]

    def __repr__(self) -> str:
        return (f"Classifier(path={str(self.path)!r}, labels={self.labels!r}, "
                f"max_length={self.max_length}, device={str(self.device)!r})")
